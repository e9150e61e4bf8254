# output-neutral: error messages, fixes and triggers; what they say is never a stage output
"""The web API's refusals: a request to a real server (tests/test_serving_door.py's door_server), its status, the
error body's field, and its `detail` the message. `post`: httpx.post keywords to /predict; `raw`: bytes sent as they
are; `framed`: a POST /predict with these framing headers and a request after it; `scenario`: a function of
tests/crowds.py."""

from __future__ import annotations

from . import Trigger, index, rows_of, trigger


GOOD = b'{"text": "the film was great"}'
CHUNKED = b"%x\r\n%s\r\n0\r\n\r\n" % (len(GOOD), GOOD)
JSON = {"content-type": "application/json"}


def post(status: int, field: str | None, **request) -> Trigger:
    return trigger("http", status=status, field=field, request=request)


def raw(status: int, data: bytes) -> Trigger:
    return trigger("http", status=status, field=None, raw=data)


def framed(status: int, *headers: bytes, body: bytes = GOOD, version: bytes = b"HTTP/1.1") -> Trigger:
    return trigger("http", status=status, field=None, framed=headers, body=body, version=version)


ROWS = rows_of(
    "serve",
    ("serve-content-type-missing",
     'content-type: missing; send Content-Type: application/json',
     "HTTP 415: send the header (`curl -H 'content-type: application/json'`); a body without one is not read.",
     post(415, "content-type", content=GOOD),
     'content-type: missing; send Content-Type: application/json'),
    ("serve-content-type-json-suffix",
     'content-type: expected application/json, got application/evil+json',
     'HTTP 415: only `application/json` is read (no `+json` types, no forms).',
     post(415, "content-type", content=GOOD, headers={"content-type": "application/evil+json"}),
     'content-type: expected application/json, got {media}'),
    ("serve-charset",
     'content-type: charset latin-1; send UTF-8 (charset=utf-8 or none)',
     'HTTP 415: encode the body as UTF-8, and say `charset=utf-8` or nothing.',
     post(415, "content-type", content=GOOD, headers={"content-type": "application/json; charset=latin-1"}),
     'content-type: charset {charset}; send UTF-8 (charset=utf-8 or none)'),
    ("serve-utf16-body",
     'body: UTF-16, not UTF-8; send the JSON as UTF-8',
     'HTTP 415: UTF-16 and UTF-32 bodies (with or without a byte order mark) are refused: encode as UTF-8.',
     post(415, "body", content=GOOD.decode().encode("utf-16"), headers=JSON),
     'body: {encoding}, not UTF-8; send the JSON as UTF-8'),
    ("serve-content-encoding",
     'content-encoding: gzip is not accepted; send the body uncompressed',
     'HTTP 415: send the JSON as it is (no gzip, deflate or br): its size is bounded before it is read.',
     post(415, "content-encoding", content=GOOD, headers={**JSON, "content-encoding": "gzip"}),
     'content-encoding: {coding} is not accepted; send the body uncompressed (identity)'),
    ("serve-duplicate-key",
     'text: duplicate key in a JSON object; give each field once',
     "HTTP 422: which of the two values was meant is anyone's guess; give each key once.",
     post(422, "text", content=b'{"text": "good", "text": "bad"}', headers=JSON),
     '{field}: duplicate key in a JSON object; give each field once'),
    ("serve-long-number",
     'texts[1]: expected a string, got a number of 5,000 digits',
     'HTTP 422: every text is a JSON string; quote it.',
     post(422, "texts[1]", content=b'{"texts": ["fine", ' + b"7" * 5000 + b"]}", headers=JSON)),
    ("serve-too-many-values",
     'body: more than 356 JSON values; a request is one object',
     'HTTP 422: a request is `{"text": ...}` or `{"texts": [...]}` with at most `--max-items` strings; reading '
     'stops there (356 = 4 x 64 + 100).',
     post(422, "body", content=b'{"texts": [' + b"{}," * 50_000 + b"{}]}", headers=JSON),
     "body: more than {max_values:,} JSON values; a request is one object with 'text' or 'texts' (1 to "
     '{max_items} strings)'),
    ("serve-host-not-allowed",
     "host: 'evil.example' is not served here (--allowed-hosts)",
     'HTTP 400: call the server by a name `--allowed-hosts` lists, or add the name there.',
     post(400, "host", content=GOOD, headers={**JSON, "host": "evil.example"})),
    ("serve-malformed-http",
     'request: not valid HTTP/1.1 (illegal header line',
     "HTTP 400 (h11's reason in brackets): fix the client; the server closes the connection.",
     raw(400, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon here\r\n\r\n")),
    ("serve-framing-cl-te",
     'request: ambiguous framing (both Content-Length and Transfer-Encoding)',
     'HTTP 400, and the connection is closed (RFC 9112 section 6.3: behind a proxy that reads the length the '
     'other way, the rest would be a smuggled request): send one of the two.',
     framed(400, b"Content-Length: %d" % len(CHUNKED), b"Transfer-Encoding: chunked", body=CHUNKED)),
    ("serve-framing-content-lengths",
     'request: ambiguous framing (Content-Length values differ)',
     "HTTP 400, the connection closed: give the body's length once.",
     framed(400, b"Content-Length: 30", b"Content-Length: 31")),
    ("serve-framing-transfer-encoding",
     'request: ambiguous framing (Transfer-Encoding other than chunked alone)',
     'HTTP 400, the connection closed: send `Content-Length`, or `Transfer-Encoding: chunked` and nothing else '
     '(no gzip or other transfer coding; HTTP/1.1 only).',
     framed(400, b"Transfer-Encoding: gzip", body=CHUNKED)),
    ("serve-framing-transfer-encodings",
     'request: ambiguous framing (Transfer-Encoding given more than once)',
     'HTTP 400, the connection closed: send one `Transfer-Encoding: chunked` header (or `Content-Length`).',
     framed(400, b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked", body=CHUNKED)),
    ("serve-framing-http10-transfer-encoding",
     'request: ambiguous framing (Transfer-Encoding in an HTTP/1.0 request)',
     'HTTP 400, the connection closed: HTTP/1.0 has no transfer codings; send `Content-Length`, or the request '
     'as HTTP/1.1.',
     framed(400, b"Transfer-Encoding: chunked", body=CHUNKED, version=b"HTTP/1.0")),
    ("serve-host-userinfo",
     "host: '127.0.0.1:1@evil.example' is not a host name or address with an optional port",
     'HTTP 400: the Host header is a name or address and an optional port, nothing else (no `user@`, path or '
     'second value), so that no other host hides behind an allowed one.',
     post(400, "host", content=GOOD, headers={**JSON, "host": "127.0.0.1:1@evil.example"})),
    ("serve-text-cleaned-too-long",
     'text: 90,000 characters once cleaned (Unicode NFKC and HTML entities expand it); at most 5,000',
     'HTTP 422: some characters clean into many (U+FDFA is 18 in NFKC); a text longer once cleaned than '
     '`--max-chars` (5,000) is refused before its tokens are counted; send it shorter.',
     post(422, "text", json={"text": "\ufdfa" * 5000}),
     '{name}: {length:,} characters once cleaned (Unicode NFKC and HTML entities expand it); at most {max_chars:,}'),
    ("serve-client-connections",
     'connections from your address (127.0.0.2) are open with requests in progress',
     'HTTP 429, the connection closed at once: one client address keeps at most `--max-connections-per-client` '
     '(100) connections open; finish or close some (behind a proxy every client shares its address: raise the '
     'flag there).',
     trigger("http", status=429, field=None, scenario="client_crowded")),
    ("serve-too-costly",
     'the request timeout is 0.5 s: send fewer or shorter texts',
     "HTTP 413: at the model's measured pace the request's own forward passes alone would outlast "
     '`--request-timeout` (the detail names the estimate): split it, or raise the timeout.',
     trigger("http", status=413, field="texts", scenario="too_costly")),
    ("serve-overloaded",
     'of work queued ahead of this request, which would not be answered within the request timeout (2 s)',
     "HTTP 503 with Retry-After, at once: the server is past its capacity (at the model's measured pace the "
     'requests already queued would keep this one past `--request-timeout`); retry after the Retry-After seconds '
     '(when the work ahead is done), spread the load, or add servers.',
     trigger("http", status=503, field=None, scenario="overloaded")),
)
bad_input = index(ROWS)

"""The web API's request checks: what a POST /predict must be before its texts reach the batcher, read without
stalling the event loop.

Strict: `Content-Type: application/json` (charset utf-8 or none; no other type, `+json` ones included), no
`Content-Encoding` but identity, a UTF-8 body (a UTF-8 byte order mark is ignored; UTF-16/32 are refused), one JSON
object with no duplicate key, every error a 4xx naming the header or field. Bounded: the body's size and the time
to receive it; the work of parsing it (at most `4 * max_items + 100` JSON values are read: a valid request holds
at most `max_items + 3`, and a body of a million `{}` is refused after a few thousand instead of parsed whole);
bodies over 64 KiB are parsed on a small thread pool, and at most BIG_BODIES of them are read at once (the others
wait in the kernel's socket buffers), so neither their parsing nor their memory can starve small requests.

An aspect model's request is `text` with `aspects` (1 to max_items, at most MAX_ASPECTS, strings of at most
MAX_ASPECT_CHARS characters, each following the text rules); whether the model takes aspects is its record's task
(`Limits.task`): `check_task`, with the Python API's messages.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from json.decoder import JSONArray, JSONObject
from json.scanner import py_make_scanner
from typing import NamedTuple

from qlora_sentiment.core.errors import DataError
from qlora_sentiment.problems.web import bad_input
from qlora_sentiment.api.validation import (MAX_ASPECT_CHARS, MAX_ASPECTS, DuplicateKey, NonFinite, check_aspects,
                                            describe, no_duplicate_keys, quote, text_problem)

SMALL_BODY = 65_536  # bytes: parsed on the event loop (well under a millisecond)
BIG_BODIES = 16      # bodies over SMALL_BODY read and parsed at once; 16 x 3.9 MB at the default limits
PARSERS = 2          # threads parsing big bodies
MAX_DIGITS = 4_300   # Python's int-string limit: a longer JSON integer is refused by name, not as "not JSON"


class ApiError(Exception):
    def __init__(self, status: int, detail: str, field: str | None = None, retry_after: int | None = None):
        super().__init__(detail)
        self.status, self.detail, self.field, self.retry_after = status, detail, field, retry_after


def check_headers(headers) -> None:
    """415 unless the body is declared as uncompressed UTF-8 JSON."""
    types = headers.getlist("content-type")
    if not types:
        raise ApiError(415, bad_input("serve-content-type-missing").format(), "content-type")
    if len(types) > 1:
        raise ApiError(415, f"content-type: given {len(types)} times; send it once", "content-type")
    media, *params = [part.strip() for part in types[0].split(";")]
    if media.lower() != "application/json":
        raise ApiError(415, bad_input("serve-content-type-json-suffix").format(media=quote(media)), "content-type")
    for param in params:
        name, _, value = param.partition("=")
        value = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and value not in ("utf-8", "utf8"):
            raise ApiError(415, bad_input("serve-charset").format(charset=quote(value) or "(empty)"), "content-type")
    for coding in headers.getlist("content-encoding"):
        if coding.strip().lower() not in ("", "identity"):
            raise ApiError(415, bad_input("serve-content-encoding").format(coding=quote(coding.strip())),
                           "content-encoding")


async def read_body(request, limits, deadline: float) -> bytes:
    """The whole body, or 413 (over limits.max_body_bytes) / 408 (not received within the body timeout)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise ApiError(413, f"body: {int(declared):,} bytes; at most {limits.max_body_bytes:,}", "body")
    chunks, size = [], 0

    async def receive():
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise ApiError(413, f"body: over {limits.max_body_bytes:,} bytes", "body")
            chunks.append(chunk)

    timeout = min(limits.body_timeout, max(0.0, deadline - asyncio.get_running_loop().time()))
    try:
        await asyncio.wait_for(receive(), timeout)
    except asyncio.TimeoutError:
        raise ApiError(408, f"body: not received within {timeout:g} s", "body") from None
    return b"".join(chunks)


class _TooManyValues(Exception):
    pass


class LongNumber(int):
    """A JSON integer of more than MAX_DIGITS digits, kept as a marker (no field takes a number: the error names
    the field that held it)."""
    digits: int


def _long_or_int(text: str) -> int:
    if len(text.lstrip("-")) <= MAX_DIGITS:
        return int(text)
    number = LongNumber(0)
    number.digits = len(text.lstrip("-"))
    return number


def _what(value) -> str:
    if isinstance(value, LongNumber):
        return f"a number of {value.digits:,} digits"
    return describe(value)


def loads(text: str, max_values: int):
    """json.loads with Python's own scanner, so that it can stop: after `max_values` values (_TooManyValues), at a
    duplicate key (ApiError 422); NaN/Infinity become NonFinite markers, over-long integers LongNumber markers."""
    decoder = json.JSONDecoder(parse_constant=NonFinite.parse, parse_int=_long_or_int,
                               object_pairs_hook=no_duplicate_keys)
    count = 0

    def counted(scan_once):
        def scan(string, index):
            nonlocal count
            count += 1
            if count > max_values:
                raise _TooManyValues
            return scan_once(string, index)
        return scan

    decoder.parse_array = lambda state, scan_once: JSONArray(state, counted(scan_once))
    decoder.parse_object = lambda state, strict, scan_once, hook, pairs_hook, memo: JSONObject(
        state, strict, counted(scan_once), hook, pairs_hook, memo)
    decoder.scan_once = py_make_scanner(decoder)
    try:
        return decoder.decode(text)
    except DuplicateKey as exc:
        raise ApiError(422, str(exc), exc.field) from None


def decode_utf8(body: bytes) -> str:
    encoding = json.detect_encoding(body) if body else "utf-8"
    if encoding not in ("utf-8", "utf-8-sig"):
        raise ApiError(415, bad_input("serve-utf16-body").format(encoding=encoding.upper()), "body")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(422, f"body: not UTF-8 (byte 0x{body[exc.start]:02x} at byte {exc.start + 1:,})",
                       "body") from None
    return text[1:] if text.startswith("\ufeff") else text  # a UTF-8 byte order mark is ignored (RFC 8259)


class Parsed(NamedTuple):
    """A POST /predict body: its texts, and an aspect request's aspects (`texts` then holds its text once per
    aspect: the (text, aspect) pairs the model labels); `field`: the field that held the texts."""
    texts: list[str]
    aspects: list[str] | None = None
    field: str = "texts"


def unprocessable(exc: DataError, field: str = "texts") -> ApiError:
    """A 422 from the Python API's one-line error (`aspects[1]: 'wine' does not occur in the text; ...`), naming
    the field or item its message starts with (`texts[0]` is `text` when the request sent one `text`)."""
    message = str(exc)
    if field == "text" and message.startswith("texts[0]:"):
        message = "text:" + message.removeprefix("texts[0]:")
    return ApiError(422, message, message.partition(":")[0])


def check_task(parsed: Parsed, task: str) -> None:
    """A 422 unless the request suits the loaded model: a sentence model takes no aspects, an aspect model needs
    them (check_aspects)."""
    if parsed.aspects is not None or task != "sentence":
        try:
            check_aspects(parsed.aspects, task)
        except DataError as exc:
            raise unprocessable(exc) from None


def _items(data: dict, name: str, max_items: int) -> list[tuple[str, object]]:
    """(`name[i]`, value) of a list field of 1 to max_items values."""
    values = data[name]
    if not isinstance(values, list):
        raise ApiError(422, f"{name}: expected a list of strings, got {_what(values)}", name)
    if not 1 <= len(values) <= max_items:
        raise ApiError(422, f"{name}: {len(values)} items; give 1 to {max_items} per request"
                       if values else f"{name}: empty list; give 1 to {max_items} {name}", name)
    return [(f"{name}[{i}]", value) for i, value in enumerate(values)]


def parse_request(body: bytes, limits) -> Parsed:
    """The texts (and aspects) of a POST /predict body, or an ApiError(415/422) naming the field or item."""
    max_values = 4 * limits.max_items + 100
    try:
        data = loads(decode_utf8(body), max_values)
    except RecursionError:
        raise ApiError(422, "body: not valid JSON (nested too deeply)", "body") from None
    except _TooManyValues:
        detail = bad_input("serve-too-many-values").format(max_values=max_values, max_items=limits.max_items)
        raise ApiError(422, detail, "body") from None
    except json.JSONDecodeError as exc:
        raise ApiError(422, f"body: not valid JSON ({exc.msg} at character {exc.pos + 1})", "body") from None
    if not isinstance(data, dict):
        raise ApiError(422, f"body: expected a JSON object with 'text' or 'texts', got {_what(data)}", "body")
    unknown = [key for key in data if key not in ("text", "texts", "aspects")]
    if unknown:
        also = " and 'aspects' (a list of strings) with 'text'" if limits.task != "sentence" else ""
        raise ApiError(422, f"{quote(unknown[0])}: unknown field; give 'text' (a string) or 'texts' (a list of "
                            f"strings){also}", quote(unknown[0]))
    if ("text" in data) == ("texts" in data):
        raise ApiError(422, "give exactly one of 'text' (a string) or 'texts' (a list of strings)")
    items = [("text", data["text"])] if "text" in data else _items(data, "texts", limits.max_items)
    aspects = []
    if "aspects" in data:
        if "texts" in data:
            raise ApiError(422, "aspects: the aspects of one text: give them with 'text', not 'texts'", "aspects")
        aspects = _items(data, "aspects", min(limits.max_items, MAX_ASPECTS))
    for name, text in items + aspects:
        problem = f"expected a string, got {_what(text)}" if isinstance(text, LongNumber) \
            else text_problem(text, MAX_ASPECT_CHARS if name.startswith("aspects") else limits.max_chars)
        if problem:
            raise ApiError(422, f"{name}: {problem}", name)
    texts = [text for _, text in items]
    if aspects:
        return Parsed(texts * len(aspects), [aspect for _, aspect in aspects], "aspects")
    return Parsed(texts, None, "text" if "text" in data else "texts")


class RequestReader:
    """Reads and parses POST /predict bodies for one app: small ones on the event loop, big ones on PARSERS
    threads, at most BIG_BODIES big ones at a time (a request waiting longer than its body timeout for its turn is
    a 503 with Retry-After)."""

    def __init__(self, limits):
        self.limits = limits
        self.pool = ThreadPoolExecutor(PARSERS, thread_name_prefix="json")
        self.big = asyncio.Semaphore(BIG_BODIES)

    async def read(self, request, deadline: float) -> Parsed:
        check_headers(request.headers)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) <= SMALL_BODY:
            return parse_request(await read_body(request, self.limits, deadline), self.limits)
        loop = asyncio.get_running_loop()
        wait = min(self.limits.body_timeout, max(0.0, deadline - loop.time()))
        try:
            await asyncio.wait_for(self.big.acquire(), wait)
        except asyncio.TimeoutError:
            raise ApiError(503, f"busy: {BIG_BODIES} large bodies are being read; retry", None,
                           retry_after=1) from None
        try:
            body = await read_body(request, self.limits, deadline)
            return await loop.run_in_executor(self.pool, parse_request, body, self.limits)
        finally:
            self.big.release()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

"""The web API and the CLI keep their promises under hostile input and load.

Real server (the CLI on loopback, tiny trained model): bad texts are 422s naming the item and never poison a
micro-batch, every error body has one shape, the OpenAPI schema states every rule (schemathesis finds nothing),
startup flags and a busy port fail in one line. In-process server with a scripted model (uvicorn on loopback):
disconnects are dropped before the forward pass, the queue is bounded (503 + Retry-After), request and body
timeouts, readiness distinct from liveness, a failing request fails alone. CLI predict: one output row per input
row, in order, whatever the line breaks. (The CLI's one-line errors are catalogue entries: test_bad_inputs.py.)
"""

import contextlib
import csv
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from helpers import cli, free_port
from qlora_sentiment.server.app import Limits, create_app

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


def post(url, body, **kwargs):
    """POST raw JSON text (lone surrogates, NaN) exactly as written."""
    return httpx.post(f"{url}/predict", content=body.encode(), timeout=30,
                      headers={"content-type": "application/json"}, **kwargs)


# --- the real server ---------------------------------------------------------------------------------------------

BAD_TEXTS = [
    ('{"text": "\\ud800"}', "text: not valid Unicode: a lone surrogate U+D800", "text"),
    ('{"texts": ["fine", "a \\udfff b"]}', "texts[1]: not valid Unicode", "texts[1]"),
    ('{"text": NaN}', "text: expected a string, got NaN", "text"),
    ('{"texts": ["fine", -Infinity]}', "texts[1]: expected a string, got -Infinity", "texts[1]"),
    ('{"text": "\\u200b\\u2060\\ufeff"}', "text: empty text (only invisible or control characters)", "text"),
    ('{"text": "\\u0000"}', "text: empty text (only invisible", "text"),
    ('{"texts": ["ok", " \\t\\u3000"]}', "texts[1]: empty text", "texts[1]"),
]


@pytest.mark.parametrize("body,message,field", BAD_TEXTS)
def test_invalid_text_is_a_422_naming_the_item(server, body, message, field):
    response = post(server, body)
    assert response.status_code == 422, response.text
    assert response.json() == {"detail": response.json()["detail"], "field": field}
    assert response.json()["detail"].startswith(message)


def test_a_poisoned_request_fails_alone_in_its_micro_batch(server):
    good = [json.dumps({"text": f"review {i}: the film was {'great' if i % 2 else 'dull'}"}) for i in range(24)]
    bodies = good[:12] + [body for body, _, _ in BAD_TEXTS] + good[12:]
    before = httpx.get(f"{server}/health", timeout=10).json()
    with ThreadPoolExecutor(len(bodies)) as pool:  # all at once: they share forward passes (--max-wait-ms 20)
        responses = list(pool.map(lambda body: post(server, body), bodies))
    codes = [r.status_code for r in responses]
    assert codes == [200] * 12 + [422] * len(BAD_TEXTS) + [200] * 12, codes
    assert [r.json()["predictions"][0]["text"] for r in responses if r.status_code == 200] == \
        [json.loads(b)["text"] for b in good]
    after = httpx.get(f"{server}/health", timeout=10).json()
    assert after["failures"] == before["failures"] and after["requests"] - before["requests"] == 24


def test_every_error_body_has_one_shape(server):
    cases = [("POST", "/predict", b'{"text": 5}', 422), ("POST", "/predict", b"{not json", 422),
             ("POST", "/predict", b'{"txt": "typo"}', 422), ("POST", "/predict", b"[" * 20_000, 422),
             ("POST", "/predict", b'{"texts": "one"}', 422), ("DELETE", "/predict", b"", 405),
             ("GET", "/nowhere", b"", 404)]
    for method, path, body, status in cases:
        response = httpx.request(method, f"{server}{path}", content=body, timeout=30,
                                 headers={"content-type": "application/json"})
        assert response.status_code == status, (path, body[:20], response.text)
        data = response.json()
        assert set(data) == {"detail", "field"} and isinstance(data["detail"], str), data
    form = httpx.post(f"{server}/predict", data={"text": "x"}, timeout=30)  # curl -d without a content-type
    assert form.status_code == 415 and set(form.json()) == {"detail", "field"}


def test_openapi_schema_states_every_rule(server):
    schema = httpx.get(f"{server}/openapi.json", timeout=10).json()
    operation = schema["paths"]["/predict"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    text, texts = body["properties"]["text"], body["properties"]["texts"]
    assert body["additionalProperties"] is False and len(body["oneOf"]) == 2  # exactly one of text / texts
    assert (text["minLength"], text["maxLength"], texts["minItems"], texts["maxItems"]) == (1, 200, 1, 8)
    assert texts["items"]["pattern"] == text["pattern"]  # not blank: one visible character
    error = {"$ref": "#/components/schemas/Error"}
    for code in ("422", "503"):
        assert operation["responses"][code]["content"]["application/json"]["schema"] == error
    assert "Retry-After" in operation["responses"]["503"]["headers"]
    assert {"/health", "/ready", "/info"} <= set(schema["paths"])


def test_schemathesis_finds_no_failure(server, tmp_path):
    """Every check, positive and negative data, bounded examples: the schema and the server agree."""
    result = subprocess.run([SCHEMATHESIS, "run", f"{server}/openapi.json", "--checks", "all", "--max-examples", "100",
                             "--seed", "1", "--workers", "1", "--request-timeout", "30"],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout


def test_health_is_liveness_and_ready_is_readiness(server):
    health = httpx.get(f"{server}/health", timeout=10).json()
    assert health["status"] == "ok" and health["ready"] is True
    for key in ("queue_depth", "max_queue", "failures", "rejected", "timeouts", "disconnected", "dropped"):
        assert isinstance(health[key], int), key
    assert httpx.get(f"{server}/ready", timeout=10).json()["status"] == "ready"


@pytest.mark.parametrize("flag,value,message", [
    ("--max-batch", "0", "argument --max-batch: must be >= 1"), ("--port", "0", "argument --port: must be in 1..65535"),
    ("--port", "70000", "must be in 1..65535"), ("--max-queue", "-1", "argument --max-queue: must be >= 1"),
    ("--max-chars", "50000", "argument --max-chars: must be in 1..20000"),
    ("--request-timeout", "0", "argument --request-timeout: must be > 0"),
    ("--max-wait-ms", "nan", "argument --max-wait-ms: expected a finite number"),
])
def test_serve_flags_are_checked_before_anything_loads(tmp_path, flag, value, message):
    started = time.time()
    out = cli("serve", "--model", str(tmp_path / "nothing"), flag, value)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and out.stderr.startswith("error: "), out.stderr
    assert message in out.stderr and time.time() - started < 30


def test_serve_on_a_busy_port_fails_in_one_line_with_its_own_exit_code(trained):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = cli("serve", "--model", str(trained / "adapter"), "--base", str(trained / "base"), "--port", str(port))
    assert out.returncode == 4, out.stderr
    assert out.stderr == f"error: 127.0.0.1:{port} is already in use (another server?); stop it or pick another " \
                         "--port\n"  # and no "serving on ..." before it


# --- in-process server, scripted model ----------------------------------------------------------------------------

class ScriptedModel:
    """Answers 'positive' once `gate` is open; raises on a text containing 'boom'; records what it saw and each
    forward pass; a pass lasts `seconds_per_token` x its padded tokens (a word is a token, 128 at most)."""
    labels = ["negative", "positive"]

    def __init__(self, open_gate=True, seconds_per_token=0.0):
        self.gate, self.seen, self.passes = threading.Event(), [], []
        self.seconds_per_token = seconds_per_token  # a forward pass takes time in proportion to its padded tokens
        if open_gate:
            self.gate.set()

    def token_lengths(self, texts, max_chars=None):  # the web API passes its --max-chars
        return [min(128, 1 + len(t.split())) for t in texts]

    def predict(self, texts, batch_size=16):
        self.seen.extend(texts)
        self.passes.append(list(texts))
        assert self.gate.wait(30)
        time.sleep(self.seconds_per_token * len(texts) * max(self.token_lengths(texts)))
        if any("boom" in t for t in texts):
            raise RuntimeError("boom")
        return [self.answer(t) for t in texts]

    @staticmethod
    def answer(text):
        """Each text its own probability, so that a result given to the wrong text or request shows."""
        p = 0.5 + (sum(map(ord, text)) % 97) / 200
        return {"label": "positive", "probabilities": {"negative": 1 - p, "positive": p}}

    def describe(self):
        return {"labels": self.labels, "kind": "adapter", "head": "generative"}


@contextlib.contextmanager
def running(model, load_gate=None, **limits):
    """create_app on uvicorn in a thread, on a free loopback port; `load_gate` holds the model load."""
    import uvicorn

    def load():
        if load_gate is not None:
            assert load_gate.wait(30)
        return model

    server_ = uvicorn.Server(uvicorn.Config(create_app(load, Limits(**limits)), host="127.0.0.1", port=free_port(),
                                            log_level="warning"))
    thread = threading.Thread(target=server_.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server_.started and time.time() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server_.config.port}"
    finally:
        model.gate.set()
        server_.should_exit = True
        thread.join(30)


def until(condition, seconds=20):
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)


def wait_for(url, **expected):
    deadline = time.time() + 20
    while time.time() < deadline:
        health = httpx.get(f"{url}/health", timeout=5).json()
        if all(health[key] == value for key, value in expected.items()):
            return health
        time.sleep(0.02)
    raise AssertionError(f"/health never showed {expected}: {health}")


def in_background(pool, url, text, **kwargs):
    return pool.submit(lambda: httpx.post(f"{url}/predict", json={"text": text}, timeout=30, **kwargs))


def test_ready_and_predict_wait_for_the_model_while_health_answers():
    gate = threading.Event()
    with running(ScriptedModel(), load_gate=gate) as url:
        health = httpx.get(f"{url}/health", timeout=5)
        assert health.status_code == 200 and health.json()["ready"] is False
        for response in (httpx.get(f"{url}/ready", timeout=5), post(url, '{"text": "fine"}')):
            assert response.status_code == 503 and response.headers["retry-after"] == "1", response.text
            assert "not loaded" in response.json()["detail"]
        gate.set()
        wait_for(url, ready=True)
        assert httpx.get(f"{url}/ready", timeout=5).status_code == 200
        assert post(url, '{"text": "fine"}').status_code == 200


def test_a_disconnected_client_is_dropped_before_its_forward_pass():
    model = ScriptedModel(open_gate=False)
    with running(model, max_batch=1, max_wait_ms=0) as url, ThreadPoolExecutor(2) as pool:
        first = in_background(pool, url, "first")  # holds the model thread
        until(lambda: model.seen == ["first"])
        gone = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        body = b'{"text": "second"}'
        gone.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n%s" % (len(body), body))
        wait_for(url, queue_depth=1)
        gone.close()  # the client gives up while its request waits
        health = wait_for(url, queue_depth=0, disconnected=1, dropped=1)
        model.gate.set()
        assert first.result().status_code == 200
        assert model.seen == ["first"] and health["requests"] == 0  # "second" never reached the model


def test_a_full_queue_answers_503_with_retry_after():
    model = ScriptedModel(open_gate=False)
    with running(model, max_batch=1, max_wait_ms=0, max_queue=2) as url, ThreadPoolExecutor(3) as pool:
        waiting = [in_background(pool, url, "first")]
        until(lambda: model.seen == ["first"])
        waiting += [in_background(pool, url, text) for text in ("second", "third")]
        wait_for(url, queue_depth=2)
        refused = post(url, '{"text": "fourth"}')
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert set(refused.json()) == {"detail", "field"} and "busy" in refused.json()["detail"]
        assert httpx.get(f"{url}/ready", timeout=5).status_code == 503  # readiness: no room
        assert httpx.get(f"{url}/health", timeout=5).json()["rejected"] == 1
        model.gate.set()
        assert [f.result().status_code for f in waiting] == [200, 200, 200]


def test_request_and_body_timeouts():
    model = ScriptedModel(open_gate=False)
    with running(model, max_batch=1, max_wait_ms=0, request_timeout=1.0, body_timeout=0.5) as url, \
            ThreadPoolExecutor(2) as pool:
        first = in_background(pool, url, "first")
        until(lambda: model.seen == ["first"])
        late = post(url, '{"text": "second"}')
        assert late.status_code == 503 and "no answer within 1 s" in late.json()["detail"]
        assert late.headers["retry-after"] == "1"
        assert first.result().status_code == 503  # its own time ran out inside the forward pass
        assert "second" not in model.seen and wait_for(url, timeouts=2)["dropped"] == 1

        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as slow:
            slow.settimeout(10)
            slow.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                         b"content-length: 40\r\n\r\n{\"text\": ")  # and never the rest
            started = time.time()
            answer = slow.recv(65536).decode()
        assert answer.startswith("HTTP/1.1 408") and time.time() - started < 5, answer
    big = Limits(max_items=1, max_chars=10).max_body_bytes + 1
    with running(ScriptedModel(), max_items=1, max_chars=10) as url:
        too_big = httpx.post(f"{url}/predict", content=b" " * big, timeout=30,
                             headers={"content-type": "application/json"})
        assert too_big.status_code == 413 and set(too_big.json()) == {"detail", "field"}


def test_a_request_the_model_fails_on_fails_alone():
    model = ScriptedModel()
    with running(model, max_wait_ms=300) as url, ThreadPoolExecutor(6) as pool:
        texts = ["fine", "good", "boom", "nice", "ok", "great"]
        responses = [f.result() for f in [in_background(pool, url, text) for text in texts]]
        codes = [r.status_code for r in responses]
        assert codes == [200, 200, 500, 200, 200, 200], codes
        assert set(responses[2].json()) == {"detail", "field"} and "boom" in responses[2].json()["detail"]
        health = httpx.get(f"{url}/health", timeout=5).json()
        assert health["failures"] == 1 and health["requests"] == 5


# --- CLI predict: one output row per input row ----------------------------------------------------------------------

ODD = ["line\u2028separator", "form\x0cfeed", "tab\tinside", "next\x85line"]


def test_predict_keeps_one_row_per_input_row_in_order(trained, tmp_path):
    model = ["--model", str(trained / "adapter"), "--base", str(trained / "base"), "--threads", "1"]
    rows = ["two\nlines, quoted", *ODD, "last"]
    table = tmp_path / "in.csv"
    with table.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["id", "text"], *[[i, t] for i, t in enumerate(rows)]])
    out = cli("predict", *model, "--file", str(table), "--format", "csv")
    assert out.returncode == 0, out.stderr
    assert [r["text"] for r in csv.DictReader(io.StringIO(out.stdout, newline=""))] == rows

    lines = tmp_path / "in.txt"
    lines.write_text("".join(t + "\n" for t in [*ODD, "last"]), encoding="utf-8", newline="")
    out = cli("predict", *model, "--file", str(lines))
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["text"] for line in out.stdout.split("\n")[:-1]] == [*ODD, "last"]

    jsonl = tmp_path / "in.jsonl"  # valid JSON Lines: U+2028 may stand raw inside a string
    jsonl.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in rows), encoding="utf-8")
    out = cli("predict", *model, "--file", str(jsonl), "--format", "table")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.split("\n")) == len(rows) + 2  # header, one line per text, final newline


@pytest.mark.parametrize("flag,value", [("--batch-size", "-1"), ("--batch-size", "0"), ("--batch-size", "two"),
                                        ("--batch-size", "4097"), ("--threads", "0"), ("--threads", "-1"),
                                        ("--threads", "1025")])
def test_predict_numbers_are_argparse_errors_before_the_model_loads(trained, flag, value):
    out = cli("predict", "--model", str(trained / "adapter"), "--base", str(trained / "base"), flag, value, "fine")
    assert out.returncode == 2 and out.stdout == "", out.stderr
    assert out.stderr.startswith(f"error: qlora-sentiment predict: argument {flag}: ") and out.stderr.count("\n") == 1


def test_predict_warns_when_threads_exceed_the_cores(trained):
    threads = (os.cpu_count() or 1) + 1
    out = cli("predict", "--model", str(trained / "adapter"), "--base", str(trained / "base"),
              "--threads", str(threads), "fine film")
    assert out.returncode == 0, out.stderr
    assert f"warning: --threads {threads} is more than the {os.cpu_count()} CPU cores here" in out.stderr


HEAVY = {"texts": ["good film " * 499 + f"#{i}" for i in range(64)]}  # issue 26's reproduction (64 texts, each cut
# to 128 tokens), each text a little different so that its answer is its own


def test_a_long_request_takes_turns_with_short_ones():
    """64 long texts take ~12 s of model time in passes of <= 1,024 padded tokens (~1.5 s each); 20 short requests
    sent while it runs are answered between its passes, and all 21 get a 200 within the request timeout. Served
    whole (one 8,192-token pass, as before token budgets), every short request would wait as long as the long one
    (~12 s): each waits less than half of that, a bound that grows with a loaded machine's pace (a fixed 5 s was
    crossed once, at 5.7 s, on a loaded CI machine)."""
    model = ScriptedModel(seconds_per_token=0.0015)
    with running(model, max_batch=64, max_batch_tokens=1024, request_timeout=40) as url, \
            ThreadPoolExecutor(21) as pool:
        sent = time.time()
        heavy = pool.submit(lambda: (httpx.post(f"{url}/predict", json=HEAVY, timeout=60), time.time() - sent))
        until(lambda: len(model.passes) >= 1)
        started = time.time()
        shorts = [pool.submit(lambda i=i: (httpx.post(f"{url}/predict", json={"text": f"fine {i}"}, timeout=60),
                                           time.time() - started)) for i in range(20)]
        answers = [future.result() for future in shorts]
        assert [r.status_code for r, _ in answers] == [200] * 20
        long_answer, long_wait = heavy.result()
        assert long_answer.status_code == 200
        assert max(seconds for _, seconds in answers) < long_wait / 2, ([round(s, 2) for _, s in answers], long_wait)
        for response, texts in [(long_answer, HEAVY["texts"])] + [(r, [f"fine {i}"]) for i, (r, _) in
                                                                      enumerate(answers)]:
            got = [p["probabilities"]["positive"] for p in response.json()["predictions"]]
            assert got == [ScriptedModel.answer(t)["probabilities"]["positive"] for t in texts]
    # the shorts sent during the first long pass lead the next one (round robin: not behind another long pass)
    assert any(t.startswith("fine ") for t in model.passes[1]), [p[:2] for p in model.passes[:3]]
    long_passes = [p for p in model.passes if "good film" in p[0]]
    assert len(long_passes) >= 8 and all(len(p) <= 8 for p in model.passes if any("good film" in t for t in p))


def test_a_request_whose_time_is_up_sends_no_more_texts_to_the_model():
    model = ScriptedModel(seconds_per_token=0.0006)  # 8 passes of ~0.6 s; the request gives up after 1 s
    with running(model, max_batch=64, max_batch_tokens=1024, request_timeout=1) as url:
        response = httpx.post(f"{url}/predict", json=HEAVY, timeout=30)
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        wait_for(url, timeouts=1, dropped=1)
        passes = len(model.passes)  # the one running when time was up included
        time.sleep(1.5)  # it finishes; no other starts
        assert len(model.passes) == passes and len(model.seen) <= 24, (passes, len(model.seen))

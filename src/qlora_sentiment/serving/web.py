"""`qlora-sentiment serve`: a FastAPI app that batches concurrent requests into one forward pass.

The rules a request must follow are the OpenAPI schema's (serving/schema.py) and are checked here, before a
request joins a batch, so a bad request is a 422 naming the item and never reaches the model. Every error body
has one shape, `{"detail": ..., "field": ...}`. Bounded everywhere: the body's size and the time to receive it,
the queue (503 with Retry-After when full) and each request's time; a client that disconnects is dropped before
its forward pass. GET /health is liveness (counters, queue depth), GET /ready readiness (model loaded, queue room).
"""

import asyncio
import json
from dataclasses import asdict, dataclass

from qlora_sentiment.serving.batcher import MicroBatcher, ModelFailed, QueueFull
from qlora_sentiment.serving.schema import (Health, Info, PredictResponse, Ready, error_responses,
                                            predict_request_body)
from qlora_sentiment.serving.validation import NonFinite, describe, text_problem


@dataclass(frozen=True)
class Limits:
    max_items: int = 64         # texts per request
    max_chars: int = 5_000      # characters per text
    max_batch: int = 32         # texts per forward pass
    max_wait_ms: float = 10.0   # how long a request waits for others to share its forward pass
    max_queue: int = 256        # requests waiting for the model; beyond: 503
    request_timeout: float = 30.0  # seconds from arrival to answer; beyond: 503
    body_timeout: float = 10.0  # seconds to receive the body; beyond: 408

    @property
    def max_body_bytes(self) -> int:
        """Room for the largest valid request with every character escaped (\\uXXXX\\uXXXX), plus 64 KiB."""
        return self.max_items * (self.max_chars * 12 + 8) + 65_536


class ApiError(Exception):
    def __init__(self, status: int, detail: str, field: str | None = None, retry_after: int | None = None):
        super().__init__(detail)
        self.status, self.detail, self.field, self.retry_after = status, detail, field, retry_after


def _quote(name: str) -> str:
    """A client-supplied name, short and escaped (ASCII, no lone surrogate): safe to print in any JSON."""
    text = json.dumps(name, ensure_ascii=True)[1:-1]
    return text if len(text) <= 40 else text[:39] + "…"


def parse_request(body: bytes, limits: Limits) -> list[str]:
    """The texts of a POST /predict body, or an ApiError(422) naming the field or item."""
    try:
        data = json.loads(body, parse_constant=NonFinite.parse)
    except RecursionError:
        raise ApiError(422, "body: not valid JSON (nested too deeply)", "body") from None
    except json.JSONDecodeError as exc:
        raise ApiError(422, f"body: not valid JSON ({exc.msg} at character {exc.pos + 1})", "body") from None
    except ValueError:  # bytes in no UTF encoding
        raise ApiError(422, "body: not valid JSON (not UTF-8)", "body") from None
    if not isinstance(data, dict):
        raise ApiError(422, f"body: expected a JSON object with 'text' or 'texts', got {describe(data)}", "body")
    unknown = [key for key in data if key not in ("text", "texts")]
    if unknown:
        raise ApiError(422, f"{_quote(unknown[0])}: unknown field; give 'text' (a string) or 'texts' (a list of "
                            "strings)", _quote(unknown[0]))
    if ("text" in data) == ("texts" in data):
        raise ApiError(422, "give exactly one of 'text' (a string) or 'texts' (a list of strings)")
    if "text" in data:
        items = [("text", data["text"])]
    else:
        texts = data["texts"]
        if not isinstance(texts, list):
            raise ApiError(422, f"texts: expected a list of strings, got {describe(texts)}", "texts")
        if not 1 <= len(texts) <= limits.max_items:
            raise ApiError(422, f"texts: {len(texts)} items; give 1 to {limits.max_items} per request"
                           if texts else f"texts: empty list; give 1 to {limits.max_items} texts", "texts")
        items = [(f"texts[{i}]", text) for i, text in enumerate(texts)]
    for name, text in items:
        problem = text_problem(text, limits.max_chars)
        if problem:
            raise ApiError(422, f"{name}: {problem}", name)
    return [text for _, text in items]


async def read_body(request, limits: Limits, deadline: float) -> bytes:
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(415, f"content-type: expected application/json, got {_quote(media)}", "content-type")
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


async def _client_left(request) -> None:
    """Returns when the client disconnects (the body has been read: the next ASGI message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_app(load, limits: Limits = Limits(), metrics: dict | None = None, on_ready=None, on_failure=None):
    """`load()` returns the SentimentAnalyzer (or pass the analyzer itself); it runs on the model thread once the
    server is up, and GET /ready answers 200 from then on."""
    if not callable(load):
        load = (lambda analyzer: lambda: analyzer)(load)
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

    batcher = MicroBatcher(limits.max_batch, limits.max_wait_ms, limits.max_queue)

    @asynccontextmanager
    async def lifespan(app):
        batcher.start(load, on_ready, on_failure)
        yield
        await batcher.stop()

    app = FastAPI(title="qlora-sentiment", version="1", lifespan=lifespan,
                  description="Sentiment labels and per-label probabilities from a QLoRA fine-tuned model.")
    app.state.batcher = batcher

    def error(status: int, detail: str, field: str | None = None, headers: dict | None = None) -> JSONResponse:
        detail = detail.encode("utf-8", "backslashreplace").decode("utf-8")  # no lone surrogate reaches JSON
        return JSONResponse({"detail": detail, "field": field}, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return error(exc.status, exc.detail, exc.field,
                     {"Retry-After": str(exc.retry_after)} if exc.retry_after else None)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):  # 404, 405 (with its Allow header)
        return error(exc.status_code, str(exc.detail), None, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc: RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or None
        return error(422, f"{where or 'body'}: {first.get('msg', 'invalid')}", where)

    @app.exception_handler(Exception)
    async def server_error(request, exc: Exception):
        return error(500, f"internal error ({type(exc).__name__})")

    def unavailable(why: str) -> ApiError:
        return ApiError(503, why, None, retry_after=1)

    @app.post("/predict", response_model=PredictResponse,
              responses=error_responses(408, 413, 415, 422, 500, 503),
              openapi_extra={"requestBody": predict_request_body(limits.max_items, limits.max_chars)})
    async def predict(request: Request):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limits.request_timeout
        try:
            body = await read_body(request, limits, deadline)
        except ClientDisconnect:  # gone while sending its body
            batcher.stats.disconnected += 1
            return Response(status_code=499)
        texts = parse_request(body, limits)
        if not batcher.ready:
            batcher.stats.rejected += 1
            raise unavailable("the model is not loaded yet (GET /ready); retry")
        try:
            job = batcher.submit(texts)
        except QueueFull:
            raise unavailable(f"busy: {limits.max_queue} requests are waiting; retry") from None
        left = asyncio.ensure_future(_client_left(request))
        done, _ = await asyncio.wait({job.future, left}, timeout=max(0.0, deadline - loop.time()),
                                     return_when=asyncio.FIRST_COMPLETED)
        left.cancel()
        if job.future in done and not job.future.cancelled():
            try:
                predictions = job.future.result()
            except ModelFailed as exc:
                raise ApiError(500, f"the model failed on this request: {exc}") from None
            return {"predictions": [dict(p, text=t) for t, p in zip(texts, predictions)]}
        batcher.withdraw(job, "disconnected" if left in done else "timeouts")
        if left in done:
            return Response(status_code=499)  # nobody is listening
        raise unavailable(f"no answer within {limits.request_timeout:g} s (the model is busy); retry")

    @app.get("/health", response_model=Health, responses=error_responses(503))
    async def health():
        """Liveness: 200 while the process serves (loading included); 503 once the model worker has stopped."""
        if batcher.fault is not None:
            raise unavailable(f"the model worker stopped: {batcher.fault}".splitlines()[0])
        return {"status": "ok", "ready": batcher.ready and batcher.depth < limits.max_queue,
                "queue_depth": batcher.depth, "max_queue": limits.max_queue, **asdict(batcher.stats)}

    @app.get("/ready", response_model=Ready, responses=error_responses(503))
    async def ready():
        """Readiness: 200 when the model is loaded and the queue has room, else 503 with Retry-After."""
        if not batcher.ready:
            raise unavailable("the model is not loaded" + (" (it failed)" if batcher.fault else " yet"))
        if batcher.depth >= limits.max_queue:
            raise unavailable(f"busy: {limits.max_queue} requests are waiting")
        return {"status": "ready", "queue_depth": batcher.depth}

    @app.get("/info", response_model=Info, responses=error_responses(503))
    async def info():
        """The model (base, labels, head), the test metrics it shipped with, and these limits."""
        if batcher.analyzer is None:
            raise unavailable("the model is not loaded yet (GET /ready); retry")
        return {**batcher.analyzer.describe(), "metrics": metrics, "limits": asdict(limits)}

    return app

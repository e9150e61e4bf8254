"""`qlora-sentiment serve`: a FastAPI app that batches concurrent requests into one forward pass.

The rules a request must follow are the OpenAPI schema's (server/schema.py) and are checked here, before a
request joins a batch, so a bad request is a 422 naming the item and never reaches the model. Every error body
has one shape, `{"detail": ..., "field": ...}`. Bounded everywhere: the body's size, its parsing and the time to
receive it (server/request_checks.py), the queue (503 with Retry-After when full) and each request's time (a 503
with Retry-After at once when the work queued ahead would outlast it: server/pace.py); a client that disconnects
is dropped before its forward pass. GET /health is liveness (counters, queue depth), GET /ready
readiness (model loaded, queue room). Around it all (server/middleware.py): the Host check, a cap on requests in
progress, `X-Content-Type-Options: nosniff`; /docs and /redoc load Swagger UI and ReDoc from the fastapi-offline
package (no CDN); nothing the API says names a path of this machine.

An aspect model (`limits.task`, read from the model's record before it loads) labels one `text`'s `aspects`: one
prediction per aspect, in order; its OpenAPI request body says so, and a request that does not suit the model
(aspects for a sentence model, none for an aspect model, an aspect_term model's aspect not in the text) is a 422
naming `aspects` or the item.
"""

import asyncio
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from qlora_sentiment.core.errors import DataError
from qlora_sentiment.server.batcher import Expired, MicroBatcher, ModelFailed, QueueFull, TooLate
from qlora_sentiment.server.request_checks import ApiError, RequestReader, check_task, unprocessable
from qlora_sentiment.server.middleware import HttpPolicy, scrub_paths, without_paths
from qlora_sentiment.server.schema import (Health, Info, PredictResponse, Ready, error_responses,
                                           predict_request_body)


@dataclass(frozen=True)
class Limits:
    max_items: int = 64         # texts (or an aspect model's aspects) per request
    max_chars: int = 5_000      # characters per text
    max_batch: int = 32         # texts per forward pass
    max_batch_tokens: int = 512  # padded tokens per forward pass (texts x the longest): bounds a pass's time
    text_tokens: int | None = None  # the model's max_length: a text is scored on its first text_tokens tokens
    max_wait_ms: float = 10.0   # how long a request waits for others to share its forward pass
    max_queue: int = 256        # requests waiting for the model; beyond: 503
    request_timeout: float = 30.0  # seconds from arrival to answer; beyond: 503
    body_timeout: float = 10.0  # seconds to receive the body; beyond: 408
    max_connections: int = 1000  # open connections and requests in progress (server/connections.py, middleware.py)
    max_connections_per_client: int = 100  # open connections of one client address (server/connections.py)
    idle_timeout: float = 10.0  # seconds a connection may stay open without sending a whole request head
    task: str = "sentence"      # the model's data.task: an aspect model's requests name their aspects

    @property
    def max_body_bytes(self) -> int:
        """Room for the largest valid request with every character escaped (\\uXXXX\\uXXXX), plus 64 KiB."""
        return self.max_items * (self.max_chars * 12 + 8) + 65_536



@dataclass(frozen=True)
class Serving:
    """What the route handlers share, as `app.state.serving`."""
    limits: Limits
    batcher: MicroBatcher
    reader: RequestReader
    metrics: dict | None


def _serving(request: Request) -> Serving:
    return request.app.state.serving


def unavailable(why: str) -> ApiError:
    return ApiError(503, why, None, retry_after=1)


# --- error answers: every one in the shape {"detail": ..., "field": ...} ---

def error(status: int, detail: str, field: str | None = None, headers: dict | None = None) -> JSONResponse:
    detail = detail.encode("utf-8", "backslashreplace").decode("utf-8")  # no lone surrogate reaches JSON
    if status >= 500:  # an exception's message may hold a path of this machine
        detail = scrub_paths(detail)
    return JSONResponse({"detail": detail, "field": field}, status_code=status, headers=headers)


async def api_error(request, exc: ApiError):
    return error(exc.status, exc.detail, exc.field,
                 {"Retry-After": str(exc.retry_after)} if exc.retry_after else None)


async def http_error(request, exc: HTTPException):  # 404, 405 (with its Allow header)
    return error(exc.status_code, str(exc.detail), None, getattr(exc, "headers", None))


async def validation_error(request, exc: RequestValidationError):
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or None
    return error(422, f"{where or 'body'}: {first.get('msg', 'invalid')}", where)


async def server_error(request, exc: Exception):
    return error(500, f"internal error ({type(exc).__name__})")


ERROR_HANDLERS = {ApiError: api_error, HTTPException: http_error, RequestValidationError: validation_error,
                  Exception: server_error}


# --- POST /predict ---

async def _client_left(request) -> None:
    """Returns when the client disconnects (the body has been read: the next ASGI message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _admit(serving: Serving, parsed) -> None:
    """A 422 for a request the model cannot take, a 503 while it loads or while the queue is full."""
    limits, batcher = serving.limits, serving.batcher
    check_task(parsed, limits.task)  # 422, known before the model loads: aspects for a sentence model, or none
    if not batcher.ready:
        batcher.stats.rejected += 1
        raise unavailable("the model is not loaded yet (GET /ready); retry")
    if batcher.depth >= limits.max_queue:  # before counting tokens: a full queue refuses at once
        batcher.stats.rejected += 1
        raise unavailable(f"busy: {limits.max_queue} requests are waiting; retry")


async def _costs(serving: Serving, parsed, deadline: float) -> list[int]:
    """The tokens each text (or pair) costs; a 413 for a request its timeout cannot hold even alone."""
    limits, batcher = serving.limits, serving.batcher
    loop = asyncio.get_running_loop()
    try:
        costs = await asyncio.wait_for(batcher.costs(parsed.texts, parsed.aspects, limits.max_chars),
                                       max(0.0, deadline - loop.time()))
    except asyncio.TimeoutError:
        batcher.stats.timeouts += 1
        raise unavailable(f"no answer within {limits.request_timeout:g} s (the model is busy); retry") from None
    except DataError as exc:  # an aspect not in the text or too long in tokens, a text too long once cleaned
        raise unprocessable(exc, parsed.field) from None
    lone = batcher.lone_seconds(costs)
    if lone is not None and lone[0] > limits.request_timeout:  # it would outlast its time with the model alone
        seconds, tokens = lone
        raise ApiError(413, f"{parsed.field}: this request needs about {seconds:.3g} s of the model alone "
                            f"({len(costs)} {'pairs' if parsed.aspects else 'texts'}, {tokens:,} padded tokens at "
                            f"the measured {seconds / tokens * 1000:.3g} ms per token); the request timeout is "
                            f"{limits.request_timeout:g} s: send fewer or shorter texts", parsed.field)
    return costs


def _rows(parsed, predictions: list[dict]) -> dict:
    rows = [dict(p, text=t) for t, p in zip(parsed.texts, predictions)]
    for row, aspect in zip(rows, parsed.aspects or ()):
        row["aspect"] = aspect
    return {"predictions": rows}


async def predict(request: Request):
    serving = _serving(request)
    limits, batcher = serving.limits, serving.batcher
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.request_timeout
    try:
        parsed = await serving.reader.read(request, deadline)  # 415, 413, 408, 422: before the model is asked
    except ClientDisconnect:  # gone while sending its body
        batcher.stats.disconnected += 1
        return Response(status_code=499)
    _admit(serving, parsed)
    costs = await _costs(serving, parsed, deadline)
    try:
        job = batcher.submit(parsed.texts, costs, parsed.aspects, deadline)
    except QueueFull:
        raise unavailable(f"busy: {limits.max_queue} requests are waiting; retry") from None
    except TooLate as exc:  # refused now rather than answered 503 at its deadline (server/pace.py)
        raise ApiError(503, f"busy: the model has about {exc.ahead:.3g} s of work queued ahead of this request, "
                            f"which would not be answered within the request timeout ({limits.request_timeout:g} "
                            f"s); retry after {exc.retry_after} s", None, retry_after=exc.retry_after) from None
    left = asyncio.ensure_future(_client_left(request))
    try:
        done, _ = await asyncio.wait({job.future, left}, timeout=max(0.0, deadline - loop.time()),
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        left.cancel()
        if not job.future.done():  # timed out, the client left, or this handler was cancelled (shutdown)
            batcher.withdraw(job, "disconnected" if left.done() and not left.cancelled() else "timeouts")
    if job.future in done and not job.future.cancelled():
        try:
            return _rows(parsed, job.future.result())
        except ModelFailed as exc:
            raise ApiError(500, f"the model failed on this request: {exc}") from None
        except Expired:  # dropped before its pass: it could not end in time
            raise unavailable(f"no answer within {limits.request_timeout:g} s (the model is busy); retry") from None
    if left in done:
        return Response(status_code=499)  # nobody is listening
    raise unavailable(f"no answer within {limits.request_timeout:g} s (the model is busy); retry")


# --- GET routes ---

async def health(request: Request):
    """Liveness: 200 while the process serves (loading included); 503 once the model worker has stopped."""
    serving = _serving(request)
    batcher, max_queue = serving.batcher, serving.limits.max_queue
    if batcher.fault is not None:
        raise unavailable(f"the model worker stopped: {batcher.fault}".splitlines()[0])
    return {"status": "ok", "ready": batcher.ready and batcher.depth < max_queue,
            "queue_depth": batcher.depth, "max_queue": max_queue, **asdict(batcher.stats)}


async def ready(request: Request):
    """Readiness: 200 when the model is loaded and the queue has room, else 503 with Retry-After."""
    serving = _serving(request)
    batcher, max_queue = serving.batcher, serving.limits.max_queue
    if not batcher.ready:
        raise unavailable("the model is not loaded" + (" (it failed)" if batcher.fault else " yet"))
    if batcher.depth >= max_queue:
        raise unavailable(f"busy: {max_queue} requests are waiting")
    return {"status": "ready", "queue_depth": batcher.depth}


async def info(request: Request):
    """The model (its folder's name, base, labels, head), the test metrics it shipped with, and these limits;
    no path of this machine."""
    serving = _serving(request)
    if serving.batcher.analyzer is None:
        raise unavailable("the model is not loaded yet (GET /ready); retry")
    described = dict(serving.batcher.analyzer.describe())
    folder = described.pop("path", None)
    name = Path(folder).resolve().name if folder else None  # `.` or `models/adapter/`: still its name
    return without_paths({"model": name or None, **described, "metrics": serving.metrics,
                          "limits": asdict(serving.limits)})


def _add_routes(app, limits: Limits) -> None:
    request_body = predict_request_body(limits.max_items, limits.max_chars, limits.text_tokens,
                                        limits.max_batch_tokens, limits.task)
    app.add_api_route("/predict", predict, methods=["POST"], response_model=PredictResponse,
                      response_model_exclude_unset=True,
                      responses=error_responses(400, 408, 413, 415, 422, 429, 500, 503),
                      openapi_extra={"requestBody": request_body})
    for path, endpoint, model in (("/health", health, Health), ("/ready", ready, Ready), ("/info", info, Info)):
        app.add_api_route(path, endpoint, methods=["GET"], response_model=model, responses=error_responses(400, 503))


def create_app(load, limits: Limits = Limits(), metrics: dict | None = None, on_ready=None, on_failure=None,
               allowed_hosts: list[str] | None = None):
    """The web API as one ASGI app: the FastAPI app inside HttpPolicy (server/middleware.py), which sits outside
    FastAPI's own error middleware so that its 500s get nosniff too. `load()` returns the SentimentAnalyzer (or
    pass the analyzer itself; anything with its `predict`, `token_lengths` and `describe` serves); it runs on the
    model thread once the server is up, and GET /ready answers 200 from then on. `allowed_hosts`: Host header
    values served (None: any)."""
    if not callable(load):
        load = (lambda analyzer: lambda: analyzer)(load)
    serving = Serving(limits, MicroBatcher(limits.max_batch, limits.max_wait_ms, limits.max_queue,
                                           limits.max_batch_tokens), RequestReader(limits), metrics)

    @asynccontextmanager
    async def lifespan(app):
        serving.batcher.start(load, on_ready, on_failure)
        yield
        await serving.batcher.stop()
        serving.reader.close()

    # Swagger UI and ReDoc from the package's files (/static-offline-docs), not a CDN; no online validator badge
    app = FastAPIOffline(title="qlora-sentiment", version="1", lifespan=lifespan,
                         swagger_ui_parameters={"validatorUrl": None},
                         description="Sentiment labels and per-label probabilities from a QLoRA fine-tuned model.")
    app.state.serving = serving
    for exception, handler in ERROR_HANDLERS.items():
        app.add_exception_handler(exception, handler)
    _add_routes(app, limits)
    return HttpPolicy(app, allowed_hosts, limits.max_connections)

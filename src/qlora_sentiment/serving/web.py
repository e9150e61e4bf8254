"""`qlora-sentiment serve`: a FastAPI app that batches concurrent requests into one forward pass.

Each request waits at most `max_wait_ms` for others to join its batch (bounded latency); one worker thread runs
the model, so requests never compete for the CPU/GPU. Bad input is a 422 with a body naming the item, never a 5xx.
"""

import asyncio
import concurrent.futures
from dataclasses import dataclass

from qlora_sentiment.serving.analyzer import SentimentAnalyzer, check_texts
from qlora_sentiment.core.errors import QloraError


@dataclass(frozen=True)
class Limits:
    max_items: int = 64         # texts per request
    max_chars: int = 5_000      # characters per text
    max_batch: int = 32         # texts per forward pass
    max_wait_ms: float = 10.0   # how long a request waits for others to share its forward pass


class MicroBatcher:
    def __init__(self, analyzer: SentimentAnalyzer, limits: Limits):
        self.analyzer, self.limits = analyzer, limits
        self.queue: asyncio.Queue = asyncio.Queue()
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.stats = {"requests": 0, "texts": 0, "forward_batches": 0}

    async def predict(self, texts: list[str]) -> list[dict]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((texts, future))
        return await future

    async def _collect(self) -> list[tuple[list[str], asyncio.Future]]:
        loop = asyncio.get_running_loop()
        items = [await self.queue.get()]
        size = len(items[0][0])
        deadline = loop.time() + self.limits.max_wait_ms / 1000
        while size < self.limits.max_batch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                item = await asyncio.wait_for(self.queue.get(), remaining)
            except asyncio.TimeoutError:
                break
            items.append(item)
            size += len(item[0])
        return items

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._collect()
            texts = [t for batch, _ in items for t in batch]
            try:
                predictions = await loop.run_in_executor(
                    self.executor, lambda: self.analyzer.predict(texts, batch_size=self.limits.max_batch))
            except Exception as exc:  # the model failed: every waiting request gets the error
                for _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.stats["forward_batches"] += 1
            self.stats["requests"] += len(items)
            self.stats["texts"] += len(texts)
            start = 0
            for batch, future in items:
                if not future.done():
                    future.set_result(predictions[start:start + len(batch)])
                start += len(batch)


def create_app(analyzer: SentimentAnalyzer, limits: Limits = Limits(), metrics: dict | None = None):
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, StrictStr

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        text: StrictStr | None = Field(None, description="one review")
        texts: list[StrictStr] | None = Field(None, description=f"several reviews (at most {limits.max_items})")

    class Prediction(BaseModel):
        text: str
        label: str
        probabilities: dict[str, float]

    class PredictResponse(BaseModel):
        predictions: list[Prediction]

    batcher = MicroBatcher(analyzer, limits)

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()
        batcher.executor.shutdown(wait=False)

    app = FastAPI(title="qlora-sentiment", version="1", lifespan=lifespan,
                  description="Sentiment labels and per-label probabilities from a QLoRA fine-tuned model.")

    def unprocessable(message: str) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": message})

    @app.post("/predict", response_model=PredictResponse,
              responses={422: {"description": "invalid request: the body names the field or item"}})
    async def predict(request: PredictRequest):
        if (request.text is None) == (request.texts is None):
            return unprocessable("give exactly one of 'text' (a string) or 'texts' (a list of strings)")
        texts = [request.text] if request.text is not None else request.texts
        if not texts:
            return unprocessable("texts: empty list")
        if len(texts) > limits.max_items:
            return unprocessable(f"texts: {len(texts)} items; at most {limits.max_items} per request")
        try:
            check_texts(texts, max_chars=limits.max_chars)
        except QloraError as exc:
            return unprocessable(str(exc) if request.texts is not None else str(exc).replace("texts[0]", "text"))
        predictions = await batcher.predict(texts)
        return {"predictions": [dict(p, text=t) for t, p in zip(texts, predictions)]}

    @app.get("/health")
    async def health():
        return {"status": "ok", **batcher.stats}

    @app.get("/info")
    async def info():
        return {**analyzer.describe(), "metrics": metrics, "limits": limits.__dict__}

    return app


def serve(analyzer: SentimentAnalyzer, host: str, port: int, limits: Limits, metrics: dict | None) -> None:
    import uvicorn

    uvicorn.run(create_app(analyzer, limits, metrics), host=host, port=port, log_level="warning")

"""The web API's OpenAPI contract: every rule the server enforces on a request is stated here (exactly one of
`text`/`texts`, or an aspect model's `text` and `aspects`; item count, length, a visible character), and every
error has one body shape, `Error`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from qlora_sentiment.api.validation import MAX_ASPECT_CHARS, MAX_ASPECTS, VISIBLE_PATTERN


class Error(BaseModel):
    """Every 4xx/5xx body."""
    detail: str = Field(description="one line: what is wrong, starting with the field or item at fault "
                                    "(`texts[3]: empty text`)")
    field: str | None = Field(description="the field or item at fault (`text`, `texts[3]`, `body`), or null")


class Prediction(BaseModel):
    text: str
    aspect: str = Field(None, description="the aspect labelled: in an aspect model's answers only (one per aspect "
                                          "of the request, in order)")
    label: str
    probabilities: dict[str, float]


class PredictResponse(BaseModel):
    predictions: list[Prediction] = Field(description="one per text (an aspect model's: per aspect), in order")


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["ok"]
    ready: bool = Field(description="the model is loaded and the queue has room (GET /ready)")
    queue_depth: int = Field(description="requests waiting for the model")
    max_queue: int
    requests: int = Field(description="requests answered by the model")
    texts: int
    forward_batches: int
    failures: int = Field(description="requests whose forward pass failed (500)")
    rejected: int = Field(description="requests refused with 503: queue full, model not loaded, or the work queued "
                                      "ahead would outlast the request timeout")
    timeouts: int = Field(description="requests without an answer within the request timeout (503)")
    disconnected: int = Field(description="clients that left before their answer")
    dropped: int = Field(description="of timeouts and disconnected, requests removed before their forward pass")


class Ready(BaseModel):
    status: Literal["ready"]
    queue_depth: int


class Info(BaseModel):
    """No path of the serving machine: the model is named by its folder's name, and any absolute path in what the
    model records (a local base model's folder) is cut to its last part."""
    model_config = ConfigDict(extra="allow")
    model: str | None = Field(description="the model folder's name (`adapter`, `export`), not its path")
    labels: list[str]
    kind: str
    backend: str = Field(description="what runs the model: `onnx` (ONNX Runtime, an export's onnx/model.onnx) or "
                                     "`torch`")
    head: str
    task: str = Field("sentence", description="`sentence`: the model labels whole texts; `aspect_term` / "
                                              "`aspect_category`: it labels a text's `aspects`")
    metrics: dict | None
    limits: dict


TEXT_RULE = ("at most {max_chars} characters (Unicode code points), valid Unicode (no lone surrogates), with at "
             "least one visible character: whitespace, control and format characters (NUL, U+200B, …) alone are "
             "an empty text")

ERRORS = {
    400: "the Host header is not one that `--allowed-hosts` names (or not a host[:port]), or the request is not "
         "valid HTTP/1.1 or its body's length is ambiguous (Content-Length with Transfer-Encoding, differing "
         "Content-Length values, a Transfer-Encoding other than chunked): the connection is closed",
    408: "the request body did not arrive within the body timeout",
    413: "the request body is larger than the limits allow, or its texts would take the model longer than the "
         "request timeout even alone (estimated at the model's measured pace)",
    415: "the body is not declared as uncompressed UTF-8 JSON: Content-Type must be application/json (charset utf-8 "
         "or none), Content-Encoding identity or none; a UTF-16/32 body is refused too",
    422: "invalid request: `field` names the field or item, `detail` says why (an aspect too long in tokens for "
         "the model, a text over the character limit once cleaned included)",
    429: "this client address has `--max-connections-per-client` connections open, each with a request in "
         "progress: the connection is refused at once",
    500: "the model failed on this request's texts (other requests are not affected)",
    503: "busy (queue full), the model not loaded yet, or no answer within the request timeout: retry after "
         "Retry-After seconds",
}
ASPECT_RULE = {"aspect_term": "a term of the text: it must occur in it (ignoring case)",
               "aspect_category": "a category (`service`, `FOOD#QUALITY`): any"}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "required": True,
                               "schema": {"type": "integer", "minimum": 1}}}


def error_responses(*codes: int) -> dict:
    return {code: {"model": Error, "description": ERRORS[code], **({"headers": RETRY_AFTER} if code == 503 else {})}
            for code in codes}


def predict_request_body(max_items: int, max_chars: int, text_tokens: int | None = None,
                         max_batch_tokens: int | None = None, task: str = "sentence") -> dict:
    """The request body of POST /predict, as the server checks it; `text_tokens`: the model's max_length; `task`:
    the model's (an aspect model takes `text` and `aspects`)."""
    rule = TEXT_RULE.format(max_chars=max_chars)
    if text_tokens:
        rule += f"; scored on its first {text_tokens} tokens (the prompt included), the rest is not read"
    text = {"type": "string", "minLength": 1, "maxLength": max_chars, "pattern": VISIBLE_PATTERN,
            "description": rule}
    if text_tokens:
        text["x-max-tokens"] = text_tokens
    cost = (f" A request costs at most {max_items} x {text_tokens} tokens; its texts (or text-aspect pairs) are "
            f"computed in forward passes of at most {max_batch_tokens} padded tokens, taking turns with other "
            "requests." if text_tokens and max_batch_tokens else "")
    review = {**text, "description": "one review: " + text["description"]}
    if task == "sentence":
        what = "exactly one of `text` (one review) or `texts` (several); no other field."
        properties = {"text": review, "texts": {"type": "array", "minItems": 1, "maxItems": max_items, "items": text,
                                                "description": f"1 to {max_items} reviews, each as `text`"}}
        shape = {"oneOf": [{"required": ["text"], "not": {"required": ["texts"]}},
                          {"required": ["texts"], "not": {"required": ["text"]}}]}
        examples = [{"text": "A warm, funny film."}, {"texts": ["Great.", "A joyless, overlong mess."]}]
    else:
        what = (f"`text` (one review) and its `aspects` (this model's task: {task}): one prediction per aspect, in "
                "order; no other field.")
        aspect = {"type": "string", "minLength": 1, "maxLength": MAX_ASPECT_CHARS, "pattern": VISIBLE_PATTERN,
                  "description": f"{ASPECT_RULE.get(task, 'an aspect')}; the text's rules, at most "
                                 f"{MAX_ASPECT_CHARS} characters"}
        most = min(max_items, MAX_ASPECTS)
        properties = {"text": review, "aspects": {"type": "array", "minItems": 1, "maxItems": most, "items": aspect,
                                                  "description": f"1 to {most} aspects of `text`, each labelled "
                                                                 "on its own"}}
        shape = {"required": ["text", "aspects"]}
        examples = [{"text": "the food was great but the service was awful", "aspects": ["food", "service"]}]
    schema = {"title": "PredictRequest", "description": what + cost, "type": "object", "properties": properties,
              "additionalProperties": False, **shape, "examples": examples}
    return {"required": True, "content": {"application/json": {"schema": schema}}}

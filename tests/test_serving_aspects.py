"""The web API serves aspect models (issue 24): `{"text", "aspects"}` answered one prediction per aspect, in order,
as the Python API answers; concurrent aspect requests share forward passes and each gets its own answers; every
request that does not suit the model is a 422 naming `aspects` or the item. A real `qlora-sentiment serve` of the
tiny aspect_term export (ONNX Runtime, as the Python API runs it) over real HTTP; one server for the module."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from helpers import serving
from qlora_sentiment.core.errors import DataError
from qlora_sentiment.api.analyzer import SentimentAnalyzer

TEXT = "the food was great but the service was awful"
OTHER = "the wine was cheap and the staff were rude"


@pytest.fixture(scope="module")
def export(trained_aspects):
    return trained_aspects.root / "export"


@pytest.fixture(scope="module")
def url(export):
    with serving("--model", str(export), "--threads", "1", "--max-items", "8", "--max-chars", "200",
                 "--max-wait-ms", "50") as url:
        yield url


def probabilities(predictions):
    return np.array([list(p["probabilities"].values()) for p in predictions])


def test_aspects_are_answered_in_order_as_the_python_api_answers(url, export):
    response = httpx.post(f"{url}/predict", json={"text": TEXT, "aspects": ["food", "service"]}, timeout=30)
    assert response.status_code == 200, response.text
    got = response.json()["predictions"]
    assert [list(p) for p in got] == [["text", "aspect", "label", "probabilities"]] * 2
    assert [(p["text"], p["aspect"]) for p in got] == [(TEXT, "food"), (TEXT, "service")]
    analyzer = SentimentAnalyzer.from_pretrained(export)
    direct = analyzer.predict(TEXT, aspects=["food", "service"])
    assert [p["label"] for p in got] == [p["label"] for p in direct]
    np.testing.assert_allclose(probabilities(got), probabilities(direct), atol=1e-6)
    # the batcher's budget: each pair's tokens as the scorer pads them (text + aspect + the pair's specials)
    aspects = ["food", "service", "the food"]
    rows = analyzer.scorer._encode([TEXT] * 3, aspects)
    assert [abs(c - len(r)) <= 2 for c, r in zip(analyzer.aspect_token_lengths(TEXT, aspects), rows)] == [True] * 3


def test_concurrent_aspect_requests_share_passes_and_get_their_own_answers(url, export):
    asks = [(TEXT, ["food"]), (TEXT, ["service", "food"]), (OTHER, ["wine", "staff"]), (OTHER, ["staff"]),
            (TEXT, ["service"]), (OTHER, ["staff", "wine", "staff"]), (TEXT, ["food", "service", "food"]),
            (OTHER, ["wine"])] * 2
    before = httpx.get(f"{url}/health", timeout=10).json()
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(len(asks)) as pool:
        responses = list(pool.map(lambda ask: client.post(f"{url}/predict", json={"text": ask[0], "aspects": ask[1]}),
                                  asks))
    after = httpx.get(f"{url}/health", timeout=10).json()
    assert [r.status_code for r in responses] == [200] * len(asks), [r.text for r in responses]
    analyzer = SentimentAnalyzer.from_pretrained(export)
    for (text, aspects), response in zip(asks, responses):
        got = response.json()["predictions"]
        assert [(p["text"], p["aspect"]) for p in got] == [(text, a) for a in aspects]
        np.testing.assert_allclose(probabilities(got), probabilities(analyzer.predict(text, aspects=aspects)),
                                   atol=1e-5)  # padded beside other requests' pairs
    assert after["requests"] - before["requests"] == len(asks)
    assert after["texts"] - before["texts"] == sum(len(a) for _, a in asks)  # pairs
    assert after["forward_batches"] - before["forward_batches"] < len(asks), "not batched"


@pytest.mark.parametrize("body,field,message", [
    ({"text": TEXT}, "aspects", "aspects: this model labels aspects (data.task: aspect_term); name at least one"),
    ({"text": TEXT, "aspects": ["food", "wine"]}, "aspects[1]", "aspects[1]: 'wine' does not occur in the text"),
    ({"text": "The party was fun", "aspects": ["art"]}, "aspects[0]", "aspects[0]: 'art' does not occur in the text"),
    ({"text": TEXT, "aspects": ["FOOD", " \u200b"]}, "aspects[1]", "aspects[1]: empty text"),
    ({"text": TEXT, "aspects": ["food", 7]}, "aspects[1]", "aspects[1]: expected a string, got a number"),
    ({"text": TEXT, "aspects": ["food"] * 9}, "aspects", "aspects: 9 items; give 1 to 8 per request"),
    ({"text": TEXT, "aspects": []}, "aspects", "aspects: empty list"),
    ({"text": TEXT, "aspects": "food"}, "aspects", "aspects: expected a list of strings"),
    ({"text": TEXT, "aspects": ["x" * 201]}, "aspects[0]", "aspects[0]: 201 characters; at most 200"),
    ({"texts": [TEXT], "aspects": ["food"]}, "aspects", "aspects: the aspects of one text: give them with 'text'"),
])
def test_requests_that_do_not_suit_an_aspect_model_are_422s_naming_the_field(url, body, field, message):
    response = httpx.post(f"{url}/predict", json=body, timeout=30)
    assert response.status_code == 422, response.text
    assert response.json() == {"detail": response.json()["detail"], "field": field}
    assert response.json()["detail"].startswith(message) and "\n" not in response.json()["detail"]


def test_a_sentence_model_refuses_aspects_and_answers_as_before(server):
    """The sentence adapter's server (conftest's `server`): aspects are a 422, answers carry no `aspect`."""
    refused = httpx.post(f"{server}/predict", json={"text": "good film", "aspects": ["film"]}, timeout=30)
    assert refused.status_code == 422 and refused.json()["field"] == "aspects"
    assert "this model labels whole texts" in refused.json()["detail"]
    answered = httpx.post(f"{server}/predict", json={"text": "good film"}, timeout=30).json()["predictions"]
    assert list(answered[0]) == ["text", "label", "probabilities"]
    body = httpx.get(f"{server}/openapi.json", timeout=10).json()["paths"]["/predict"]["post"]["requestBody"]
    assert "aspects" not in body["content"]["application/json"]["schema"]["properties"]
    assert httpx.get(f"{server}/info", timeout=10).json()["task"] == "sentence"


CJK = "\u597d" * 200  # 200 characters, 600 tokens of the tiny byte-level tokenizer: more than max_length (96)


def test_an_aspect_too_long_in_tokens_is_refused_on_every_path(url, export):
    """A classifier head reads the pair with truncation 'only_first', which cannot cut the aspect: an aspect the
    model's max_length cannot hold failed its forward pass ("Truncation error": a 500, a traceback). Now one line
    naming the limit in tokens, before any forward pass: the web API (422), the Python API (predict and
    predict_pairs) and the CLI (test_bad_inputs.py: aspect-too-many-tokens)."""
    response = httpx.post(f"{url}/predict", json={"text": CJK, "aspects": [CJK[:3], CJK]}, timeout=30)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert response.json()["field"] == "aspects[1]" and "\n" not in detail
    analyzer = SentimentAnalyzer.from_pretrained(export)
    budget, _ = analyzer.aspect_budget
    assert detail.startswith(f"aspects[1]: 600 tokens; at most {budget} for this model's max_length of 96 tokens")
    assert budget == 96 - analyzer.scorer.tokenizer.num_special_tokens_to_add(pair=True) - 1
    with pytest.raises(DataError, match=rf"aspects\[0\]: 600 tokens; at most {budget} "):
        analyzer.predict(CJK, aspects=[CJK])
    with pytest.raises(DataError, match=rf"aspects\[1\]: 600 tokens; at most {budget} "):
        analyzer.predict_pairs([TEXT, CJK], ["food", CJK])
    # the budget is exact: the longest aspect it allows is scored (the text cut to one token), one more is refused
    tokens = lambda text: len(analyzer.scorer.tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    fits = "\u597d" * (budget // 3)  # 3 tokens each
    for char in "~|^`":
        fits += char if tokens(fits + char) <= budget else ""
    assert tokens(fits) == budget
    assert len(analyzer.predict(CJK + fits, aspects=[fits])) == 1
    with pytest.raises(DataError, match=rf"aspects\[0\]: {budget + 3} tokens; at most {budget} "):
        analyzer.predict(CJK + fits + "\u597d", aspects=[fits + "\u597d"])


def test_a_generative_models_aspect_budget_is_the_prompts(export):
    """A generative model's aspect gets at most half of the review's room in the prompt (PromptFormatter's rule),
    as a one-line DataError before the formatter's own check: its adapter and its export alike. The export scores
    with a classifier head whose tokenizer adds the prompt's 14 tokens to the pair within a max_length of prompt
    + review (54 = 14 + 40); keyed on that head, it allowed 39 tokens where the adapter allows 20."""
    from types import SimpleNamespace

    analyzer = SentimentAnalyzer.from_pretrained(export)
    tokenizer = analyzer.scorer.tokenizer

    class PromptTokenizer:  # the export's wrapped tokenizer: the prompt's fixed ids around the pair
        def __call__(self, *args, **kwargs):
            return tokenizer(*args, **kwargs)

        def num_special_tokens_to_add(self, pair=False):
            return 14

    record = analyzer.record.model_copy(update={"head": "generative"})
    adapter = SentimentAnalyzer(SimpleNamespace(head="generative", tokenizer=tokenizer, max_length=96,
                                                formatter=SimpleNamespace(text_budget=40, aspect_space=True)),
                                record, export)
    exported = SentimentAnalyzer(SimpleNamespace(head="classifier", tokenizer=PromptTokenizer(), max_length=54),
                                 record, export)
    assert adapter.aspect_budget == exported.aspect_budget == (20, "(half of the review's room in this model's "
                                                                   "max_length)")
    for generative in (adapter, exported):
        with pytest.raises(DataError, match=r"aspects\[0\]: \d+ tokens; at most 20 \(half of the review's room"):
            generative.predict(CJK, aspects=[CJK])
    classifier = SentimentAnalyzer(SimpleNamespace(head="classifier", tokenizer=PromptTokenizer(), max_length=54),
                                   analyzer.record, export)
    assert classifier.aspect_budget[0] == 54 - 14 - 1  # a classifier model: the pair may leave the text 1 token


def test_info_and_schema_state_the_aspect_task(url):
    assert httpx.get(f"{url}/info", timeout=10).json()["task"] == "aspect_term"
    schema = httpx.get(f"{url}/openapi.json", timeout=10).json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["text", "aspects"] and body["additionalProperties"] is False
    aspects = body["properties"]["aspects"]
    assert (aspects["minItems"], aspects["maxItems"], aspects["items"]["maxLength"]) == (1, 8, 200)
    assert aspects["items"]["pattern"] == body["properties"]["text"]["pattern"]
    assert "must occur in it" in aspects["items"]["description"]
    assert "aspect" in schema["components"]["schemas"]["Prediction"]["properties"]
    # the web page (/docs, Swagger UI from this schema): an aspect model's example request, tried as the page
    # sends it, is answered per aspect
    page = httpx.get(f"{url}/docs", timeout=10)
    assert page.status_code == 200 and "swagger-ui" in page.text and "/openapi.json" in page.text
    [example] = body["examples"]
    assert example["aspects"] == ["food", "service"]
    answer = httpx.post(f"{url}/predict", json=example, timeout=30).json()["predictions"]
    assert [(a["aspect"], sorted(a["probabilities"])) for a in answer] == \
        [(aspect, ["negative", "neutral", "positive"]) for aspect in example["aspects"]]

"""The export is a standard Hugging Face sequence classifier for both heads: `pipeline("text-classification")` on
raw text gives the project's own labels and probabilities, and the model card is one the Hub understands."""

import os

import numpy as np
import pytest

from helpers import train_tiny

METRICS = {"n": 32, "accuracy": 0.75, "macro": {"f1": 0.74}, "baseline": {"metrics": {"accuracy": 0.5}}}
ERRORS = {"overall": {"n": 32, "errors": 8, "error_rate": 0.25},
          "cues": {"negation": {"with": {"n": 20, "errors": 8, "error_rate": 0.4},
                                "without": {"n": 12, "errors": 0, "error_rate": 0.0}}}}
DATASET = {"id": "rotten_tomatoes_full", "name": "rotten_tomatoes_full (offline)", "config": None}


@pytest.fixture(scope="module", params=["generative", "classifier"])
def exported(request, tmp_path_factory, tiny_llama):
    from qlora_sentiment.model.base import load_ref
    from qlora_sentiment.model.export import merge_adapter, write_export
    from qlora_sentiment.model.record import read_record
    from qlora_sentiment.model.scoring import LabelScorer

    root = tmp_path_factory.mktemp(f"export-{request.param}")
    cwd = os.getcwd()
    try:
        params, records, _ = train_tiny(root, tiny_llama, **{"train.max_steps": 4, "model.head": request.param})
    finally:
        os.chdir(cwd)
    record = read_record(root / "adapter")
    merged, tokenizer = merge_adapter(root / "adapter", load_ref(root / "base"), record)
    # the de-quantized reference: the project's scorer on the merged model, before it is converted
    reference = LabelScorer(merged, tokenizer, record.head, record.labels, record.prompt_template, record.max_length)
    texts = [r["text"] for r in records["test"]]
    expected = reference.predict_proba(texts)
    write_export(merged, tokenizer, record, root / "export", METRICS, root / "adapter", DATASET, ERRORS)
    return root / "export", record, texts, expected


def test_pipeline_on_raw_text_matches_the_scorer(exported):
    from transformers import AutoConfig, pipeline

    folder, record, texts, expected = exported
    config = AutoConfig.from_pretrained(folder)
    assert config.architectures == ["LlamaForSequenceClassification"]
    assert config.id2label == dict(enumerate(record.labels)) and config.label2id["positive"] == 1
    classify = pipeline("text-classification", model=str(folder), top_k=None)
    got = classify(texts)
    proba = np.array([[{d["label"]: d["score"] for d in row}[label] for label in record.labels] for row in got])
    assert (proba.argmax(1) == expected.argmax(1)).all()
    assert np.abs(proba - expected).max() <= 1e-4, np.abs(proba - expected).max()


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_the_project_api_on_the_export_uses_the_same_classifier(exported, backend):
    """`auto` on a CPU machine is ONNX Runtime on the export's onnx/model.onnx (written by the export for a
    float32 classifier); both runtimes give the scorer's probabilities on the test texts (every length)."""
    from qlora_sentiment.api.analyzer import SentimentAnalyzer

    folder, record, texts, expected = exported
    graph = (folder / "onnx" / "model.onnx").read_bytes()
    assert (folder / "onnx" / "model.onnx.data").is_file()
    # no stack traces with this checkout's paths: a clone elsewhere must write the same bytes (dvc.lock)
    assert b"site-packages" not in graph and b"qlora_sentiment/model/onnx.py" not in graph
    analyzer = SentimentAnalyzer.from_pretrained(folder, backend=backend, threads=1)
    assert analyzer.backend == ("onnx" if backend == "auto" else "torch")
    assert analyzer.describe()["backend"] == analyzer.backend
    rows = analyzer.predict(texts, batch_size=5)
    proba = np.array([[r["probabilities"][label] for label in record.labels] for r in rows])
    assert np.abs(proba - expected).max() <= 1e-4


def test_model_card_metadata_the_hub_reads(exported):
    from huggingface_hub import ModelCard

    folder, record, _, _ = exported
    card = ModelCard.load(folder / "README.md")
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "text-classification" and data["library_name"] == "transformers"
    assert data["datasets"] == ["rotten_tomatoes_full"] and "base_model" in data
    results = data["model-index"][0]["results"][0]
    metrics = {m["type"]: m["value"] for m in results["metrics"]}
    assert metrics == {"accuracy": 0.75, "f1": 0.74} and results["dataset"]["split"] == "test"
    assert "pipeline(\"text-classification\"" in card.text and "Reviews with negations: 40.0% errors" in card.text


def test_multi_token_labels_are_refused_with_a_clear_message(tiny_llama):
    from qlora_sentiment.core.errors import ModelError
    from qlora_sentiment.model.base import BaseRef
    from qlora_sentiment.model.classifier import label_rows
    from qlora_sentiment.model.loading import load_tokenizer
    from qlora_sentiment.model.prompts import PromptFormatter

    tokenizer = load_tokenizer(BaseRef(str(tiny_llama), None, {}))
    formatter = PromptFormatter(tokenizer, "Review: {text}\nSentiment:", ["unwatchable", "positive"], 96)
    with pytest.raises(ModelError, match="reads one token per label"):
        label_rows(formatter, ["unwatchable", "positive"])


def test_push_uploads_the_folder_in_one_commit(exported):
    """The Hub upload against a mocked HfApi (no network here): repo created if missing, folder uploaded."""
    from qlora_sentiment.model.push import push

    folder, record, _, _ = exported
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs))

            class Info:
                commit_url = f"https://huggingface.co/{kwargs['repo_id']}/commit/abc"

            return Info()

    url = push(folder, "acme/sentiment", api=FakeApi())
    assert url == "https://huggingface.co/acme/sentiment/commit/abc"
    assert calls[0] == ("create_repo", "acme/sentiment", {"repo_type": "model", "private": True, "exist_ok": True})
    upload = calls[1][1]
    assert upload["folder_path"] == str(folder) and upload["repo_id"] == "acme/sentiment"
    assert f"{record.head} head" in upload["commit_message"]


def test_push_refuses_a_folder_this_project_did_not_write(tmp_path):
    from qlora_sentiment.core.errors import ModelError
    from qlora_sentiment.model.push import push

    with pytest.raises(ModelError, match="not an adapter or export written by qlora-sentiment"):
        push(tmp_path, "acme/sentiment", api=object())


def test_out_of_domain_tool_scores_binary_tweets_and_drug_reviews(trained, tmp_path):
    """tools/out_of_domain.py: the adapter on the offline tweets and drug reviews, neutral rows dropped."""
    import json
    import subprocess
    import sys

    from helpers import ROOT

    out = tmp_path / "ood.json"
    done = subprocess.run([sys.executable, str(ROOT / "tools/out_of_domain.py"), "--model", str(trained / "adapter"),
                           "--base", str(trained / "base"), "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"tweets (binary)", "drug reviews (binary)"}
    # drug reviews: its own 379 test rows less the neutral ones; tweets: the preset's cap of 1,000 after that
    assert results["tweets (binary)"]["n"] == 1000 and 100 < results["drug reviews (binary)"]["n"] < 379
    assert all(0 <= r["accuracy"] <= 1 and r["n"] > 0 for r in results.values())


def test_a_merge_too_big_for_the_gpu_runs_on_the_cpu(tiny_llama, monkeypatch, caplog):
    """The export's merge de-quantizes the whole model: where the GPU's free memory cannot hold it (a 7-9B model on
    a 16 GB card), it runs on the CPU and says so with the RAM it takes (CUDA mocked: this machine has none)."""
    import logging

    import torch

    from qlora_sentiment.config import QuantizationConfig
    from qlora_sentiment.model.base import BaseRef
    from qlora_sentiment.model.merge_memory import merge_fits_gpu, parameter_count
    from qlora_sentiment.model.loading import load_model
    from qlora_sentiment.model.record import ModelRecord

    ref = BaseRef(str(tiny_llama), None, {})
    count = parameter_count(ref)
    from transformers import AutoModelForCausalLM

    assert count == AutoModelForCausalLM.from_pretrained(tiny_llama).num_parameters()
    record = ModelRecord.model_construct(quantization=QuantizationConfig(load_in_4bit=True, quant_type="nf4",
                                                                        double_quant=True, compute_dtype="bfloat16"))
    need = count * (2 + 0.56)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    caplog.set_level(logging.WARNING, logger="qlora_sentiment.model.merge_memory")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (int(need * 1.2), int(need * 2)))
    assert merge_fits_gpu(count, record) and not caplog.records
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (int(need * 0.5), int(need * 2)))
    assert not merge_fits_gpu(count, record)
    [said] = [r.getMessage() for r in caplog.records]
    assert "merging on the CPU instead" in said and "GiB of RAM" in said
    # the CPU placement a GPU machine then asks for loads the real 4-bit layers on the CPU
    monkeypatch.undo()  # this machine's real torch.cuda again (bitsandbytes reads it when it loads)
    model = load_model(ref, "generative", ["negative", "positive"],
                       QuantizationConfig(load_in_4bit=True, quant_type="nf4", double_quant=True,
                                          compute_dtype="float32"), 0, on_cpu=True)
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules())


def test_the_classifier_export_is_built_without_random_weights(tiny_llama, monkeypatch):
    """The sequence classifier is created on the meta device and takes the merged model's tensors: no randomly
    initialised copy first (an 8B model's would be 15 GB of RAM and minutes on the CPU)."""
    import transformers
    from transformers import AutoModelForCausalLM

    from qlora_sentiment.model.classifier import to_classifier
    from qlora_sentiment.model.base import BaseRef
    from qlora_sentiment.model.loading import load_tokenizer
    from qlora_sentiment.model.record import ModelRecord

    made = []
    original = transformers.AutoModelForSequenceClassification.from_config

    def from_config(*args, **kwargs):
        model = original(*args, **kwargs)
        made.append({p.device.type for p in model.parameters()})
        return model

    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_config", from_config)
    merged = AutoModelForCausalLM.from_pretrained(tiny_llama)
    record = ModelRecord.model_construct(prompt_template="Review: {text}\nSentiment:", labels=["negative", "positive"],
                                         max_length=64, chat_template=False, clean=None)
    model, _ = to_classifier(merged, load_tokenizer(BaseRef(str(tiny_llama), None, {})), record)
    assert made == [{"meta"}]
    assert all(p.device.type == "cpu" for p in model.parameters())
    head = merged.get_output_embeddings().weight
    # taken, not copied
    assert model.model.embed_tokens.weight.data_ptr() == merged.model.embed_tokens.weight.data_ptr()
    assert model.score.weight.shape == (2, head.shape[1])


def test_an_onnx_graph_that_disagrees_with_the_model_stops_the_export(exported, tmp_path, monkeypatch):
    """The export checks ONNX Runtime against the torch model on a batch of other shapes than the trace's; over
    the tolerance it stops with one line (here forced: a tolerance no float arithmetic meets)."""
    import shutil

    from qlora_sentiment.core.errors import ModelError
    from qlora_sentiment.model import onnx

    folder, record, _, _ = exported
    shutil.copytree(folder, tmp_path / "export", ignore=shutil.ignore_patterns("onnx"))
    monkeypatch.setattr(onnx, "TOLERANCE", -1.0)
    with pytest.raises(ModelError, match="ONNX Runtime's logits differ from the model's"):
        onnx._export(tmp_path / "export", record.max_length)

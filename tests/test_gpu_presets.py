"""Every GPU preset runs on the CPU with its own keys, on a tiny random model of its architecture class with the
family's real tokenizer and chat template (tools/random_model.py), a small offline data set and one thread;
`runtime.device: cpu` is the only CUDA-related key overridden.

Gemma 2, the preset whose export is a causal LM (no classification head reproduces its soft-capped logits), runs
every stage's command of dvc.yaml (helpers.repro_in_process: params.yaml composed with `experiment=gemma2_9b` as
`dvc exp run -S` composes it, then each stage script's main in order, ONNX export included). The others differ
from it in their family's model, tokenizer and data, not in the stages' wiring (one dvc.yaml for all, run through
DVC end to end by tests/test_pipeline.py and test_experiments.py): they run the functions the stages run
(prepare, train, score as baseline and evaluate do, merge and export) with the same checks, for half the CPU time
(BENCHMARKS.md "Test suite")."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

from helpers import PROJECT_FILES, ROOT, copy_project, easy_aspects_xml, repro_in_process, stages_in_process

sys.path.insert(0, str(ROOT / "tools"))
from random_model import FAMILIES

# preset -> (tiny family, the pad token the project must end up with, whether the prompt is a chat turn)
PRESETS = {
    "mistral_7b": ("mistral-v01-tiny", "</s>", False),      # no pad token: EOS pads
    "mistral_7b_v03": ("mistral-v03-tiny", "</s>", True),
    "llama31_8b": ("llama3-tiny", "<|finetune_right_pad_id|>", True),  # the vocabulary's reserved pad token
    "qwen25_7b": ("qwen2-tiny", "<|endoftext|>", True),      # its own pad token, no BOS
    "gemma2_9b": ("gemma2-tiny", "<pad>", True),
    "absa_mams_llama31_8b": ("llama3-tiny", "<|finetune_right_pad_id|>", True),  # on MAMS-shaped aspect data
}
EVERY_STAGE = ["gemma2_9b"]
IN_PROCESS = sorted(set(PRESETS) - set(EVERY_STAGE))
# 16 training texts: one optimizer step of every preset's batch 4 x grad_accum 4 (what is checked is the wiring and
# the export, not what is learnt); 8 test texts, all of them re-scored through the export
SWAPS = ["runtime.device=cpu", "runtime.torch_threads=1", "data=rotten_tomatoes", "data.max_train=16",
         "data.max_validation=4", "data.max_test=8"]
ASPECT_FILES = (("train", 8, 0), ("val", 2, 1), ("test", 4, 2))  # sentences (two aspects each), as SWAPS' sizes


def test_every_gpu_preset_has_a_cpu_test():
    gpu = sorted(p.stem for p in (ROOT / "conf/experiment").glob("*.yaml") if "device: cuda" in p.read_text())
    assert gpu == sorted(PRESETS)
    for name in gpu:  # bf16 on Ampere and newer, float16 on a T4: the GPU decides, not the preset
        assert "compute_dtype: auto" in (ROOT / f"conf/experiment/{name}.yaml").read_text(), name


@pytest.mark.slow
@pytest.mark.parametrize("preset", EVERY_STAGE)
def test_gpu_preset_pipeline_on_cpu(preset, tmp_path, family_model):
    family = PRESETS[preset][0]
    repo = tmp_path / "project"
    copy_project(repo, [*PROJECT_FILES, "conf"])
    model = f"models/local/{family}"  # where base_model takes a local model from (a dvc.yaml dependency)
    shutil.copytree(family_model(family), repo / model)
    aspects = preset.startswith("absa_")
    swaps = [s for s in SWAPS if not (aspects and s.startswith("data="))]
    if aspects:  # the preset's own data preset, on files of its shape where a user puts them
        for name, count, seed in ASPECT_FILES:
            easy_aspects_xml(repo / "data/raw/mams-atsa" / f"{name}.xml", count, seed)
    stages = repro_in_process(repo, [f"experiment={preset}", "model.source=local", f"model.name={model}", *swaps])
    assert stages == ["base_model", "prepare", "train", "baseline", "evaluate", "export"]
    assert not (repo / "models/export/onnx").exists()  # ONNX Runtime's copy is made for sequence classifiers only
    predictions = [json.loads(line) for line in (repo / "metrics/predictions.jsonl").read_text().splitlines()]
    check_preset_outputs(preset, repo / model, repo / "models/adapter", repo / "models/export", predictions)


@pytest.mark.slow
@pytest.mark.parametrize("preset", IN_PROCESS)
def test_gpu_preset_stages_in_one_process(preset, tmp_path, family_model):
    """What the stages run, called in this process on the preset's composed params: the same outputs to check."""
    from qlora_sentiment.config import compose, params_from_dict
    from qlora_sentiment.evaluation.analysis import predict_split
    from qlora_sentiment.model.adapter import load_baseline_scorer, load_scorer
    from qlora_sentiment.model.base import load_ref
    from qlora_sentiment.model.export import merge_adapter, write_export
    from qlora_sentiment.model.record import read_record

    model = family_model(PRESETS[preset][0])
    base, adapter, export = (tmp_path / name for name in ("base", "adapter", "export"))
    aspects = preset.startswith("absa_")
    if aspects:  # the preset's own data preset, on files of its shape where a user puts them
        for name, count, seed in ASPECT_FILES:
            easy_aspects_xml(tmp_path / "data/raw/mams-atsa" / f"{name}.xml", count, seed)
    swaps = [s for s in SWAPS if not (aspects and s.startswith("data="))]
    raw = compose(ROOT / "conf", [f"experiment={preset}", "model.source=local", f"model.name={model}", *swaps])
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the data's relative paths; and DVCLive inspects the git repo of the working directory
    try:
        params, records, _ = stages_in_process(params_from_dict(raw), tmp_path)  # base_model, prepare, train
    finally:
        os.chdir(cwd)
    test = records["test"]
    baseline = predict_split(load_baseline_scorer(base, params), test, params.eval.batch_size)  # baseline
    assert len(baseline) == len(test) and all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in baseline)
    predictions = predict_split(load_scorer(adapter, base), test, params.eval.batch_size)  # evaluate
    merged, tokenizer = merge_adapter(adapter, load_ref(base), read_record(adapter))  # export
    write_export(merged, tokenizer, read_record(adapter), export, {"n": 1, "accuracy": 1.0, "macro": {"f1": 1.0}},
                 adapter)
    check_preset_outputs(preset, model, adapter, export, predictions)


def check_preset_outputs(preset, model, adapter, export, predictions):
    """The preset's record, tokens, export class and export scores, wherever the stages ran."""
    from qlora_sentiment.model.base import BaseRef
    from qlora_sentiment.model.loading import load_tokenizer
    from qlora_sentiment.model.prompts import PromptFormatter
    from qlora_sentiment.api.analyzer import SentimentAnalyzer

    family, pad, chat = PRESETS[preset]
    aspects = preset.startswith("absa_")
    # transformers 5 forces Qwen2Tokenizer on qwen2 folders (its own normalizer: other ids); the export's auto_map
    # makes plain AutoTokenizer read tokenizer.json whole (tests/test_export_tokenizers.py): only Qwen's has one
    config = json.loads((export / "tokenizer_config.json").read_text())
    assert ("auto_map" in config) == (family == "qwen2-tiny"), config.get("auto_map")
    record = json.loads((adapter / "qlora_sentiment.json").read_text())
    assert record["device"] == "cpu" and record["chat_template"] is chat
    # the presets' `auto`, resolved for this CPU (bf16 with avx512_bf16/AMX, else float32) and recorded as it ran
    from qlora_sentiment.core.device import resolve_compute_dtype

    assert record["quantization"]["compute_dtype"] == resolve_compute_dtype("auto", "cpu")
    assert record["optimizer"] == {"requested": "paged_adamw_8bit", "used": "adamw_8bit"}

    # Tokens as the family expects: one BOS where its tokenizer adds one (none for Qwen), the pad token, the
    # prompt inside the family's chat template, answer tokens that follow the prompt unmerged.
    spec = FAMILIES[family]
    tokenizer = load_tokenizer(BaseRef(str(model), None, {}))
    assert tokenizer.pad_token == pad
    formatter = PromptFormatter(tokenizer, record["prompt_template"], record["labels"], record["max_length"], chat)
    ids = formatter.encode(["a warm, funny film"], ["film"] if aspects else None)[0]
    bos = tokenizer.bos_token_id
    assert ids.count(bos) == (1 if spec.bos else 0) if bos is not None else not spec.bos
    if spec.bos:
        assert ids[0] == bos
    if chat:
        assert formatter.render_raw("x", "z").endswith(tokenizer.apply_chat_template(
            [{"role": "user", "content": "y"}], tokenize=False, add_generation_prompt=True).split("y")[-1])
    assert all(formatter.label_token_ids(label) for label in record["labels"])

    # The merged export reloads with plain transformers and scores like the adapter did: a sequence classifier,
    # except Gemma 2, whose soft-capped logits no classification head reproduces (the causal LM is exported).
    exported_record = json.loads((export / "qlora_sentiment.json").read_text())
    expected_class = "AutoModelForCausalLM" if preset == "gemma2_9b" else "AutoModelForSequenceClassification"
    assert exported_record["export"]["auto_class"] == expected_class
    exported = SentimentAnalyzer.from_pretrained(export)
    again = [exported.predict(p["text"], aspects=[p["aspect"]])[0] for p in predictions[:8]] if aspects \
        else exported.predict([p["text"] for p in predictions[:8]])
    for p, e in zip(predictions, again):
        assert abs(p["probabilities"]["positive"] - e["probabilities"]["positive"]) < 0.05, (p, e)
    assert len(list(export.glob("*.safetensors"))) >= 1

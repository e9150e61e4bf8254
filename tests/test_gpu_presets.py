"""Every GPU preset runs its real pipeline on the CPU: `dvc exp run -S experiment=<preset>` in a temporary repo,
every stage, with the preset's own keys. Only the model (a tiny random model of the same architecture class,
with the family's real tokenizer and chat template, tools/random_model.py), the data (a small offline set) and
the threads are swapped; `runtime.device: cpu` is the only CUDA-related key overridden."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from helpers import PROJECT_FILES, ROOT, easy_aspects_xml, run

sys.path.insert(0, str(ROOT / "tools"))
from random_model import FAMILIES, build  # noqa: E402

# preset -> (tiny family, the pad token the project must end up with, whether the prompt is a chat turn)
PRESETS = {
    "mistral_7b": ("mistral-v01-tiny", "</s>", False),      # no pad token: EOS pads
    "mistral_7b_v03": ("mistral-v03-tiny", "</s>", True),
    "llama31_8b": ("llama3-tiny", "<|finetune_right_pad_id|>", True),  # the vocabulary's reserved pad token
    "qwen25_7b": ("qwen2-tiny", "<|endoftext|>", True),      # its own pad token, no BOS
    "gemma2_9b": ("gemma2-tiny", "<pad>", True),
    "absa_mams_llama31_8b": ("llama3-tiny", "<|finetune_right_pad_id|>", True),  # on MAMS-shaped aspect data
}
SWAPS = ["runtime.device=cpu", "runtime.torch_threads=1", "data=rotten_tomatoes", "data.max_train=32",
         "data.max_validation=8", "data.max_test=16"]


def test_every_gpu_preset_has_a_cpu_test():
    gpu = sorted(p.stem for p in (ROOT / "conf/experiment").glob("*.yaml") if "device: cuda" in p.read_text())
    assert gpu == sorted(PRESETS)
    for name in gpu:  # bf16 on Ampere and newer, float16 on a T4: the GPU decides, not the preset
        assert "compute_dtype: auto" in (ROOT / f"conf/experiment/{name}.yaml").read_text(), name


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_gpu_preset_pipeline_on_cpu(preset, tmp_path, python_bin_env):
    from qlora_sentiment.config import compose, to_yaml
    from qlora_sentiment.model.base import BaseRef
    from qlora_sentiment.model.loading import load_tokenizer
    from qlora_sentiment.model.prompts import PromptFormatter
    from qlora_sentiment.api.analyzer import SentimentAnalyzer

    family, pad, chat = PRESETS[preset]
    env, repo = python_bin_env, tmp_path / "project"
    for name in [*PROJECT_FILES, "conf"]:
        source, target = ROOT / name, repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    model = f"models/local/{family}"
    build(family, repo / model)
    aspects = preset.startswith("absa_")
    swaps = [s for s in SWAPS if not (aspects and s.startswith("data="))]
    if aspects:  # the preset's own data preset, on files of its shape where a user puts them
        for name, count, seed in (("train", 16, 0), ("val", 4, 1), ("test", 8, 2)):
            easy_aspects_xml(repo / "data/raw/mams-atsa" / f"{name}.xml", count, seed)
    (repo / "params.yaml").write_text(to_yaml(compose(repo / "conf")))
    run(["git", "init", "-q"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "project"], repo, env)

    out = run(["dvc", "exp", "run", "-S", f"experiment={preset}", "-S", "model.source=local", "-S",
               f"model.name={model}", *[a for s in swaps for a in ("-S", s)]], repo, env)
    for stage in ("base_model", "prepare", "train", "baseline", "evaluate", "export"):
        assert f"Running stage '{stage}'" in out.stdout, out.stdout[-3000:]
    # transformers 5 forces Qwen2Tokenizer on qwen2 folders (its own normalizer: other ids); the export's auto_map
    # makes plain AutoTokenizer read tokenizer.json whole (tests/test_export_tokenizers.py): only Qwen's has one
    config = json.loads((repo / "models/export/tokenizer_config.json").read_text())
    assert ("auto_map" in config) == (family == "qwen2-tiny"), config.get("auto_map")
    record = json.loads((repo / "models/adapter/qlora_sentiment.json").read_text())
    assert record["device"] == "cpu" and record["chat_template"] is chat
    # the presets' `auto`, resolved for this CPU (bf16 with avx512_bf16/AMX, else float32) and recorded as it ran
    from qlora_sentiment.core.device import resolve_compute_dtype

    assert record["quantization"]["compute_dtype"] == resolve_compute_dtype("auto", "cpu")
    assert record["optimizer"] == {"requested": "paged_adamw_8bit", "used": "adamw_8bit"}

    # Tokens as the family expects: one BOS where its tokenizer adds one (none for Qwen), the pad token, the
    # prompt inside the family's chat template, answer tokens that follow the prompt unmerged.
    spec = FAMILIES[family]
    tokenizer = load_tokenizer(BaseRef(str(repo / model), None, {}))
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
    exported_record = json.loads((repo / "models/export/qlora_sentiment.json").read_text())
    expected_class = "AutoModelForCausalLM" if preset == "gemma2_9b" else "AutoModelForSequenceClassification"
    assert exported_record["export"]["auto_class"] == expected_class
    predictions = [json.loads(line) for line in (repo / "metrics/predictions.jsonl").read_text().splitlines()]
    exported = SentimentAnalyzer.from_pretrained(repo / "models/export")
    again = [exported.predict(p["text"], aspects=[p["aspect"]])[0] for p in predictions[:8]] if aspects \
        else exported.predict([p["text"] for p in predictions[:8]])
    for p, e in zip(predictions, again):
        assert abs(p["probabilities"]["positive"] - e["probabilities"]["positive"]) < 0.05, (p, e)
    assert len(list((repo / "models/export").glob("*.safetensors"))) >= 1

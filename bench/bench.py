"""Speed and memory of the project's training and evaluation against the way the seed notebooks do it.

Same model (the base_model stage's output, quantized as params.yaml says), same examples, same batch size and
LoRA rank, same threads; each case runs in its own process so its peak memory is its own.

- train, project:   TRL SFTTrainer as the train stage builds it: dynamic padding, length-grouped batches,
                    completion-only loss, LoRA on params' lora.last_n_layers, tokenised once.
- train, reference: every example padded to --reference-max-length (512, seed 001's max_length), plain
                    causal-LM loss, LoRA on every block, random order (the notebook recipe).
- eval, project:    LabelScorer: one forward pass per batch, batches sorted by length, eval.batch_size.
- eval, reference:  model.generate() on prompts padded to --reference-max-length, the answer parsed from the
                    text (batched with eval.batch_size: kinder to the reference than one review at a time).

The project itself runs with params.yaml's train.max_length (128; no review of the default data is cut at that
length, so both sides see the same text). tokens/s counts real (non-padding) tokens on both sides.

    python bench/bench.py                      # prints a table, writes bench/results.json
    python bench/bench.py --train-examples 64 --eval-examples 128
    # recipes side by side (own process each, same batches), ratios to the first: bf16 vs fp32 here
    python bench/bench.py --speed fp32:quantization.compute_dtype=float32 bf16:quantization.compute_dtype=bfloat16
    # UPPER_CASE=value items are the variant's environment: here the code's previous NaN fill (model/loading.py)
    python bench/bench.py --speed before:QLORA_FILL_UNINITIALIZED=1 after:

    # GPU, no download: Mistral-7B's exact architecture with random weights, the GPU recipe's params, ~512 tokens
    python tools/random_model.py --arch mistral-7b --out /tmp/mistral-7b
    python tools/compose_params.py experiment=mistral_7b --out /tmp/mistral.yaml
    python bench/bench.py --model /tmp/mistral-7b --params /tmp/mistral.yaml --text-repeat 12 --reference-max-length 512

Needs `dvc repro train` first (models/base, models/adapter, data/prepared). Figures: BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ("train-project", "train-reference", "eval-project", "eval-reference")
REFERENCE_MAX_LENGTH = 512  # set from --reference-max-length


def _peak_memory_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _setup(params_path: str):
    from qlora_sentiment.config import load_params
    from qlora_sentiment.core.runtime import configure_environment, program_gc, setup_stage

    program_gc()  # a process of its own (core/runtime.py)
    configure_environment()
    params = load_params(params_path)
    _, params = setup_stage(params)
    return params


def _base_ref(args):
    """The base_model stage's model, or a model folder given with --model (e.g. tools/random_model.py's)."""
    from qlora_sentiment.model.base import BaseRef, load_ref

    if args.model:
        return BaseRef(str(Path(args.model).resolve()), None, {"source": "local", "path": args.model})
    return load_ref(ROOT / "models/base")


def _scorer(params, args, head: str):
    """The trained adapter on its base when it has this head; otherwise (--model, or the notebook's generative
    reference next to a classifier default) a fresh LoRA on the base: speed does not need training."""
    from qlora_sentiment.model.adapter import load_scorer
    from qlora_sentiment.model.loading import load_model, load_tokenizer
    from qlora_sentiment.model.scoring import LabelScorer
    from qlora_sentiment.training.trainer import add_lora

    if not args.model and head == params.model.head:
        return load_scorer(ROOT / "models/adapter", ROOT / "models/base")
    ref = _base_ref(args)
    tokenizer = load_tokenizer(ref)
    model = add_lora(load_model(ref, head, params.data.labels, params.quantization, tokenizer.pad_token_id),
                     params.model_copy(update={"model": params.model.model_copy(update={"head": head})}))
    scorer = LabelScorer(model, tokenizer, head, params.data.labels, params.prompt.template, params.train.max_length)
    scorer.untrained = True
    return scorer


def _rows(path: Path, n: int, repeat: int) -> list[dict]:
    """n examples; with repeat > 1 each joins that many reviews, for long sequences (the label is the first's)."""
    from qlora_sentiment.core.io import read_jsonl

    rows = read_jsonl(path)
    if repeat > 1:
        rows = [dict(rows[i], text=" ".join(r["text"] for r in rows[i:i + repeat]))
                for i in range(0, len(rows) - repeat + 1, repeat)]
    return rows[:n]


def _real_tokens(tokenizer, texts: list[str]) -> int:
    return sum(len(ids) for ids in tokenizer(texts)["input_ids"])


def train_project(params, rows, scratch: Path, ref) -> dict:
    from qlora_sentiment.model.loading import load_model, load_tokenizer
    from qlora_sentiment.model.prompts import PromptFormatter
    from qlora_sentiment.training.trainer import add_lora, build_trainer, keep_trainable_fp32, trainer_args

    tokenizer = load_tokenizer(ref)
    head = params.model.head  # the recipe the train stage runs: either head
    model = add_lora(load_model(ref, head, params.data.labels, params.quantization, tokenizer.pad_token_id), params)
    args = dict(trainer_args(params, scratch, params.train.optimizer), save_strategy="no", max_steps=-1,
                num_train_epochs=1, warmup_steps=0, logging_steps=10_000)
    trainer = build_trainer(model, tokenizer, params, rows, rows[:8], args)
    keep_trainable_fp32(trainer.model)
    texts = [r["text"] for r in rows]  # the classifier reads the raw review
    if head == "generative":
        formatter = PromptFormatter(tokenizer, params.prompt.template, params.data.labels, params.train.max_length)
        tokens = sum(len(e["input_ids"]) for e in formatter.training_examples(texts, [r["label"] for r in rows]))
    else:
        tokens = _real_tokens(tokenizer, texts)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "examples": len(rows), "tokens": tokens}


def train_reference(params, rows, scratch: Path, ref) -> dict:
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from qlora_sentiment.model.loading import load_model, load_tokenizer
    from qlora_sentiment.model.prompts import label_phrase
    from qlora_sentiment.training.trainer import add_lora, trainer_args

    tokenizer = load_tokenizer(ref)
    # the notebook recipe: the generative head, LoRA on every block (whatever the project's default head)
    every_block = params.model_copy(update={"lora": params.lora.model_copy(update={"last_n_layers": None}),
                                            "model": params.model.model_copy(update={"head": "generative"})})
    model = add_lora(load_model(ref, "generative", params.data.labels, params.quantization, tokenizer.pad_token_id),
                     every_block)
    texts = [params.prompt.template.format(text=r["text"], labels=label_phrase(params.data.labels)) + " " + r["label"]
             for r in rows]
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=REFERENCE_MAX_LENGTH)
    args = dict(trainer_args(params, scratch, params.train.optimizer), save_strategy="no", max_steps=-1,
                num_train_epochs=1, warmup_steps=0, logging_steps=10_000, train_sampling_strategy="random")
    trainer = Trainer(model=model, args=TrainingArguments(**args), train_dataset=Dataset.from_dict(dict(enc)),
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "examples": len(rows), "tokens": _real_tokens(tokenizer, texts)}


def eval_project(params, rows, scorer) -> dict:
    texts = [r["text"] for r in rows]
    start = time.perf_counter()
    proba = scorer.predict_proba(texts, batch_size=params.eval.batch_size)
    seconds = time.perf_counter() - start
    predicted = [scorer.labels[i] for i in proba.argmax(axis=1)]
    tokens = (sum(map(len, scorer.formatter.encode(texts))) if scorer.head == "generative"
              else _real_tokens(scorer.tokenizer, texts))
    return {"seconds": seconds, "examples": len(rows), "tokens": tokens,
            "accuracy": sum(p == r["label"] for p, r in zip(predicted, rows)) / len(rows)}


def eval_reference(params, rows, scorer) -> dict:
    import torch

    model, tokenizer = scorer.model, scorer.tokenizer
    tokenizer.padding_side = "left"
    prompts = [scorer.formatter.render_raw(r["text"]) for r in rows]  # the notebook's string prompts
    answers = []
    model.eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(prompts), params.eval.batch_size):
            batch = tokenizer(prompts[i:i + params.eval.batch_size], padding="max_length", truncation=True,
                              max_length=REFERENCE_MAX_LENGTH, return_tensors="pt")
            out = model.generate(**batch, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
            answers += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    seconds = time.perf_counter() - start
    parsed = [next((lab for lab in scorer.labels if lab in a.lower()), None) for a in answers]
    result = {"seconds": seconds, "examples": len(rows), "tokens": _real_tokens(tokenizer, prompts),
              "unparsed": sum(p is None for p in parsed)}
    if not getattr(scorer, "untrained", False):  # an untrained LoRA's answers say nothing about accuracy
        result["accuracy"] = sum(p == r["label"] for p, r in zip(parsed, rows)) / len(rows)
    return result


def train_variant(overrides: list[str], args) -> dict:
    """--speed: a recipe of conf/ (params.yaml's plus overrides) trained on the first --train-examples reviews of
    data/prepared, then scored on its validation split: training speed and the accuracy it bought."""
    from qlora_sentiment.config import compose, params_from_dict
    from qlora_sentiment.core.io import read_jsonl
    from qlora_sentiment.core.runtime import configure_environment, program_gc, setup_stage

    program_gc()  # a process of its own (core/runtime.py)
    configure_environment()
    _, params = setup_stage(params_from_dict(compose(ROOT / "conf", overrides)))
    import tempfile

    import torch

    from qlora_sentiment.core.device import cpu_bf16_flags
    from qlora_sentiment.training.run import train
    from recipes import base  # the base model of the variant, converted once into bench/.cache

    rows = read_jsonl(Path(args.data) / "train.jsonl")[:args.train_examples]
    validation = read_jsonl(Path(args.data) / "validation.jsonl")
    with tempfile.TemporaryDirectory() as scratch:
        result = train(params, base(params), rows, validation, Path(scratch))
    runtime = next(e["train_runtime"] for e in result.log_history if "train_runtime" in e)
    return {"seconds": runtime, "examples": len(rows), "examples_per_s": len(rows) / runtime,
            "validation_accuracy": result.record.validation["accuracy"], "validation_reviews": len(validation),
            "compute_dtype": params.quantization.compute_dtype, "head": params.model.head, "model": params.model.name,
            "peak_memory_mb": round(_peak_memory_mb(), 1), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_bf16_flags": cpu_bf16_flags()}


def variant_env(overrides: str) -> tuple[dict, str]:
    """A --speed variant's items in UPPER_CASE=value form are environment variables of its process (e.g.
    QLORA_FILL_UNINITIALIZED=1, the code's previous behaviour: model/loading.py); the rest are Hydra overrides."""
    items = [o for o in overrides.split(",") if o]
    env = dict(o.split("=", 1) for o in items if re.match(r"[A-Z][A-Z0-9_]*=", o))
    return env, ",".join(o for o in items if not re.match(r"[A-Z][A-Z0-9_]*=", o))


def speed(args) -> int:
    """Variants side by side in one run, each in its own process, on the same batches; ratios to the first."""
    results = {}
    for spec in args.speed:
        name, _, overrides = spec.partition(":")
        env, overrides = variant_env(overrides)
        cmd = [sys.executable, __file__, "--variant", overrides, "--train-examples", str(args.train_examples),
               "--data", args.data]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env})
        line = next((out for out in done.stdout.splitlines() if out.startswith("RESULT ")), None)
        if done.returncode != 0 or line is None:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        results[name] = {"overrides": overrides, "env": env, **json.loads(line[len("RESULT "):])}
    first = next(iter(results.values()))
    print(f"{'variant':12} {'dtype':9} {'examples/s':>10} {'ratio':>6} {'val acc':>8} {'peak MB':>8}  overrides")
    for name, r in results.items():
        r["ratio"] = r["examples_per_s"] / first["examples_per_s"]
        print(f"{name:12} {r['compute_dtype']:9} {r['examples_per_s']:10.2f} {r['ratio']:5.2f}x "
              f"{r['validation_accuracy']:8.3f} {r['peak_memory_mb']:8.0f}  "
              f"{' '.join([*(f'{k}={v}' for k, v in r['env'].items()), r['overrides']]).strip() or '(params.yaml)'}")
    print(f"cpu: {first['cpu_capability']}, bf16 flags: {first['cpu_bf16_flags'] or 'none'}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"settings": vars(args), "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def run_case(case: str, args) -> dict:
    import tempfile

    global REFERENCE_MAX_LENGTH
    REFERENCE_MAX_LENGTH = args.reference_max_length
    params = _setup(args.params)
    if case.startswith("train"):
        rows = _rows(Path(args.data) / "train.jsonl", args.train_examples, args.text_repeat)
        with tempfile.TemporaryDirectory() as scratch:
            fn = train_project if case == "train-project" else train_reference
            result = fn(params, rows, Path(scratch), _base_ref(args))
    else:
        rows = _rows(Path(args.data) / "test.jsonl", args.eval_examples, args.text_repeat)
        if case == "eval-project":
            result = eval_project(params, rows, _scorer(params, args, params.model.head))
        else:  # the notebooks generate an answer: the generative head, whatever the project's default head
            result = eval_reference(params, rows, _scorer(params, args, "generative"))
    return {**result, "peak_memory_mb": round(_peak_memory_mb(), 1),
            "examples_per_s": result["examples"] / result["seconds"],
            "tokens_per_s": result["tokens"] / result["seconds"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--train-examples", type=int, default=48, help="examples trained on (one epoch)")
    parser.add_argument("--eval-examples", type=int, default=96, help="test examples scored")
    parser.add_argument("--reference-max-length", type=int, default=512,
                        help="the notebook's padded length (seed 001: 512)")
    parser.add_argument("--model", default=None, help="a model folder instead of models/base (random weights are "
                        "fine: see tools/random_model.py); evaluation then uses a fresh LoRA")
    parser.add_argument("--data", default=str(ROOT / "data/prepared"), help="folder with train.jsonl and test.jsonl")
    parser.add_argument("--text-repeat", type=int, default=1,
                        help="join this many reviews per example (long sequences)")
    parser.add_argument("--out", default=str(ROOT / "bench/results.json"))
    parser.add_argument("--speed", nargs="+", metavar="NAME:OVERRIDES",
                        help="instead of project vs reference: train variants of conf/ side by side, e.g. "
                        "fp32:quantization.compute_dtype=float32 bf16:quantization.compute_dtype=bfloat16 "
                        "(comma-separated Hydra overrides; empty = params.yaml's recipe); ratios to the first")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # internal: one case, JSON on stdout
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: one --speed variant, JSON on stdout
    args = parser.parse_args()
    if args.case:
        print("RESULT " + json.dumps(run_case(args.case, args)))
        return 0
    if args.variant is not None:
        sys.path.insert(0, str(ROOT / "bench"))
        print("RESULT " + json.dumps(train_variant([o for o in args.variant.split(",") if o], args)))
        return 0
    if args.speed:
        if args.out == str(ROOT / "bench/results.json"):
            args.out = str(ROOT / "bench/speed.json")
        return speed(args)
    results = {}
    for case in CASES:  # one process per case: peak memory is the case's own, nothing is warm from another
        cmd = [sys.executable, __file__, "--case", case, "--params", args.params,
               "--train-examples", str(args.train_examples), "--eval-examples", str(args.eval_examples),
               "--reference-max-length", str(args.reference_max_length), "--text-repeat", str(args.text_repeat),
               "--data", args.data, *(["--model", args.model] if args.model else [])]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        line = next((out for out in done.stdout.splitlines() if out.startswith("RESULT ")), None)
        if done.returncode != 0 or line is None:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        results[case] = json.loads(line[len("RESULT "):])
    ratios = {
        "train_examples_per_s": (results["train-project"]["examples_per_s"]
                                 / results["train-reference"]["examples_per_s"]),
        "eval_examples_per_s": results["eval-project"]["examples_per_s"] / results["eval-reference"]["examples_per_s"],
        "train_peak_memory": results["train-project"]["peak_memory_mb"] / results["train-reference"]["peak_memory_mb"],
        "eval_peak_memory": results["eval-project"]["peak_memory_mb"] / results["eval-reference"]["peak_memory_mb"],
    }
    import torch

    report = {"device": "cuda: " + torch.cuda.get_device_name() if torch.cuda.is_available() else
              f"cpu: {os.cpu_count()} cores, {platform.processor() or platform.machine()}",
              "torch": torch.__version__, "settings": vars(args) | {"case": None}, "results": results, "ratios": ratios}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'case':17} {'examples/s':>10} {'tokens/s':>9} {'peak MB':>8} {'seconds':>8} {'accuracy':>8}")
    for case, r in results.items():
        acc = f"{r['accuracy']:.3f}" if "accuracy" in r else ""
        print(f"{case:17} {r['examples_per_s']:10.2f} {r['tokens_per_s']:9.0f} {r['peak_memory_mb']:8.0f} "
              f"{r['seconds']:8.1f} {acc:>8}")
    print(f"project / reference: training {ratios['train_examples_per_s']:.2f}x examples/s, "
          f"evaluation {ratios['eval_examples_per_s']:.2f}x examples/s; peak memory train "
          f"{ratios['train_peak_memory']:.2f}x, eval {ratios['eval_peak_memory']:.2f}x")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

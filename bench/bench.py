"""Speed and memory of the project's training and evaluation against the way the seed notebooks do it.

Same model (the base_model stage's output, quantized as params.yaml says), same examples, same batch size and
LoRA rank, same threads; each case runs in its own process so its peak memory is its own.

- train, project:   TRL SFTTrainer as the train stage builds it: dynamic padding, length-grouped batches,
                    completion-only loss, LoRA on params' lora.last_n_layers, tokenised once.
- train, reference: every example padded to train.max_length, plain causal-LM loss, LoRA on every block,
                    random order (the notebook recipe).
- eval, project:    LabelScorer: one forward pass per batch, batches sorted by length, eval.batch_size.
- eval, reference:  model.generate() on prompts padded to train.max_length, the answer parsed from the text.

    python bench/bench.py                      # prints a table, writes bench/results.json
    python bench/bench.py --train-examples 64 --eval-examples 128

Needs `dvc repro train` first (models/base, models/adapter, data/prepared). Figures: BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ("train-project", "train-reference", "eval-project", "eval-reference")


def _peak_memory_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _setup(params_path: str):
    from qlora_sentiment.config import load_params
    from qlora_sentiment.runtime import configure_environment, setup_torch

    configure_environment()
    params = load_params(params_path)
    setup_torch(params.runtime.torch_threads, params.seed)
    return params


def _real_tokens(tokenizer, texts: list[str]) -> int:
    return sum(len(ids) for ids in tokenizer(texts)["input_ids"])


def train_project(params, rows, scratch: Path) -> dict:
    from qlora_sentiment.base_model import load_ref
    from qlora_sentiment.modeling import load_model, load_tokenizer
    from qlora_sentiment.prompts import PromptFormatter, completion
    from qlora_sentiment.training import _generative_trainer, add_lora, set_adapter_dtype, trainer_args

    ref = load_ref(ROOT / "models/base")
    tokenizer = load_tokenizer(ref)
    model = add_lora(load_model(ref, "generative", params.data.labels, params.quantization, tokenizer.pad_token_id), params)
    args = dict(trainer_args(params, scratch, params.train.optimizer), save_strategy="no", max_steps=-1,
                num_train_epochs=1, warmup_steps=0, logging_steps=10_000)
    trainer = _generative_trainer(model, tokenizer, params, rows, rows[:8], args, [])
    set_adapter_dtype(trainer.model, params.quantization.compute_dtype)
    formatter = PromptFormatter(tokenizer, params.prompt.template, params.data.labels, params.train.max_length)
    texts = [p + completion(r["label"]) for p, r in zip(formatter.prompts([r["text"] for r in rows]), rows)]
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "examples": len(rows), "tokens": _real_tokens(tokenizer, texts)}


def train_reference(params, rows, scratch: Path) -> dict:
    import dataclasses

    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from qlora_sentiment.base_model import load_ref
    from qlora_sentiment.modeling import load_model, load_tokenizer
    from qlora_sentiment.prompts import label_phrase
    from qlora_sentiment.training import add_lora, trainer_args

    ref = load_ref(ROOT / "models/base")
    tokenizer = load_tokenizer(ref)
    every_block = dataclasses.replace(params, lora=dataclasses.replace(params.lora, last_n_layers=None))
    model = add_lora(load_model(ref, "generative", params.data.labels, params.quantization, tokenizer.pad_token_id),
                     every_block)
    texts = [params.prompt.template.format(text=r["text"], labels=label_phrase(params.data.labels)) + " " + r["label"]
             for r in rows]
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=params.train.max_length)
    args = dict(trainer_args(params, scratch, params.train.optimizer), save_strategy="no", max_steps=-1,
                num_train_epochs=1, warmup_steps=0, logging_steps=10_000, train_sampling_strategy="random")
    trainer = Trainer(model=model, args=TrainingArguments(**args), train_dataset=Dataset.from_dict(dict(enc)),
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "examples": len(rows), "tokens": _real_tokens(tokenizer, texts)}


def eval_project(params, rows) -> dict:
    from qlora_sentiment.evaluation import load_scorer

    scorer = load_scorer(ROOT / "models/adapter", ROOT / "models/base")
    texts = [r["text"] for r in rows]
    start = time.perf_counter()
    proba = scorer.predict_proba(texts, batch_size=params.eval.batch_size)
    seconds = time.perf_counter() - start
    predicted = [scorer.labels[i] for i in proba.argmax(axis=1)]
    prompts = scorer.formatter.prompts(texts)
    return {"seconds": seconds, "examples": len(rows), "tokens": _real_tokens(scorer.tokenizer, prompts),
            "accuracy": sum(p == r["label"] for p, r in zip(predicted, rows)) / len(rows)}


def eval_reference(params, rows) -> dict:
    import torch

    from qlora_sentiment.evaluation import load_scorer

    scorer = load_scorer(ROOT / "models/adapter", ROOT / "models/base")
    model, tokenizer = scorer.model, scorer.tokenizer
    tokenizer.padding_side = "left"
    prompts = scorer.formatter.prompts([r["text"] for r in rows])
    answers = []
    model.eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(prompts), params.eval.batch_size):
            batch = tokenizer(prompts[i:i + params.eval.batch_size], padding="max_length", truncation=True,
                              max_length=params.train.max_length, return_tensors="pt")
            out = model.generate(**batch, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
            answers += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    seconds = time.perf_counter() - start
    parsed = [next((lab for lab in scorer.labels if lab in a.lower()), None) for a in answers]
    return {"seconds": seconds, "examples": len(rows), "tokens": _real_tokens(tokenizer, prompts),
            "accuracy": sum(p == r["label"] for p, r in zip(parsed, rows)) / len(rows),
            "unparsed": sum(p is None for p in parsed)}


def run_case(case: str, args) -> dict:
    import tempfile

    from qlora_sentiment.io import read_jsonl

    params = _setup(args.params)
    if case.startswith("train"):
        rows = read_jsonl(ROOT / "data/prepared/train.jsonl")[: args.train_examples]
        with tempfile.TemporaryDirectory() as scratch:
            fn = train_project if case == "train-project" else train_reference
            result = fn(params, rows, Path(scratch))
    else:
        rows = read_jsonl(ROOT / "data/prepared/test.jsonl")[: args.eval_examples]
        result = (eval_project if case == "eval-project" else eval_reference)(params, rows)
    return {**result, "peak_memory_mb": round(_peak_memory_mb(), 1),
            "examples_per_s": result["examples"] / result["seconds"], "tokens_per_s": result["tokens"] / result["seconds"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--train-examples", type=int, default=48, help="examples trained on (one epoch)")
    parser.add_argument("--eval-examples", type=int, default=96, help="test examples scored")
    parser.add_argument("--out", default=str(ROOT / "bench/results.json"))
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # internal: one case, JSON on stdout
    args = parser.parse_args()
    if args.case:
        print("RESULT " + json.dumps(run_case(args.case, args)))
        return 0
    results = {}
    for case in CASES:  # one process per case: peak memory is the case's own, nothing is warm from another
        cmd = [sys.executable, __file__, "--case", case, "--params", args.params,
               "--train-examples", str(args.train_examples), "--eval-examples", str(args.eval_examples)]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
        if done.returncode != 0 or line is None:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        results[case] = json.loads(line[len("RESULT "):])
    ratios = {
        "train_examples_per_s": results["train-project"]["examples_per_s"] / results["train-reference"]["examples_per_s"],
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

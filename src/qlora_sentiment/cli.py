"""`qlora-sentiment`: check params, show the environment, label texts (predict), serve a web API, pick the best
experiment (compare) and write a pull-request report (pr-report)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from qlora_sentiment.core.runtime import configure_environment, stage_entry


def _check(args) -> None:
    from qlora_sentiment.config import load_params, to_dict

    params = load_params(args.params)
    if not args.quiet:
        print(json.dumps(to_dict(params), indent=2))


def _env(args) -> None:
    from qlora_sentiment.core.environment import describe_environment

    print(json.dumps(describe_environment(), indent=2))


def _load(args):
    from qlora_sentiment.serving.analyzer import SentimentAnalyzer
    from qlora_sentiment.model.base import REFERENCE_FILE
    from qlora_sentiment.core.runtime import setup_torch

    setup_torch(args.threads, seed=0)
    base = args.base
    if base is None and Path("models/base", REFERENCE_FILE).is_file() and (Path(args.model) / "adapter_config.json").is_file():
        from qlora_sentiment.core.io import read_json
        from qlora_sentiment.model.record import read_record

        # Inside the project: reuse the base_model stage's folder when it is the adapter's base.
        if read_json(Path("models/base", REFERENCE_FILE)) == read_record(args.model).base_model:
            base = "models/base"
    return SentimentAnalyzer.from_pretrained(args.model, base=base)


def _format(rows: list[dict], labels: list[str], fmt: str) -> str:
    if fmt == "json":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["text", "label", *[f"p_{lab}" for lab in labels]])
        for r in rows:
            writer.writerow([r["text"], r["label"], *[f"{r['probabilities'][lab]:.6f}" for lab in labels]])
        return out.getvalue()
    width = max(len("label"), *(len(lab) for lab in labels))
    lines = [f"{'label':<{width}}  " + "  ".join(f"{lab[:8]:>8}" for lab in labels) + "  text"]
    for r in rows:
        text = r["text"] if len(r["text"]) <= 70 else r["text"][:69] + "…"
        lines.append(f"{r['label']:<{width}}  " + "  ".join(f"{r['probabilities'][lab]:>8.3f}" for lab in labels)
                     + f"  {text}")
    return "\n".join(lines) + "\n"


def _predict(args) -> None:
    from qlora_sentiment.serving.analyzer import check_texts
    from qlora_sentiment.core.errors import DataError
    from qlora_sentiment.serving.textfiles import read_texts

    if args.file and args.texts:
        raise DataError("give texts as arguments or --file, not both")
    if args.file:
        texts = read_texts(args.file, args.text_column)
    elif args.texts:
        texts = check_texts(args.texts)
    else:
        texts = [line.strip() for line in sys.stdin if line.strip()]
        if not texts:
            raise DataError("no texts: give them as arguments, with --file, or one per line on stdin")
    analyzer = _load(args)
    rows = []
    chunk = args.batch_size * 8
    from tqdm import tqdm

    with tqdm(total=len(texts), unit="text", disable=not args.file, file=sys.stderr) as bar:
        for start in range(0, len(texts), chunk):
            part = texts[start:start + chunk]
            rows += [{"text": t, **p} for t, p in zip(part, analyzer.predict(part, batch_size=args.batch_size))]
            bar.update(len(part))
    sys.stdout.write(_format(rows, analyzer.labels, args.format))


def _serve(args) -> None:
    from qlora_sentiment.core.io import read_json
    from qlora_sentiment.serving.web import Limits, serve

    analyzer = _load(args)
    metrics = None
    metrics_file = Path(args.metrics) if args.metrics else Path(args.model) / "metrics.json"
    if metrics_file.is_file():
        metrics = read_json(metrics_file)
    limits = Limits(max_items=args.max_items, max_chars=args.max_chars, max_batch=args.max_batch,
                    max_wait_ms=args.max_wait_ms)
    print(f"serving {args.model} on http://{args.host}:{args.port} (docs at /docs)", file=sys.stderr, flush=True)
    serve(analyzer, args.host, args.port, limits, metrics)


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="models/adapter",
                        help="adapter folder (train stage) or merged export (export stage); default models/adapter")
    parser.add_argument("--base", default=None,
                        help="base_model stage folder; default: models/base when it matches, else the adapter's record")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--batch-size", type=int, default=16)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qlora-sentiment", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate params.yaml and print it resolved")
    check.add_argument("--params", default="params.yaml")
    check.add_argument("--quiet", action="store_true", help="print nothing but errors (make run's first step)")
    check.set_defaults(func=_check)
    env = sub.add_parser("env", help="package versions and device")
    env.set_defaults(func=_env)

    predict = sub.add_parser("predict", help="label texts: arguments, --file, or stdin")
    predict.add_argument("texts", nargs="*", help="texts to label (default: one per line on stdin)")
    predict.add_argument("--file", help=".txt (one per line), .csv/.tsv or .jsonl with a text column")
    predict.add_argument("--text-column", default="text")
    predict.add_argument("--format", choices=["json", "csv", "table"], default="json")
    _model_args(predict)
    predict.set_defaults(func=_predict)

    serve = sub.add_parser("serve", help="web API: POST /predict, GET /health, GET /info, OpenAPI at /docs")
    _model_args(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--metrics", default=None, help="metrics JSON reported by /info (default: the model's own)")
    serve.add_argument("--max-items", type=int, default=64, help="texts per request")
    serve.add_argument("--max-chars", type=int, default=5000, help="characters per text")
    serve.add_argument("--max-batch", type=int, default=32, help="texts per forward pass")
    serve.add_argument("--max-wait-ms", type=float, default=10.0, help="wait for a batch to fill")
    serve.set_defaults(func=_serve)

    compare = sub.add_parser("compare", help="pick the best DVC experiment by a validation metric; table + plot")
    compare.add_argument("--metric", default=None, help="file:dotted.key (default: validation macro F1 from train)")
    compare.add_argument("--out", default="reports/compare", help="folder for compare.md, compare.png, best.json")
    compare.add_argument("--input", default=None, help="saved `dvc exp show --json` output (default: run it)")
    compare.set_defaults(func=_compare)

    report = sub.add_parser("pr-report", help="report.md of two git revisions: metrics/params diff, confusion matrices")
    report.add_argument("base", help="git revision (branch, tag, commit, experiment) or 'workspace'")
    report.add_argument("head", help="git revision or 'workspace'")
    report.add_argument("--out", default="reports/pr", help="folder for report.md and its images")
    report.set_defaults(func=_pr_report)
    return parser


def _pr_report(args):
    from qlora_sentiment.experiments.pr_report import write_report

    print(f"wrote {write_report(args.base, args.head, Path(args.out))}")


def _compare(args):
    from qlora_sentiment.experiments.compare import DEFAULT_METRIC, compare, exp_show

    show = json.loads(Path(args.input).read_text()) if args.input else exp_show()
    chosen = compare(show, args.metric or DEFAULT_METRIC, Path(args.out))
    print(f"best: {chosen.name} ({chosen.rev[:7]}); wrote {args.out}/compare.md, compare.png, best.json")


@stage_entry
def _run(argv):
    args = build_parser().parse_args(argv)
    args.func(args)


def main(argv=None):
    configure_environment()
    _run(argv)

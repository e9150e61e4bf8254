"""`qlora-sentiment`: check params, show the environment, label texts (predict), serve a web API, summarise the
last run (summary), pick the best experiment (compare), write a pull-request report (pr-report) and upload a model
to the Hub (push)."""

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
        text = " ".join(r["text"].splitlines())  # one table row per text, whatever line breaks it holds
        text = text if len(text) <= 70 else text[:69] + "…"
        lines.append(f"{r['label']:<{width}}  " + "  ".join(f"{r['probabilities'][lab]:>8.3f}" for lab in labels)
                     + f"  {text}")
    return "\n".join(lines) + "\n"


def _predict(args) -> None:
    from qlora_sentiment.serving.inputs import check_model_folder, predict_texts, warn_about_threads

    texts = predict_texts(args.texts, args.file, args.text_column)  # every input error before the model loads
    warn_about_threads(args.threads)
    check_model_folder(args.model)
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
    from qlora_sentiment.serving.inputs import check_model_folder, warn_about_threads
    from qlora_sentiment.serving.server import EXIT_ADDRESS_IN_USE, AddressInUse, bind, serve
    from qlora_sentiment.serving.web import Limits

    try:
        sock = bind(args.host, args.port)  # first: a port in use fails at once, not after loading the model
    except AddressInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_ADDRESS_IN_USE)
    warn_about_threads(args.threads)
    check_model_folder(args.model)
    metrics = None
    metrics_file = Path(args.metrics) if args.metrics else Path(args.model) / "metrics.json"
    if metrics_file.is_file():
        metrics = read_json(metrics_file)
    limits = Limits(max_items=args.max_items, max_chars=args.max_chars, max_batch=args.max_batch,
                    max_wait_ms=args.max_wait_ms, max_queue=args.max_queue, request_timeout=args.request_timeout,
                    body_timeout=args.body_timeout)
    # the model loads on the server's model thread: GET /health answers at once, GET /ready once it is loaded
    serve(sock, lambda: _load(args), f"serving {args.model}", limits, metrics)


def _model_args(parser: argparse.ArgumentParser) -> None:
    from qlora_sentiment.serving.inputs import positive_int

    parser.add_argument("--model", default="models/adapter",
                        help="adapter folder (train stage) or merged export (export stage); default models/adapter")
    parser.add_argument("--base", default=None,
                        help="base_model stage folder; default: models/base when it matches, else the adapter's record")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch CPU threads, >= 1 (default: torch's choice)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="texts per forward pass, >= 1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qlora-sentiment", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    from qlora_sentiment.serving.inputs import OneLineParser, at_least, max_chars, port_number, positive_int, \
        positive_seconds

    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
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

    serve = sub.add_parser("serve", help="web API: POST /predict, GET /health, /ready, /info; OpenAPI at /docs")
    _model_args(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=port_number, default=8000, help="1..65535; in use: exit code 4")
    serve.add_argument("--metrics", default=None, help="metrics JSON reported by /info (default: the model's own)")
    serve.add_argument("--max-items", type=positive_int, default=64, help="texts per request")
    serve.add_argument("--max-chars", type=max_chars, default=5000, help="characters per text (at most 20,000)")
    serve.add_argument("--max-batch", type=positive_int, default=32, help="texts per forward pass")
    serve.add_argument("--max-wait-ms", type=at_least(0.0, float), default=10.0, help="wait for a batch to fill")
    serve.add_argument("--max-queue", type=positive_int, default=256,
                       help="requests waiting for the model; beyond it: 503 with Retry-After")
    serve.add_argument("--request-timeout", type=positive_seconds, default=30.0,
                       help="seconds a request may take in all; then 503 with Retry-After")
    serve.add_argument("--body-timeout", type=positive_seconds, default=10.0,
                       help="seconds to receive a request's body; then 408")
    serve.set_defaults(func=_serve)

    summary = sub.add_parser("summary", help="what the last dvc repro produced, in a dozen lines (make run's end)")
    summary.set_defaults(func=_summary)

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

    push = sub.add_parser("push", help="upload the export (or the adapter) with its model card to the Hugging Face Hub")
    push.add_argument("--repo", required=True, help="Hub repository id, e.g. your-name/smollm2-sentiment")
    push.add_argument("--model", default="models/export", help="folder to upload: models/export (default) or "
                                                              "models/adapter")
    push.add_argument("--public", action="store_true", help="create the repository public (default: private)")
    push.add_argument("--revision", default=None, help="branch to commit to (default: main)")
    push.set_defaults(func=_push)
    return parser


def _push(args):
    from qlora_sentiment.model.push import push

    print(f"uploaded {args.model}: {push(args.model, args.repo, private=not args.public, revision=args.revision)}")


def _pr_report(args):
    from qlora_sentiment.experiments.pr_report import write_report

    print(f"wrote {write_report(args.base, args.head, Path(args.out))}")


def _summary(args):
    from qlora_sentiment.experiments.summary import summary_lines

    print("\n".join(summary_lines()))


def _compare(args):
    from qlora_sentiment.experiments.compare import DEFAULT_METRIC, compare, exp_show, read_exp_show

    show = read_exp_show(Path(args.input)) if args.input else exp_show()
    chosen = compare(show, args.metric or DEFAULT_METRIC, Path(args.out))
    print(f"best: {chosen.name} ({chosen.rev[:7]}); wrote {args.out}/compare.md, compare.png, best.json")


@stage_entry
def _run(argv):
    args = build_parser().parse_args(argv)
    args.func(args)


def main(argv=None):
    configure_environment()
    _run(argv)

"""`qlora-sentiment`: check params, show the environment, label texts (predict), serve a web API, summarise the
last run (summary), pick the best experiment (compare), write a pull-request report (pr-report) and upload a model
to the Hub (push)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qlora_sentiment.core.runtime import stage_entry


def _check(args) -> None:
    from qlora_sentiment.config import load_params, to_dict

    params = load_params(args.params)
    if not args.quiet:
        print(json.dumps(to_dict(params), indent=2))


def _env(args) -> None:
    from qlora_sentiment.core.environment import describe_environment

    print(json.dumps(describe_environment(), indent=2))


def _predict(args) -> None:
    from qlora_sentiment.labelling.predict_command import predict

    predict(args)


def _serve(args) -> None:
    from qlora_sentiment.server.run import stop_on_signals

    with stop_on_signals():  # Ctrl-C / SIGTERM at any point: one line, exit code 130 / 143
        _serve_until_stopped(args)


def _serve_until_stopped(args) -> None:
    from qlora_sentiment.core.io import read_json
    from qlora_sentiment.cli_inputs import check_model_folder, warn_about_threads
    from qlora_sentiment.server.run import EXIT_ADDRESS_IN_USE, AddressInUse, bind, check_timing, serve
    from qlora_sentiment.labelling.predict_command import load_analyzer
    from qlora_sentiment.server.app import Limits

    check_timing(args)
    try:
        sock = bind(args.host, args.port)  # first: a port in use fails at once, not after loading the model
    except AddressInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_ADDRESS_IN_USE)
    warn_about_threads(args.threads)
    check_model_folder(args.model)  # aspect models too: the web API takes a text's aspects
    metrics = None
    metrics_file = Path(args.metrics) if args.metrics else Path(args.model) / "metrics.json"
    if metrics_file.is_file():
        metrics = read_json(metrics_file)
    from qlora_sentiment.model.record import read_record

    record = read_record(args.model)
    limits = Limits(max_items=args.max_items, max_chars=args.max_chars, max_batch=args.max_batch,
                    max_batch_tokens=args.max_batch_tokens, text_tokens=record.max_length, task=record.task,
                    max_wait_ms=args.max_wait_ms, max_queue=args.max_queue, request_timeout=args.request_timeout,
                    body_timeout=args.body_timeout, max_connections=args.max_connections,
                    max_connections_per_client=args.max_connections_per_client, idle_timeout=args.idle_timeout)
    # the model loads on the server's model thread: GET /health answers at once, GET /ready once it is loaded
    serve(sock, lambda: load_analyzer(args), f"serving {args.model}", limits, metrics, args.allowed_hosts)


def _model_args(parser: argparse.ArgumentParser) -> None:
    from qlora_sentiment.model.onnx import BACKENDS
    from qlora_sentiment.cli_inputs import at_least

    parser.add_argument("--model", default="models/export",
                        help="merged export (export stage; default models/export) or adapter folder (train stage, "
                             "e.g. models/adapter: the 4-bit model as evaluated)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="an export's runtime: onnx (ONNX Runtime, the fastest on a CPU), torch, or auto "
                             "(default: onnx when the export has onnx/model.onnx and no GPU is visible)")
    parser.add_argument("--base", default=None,
                        help="base_model stage folder; default: models/base when it matches, else the adapter's record")
    parser.add_argument("--threads", type=at_least(1, int, 1024), default=None,
                        help="torch CPU threads, 1..1024 (default: torch's choice)")
    parser.add_argument("--batch-size", type=at_least(1, int, 4096), default=16, help="texts per forward pass, 1..4096")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qlora-sentiment", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    from qlora_sentiment.cli_inputs import OneLineParser, at_least, max_chars, port_number

    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    check = sub.add_parser("check", help="validate params.yaml and print it resolved")
    check.add_argument("--params", default="params.yaml")
    check.add_argument("--quiet", action="store_true", help="print nothing but errors (make run's first step)")
    check.set_defaults(func=_check)
    env = sub.add_parser("env", help="package versions and device")
    env.set_defaults(func=_env)

    predict = sub.add_parser("predict", help="label texts: arguments, --file, or stdin")
    predict.add_argument("texts", nargs="*", help="texts to label (default: one per line on stdin)")
    predict.add_argument("--file", help=".txt (one per line), .csv/.tsv, .jsonl or .parquet with a text column")
    predict.add_argument("--aspect", action="append", default=None, metavar="ASPECT",
                         help="an aspect of the one text to label (repeat for several; aspect-task models): one "
                              "row per aspect, in order")
    predict.add_argument("--text-column", default="text")
    listed = predict.add_mutually_exclusive_group()
    listed.add_argument("--aspect-column", default=None, metavar="COLUMN",
                        help="--file's column holding each row's aspect (aspect-task models; not .txt): "
                             "one output row per (text, aspect), with the input row")
    listed.add_argument("--aspect-list-column", default=None, metavar="COLUMN",
                        help="as --aspect-column, each cell a list of aspects (JSON Lines: an array; Parquet: a list; "
                             "CSV/TSV: a JSON array in the cell, [\"food\", \"service\"])")
    predict.add_argument("--format", choices=["json", "csv", "table", "parquet"], default=None,
                         help="json (JSON Lines, the default), csv or table; rows are written as they are labelled. "
                              "With --ray: parquet (the default) or csv shards")
    predict.add_argument("--output", metavar="FILE", default=None,
                         help="write to FILE (replaced once the model has loaded) and record progress beside it, "
                              "FILE.progress.json (default: stdout)")
    predict.add_argument("--resume", action="store_true",
                         help="continue FILE after its last complete row (same model, input and format)")
    predict.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                         help="label --file (a file or a folder of files) with Ray Data workers into --output-dir "
                              "shards: columns file, row, text, label, p_<label>. No ADDRESS: a local Ray cluster; "
                              "'auto', host:6379 or ray://host:10001: an existing one (the model folder and "
                              "--output-dir at the same path on every node)")
    predict.add_argument("--ray-workers", type=at_least(1, int, 1024), default=None, metavar="N",
                         help="Ray workers, each loading the model once and using --threads CPUs (default 2)")
    predict.add_argument("--output-dir", metavar="DIR", default=None,
                         help="--ray's output: a new or empty folder, filled only when every row is labelled")
    predict.add_argument("--raw-csv", action="store_true",
                         help="CSV cells starting with = + - @ tab or CR as they are (default: a leading ' so "
                              "that spreadsheets do not run them as formulas)")
    _model_args(predict)
    predict.set_defaults(func=_predict)

    serve = sub.add_parser("serve", help="web API: POST /predict, GET /health, /ready, /info; OpenAPI at /docs")
    _model_args(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=port_number, default=8000, help="1..65535; in use: exit code 4")
    serve.add_argument("--metrics", default=None, help="metrics JSON reported by /info (default: the model's own)")
    from qlora_sentiment.server.run import bounded, host_list, seconds

    serve.add_argument("--allowed-hosts", type=host_list, default=None, metavar="HOSTS",
                       help="comma list of Host header names served (example.com,*.example.org,127.0.0.1); "
                            "another Host: 400. Default: any")
    serve.add_argument("--max-items", type=bounded(1, 1024), default=64, help="texts per request, 1..1024")
    serve.add_argument("--max-chars", type=max_chars, default=5000, help="characters per text (at most 20,000)")
    serve.add_argument("--max-batch", type=bounded(1, 1024), default=32, help="texts per forward pass, 1..1024")
    serve.add_argument("--max-batch-tokens", type=at_least(1, int, 1_000_000), default=512,
                       help="padded tokens per forward pass (texts x the longest): bounds how long one pass holds "
                            "the model, so long requests take turns with short ones; 512 was measured on a CPU "
                            "(BENCHMARKS.md), a GPU wants more")
    serve.add_argument("--max-wait-ms", type=bounded(0, 1000, float), default=10.0,
                       help="wait for a batch to fill, 0..1000 ms (less than --request-timeout)")
    serve.add_argument("--max-queue", type=bounded(1, 100_000), default=256,
                       help="requests waiting for the model, 1..100000; beyond it: 503 with Retry-After")
    serve.add_argument("--request-timeout", type=seconds(600), default=30.0,
                       help="seconds a request may take in all, at most 600; then 503 with Retry-After (at "
                            "once when the work queued ahead would outlast it)")
    serve.add_argument("--body-timeout", type=seconds(600), default=None,
                       help="seconds to receive a request's body, at most --request-timeout (default 10, or "
                            "--request-timeout when shorter); then 408")
    serve.add_argument("--max-connections", type=bounded(1, 100_000), default=1000,
                       help="open connections (and requests in progress), 1..100000; when full, the connection "
                            "idle longest is closed (lowered to fit ulimit -n, with a warning)")
    serve.add_argument("--max-connections-per-client", type=bounded(1, 100_000), default=100,
                       help="open connections of one client address, 1..100000 (at most --max-connections): beyond "
                            "it that client's idle ones are closed, or its newcomer gets a 429 when all are busy; "
                            "raise it behind a proxy (one address for every client)")
    serve.add_argument("--idle-timeout", type=seconds(600), default=10.0,
                       help="seconds a connection may stay open without sending a whole request head, at most 600")
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

    preflight = sub.add_parser("preflight", help="before a rented GPU trains: the default DVC remote answers and the "
                                                 "preset's raw data is in git or DVC (cloud/sky-train.yaml)")
    preflight.add_argument("-S", "--set-param", action="append", default=[], metavar="OVERRIDE",
                           help="the `dvc exp run -S` overrides the run will use (e.g. experiment=llama31_8b)")
    preflight.set_defaults(func=_preflight)

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


def _preflight(args):
    from qlora_sentiment.experiments.remote import preflight

    url = preflight(Path.cwd(), args.set_param)
    print(f"preflight: the experiment's data is here or in DVC, and the DVC remote {url} answers")


def _compare(args):
    from qlora_sentiment.experiments.compare import DEFAULT_METRIC, compare, exp_show, read_exp_show

    show = read_exp_show(Path(args.input)) if args.input else exp_show()
    chosen = compare(show, args.metric or DEFAULT_METRIC, Path(args.out))
    print(f"best: {chosen.name} ({chosen.rev[:7]}); wrote {args.out}/compare.md, compare.png, best.json")


@stage_entry
def main(argv):
    args = build_parser().parse_args(argv)
    args.func(args)

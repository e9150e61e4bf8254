"""`qlora-sentiment`: check params, show the environment, and predict with a trained adapter."""

from __future__ import annotations

import argparse
import json
import sys

from .runtime import configure_environment, stage_entry


def _check(args) -> None:
    from .config import load_params, to_dict

    params = load_params(args.params)
    print(json.dumps(to_dict(params), indent=2))


def _env(args) -> None:
    from .environment import describe_environment

    print(json.dumps(describe_environment(), indent=2))


def _predict(args) -> None:
    from .config import load_params
    from .evaluation import load_scorer
    from .runtime import setup_torch

    texts = args.texts or [line.strip() for line in sys.stdin if line.strip()]
    if not texts:
        raise SystemExit("error: give texts as arguments or one per line on stdin")
    params = load_params(args.params)
    setup_torch(params.runtime.torch_threads, params.seed)
    scorer = load_scorer(args.adapter, args.base)
    proba = scorer.predict_proba(texts, batch_size=params.eval.batch_size)
    for text, probs in zip(texts, proba):
        label = scorer.labels[int(probs.argmax())]
        print(json.dumps({"text": text, "label": label,
                          "probabilities": {lab: round(float(p), 4) for lab, p in zip(scorer.labels, probs)}}))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qlora-sentiment", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate params.yaml and print it resolved")
    check.add_argument("--params", default="params.yaml")
    check.set_defaults(func=_check)
    env = sub.add_parser("env", help="package versions and device")
    env.set_defaults(func=_env)
    predict = sub.add_parser("predict", help="label texts with a trained adapter")
    predict.add_argument("texts", nargs="*", help="texts to label (default: one per line on stdin)")
    predict.add_argument("--adapter", default="models/adapter")
    predict.add_argument("--base", default="models/base")
    predict.add_argument("--params", default="params.yaml")
    predict.set_defaults(func=_predict)
    return parser


@stage_entry
def _run(argv):
    args = build_parser().parse_args(argv)
    args.func(args)


def main(argv=None):
    configure_environment()
    _run(argv)

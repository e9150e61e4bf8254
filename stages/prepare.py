"""DVC stage `prepare`: load the dataset named in params `data`, clean it, split it deterministically."""

import argparse
from pathlib import Path

from qlora_sentiment.runtime import configure_environment, stage_entry

configure_environment()

from qlora_sentiment.config import load_params  # noqa: E402
from qlora_sentiment.data import SPLITS, prepare  # noqa: E402
from qlora_sentiment.io import write_json, write_jsonl  # noqa: E402
from qlora_sentiment.runtime import log  # noqa: E402


@stage_entry
def main(argv):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", required=True, help="folder for train/validation/test.jsonl")
    parser.add_argument("--stats", required=True, help="JSON file for split and label counts")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    records, stats = prepare(params.data, params.seed)
    # Everything is computed before the first write, so a bad row leaves no partial split behind.
    for name in SPLITS:
        write_jsonl(Path(args.out) / f"{name}.jsonl", records[name])
    write_json(args.stats, stats)
    log.info("prepared %s", {name: stats[name]["n"] for name in SPLITS})


if __name__ == "__main__":
    main()

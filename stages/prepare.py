"""DVC stage `prepare`: load the dataset named in params `data`, clean it, split it deterministically, report."""

import argparse
from pathlib import Path

from qlora_sentiment.config import load_params
from qlora_sentiment.core.inputs import DATA_FOLDER, require_tracked
from qlora_sentiment.core.io import write_json, write_jsonl
from qlora_sentiment.core.runtime import log, stage_entry
from qlora_sentiment.data.prepare import SPLITS, prepare
from qlora_sentiment.data.report import render, write_images


@stage_entry
def main(argv):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", required=True, help="folder for train/validation/test.jsonl")
    parser.add_argument("--report", required=True, help="JSON data report: counts, lengths, what was dropped")
    parser.add_argument("--images", required=True, help="folder for a PNG per split (labels, lengths)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    data = params.data
    if data.source == "local" or (data.source == "hub" and Path(data.name).exists()):
        require_tracked(data.name, DATA_FOLDER, "data.name")
    records, report = prepare(params.data, params.seed)
    images = render(report, records, params.data.labels)
    # Everything is computed before the first write, so a bad row leaves no partial split behind.
    for name in SPLITS:
        write_jsonl(Path(args.out) / f"{name}.jsonl", records[name])
    write_json(args.report, report)
    write_images(images, args.images)
    log.info("prepared %s; dropped %s", {name: report[name]["n"] for name in SPLITS}, report["dropped"])


if __name__ == "__main__":
    main()

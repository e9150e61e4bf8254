"""DVC stage `export`: the adapter merged into its de-quantized base, as a standard Hugging Face sequence
classifier (`pipeline("text-classification")` loads it) with a model card and the test metrics it shipped with."""

import argparse
from pathlib import Path

from qlora_sentiment.config import load_params
from qlora_sentiment.core.io import atomic_dir, read_json
from qlora_sentiment.core.runtime import log, setup_stage, stage_entry
from qlora_sentiment.model.adapter import adapter_base
from qlora_sentiment.model.export import merge_adapter, write_export
from qlora_sentiment.model.record import read_record


@stage_entry
def main(argv):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--base", required=True)
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--metrics", required=True, help="test metrics to ship in the folder and its model card")
    parser.add_argument("--error-analysis", required=True, help="error rates by cue, for the card's limitations")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    _, params = setup_stage(params)
    adapter = Path(args.adapter)
    record = read_record(adapter)
    merged, tokenizer = merge_adapter(adapter, adapter_base(adapter, record, args.base), record)
    data = params.data
    dataset = {"id": data.name, "name": data.name if data.source == "hub" else f"{data.name} ({data.source})",
               "config": data.config}
    with atomic_dir(args.out) as tmp:
        write_export(merged, tokenizer, record, tmp, read_json(args.metrics), adapter, dataset,
                     read_json(args.error_analysis))
    log.info("exported the merged model to %s", args.out)


if __name__ == "__main__":
    main()

"""DVC stage `base_model`: resolve params `model` to a loadable base and record exactly which one.

Offline: converts the packaged GGUF once into a safetensors folder. Hub: resolves the revision to a commit
(weights stay in the Hugging Face cache). Local: pins the folder by fingerprint.
"""

import argparse

from qlora_sentiment.config import load_params
from qlora_sentiment.core.inputs import MODEL_FOLDER, require_tracked
from qlora_sentiment.core.io import atomic_dir
from qlora_sentiment.core.runtime import log, setup_stage, stage_entry
from qlora_sentiment.model import base as base_model


@stage_entry
def main(argv):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", required=True, help="folder for base_model.json (and converted weights)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    if params.model.source == "local":
        require_tracked(params.model.name, MODEL_FOLDER, "model.name")
    _, params = setup_stage(params, seeded=False)  # resolving or converting weights draws no random number
    with atomic_dir(args.out) as tmp:
        info = base_model.materialize(params.model, tmp)
    log.info("base model: %s", info)


if __name__ == "__main__":
    main()

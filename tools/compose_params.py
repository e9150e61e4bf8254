"""Write params.yaml from conf/ as `dvc exp run -S ...` does (Hydra's compose API, OmegaConf's YAML).

    python tools/compose_params.py                      # after editing conf/: regenerate params.yaml
    python tools/compose_params.py data=imdb            # switch the committed default to a preset
    python tools/compose_params.py --check              # exit 1 if params.yaml is stale (a test runs this)
"""

import argparse
import sys
from pathlib import Path

from qlora_sentiment.config import compose as compose_conf
from qlora_sentiment.config import params_from_dict, to_yaml

ROOT = Path(__file__).resolve().parents[1]


def compose(overrides: list[str], conf: Path = ROOT / "conf") -> str:
    """params.yaml text for these overrides, validated (a preset that breaks the schema fails here)."""
    raw = compose_conf(conf, overrides)
    params_from_dict(raw)
    return to_yaml(raw)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as given to dvc exp run -S")
    parser.add_argument("--check", action="store_true", help="only check that params.yaml is up to date")
    parser.add_argument("--out", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args(argv)
    text = compose(args.overrides)
    if args.check:
        if args.out.read_text(encoding="utf-8") != text:
            print(f"{args.out} is stale: run python tools/compose_params.py", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where a training step's time goes: torch.profiler over a few steps of a recipe of conf/ (params.yaml's recipe
plus Hydra overrides), trained as `bench/bench.py --speed` trains a variant (same code, same first reviews of
data/prepared, runtime.cpu_isa pinned before torch loads). Prints the ops by their own CPU time, then exits
(no validation scoring).

    python bench/profile_step.py                      # the committed recipe: steps 3-7 of batch 8
    python bench/profile_step.py runtime.cpu_matmul=mkl --steps 3

Figures: BENCHMARKS.md ("Training speed in float32 on AVX2").
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import bench  # noqa: E402  (bench/ is not a package; it imports no torch at load)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the recipe, e.g. runtime.cpu_matmul=mkl")
    parser.add_argument("--warmup", type=int, default=2, help="steps before the profiler starts")
    parser.add_argument("--steps", type=int, default=5, help="steps profiled")
    parser.add_argument("--rows", type=int, default=25, help="ops printed")
    parser.add_argument("--data", default=str(ROOT / "data/prepared"))
    args = parser.parse_args()
    args.train_examples = (args.warmup + args.steps + 1) * 64  # enough batches for any batch size up to 64

    from qlora_sentiment.config import compose, params_from_dict
    from qlora_sentiment.core.runtime import configure_environment, setup_stage

    configure_environment()
    overrides = ["train.validation_points=0", *args.overrides]
    setup_stage(params_from_dict(compose(ROOT / "conf", overrides)))  # pins the ISA before torch loads
    import transformers
    from torch.profiler import ProfilerActivity, profile

    profiler, done, original = profile(activities=[ProfilerActivity.CPU]), [0], transformers.Trainer.training_step

    def training_step(self, *a, **k):
        if done[0] == args.warmup:
            profiler.__enter__()
        out = original(self, *a, **k)
        done[0] += 1
        if done[0] == args.warmup + args.steps:
            profiler.__exit__(None, None, None)
            table = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows)
            print(f"{args.steps} steps after {args.warmup}, overrides {overrides}\n{table}", flush=True)
            os._exit(0)  # the rest of training and the validation scoring are not what is measured
        return out

    transformers.Trainer.training_step = training_step
    bench.train_variant(overrides, args)


if __name__ == "__main__":
    main()

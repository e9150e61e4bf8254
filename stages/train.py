"""DVC stage `train`: LoRA on the (4-bit) base model; saves adapter, tokenizer and label map."""

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from qlora_sentiment.config import load_params
from qlora_sentiment.core.device import check_c_compiler, resolve_device
from qlora_sentiment.core.environment import describe_environment
from qlora_sentiment.core.errors import ConfigError
from qlora_sentiment.core.io import atomic_dir, read_jsonl, write_json
from qlora_sentiment.core.runtime import is_main_process, log, relaunch_distributed, setup_stage, stage_entry
from qlora_sentiment.model.base import load_ref
from qlora_sentiment.training.outputs import TIMING_FILE, save_adapter, write_curves, write_timing
from qlora_sentiment.training.run import train


@stage_entry
def main(argv):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--base", required=True, help="output folder of the base_model stage")
    parser.add_argument("--data", required=True, help="folder with train.jsonl and validation.jsonl")
    parser.add_argument("--out", required=True, help="adapter folder")
    parser.add_argument("--live", required=True, help="DVCLive folder for training curves")
    parser.add_argument("--checkpoints", required=True, help="scratch folder for Trainer checkpoints")
    parser.add_argument("--environment", required=True, help="where to record package versions and device (json)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    processes = params.runtime.num_processes
    if processes > 1 and "LOCAL_RANK" not in os.environ:  # not yet inside the launch: start the workers
        device = resolve_device(params.runtime.device)  # a GPU recipe without a GPU stops here, not per worker
        if params.runtime.strategy == "fsdp" and device != "cuda":
            # accelerate's FSDP needs accelerator devices (measured: it refuses gloo on CPU processes)
            raise ConfigError("runtime.strategy: fsdp shards the model across GPUs, and no usable GPU is here; "
                              "use runtime.strategy: ddp on the CPU")
        sys.exit(relaunch_distributed(processes, __file__, argv, params.runtime.strategy))
    auto_dtype = params.quantization.compute_dtype == "auto"
    started = time.perf_counter()
    device, params = setup_stage(params, threads=max(1, params.runtime.torch_threads // processes))
    check_c_compiler(device)
    data = Path(args.data)
    result = train(params, load_ref(args.base), read_jsonl(data / "train.jsonl"),
                   read_jsonl(data / "validation.jsonl"), Path(args.checkpoints))
    if not is_main_process():  # every process trains; only rank 0 writes
        return
    record = result.record
    with atomic_dir(args.out) as tmp:
        save_adapter(result.model, result.tokenizer, tmp, record, result.state_dict)
    write_curves(Path(args.live), result.log_history, record)
    # Beside the adapter, not in it: the adapter's hash then depends on the weights alone, not on the machine.
    write_json(args.environment, describe_environment(params.quantization.compute_dtype, auto_dtype,
                                                      params.runtime.cpu_matmul))
    shutil.rmtree(args.checkpoints, ignore_errors=True)  # the run finished: nothing left to resume
    # untracked (see TIMING_FILE): timings differ between identical runs
    write_timing(Path(args.live) / TIMING_FILE, Path(args.out), result.log_history, result.seconds,
                 time.perf_counter() - started)
    loss = "none logged" if record.train_loss is None else f"{record.train_loss:.4f}"
    log.info("trained %d steps on %d process(es), train loss %s, validation loss %s, validation accuracy %.4f",
             record.global_step, record.processes, loss, record.eval_loss, record.validation["accuracy"])


if __name__ == "__main__":
    main()

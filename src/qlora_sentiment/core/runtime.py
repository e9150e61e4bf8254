"""Process set-up shared by every stage: threads, seeds, quiet logs, and the error contract of the CLI."""

from __future__ import annotations

import functools
import logging
import os
import sys
import traceback

from qlora_sentiment.core.errors import QloraError

log = logging.getLogger("qlora_sentiment")


def configure_environment() -> None:
    """Call before torch is imported: these are read when the libraries load."""
    # Busy-waiting OpenMP threads fight each other on small machines; passive waiting measured faster here.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    # bitsandbytes warns at import that an optional hub-downloaded CPU kernel is missing; its own CPU path is
    # used instead. The line would sit above every error message, so keep it out.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def setup_torch(threads: int | None, seed: int) -> None:
    import torch
    from transformers import set_seed

    if threads is not None:
        torch.set_num_threads(threads)
    # deterministic=True makes CUDA kernels reproducible too (CPU runs are byte-identical with or without it)
    set_seed(seed, deterministic=True)


def is_main_process() -> bool:
    """Rank 0 of a distributed launch (or the only process): the one that writes outputs."""
    return int(os.environ.get("RANK", "0")) == 0


def relaunch_distributed(num_processes: int, script: str, argv: list[str]) -> int:
    """Run `script` again under `accelerate launch` with `num_processes` data-parallel workers.

    accelerate's multi-process launcher (torchrun) serves GPUs (NCCL, one process per GPU) and CPUs alike: on a
    machine without CUDA the Trainer (use_cpu) joins the processes with gloo. Returns the launcher's exit code.
    """
    import subprocess

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", script, *argv]
    log.info("data-parallel training on %d processes: %s", num_processes, " ".join(cmd[1:]))
    return subprocess.run(cmd).returncode


def device_name() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


OUT_OF_MEMORY = (
    "CUDA out of memory. Lower train.batch_size (raise train.grad_accum to keep the effective batch), lower "
    "train.max_length, set train.gradient_checkpointing: true, lower eval.batch_size, or keep "
    "quantization.load_in_4bit: true"
)


def stage_entry(func):
    """Run a stage's main(): a QloraError prints one line and exits 2; --debug (or QLORA_DEBUG=1) shows the trace."""

    @functools.wraps(func)
    def wrapper(argv=None):
        argv = list(sys.argv[1:] if argv is None else argv)
        debug = "--debug" in argv or os.environ.get("QLORA_DEBUG") == "1"
        argv = [a for a in argv if a != "--debug"]
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        try:
            return func(argv)
        except QloraError as exc:
            if debug:
                traceback.print_exc()
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        except Exception as exc:
            if type(exc).__name__ != "OutOfMemoryError":  # torch.OutOfMemoryError, without importing torch here
                raise
            if debug:
                traceback.print_exc()
            print(f"error: {OUT_OF_MEMORY}", file=sys.stderr)
            sys.exit(3)

    return wrapper

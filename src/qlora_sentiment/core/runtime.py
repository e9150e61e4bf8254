"""Process set-up shared by every stage: threads, seeds, quiet logs, and the error contract of the CLI."""

from __future__ import annotations

import atexit
import functools
import gc
import logging
import os
import sys
import traceback
from pathlib import Path

from qlora_sentiment.core.errors import QloraError

log = logging.getLogger("qlora_sentiment")


def configure_environment() -> None:
    """Defaults (a user's own value wins) read when torch, tokenizers and bitsandbytes load, so this runs before
    they do: stage_entry calls it as a stage or the CLI starts, which is in time because no module they import at
    the top loads torch (tests/test_entry_points.py); scripts that are not stages call it themselves."""
    # Busy-waiting OpenMP threads fight each other on small machines; passive waiting measured faster here.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    # deterministic cuBLAS kernels (torch.use_deterministic_algorithms, through set_seed(deterministic=True))
    # refuse to run on CUDA >= 10.2 without a fixed workspace
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # bitsandbytes warns at import that an optional hub-downloaded CPU kernel is missing; its own CPU path is
    # used instead. The line would sit above every error message, so keep it out.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def program_gc() -> None:
    """For a process's entry point only (not a library call): ~2 s of the ~11 s that torch + transformers + peft take
    to import on the slowest machine are the garbage collector walking their new objects again and again, and ~3 s
    of each exit are its last collections over all of them. Collect young objects 14x less often, and at exit leave
    the survivors to the OS (gc.freeze, registered as the entry point starts, so it runs after the atexit handlers of
    all that main imports; it only keeps the collector off, so any handler after it still runs, and the interpreter
    flushes stdout/stderr regardless)."""
    gc.set_threshold(10_000)
    atexit.register(gc.freeze)


def setup_torch(threads: int | None, seed: int | None, device: str = "auto", cpu_isa: str = "native") -> str:
    """Threads, seeds (None: see below), the CPU instruction set (runtime.cpu_isa, pinned before torch loads) and the
    device (runtime.device resolved: 'cuda' or 'cpu', or a one-line error)."""
    from qlora_sentiment.core.cpu_isa import pin_cpu_isa

    pin_cpu_isa(cpu_isa)
    if device == "cpu":
        # Before torch touches CUDA: every library below then sees no GPU, so nothing lands on one by default.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import torch

    from qlora_sentiment.core.device import resolve_device, torch_has_cuda

    if device != "cpu" and torch_has_cuda():  # importing torch does not start CUDA: still in time
        one_gpu_per_process()
    resolved = resolve_device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    # deterministic=True makes CUDA kernels reproducible too (CPU runs are byte-identical with or without it);
    # cuBLAS needs CUBLAS_WORKSPACE_CONFIG for that, set in configure_environment(). A caller that draws no random
    # number (seed None: base_model, predict) on the CPU skips it: set_seed's module imports the Trainer's world
    # (peft, bitsandbytes, torch's compiler), ~7 s of every such process's start here.
    if seed is not None or resolved == "cuda":
        from transformers import set_seed

        set_seed(0 if seed is None else seed, deterministic=True)
    return resolved


def one_gpu_per_process() -> None:
    """A process outside a distributed launch uses one GPU: with several visible, the Trainer would wrap the model
    in nn.DataParallel (which TRL's SFTTrainer refuses, and 4-bit layers do not replicate). Set before CUDA starts
    (it reads CUDA_VISIBLE_DEVICES once); a launched worker keeps its own (accelerate gives it LOCAL_RANK)."""
    if "LOCAL_RANK" in os.environ:
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and "," not in visible:
        return  # one GPU named, or none
    first = "0" if visible is None else visible.split(",")[0].strip()
    os.environ["CUDA_VISIBLE_DEVICES"] = first
    log.info("runtime: one process uses one GPU: CUDA_VISIBLE_DEVICES=%s (of %s); set CUDA_VISIBLE_DEVICES to pick "
             "another, runtime.num_processes to train on several", first, visible or "all visible")


def setup_stage(params, threads: int | None = None, seeded: bool = True):
    """(device, params as they run): setup_torch, then quantization.compute_dtype `auto` resolved for this
    machine, so everything downstream (loading, the Trainer, the record) sees the dtype that really ran. `seeded`
    False: a stage that draws no random number (base_model) skips the seeding on the CPU (setup_torch)."""
    from qlora_sentiment.core.device import check_compute_dtype, resolve_compute_dtype

    device = setup_torch(params.runtime.torch_threads if threads is None else threads,
                         params.seed if seeded else None, params.runtime.device, params.runtime.cpu_isa)
    dtype = resolve_compute_dtype(params.quantization.compute_dtype, device)
    check_compute_dtype(device, dtype)
    if dtype != params.quantization.compute_dtype:
        log.info("quantization.compute_dtype: %s resolved to %s on this %s", params.quantization.compute_dtype,
                 dtype, device)
    quantization = params.quantization.model_copy(update={"compute_dtype": dtype})
    return device, params.model_copy(update={"quantization": quantization})


def is_main_process() -> bool:
    """Rank 0 of a distributed launch (or the only process): the one that writes outputs."""
    return int(os.environ.get("RANK", "0")) == 0


# FSDP-QLoRA (bitsandbytes' and PEFT's recipe): whole blocks wrapped (the model's own no-split classes), the
# weights loaded once on rank 0 and broadcast, sharded checkpoints, parameters flattened per block.
FSDP_FLAGS = ["--use_fsdp", "--fsdp_version", "1", "--fsdp_sharding_strategy", "FULL_SHARD",
              "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP", "--fsdp_backward_prefetch", "BACKWARD_PRE",
              "--fsdp_state_dict_type", "SHARDED_STATE_DICT", "--fsdp_offload_params", "false",
              "--fsdp_cpu_ram_efficient_loading", "true", "--fsdp_sync_module_states", "true",
              "--fsdp_use_orig_params", "false"]


def launch_command(num_processes: int, strategy: str, script: str, argv: list[str]) -> list[str]:
    """`accelerate launch` for runtime.num_processes and runtime.strategy (ddp | fsdp)."""
    mode = FSDP_FLAGS if strategy == "fsdp" else ["--multi_gpu"]
    return [sys.executable, "-m", "accelerate.commands.launch", *mode, "--num_processes", str(num_processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", script, *argv]


def relaunch_distributed(num_processes: int, script: str, argv: list[str], strategy: str = "ddp") -> int:
    """Run `script` again under `accelerate launch` with `num_processes` workers; returns its exit code.

    ddp: accelerate's multi-process launcher (torchrun) serves GPUs (NCCL, one process per GPU) and CPUs alike: on
    a machine without CUDA the Trainer (use_cpu) joins the processes with gloo. fsdp: the 4-bit base is sharded
    across the processes (GPUs).
    """
    import subprocess

    cmd = launch_command(num_processes, strategy, script, argv)
    log.info("%s training on %d processes: %s", strategy, num_processes, " ".join(cmd[1:]))
    return subprocess.run(cmd).returncode


# What helps when CUDA runs out of memory, by stage (the script's name): the knob that bounds that stage's peak.
SCORING_MEMORY = ("lower eval.batch_size (a scoring pass holds one batch of prompts, each at most train.max_length "
                  "tokens)")
OUT_OF_MEMORY = {
    "train": "lower train.batch_size (raise train.grad_accum to keep the effective batch), lower train.max_length, "
             "set train.gradient_checkpointing: true, or keep quantization.load_in_4bit: true",
    "baseline": SCORING_MEMORY,
    "evaluate": SCORING_MEMORY,
    "export": "the merge holds the whole de-quantized model: free the GPU memory other processes hold (nvidia-smi); "
              "it moves to the CPU by itself when too little is free at its start",
}


def out_of_memory_advice(script: str) -> str:
    stage = Path(script).stem
    if stage in OUT_OF_MEMORY:
        return f"CUDA out of memory in the {stage} stage: {OUT_OF_MEMORY[stage]}"
    return f"CUDA out of memory: in training {OUT_OF_MEMORY['train']}; in scoring {SCORING_MEMORY}"


def stage_entry(func):
    """Run a stage's main() (or the CLI's) after configure_environment(): a QloraError prints one line and exits 2;
    --debug (or QLORA_DEBUG=1) shows the trace."""

    @functools.wraps(func)
    def wrapper(argv=None):
        if argv is None:  # the process's own entry point; a test calling main(argv) keeps its collector as it is
            program_gc()
        configure_environment()
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
            print(f"error: {out_of_memory_advice(sys.argv[0])}", file=sys.stderr)
            sys.exit(3)

    return wrapper

"""Where the export's merge fits: the GPU when it has room, else the CPU, and then only with the RAM it needs.
A 9B preset merged on the CPU takes ~22 GiB; a rented L4 or A10G often comes with 16 GB of RAM, where the kernel
would kill the export after training: it is refused first, in one line, before any weight is loaded."""

from __future__ import annotations

import logging
from pathlib import Path

from qlora_sentiment.core.errors import ModelError
from qlora_sentiment.problems.model import bad_input
from qlora_sentiment.model.base import BaseRef
from qlora_sentiment.model.loading import torch_dtype
from qlora_sentiment.model.record import ModelRecord

log = logging.getLogger(__name__)
CGROUP = Path("/sys/fs/cgroup")  # a container's own limit, which psutil does not see


def parameter_count(ref: BaseRef) -> int:
    """The base's parameters, counted on the meta device (no memory, no weights read)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(ref.path, **ref.kwargs))
    model.tie_weights()  # a tied LM head is the embedding, counted once (as the loaded model is)
    return model.num_parameters()


def merge_bytes(count: int, record: ModelRecord) -> float:
    """The de-quantized model in the compute dtype beside its 4-bit copy (~0.56 bytes a parameter)."""
    q = record.quantization
    return count * (torch_dtype(q.compute_dtype).itemsize + (0.56 if q.load_in_4bit else 0))


def merge_on_cpu(ref: BaseRef, record: ModelRecord) -> bool:
    """Where the merge runs: False on a GPU with room, True on the CPU once its RAM is checked (the parameters are
    counted once for both)."""
    count = parameter_count(ref)
    if merge_fits_gpu(count, record):
        return False
    require_host_ram(count, record)
    return True


def merge_fits_gpu(count: int, record: ModelRecord, headroom: float = 0.9) -> bool:
    """Whether the GPU has room for merging `count` parameters. A 7-9B model in bf16 takes 13.5-17.2 GiB: more than
    a 16 GB card has free. No: the merge runs on the CPU (said, with the RAM it needs); same result, the same
    de-quantized arithmetic."""
    import torch

    if not torch.cuda.is_available():
        return False
    need = merge_bytes(count, record)
    free = torch.cuda.mem_get_info()[0]
    if need <= headroom * free:
        return True
    log.warning("export: merging %.1fB parameters takes ~%.1f GiB and the GPU has %.1f GiB free; merging on the CPU "
                "instead (~%.1f GiB of RAM, slower)", count / 1e9, need / 2**30, free / 2**30, need / 2**30)
    return False


def available_ram() -> int:
    """Bytes this process can still take: the machine's available memory, or less under a cgroup limit."""
    import psutil

    free = psutil.virtual_memory().available
    try:
        limit = (CGROUP / "memory.max").read_text().strip()
        if limit != "max":
            free = min(free, int(limit) - int((CGROUP / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return free


def require_host_ram(count: int, record: ModelRecord, headroom: float = 0.9) -> None:
    """A CPU merge of `count` parameters that cannot fit stops here, naming what it needs and what there is."""
    need, free = merge_bytes(count, record), available_ram()
    if need > headroom * free:
        raise ModelError(bad_input("merge-host-memory").format(billions=count / 1e9, need=_size(need),
                                                               free=_size(free)))


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"

"""Know your speed and your memory: model FLOPs utilisation (MFU) and a memory estimate per rank.

**MFU** = the recipe's FLOPs per token (``6 N + 12 L T d``, :meth:`cgpt.presets.ModelConfig.flops_per_token`)
x tokens/s / the peak FLOP/s of every device that trains. Peaks are the vendors' dense figures
(half the "with sparsity" ones) for the precision the matmuls run in: bf16 under autocast, TF32
when fp32 matmuls may use it (``torch.backends.cuda.matmul.allow_tf32``), plain fp32 otherwise.
On a CPU there is no datasheet to trust, so each rank measures what a plain ``torch.mm`` reaches
with its threads (:func:`cpu_matmul_probe`, a fraction of a second: the fastest of many products)
and that is its peak, raised to the rate training itself reaches when that is higher (a probe on a
busy machine reads low; :mod:`cgpt.train.metering`), so MFU is at most 1 by construction: CPU MFU
says how much of the attainable GEMM speed the training step gets. ``CGPT_PEAK_TFLOPS`` overrides
the peak of one device (an accelerator missing from :data:`PEAKS`).

**Memory** (:func:`estimate_memory`): what one rank holds at the peak of a step, from the shapes
alone: weights + gradients + AdamW state (16 bytes/param in fp32, 18 with bf16 autocast's weight
copies; divided by the world size under FSDP, plus the gathered layers in flight), activations
of one micro-batch (about 68 bytes x d_model per token and layer in fp32, 40 under bf16 autocast;
only the block inputs with activation checkpointing) and the logits (~16-18 bytes per token and
vocabulary entry: logits, their fp32 copy, log-softmax and gradients). It is an estimate, meant to
catch a configuration that cannot fit before any memory is allocated, not to the last megabyte.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

import torch

from cgpt.preset_table import BYTES_BF16_MIXED, BYTES_FP32, GIB
from cgpt.presets import ModelConfig


@dataclass(frozen=True)
class Peak:
    """Dense peak FLOP/s of one accelerator (per device as torch sees it) and where the numbers come from."""

    match: str  # a substring of torch.cuda.get_device_name(); the first match in PEAKS wins
    bf16: float | None
    tf32: float | None
    fp32: float
    source: str


_NV = "https://www.nvidia.com/en-us/data-center"
_AMD = "https://www.amd.com/en/products/accelerators/instinct"
# Most specific names first ("H100 NVL" before "H100"); names match as whole words.
PEAKS: tuple[Peak, ...] = (
    Peak("GB200", 2.5e15, 1.25e15, 80e12, f"{_NV}/gb200-nvl72/ (per GPU, dense = sparse / 2)"),
    Peak("B200", 2.25e15, 1.1e15, 75e12, f"{_NV}/hgx/ (HGX B200, per GPU, dense = sparse / 2)"),
    Peak("H100 NVL", 835e12, 417.5e12, 60e12, f"{_NV}/h100/ (NVL column, dense = sparse / 2)"),
    Peak("H100 PCIe", 756e12, 378e12, 51e12, f"{_NV}/h100/ (PCIe column, dense = sparse / 2)"),
    Peak("GH200", 989.4e12, 494.7e12, 67e12, f"{_NV}/grace-hopper-superchip/ (the H100 of the superchip)"),
    Peak("H200 NVL", 835e12, 417.5e12, 60e12, f"{_NV}/h200/ (NVL column, dense = sparse / 2)"),
    Peak("H100", 989.4e12, 494.7e12, 67e12, f"{_NV}/h100/ (SXM column, dense = sparse / 2)"),
    Peak("H200", 989.4e12, 494.7e12, 67e12, f"{_NV}/h200/ (SXM column, dense = sparse / 2)"),
    Peak("H800", 989.4e12, 494.7e12, 67e12, "as H100 SXM (same compute, narrower NVLink)"),
    Peak("A100", 312e12, 156e12, 19.5e12, f"{_NV}/a100/ (SXM and PCIe, dense)"),
    Peak("A800", 312e12, 156e12, 19.5e12, "as A100 (same compute, narrower NVLink)"),
    Peak("L40S", 362.05e12, 183e12, 91.6e12, f"{_NV}/l40s/ (dense = sparse / 2)"),
    Peak("L40", 181.05e12, 90.5e12, 90.5e12, f"{_NV}/l40/ (dense = sparse / 2)"),
    Peak("A40", 149.7e12, 74.8e12, 37.4e12, f"{_NV}/a40/ (dense = sparse / 2)"),
    Peak("L4", 121e12, 60e12, 30.3e12, f"{_NV}/l4/ (dense = sparse / 2)"),
    Peak("A10", 125e12, 62.5e12, 31.2e12, f"{_NV}/products/a10-gpu/ (dense = sparse / 2)"),
    Peak("RTX 4090", 165.2e12, 82.6e12, 82.6e12, "NVIDIA Ada Lovelace whitepaper, appendix (FP32 accumulate)"),
    Peak("RTX 3090", 71e12, 35.6e12, 35.6e12, "NVIDIA Ampere GA102 whitepaper, appendix (FP32 accumulate)"),
    Peak("V100", None, None, 15.7e12, f"{_NV}/v100/ (SXM2; no bf16)"),
    Peak("MI300X", 1307.4e12, 653.7e12, 163.4e12, f"{_AMD}/mi300/mi300x.html"),
    Peak("MI325X", 1307.4e12, 653.7e12, 163.4e12, f"{_AMD}/mi300/mi325x.html"),
    Peak("MI250X", 191.5e12, 47.9e12, 47.9e12, f"{_AMD}/mi200/mi250x.html (per GCD)"),
)  # fmt: skip

PEAK_ENV = "CGPT_PEAK_TFLOPS"


def lookup_peak(device_name: str) -> Peak | None:
    """The :data:`PEAKS` row of a device name as ``torch.cuda.get_device_name`` reports it (whole
    words: "A10" is not the A10G, "B200" not the GB200, "H200" not the GH200)."""
    return next((p for p in PEAKS if re.search(rf"\b{re.escape(p.match)}\b", device_name, re.IGNORECASE)), None)


def fp32_matmuls_use_tf32() -> bool:
    return bool(torch.backends.cuda.matmul.allow_tf32) or torch.get_float32_matmul_precision() != "highest"


def cpu_matmul_probe(dtype: torch.dtype = torch.float32, n: int = 1024, seconds: float = 0.4) -> float:
    """FLOP/s that ``torch.mm`` of two n x n matrices reaches on this process's CPU threads: the
    fastest of the single products timed during ``seconds`` (at least 5), after a warm-up. The
    fastest, because a core shared with other work slows some products down but never speeds one
    up. No random numbers are drawn (the training RNG stays untouched)."""
    a = torch.full((n, n), 0.5, dtype=dtype)
    b = torch.full((n, n), 0.25, dtype=dtype)
    out = torch.empty((n, n), dtype=dtype)
    torch.mm(a, b, out=out)
    best = float("inf")
    start = time.perf_counter()
    reps = 0
    while reps < 5 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
        reps += 1
    return 2.0 * n**3 / best


def peak_flops(device: str, precision: str) -> tuple[float | None, str]:
    """(peak FLOP/s of this rank's device for ``precision``, where it comes from); None when unknown."""
    override = os.environ.get(PEAK_ENV)
    if override:
        return float(override) * 1e12, f"{PEAK_ENV}={override}"
    dev = torch.device(device)
    if dev.type == "cpu":
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        flops = cpu_matmul_probe(dtype)
        return flops, f"measured {str(dtype).removeprefix('torch.')} matmul on {torch.get_num_threads()} CPU threads"
    if dev.type != "cuda":
        return None, f"no peak known for {dev.type} devices; set {PEAK_ENV}"
    name = torch.cuda.get_device_name(dev)
    row = lookup_peak(name)
    if row is None:
        return None, f"no peak known for {name}; set {PEAK_ENV} to log MFU"
    if precision == "bf16":
        value, kind = row.bf16, "bf16"
    elif fp32_matmuls_use_tf32() and row.tf32:
        value, kind = row.tf32, "tf32"
    else:
        value, kind = row.fp32, "fp32"
    if value is None:
        return None, f"{name} has no {kind} peak; set {PEAK_ENV}"
    return value, f"{name} dense {kind} peak ({row.source})"


def mfu(flops_per_token: float, tokens_per_s: float, peak_total: float | None) -> float | None:
    """Model FLOPs utilisation: the recipe's FLOP/s over the peak of all devices together, at most 1
    (a rate above the peak means the peak was wrong, see :mod:`cgpt.train.metering`)."""
    if not peak_total or peak_total <= 0:
        return None
    return min(1.0, flops_per_token * tokens_per_s / peak_total)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one rank holds at the peak of a training step (see the module docstring)."""

    states: float  # weights, gradients, AdamW m and v (and autocast's bf16 weight copies), this rank's share
    gathered: float  # FSDP: layers all-gathered for compute, and their unsharded gradients
    activations: float  # saved for backward, one micro-batch
    logits: float  # logits, fp32 copy, log-softmax, gradients, one micro-batch
    overhead: float  # the framework (CUDA context and workspaces, or the interpreter and torch)

    @property
    def total(self) -> float:
        return self.states + self.gathered + self.activations + self.logits + self.overhead

    def describe(self) -> str:
        parts = [f"weights+grads+AdamW {size(self.states)}"]
        if self.gathered:
            parts.append(f"FSDP gathers {size(self.gathered)}")
        parts += [
            f"activations {size(self.activations)}",
            f"logits {size(self.logits)}",
            f"overhead {size(self.overhead)}",
        ]
        return f"~{size(self.total)} ({', '.join(parts)})"


def size(n: float) -> str:
    """Bytes as GiB, or MiB below one GiB."""
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / 2**20:.1f} MiB"


def _block_params(cfg: ModelConfig) -> int:
    d, f = cfg.d_model, cfg.d_ffn
    return (4 * d * d + 4 * d) + (2 * d * f + f + d) + 4 * d


def estimate_memory(
    cfg: ModelConfig,
    *,
    micro_batch: int,
    seq_len: int,
    precision: str,
    strategy: str = "none",
    world_size: int = 1,
    activation_checkpointing: bool = False,
    device_type: str = "cpu",
) -> MemoryEstimate:
    """Peak bytes per rank for training ``cfg`` with ``micro_batch`` sequences of ``seq_len`` per pass."""
    n = cfg.num_params()
    bf16 = precision == "bf16"
    state_bytes = BYTES_BF16_MIXED if bf16 else BYTES_FP32  # the family table's (cgpt presets): 18 and 16
    shards = world_size if strategy == "fsdp" else 1
    states = n * state_bytes / shards
    gathered = 0.0
    if strategy == "fsdp" and world_size > 1:
        root = n - cfg.n_layer * _block_params(cfg)  # embeddings and the final LayerNorm: the root unit
        gathered = 8.0 * root + 2 * 8.0 * _block_params(cfg)  # fp32 params + grads, the current and next block
    tokens = micro_batch * seq_len
    per_token_layer = 40 if bf16 else 68  # bytes per d_model, see the module docstring
    if activation_checkpointing:  # block inputs kept; one block's activations rebuilt at a time
        activations = tokens * cfg.d_model * (4 * cfg.n_layer + per_token_layer)
    else:
        activations = tokens * cfg.d_model * per_token_layer * cfg.n_layer
    activations += tokens * cfg.d_model * 4 * 3  # embeddings, final LayerNorm in and out
    logits = tokens * cfg.vocab_size * (18 if bf16 else 16)
    overhead = 1.0 * GIB if device_type == "cuda" else 0.5 * GIB
    return MemoryEstimate(states, gathered, activations, logits, overhead)


def device_memory(device: str, local_world_size: int = 1) -> tuple[float, str]:
    """(bytes one rank may use, what that is): a GPU's total memory, or this machine's RAM shared
    by the ranks on it."""
    dev = torch.device(device)
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        return float(props.total_memory), f"{props.name} ({dev})"
    total = _physical_ram()
    share = f" / {local_world_size} ranks" if local_world_size > 1 else ""
    return total / max(local_world_size, 1), f"CPU RAM{share}"


def _physical_ram() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return float("inf")

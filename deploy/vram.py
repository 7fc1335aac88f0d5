"""vLLM's start-up memory accounting for gpt-oss, mirrored in pure Python.

What vLLM does at start-up (read in each supported wheel; file names as in 0.24.0, the same
logic sits at other lines in 0.10.1 .. 0.33.0):

1. `v1/worker/gpu_worker.py` `init_device` / `v1/worker/utils.py` `request_memory`: the
   worker asks for `requested = gpu_memory_utilization x total`, with `total` as CUDA reports
   it (`torch.cuda.mem_get_info`: nvidia-smi's total less the driver's reserve), and stops
   with "Free memory on device ... is less than desired GPU memory utilization" when less
   than that is free at that moment (after its own CUDA context exists). Memory that other
   processes hold matters only through this check.
2. `determine_available_memory`: KV memory = requested - weights ("Model loading took X GiB")
   - the torch peak of a profiling run (a forward pass over `max_num_batched_tokens` tokens,
   then the sampler over `max_num_seqs` rows of the full vocabulary) - the non-torch increase
   (CUDA/NCCL buffers) - from 0.20.0 the estimated CUDA graph memory unless eager
   (`VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS`, default 1 from 0.20.0; before 0.20 the graphs
   are captured after the KV cache is allocated, outside the budget). From 0.27.0
   (`utils/mem_utils.py` memory_profiling) the non-KV part is `total_consumed` (free memory
   at start-up minus free after profiling: weights, persistent buffers, non-torch) plus the
   transient peak; from 0.29.0 the V2 model runner profiles (`v1/worker/gpu/`). What
   changed per version is in vram_tables.py's ACCOUNTING and TRITON_LOADS.
3. `v1/core/kv_cache_utils.py`: gpt-oss has as many sliding-window (128) as full-attention
   layers; the hybrid allocator makes two groups of equal size that share one pool. A block
   holds `block_size` (16) tokens of one layer: page = 16 x 2 x kv_heads x head_dim x dtype.
   num_blocks = KV memory // (page x layers per group). One request of `max_model_len`
   needs cdiv(max_model_len, 16) blocks for the full group plus
   cdiv(min(window - 1 + max_num_batched_tokens, max_model_len), 16) + 1 for the sliding
   group; "Maximum concurrency" = num_blocks / that. "GPU KV cache size: N tokens" is
   num_blocks // 2 x 16 up to 0.20.x and int(concurrency x max_model_len) from 0.22.0.
   When the blocks of one request do not fit, vLLM stops with "To serve at least one
   request with the model's max seq len ..." and a binary-searched estimate of the longest
   length that would.

The constants that are not in the source (activation peak, sampler, non-torch, CUDA graph
memory, the MoE kernels' weight layouts, CUDA context, driver reserve) are measured facts:
they live in deploy/vram_tables.py, each with its source, and bench/planner_accuracy.py checks
the whole model against real start-up logs. Choosing the flags a user left out is
deploy/vram_choice.py's; the plan command (deploy/plan.py) puts both together.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from deploy.model_specs import GIB, ModelSpec
from deploy.versions import vllm_version_or_error
from deploy.vram_tables import (
    ACCOUNTING,
    CUDAGRAPH_ESTIMATE_GPU_EXTRA_GIB,
    DRIVER_RESERVE_MIB,
    FACTS,
    KNOWN_START_UP_OOMS,
    LOAD_PEAKS,
    MARLIN_PEAK_EXTRA,
    SLACKS,
    TRITON_LOADS,
    WEIGHT_LAYOUTS,
    Accounting,
    KnownOom,
    MoeBackend,
    SamplerKind,
    TritonLoad,
    row_for_version,
)

MIB = 1024**2


# --------------------------------------------------------------------------------------
# vLLM versions: one type (packaging's Version), parsed once; what changed when.
# --------------------------------------------------------------------------------------

def parse_version(vllm: str | Version) -> Version:
    """A vLLM version as packaging's Version; ValueError naming --vllm when it is not one."""
    return vllm if isinstance(vllm, Version) else vllm_version_or_error(vllm)


def release(vllm: str | Version) -> Version:
    """The release a version leads to (``0.10.1+gptoss`` -> 0.10.1, ``0.11.1rc4`` -> 0.11.1)."""
    return Version(parse_version(vllm).base_version)


class TokenReport(StrEnum):
    """How "GPU KV cache size: N tokens" is computed (kv_cache_utils.py)."""

    BLOCKS = "blocks"  # num_blocks // groups * block_size (0.10.1-0.20.x)
    CONCURRENCY = "concurrency"  # int(concurrency * max_model_len) (0.22.0+)


@dataclass(frozen=True)
class VersionTraits:
    version: Version
    # 0.21.x was not read (not on the PyPI mirror): assumed new.
    token_report: TokenReport
    # CUDA graph memory estimated and subtracted before sizing the KV cache (0.20.0+).
    cudagraph_in_budget: bool
    sampler: SamplerKind
    # 0.24.0 request_memory: math.ceil(total * util); earlier: a float product.
    source: str = ""


def accounting(vllm: str | Version) -> Accounting:
    return row_for_version(ACCOUNTING, parse_version(vllm))


def triton_load(vllm: str | Version) -> TritonLoad:
    return row_for_version(TRITON_LOADS, parse_version(vllm))


def version_traits(vllm: str | Version) -> VersionTraits:
    v = release(vllm)
    return VersionTraits(
        version=parse_version(vllm),
        token_report=TokenReport.CONCURRENCY if v >= Version("0.21.0") else TokenReport.BLOCKS,
        cudagraph_in_budget=v >= Version("0.20.0"),
        sampler=accounting(vllm).sampler,
        source="kv_cache_utils.py / gpu_worker.py / envs.py of the 0.10.1.1, 0.10.2, 0.11.0, "
               "0.11.2, 0.12.0, 0.14.0, 0.17.0-0.20.0, 0.22.0-0.24.0, 0.28.0, 0.33.0 wheels",
    )


def serve_defaults(vllm: str | Version, cuda_total_gib: float, gpu_name: str
                   ) -> tuple[int, int]:
    """`vllm serve`'s (max_num_batched_tokens, max_num_seqs) for this GPU (arg_utils.py).

    0.10.1-0.33.0: >= 70 GiB and not an A100 -> 8192 / 1024, else 2048 / 256; 0.33.0 adds
    >= 160 GiB -> 16384 / 1024 (and keeps GB10 on the small tier).
    """
    v = release(vllm)
    name = gpu_name.lower()
    if v >= Version("0.33.0") and cuda_total_gib >= 160:
        return 16384, 1024
    if cuda_total_gib >= 70 and "a100" not in name:
        return 8192, 1024
    return 2048, 256


# --------------------------------------------------------------------------------------
# The estimate.
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ServeConfig:
    tensor_parallel_size: int
    gpu_memory_utilization: float
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    kv_cache_dtype: str = "auto"  # auto (bf16) or fp8
    enforce_eager: bool = False


@dataclass(frozen=True)
class Gpu:
    name: str
    total_mib: int  # nvidia-smi's memory.total
    free_mib: int | None = None  # nvidia-smi's memory.free now; None: assume idle

    @property
    def reserve_mib(self) -> int:
        return driver_reserve_mib(self.name)

    @property
    def cuda_total_bytes(self) -> int:
        return (self.total_mib - self.reserve_mib) * MIB

    @property
    def free_bytes(self) -> int:
        """Free memory as CUDA sees it before vLLM starts (nvidia-smi free excludes the
        driver reserve already: 81079 MiB free of 81559 on the idle H100)."""
        if self.free_mib is None:
            return self.cuda_total_bytes
        return min(self.free_mib * MIB, self.cuda_total_bytes)


def _by_gpu(table: dict, gpu_name: str):
    """The value of a GPU-keyed table (key: a part of the name nvidia-smi prints, or "default")."""
    name = gpu_name.lower()
    for key, (value, _src) in table.items():
        if key != "default" and key in name:
            return value
    return table["default"][0]


def driver_reserve_mib(gpu_name: str) -> int:
    return _by_gpu(DRIVER_RESERVE_MIB, gpu_name)


class Failure(StrEnum):
    """Why a configuration would not start (NONE: it would)."""

    NONE = ""
    FREE_MEMORY = "free_memory"  # less free than utilization x total: vLLM refuses
    NO_KV_MEMORY = "no_kv_memory"  # nothing left for the KV cache
    KV_TOO_SMALL = "kv_too_small"  # not one request of max_model_len
    KNOWN_OOM = "known_oom"  # a version's start-up regression (KNOWN_START_UP_OOMS)
    LOAD_PEAK = "load_peak"  # out of memory converting the experts while loading (LOAD_PEAKS)
    NO_SLACK = "no_slack"  # out of memory allocating the KV cache (SLACKS)
    CUDAGRAPH_HEADROOM = "cudagraph_headroom"  # graph capture runs out outside the budget


@dataclass
class Estimate:
    """One configuration as vLLM would account for it, per GPU (one tensor-parallel rank)."""

    fits: bool
    failure: Failure  # Failure.NONE when it fits
    message: str
    cuda_total_gib: float
    free_gib: float
    requested_gib: float
    weights_gib: float
    activation_peak_gib: float
    non_torch_gib: float
    cudagraph_estimate_gib: float  # subtracted from the budget (0.20+, not eager)
    cudagraph_actual_gib: float  # captured after the KV cache (not eager)
    kv_cache_gib: float
    kv_cache_tokens: int
    max_concurrency: float
    num_blocks: int
    blocks_per_request: int
    kv_needed_gib: float
    estimated_max_model_len: int
    headroom_gib: float  # free at start-up - requested - graph memory beyond the budget
    moe_backend: str
    load_peak_gib: float = 0.0  # torch memory while the experts are converted at load
    slack_gib: float = 0.0  # free memory the KV allocation needs beyond the requested share
    config: ServeConfig = field(repr=False, default=None)  # type: ignore[assignment]

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("config", None)
        return d


def layout_for(moe_backend: str | None) -> MoeBackend:
    return MoeBackend.of(moe_backend)


def triton_weight_bytes(spec: ModelSpec, tp: int, vllm: str | Version, hopper_swizzle: bool = True) -> int:
    """One rank's bytes after a Triton (matmul_ogs) MoE load; see TRITON_LOADS."""
    row = triton_load(vllm)
    layers, e, h = spec.num_hidden_layers, spec.num_local_experts, spec.hidden_size
    i_rank = _round_up(_cdiv(spec.intermediate_size, tp), 64)
    values = layers * e * (2 * i_rank * h + h * i_rank)
    data = values // 2  # two FP4 values a byte
    groups_13, groups_2 = _cdiv(h, 32), _cdiv(i_rank, 32)
    ckpt_scales = layers * e * (2 * i_rank * groups_13 + h * groups_2)

    def swizzled(rows: int, groups: int) -> int:
        if not hopper_swizzle:
            return rows * groups
        return _round_up(rows, 256) * _round_up(_round_up(groups, row.scale_groups_pad), 2)

    scales = layers * e * (swizzled(2 * i_rank, groups_13) + swizzled(h, groups_2))
    if row.keeps_checkpoint_scales or not hopper_swizzle:
        # strided (below SM90): the swizzle returns the checkpoint's scales themselves
        scales = scales + ckpt_scales if hopper_swizzle else ckpt_scales
    bias = layers * e * (2 * i_rank + h) * 4  # fp32
    residual = (row.residual_gib + row.residual_gib_per_expert_layer * e * layers) * GIB
    return int(spec.rank_dense_bytes(tp) + data + scales + bias + residual)


def weights_bytes(spec: ModelSpec, tp: int, moe_backend: str | None, vllm: str | Version,
                  kv_cache_dtype: str = "auto") -> int:
    """Weights on one rank, as "Model loading took X GiB" would report them."""
    extra = FACTS["fp8_kv_extra_weights_gib"].value * GIB if kv_cache_dtype == "fp8" else 0
    pv = parse_version(vllm)
    if moe_backend is None and (pv.local or "").startswith("gptoss"):
        # the launch build off Hopper (no Marlin yet, PR 22714 came with 0.10.1): the
        # triton_kernels path with the strided layout (make_default_matmul_mxfp4_w_layout
        # below SM90): the checkpoint as stored; vllm#22331 (RTX 3090): 12.8848 GiB
        return int(triton_weight_bytes(spec, tp, vllm, hopper_swizzle=False) + extra)
    name = layout_for(moe_backend)
    if name is MoeBackend.TRITON:
        return int(triton_weight_bytes(spec, tp, vllm) + extra)
    lay = WEIGHT_LAYOUTS[name]
    base = spec.rank_weight_bytes(tp, lay.hidden_pad, lay.intermediate_pad)
    v = Version(pv.base_version)
    const = 0.0
    for vmin, gib, per_expert_layer in lay.const_gib:
        if v >= Version(vmin):
            const = gib + per_expert_layer * spec.num_local_experts * spec.num_hidden_layers
    return int(base + const * GIB + extra)


def activation_peak_bytes(spec: ModelSpec, cfg: ServeConfig, traits: VersionTraits,
                          moe_backend: str | None = None) -> int:
    f = FACTS
    forward = (f["forward_base_gib"].value
               + f["forward_gib_per_token"].value * cfg.max_num_batched_tokens) * GIB
    per_entry = f[f"sampler_bytes_per_vocab_entry_{traits.sampler.value}"].value
    sampler = (f["sampler_base_gib"].value * GIB
               + cfg.max_num_seqs * spec.vocab_size * per_entry)
    hidden = cfg.max_num_batched_tokens * spec.hidden_size * 2
    peak = max(forward, sampler + hidden)
    if not cfg.enforce_eager:
        peak = max(peak, accounting(traits.version).compile_peak_gib * GIB)
    if moe_backend and MoeBackend.of(moe_backend) is MoeBackend.MARLIN:
        release_ = release(traits.version)
        peak += sum(gib for versions, gib, _src in MARLIN_PEAK_EXTRA
                    if release_ in SpecifierSet(versions)) * GIB
    return int(peak)


def non_torch_bytes(spec: ModelSpec, cfg: ServeConfig, vllm: str | Version) -> int:
    """Non-torch and persistent memory of one rank, as the version accounts for it."""
    acc = accounting(vllm)
    gib = FACTS["non_torch_gib"].value + acc.extra_gib_per_layer * spec.num_hidden_layers
    if cfg.tensor_parallel_size > 1:
        gib += FACTS["non_torch_tp_extra_gib"].value
    bins = cfg.max_num_seqs * spec.vocab_size * 4 if acc.penalty_bins else 0
    return int(gib * GIB + bins)


def cudagraph_bytes(spec: ModelSpec, cfg: ServeConfig, vllm: str | Version = "0.24.0",
                    gpu_name: str = "NVIDIA H100") -> tuple[int, int]:
    """(estimate vLLM subtracts from 0.20.0, memory the capture really takes)."""
    if cfg.enforce_eager:
        return 0, 0
    f = FACTS
    seqs = min(cfg.max_num_seqs, 1024)  # gpt-oss raises the largest capture size to 1024
    est = (accounting(vllm).cudagraph_estimate_extra_gib
           + _by_gpu(CUDAGRAPH_ESTIMATE_GPU_EXTRA_GIB, gpu_name)
           + f["cudagraph_estimate_base_gib"].value
           + f["cudagraph_estimate_per_layer_gib"].value * spec.num_hidden_layers
           + f["cudagraph_estimate_per_seq_gib"].value * seqs)
    actual = (f["cudagraph_actual_base_gib"].value
              + f["cudagraph_actual_per_seq_gib"].value * seqs
              + f["cudagraph_actual_per_layer_gib"].value * (spec.num_hidden_layers - 24))
    return int(est * GIB), int(actual * GIB)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _round_up(x: int, multiple: int) -> int:
    return _cdiv(x, multiple) * multiple


def kv_layout(spec: ModelSpec, cfg: ServeConfig) -> tuple[int, int, int]:
    """(page bytes of one block of one layer, layers per group, groups)."""
    dtype_bytes = 1 if cfg.kv_cache_dtype.startswith("fp8") else 2
    bs = int(FACTS["block_size"].value)
    page = bs * spec.kv_bytes_per_token_per_layer(cfg.tensor_parallel_size, dtype_bytes)
    groups = 2 if spec.sliding_layers and spec.full_layers else 1
    group_size = max(spec.sliding_layers, spec.full_layers)
    return page, group_size, groups


def blocks_per_request(spec: ModelSpec, max_model_len: int, mnbt: int) -> int:
    bs = int(FACTS["block_size"].value)
    full = _cdiv(max_model_len, bs)
    if not spec.sliding_layers:
        return full
    sliding = _cdiv(min(spec.sliding_window - 1 + mnbt, max_model_len), bs) + 1
    return full + sliding


def estimate_max_model_len(spec: ModelSpec, cfg: ServeConfig, kv_bytes: int) -> int:
    """vLLM's binary search: the longest length whose one request fits (0 if none)."""
    page, group_size, _ = kv_layout(spec, cfg)

    def fits(n: int) -> bool:
        return group_size * page * blocks_per_request(spec, n, cfg.max_num_batched_tokens) \
            <= kv_bytes

    lo, hi, best = 1, cfg.max_model_len, 0
    if not fits(1):
        return 0
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(mid):
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def estimate(spec: ModelSpec, gpu: Gpu, cfg: ServeConfig, vllm: str | Version,
             moe_backend: str | None) -> Estimate:
    """Mirror vLLM's start-up for one configuration on one GPU (per rank)."""
    traits = version_traits(vllm)
    total = gpu.cuda_total_bytes
    ctx = FACTS["cuda_context_gib"].value * GIB
    free_at_init = gpu.free_bytes - ctx
    requested = math.ceil(total * cfg.gpu_memory_utilization)
    weights = weights_bytes(spec, cfg.tensor_parallel_size, moe_backend, vllm,
                            cfg.kv_cache_dtype)
    peak = activation_peak_bytes(spec, cfg, traits, moe_backend)
    non_torch = non_torch_bytes(spec, cfg, vllm)
    cg_est, cg_actual = cudagraph_bytes(spec, cfg, vllm, gpu.name)
    cg_in_budget = cg_est if traits.cudagraph_in_budget else 0
    kv = int(requested - weights - peak - non_torch - cg_in_budget)
    page, group_size, groups = kv_layout(spec, cfg)
    bs = int(FACTS["block_size"].value)
    num_blocks = max(kv // (page * group_size), 0)
    bpr = blocks_per_request(spec, cfg.max_model_len, cfg.max_num_batched_tokens)
    concurrency = num_blocks / bpr
    if traits.token_report is TokenReport.BLOCKS:
        tokens = num_blocks // groups * bs
    else:
        tokens = int(concurrency * cfg.max_model_len)
    needed = group_size * page * bpr
    # graph memory beyond what the budget held must fit in what is left outside it
    beyond = cg_actual - cg_in_budget
    headroom = free_at_init - requested - max(beyond, 0)
    load_peak = load_peak_bytes(spec, cfg.tensor_parallel_size, moe_backend, vllm, weights)
    slack = slack_bytes(vllm)

    est_len = cfg.max_model_len if kv >= needed else estimate_max_model_len(spec, cfg, kv)
    failure, message = Failure.NONE, ""
    if free_at_init < requested:
        failure = Failure.FREE_MEMORY
        message = (f"only {free_at_init / GIB:.2f} GiB of {total / GIB:.2f} GiB will be free "
                   f"when vLLM starts, less than gpu_memory_utilization "
                   f"{cfg.gpu_memory_utilization} x total = {requested / GIB:.2f} GiB "
                   "(vLLM refuses to start)")
    elif free_at_init < load_peak:
        failure = Failure.LOAD_PEAK
        message = (f"loading needs {load_peak / GIB:.2f} GiB free while the experts are "
                   f"converted to the {layout_for(moe_backend).value} layout (final weights "
                   f"{weights / GIB:.2f} GiB); only {free_at_init / GIB:.2f} GiB will be free "
                   "after vLLM's CUDA context (out of memory while loading the weights)")
    elif kv <= 0:
        failure = Failure.NO_KV_MEMORY
        message = (f"no memory left for the KV cache ({kv / GIB:.2f} GiB): weights "
                   f"{weights / GIB:.2f} + activations {peak / GIB:.2f} + other "
                   f"{(non_torch + cg_in_budget) / GIB:.2f} GiB exceed the "
                   f"{requested / GIB:.2f} GiB requested")
    elif kv < needed:
        failure = Failure.KV_TOO_SMALL
        message = (f"one request of {cfg.max_model_len} tokens needs {needed / GIB:.2f} GiB "
                   f"of KV cache, only {kv / GIB:.2f} GiB is left; the longest that fits is "
                   f"about {est_len} tokens")
    elif (oom := _known_oom(vllm, free_at_init - requested, cfg)) is not None:
        failure = Failure.KNOWN_OOM
        message = (f"vLLM {vllm} is known to run out of memory at start-up when less than "
                   f"{oom.min_outside_gib} GiB stays outside the requested share (here "
                   f"{(free_at_init - requested) / GIB:.2f} GiB): {oom.source}")
    elif free_at_init - requested < slack:
        failure = Failure.NO_SLACK
        message = (f"allocating the KV cache needs {slack / GIB:.2f} GiB free beyond the "
                   f"{requested / GIB:.2f} GiB requested (memory PyTorch holds and cannot "
                   f"reuse); only {(free_at_init - requested) / GIB:.2f} GiB is (out of memory "
                   "after vLLM printed the KV cache size)")
    elif headroom < 0:
        failure = Failure.CUDAGRAPH_HEADROOM
        message = (f"CUDA graph capture needs {max(beyond, 0) / GIB:.2f} GiB outside the "
                   f"requested share, only {(free_at_init - requested) / GIB:.2f} GiB is free "
                   "there (out of memory during capture)")
    return Estimate(
        fits=failure is Failure.NONE, failure=failure, message=message,
        cuda_total_gib=total / GIB, free_gib=free_at_init / GIB,
        requested_gib=requested / GIB, weights_gib=weights / GIB,
        activation_peak_gib=peak / GIB, non_torch_gib=non_torch / GIB,
        cudagraph_estimate_gib=cg_in_budget / GIB, cudagraph_actual_gib=cg_actual / GIB,
        kv_cache_gib=kv / GIB, kv_cache_tokens=max(tokens, 0),
        max_concurrency=max(concurrency, 0.0), num_blocks=num_blocks,
        blocks_per_request=bpr, kv_needed_gib=needed / GIB,
        estimated_max_model_len=est_len, headroom_gib=headroom / GIB,
        moe_backend=layout_for(moe_backend), config=cfg,
        load_peak_gib=load_peak / GIB, slack_gib=slack / GIB,
    )


def expert_layer_bytes(spec: ModelSpec, tp: int) -> int:
    """MXFP4 bytes (values and scales) of one layer's experts on one rank."""
    values = 3 * spec.num_local_experts * _cdiv(spec.intermediate_size, tp) * spec.hidden_size
    return values // 2 + values // 32


def load_peak_bytes(spec: ModelSpec, tp: int, moe_backend: str | None, vllm: str | Version,
                    weights: int) -> int:
    """Torch memory while the experts are converted to the kernel's layout (LOAD_PEAKS)."""
    backend = MoeBackend.of(moe_backend)
    rows = [r for r in LOAD_PEAKS if r.backend is backend]
    row = row_for_version(rows, parse_version(vllm))
    return int(weights + row.expert_layers * expert_layer_bytes(spec, tp))


def slack_bytes(vllm: str | Version) -> int:
    return int(row_for_version(SLACKS, parse_version(vllm)).gib * GIB)


def _known_oom(vllm: str | Version, outside_bytes: float, cfg: ServeConfig) -> KnownOom | None:
    if cfg.enforce_eager:
        return None
    v = release(vllm)
    for row in KNOWN_START_UP_OOMS:
        if v in SpecifierSet(row.versions) and outside_bytes < row.min_outside_gib * GIB:
            return row
    return None

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
   changed per version is in the ACCOUNTING and TRITON_LOADS tables below.
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
they live in the tables below, each with its source, and bench/planner_accuracy.py checks the
whole model against real start-up logs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from deploy.model_specs import GIB, ModelSpec
from deploy.versions import vllm_version_or_error

MIB = 1024**2


# --------------------------------------------------------------------------------------
# Measured constants, each with its source.
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fact:
    value: float
    unit: str
    source: str


H100_RUNS = (
    "bench/h100/ (real vLLM 0.24.0 start-ups on an H100 80GB HBM3 with dummy weights, "
    "2026-11-23, 16 cases: bench/h100/cases.json and results.jsonl)"
)

FACTS: dict[str, Fact] = {
    # torch peak of the profiling run = max(forward(mnbt), sampler(mns) + hidden(mnbt),
    # compile peak when not eager). Fitted on the 16 H100 runs; forward and sampler
    # separate cleanly there (e3/e10 are forward-bound, e1/e2/e4/e7/e8/e12 sampler-bound).
    "forward_gib_per_token": Fact(
        6.43e-5, "GiB per batched token",
        H100_RUNS + ": e10 (4096 tokens) 0.28 GiB, e3 (16384) 1.07 GiB"),
    "forward_base_gib": Fact(0.017, "GiB", H100_RUNS + ": intercept of the same fit"),
    # The sampler warm-up computes logits and samples over max_num_seqs rows of the full
    # vocabulary (v1/worker/gpu_model_runner.py _dummy_sampler_run).
    "sampler_bytes_per_vocab_entry_kernel": Fact(
        14.07, "bytes per (sequence x vocabulary entry)",
        H100_RUNS + ": peak 0.80/1.49/2.86 GiB at 256/512/1024 seqs (FlashInfer top-k/top-p "
        "sampler, default from 0.22.0: envs.py VLLM_USE_FLASHINFER_SAMPLER else True); "
        "also used for 0.17.0-0.21.x, whose default is a Triton top-k/top-p kernel "
        "(v1/sample/ops/topk_topp_triton.py, first in the 0.17.0 wheel read): the one public "
        "log of that era (0.19.0, A100, 20b) agrees within 0.2 GiB"),
    "sampler_bytes_per_vocab_entry_sort": Fact(
        37.5, "bytes per (sequence x vocabulary entry)",
        "vllm#27508 (0.11.0, H100, 120b, util 0.95, 1024 seqs: 'Available KV cache memory: "
        "1.71 GiB') and vllm#23278 (0.10.1, H100, 120b, util 0.9: -2.14 GiB), weights as "
        "logged/modelled: the torch sort-based top-k/top-p (apply_top_k_top_p sorts the "
        "logits), the default up to 0.14.0 (0.15.x-0.16.x not read; assumed the same). The "
        "least-squares 37.1 over-stated #27508's KV by 0.08 GiB; 37.5 plans neither log above "
        "what vLLM logged (#23278 then -0.14 GiB)"),
    "sampler_bytes_per_vocab_entry_light": Fact(
        6.0, "bytes per (sequence x vocabulary entry)",
        "source-read, not measured: the V2 model runner's profiling sampler (0.29.0 "
        "v1/worker/gpu/model_runner.py _dummy_sampler_run) computes bf16 logits and samples "
        "without top-k/top-p: bf16 logits + one fp32 copy = 6 bytes an entry; apron's 0.29.0 "
        "H100 boot (1024 sequences) logged a 1.17 GiB transient peak, this gives 1.27"),
    "sampler_base_gib": Fact(0.119, "GiB", H100_RUNS + ": intercept of the sampler fit"),
    "compile_peak_gib": Fact(  # by version in ACCOUNTING (0.12.0+ use this figure)
        1.17, "GiB",
        H100_RUNS + ": with torch.compile + CUDA graphs the profiling peak never fell below "
        "1.10-1.17 GiB (g2, g3, g4), whatever the sequences and tokens"),
    "non_torch_gib": Fact(
        0.22, "GiB",
        H100_RUNS + ": 'non-torch forward increase memory' 0.22 eager, 0.23-0.24 with graphs"),
    "non_torch_tp_extra_gib": Fact(
        0.5, "GiB",
        "estimate, not measured: NCCL and custom all-reduce buffers per rank when "
        "tensor_parallel_size > 1 (no multi-GPU start-up was measured)"),
    # CUDA graph memory: the estimate vLLM subtracts (0.20+) and what capture really takes.
    "cudagraph_estimate_base_gib": Fact(
        0.36, "GiB",
        H100_RUNS + ": estimate = (util - equivalent util) x total, 0.58/0.49/0.56/0.56 GiB "
        "for g1..g4; fitted as base + per layer + per captured sequence"),
    "cudagraph_estimate_per_layer_gib": Fact(0.0048, "GiB", H100_RUNS),
    "cudagraph_estimate_per_seq_gib": Fact(0.0001, "GiB", H100_RUNS),
    "cudagraph_actual_base_gib": Fact(
        0.457, "GiB",
        H100_RUNS + ": 'Graph capturing finished ... took' 1.04 (20b, 1024 seqs), 0.53 (20b, "
        "128), 0.77 (120b, 256) GiB"),
    "cudagraph_actual_per_seq_gib": Fact(0.000569, "GiB", H100_RUNS),
    "cudagraph_actual_per_layer_gib": Fact(0.0143, "GiB", H100_RUNS),
    "cuda_context_gib": Fact(
        0.515, "GiB",
        H100_RUNS + ": e5, 12 GiB held by another process: vLLM saw 66.15 of 79.18 GiB free, "
        "so each of the two CUDA contexts took ~0.515 GiB"),
    "fp8_kv_extra_weights_gib": Fact(
        0.03, "GiB", H100_RUNS + ": 13.61 GiB loaded with kv_cache_dtype fp8 vs 13.58"),
    "block_size": Fact(
        16, "tokens per block",
        "vLLM CacheConfig default on CUDA; 0.24.0 H100 runs: every logged concurrency "
        "reproduces with 16"),
}

# nvidia-smi's total less what CUDA reports as total (the driver's reserve), MiB.
DRIVER_RESERVE_MIB: dict[str, tuple[int, str]] = {
    "h100": (480, "FACTS.md: nvidia-smi 81559 MiB total, NVML used 503316480 B = 480 MiB, "
                  "torch.cuda.mem_get_info total 85017493504 B (79.18 GiB) on the lent H100"),
    "rtx 3090": (430, "vllm#10517: total_gpu_memory=23.58GiB on an RTX 3090 (24576 MiB)"),
    "default": (480, "assumed equal to the H100's; not measured on other GPUs"),
}

# How each MoE kernel lays out the MXFP4 experts in memory (vLLM's
# mxfp4_round_up_hidden_size_and_intermediate_size, 0.24.0 fused_moe/oracle/mxfp4.py
# L633-665, and quantization/mxfp4.py in 0.10.x-0.12.x), and what the real loads add.
# `const_gib` by vLLM version range: the difference between the logged "Model loading took"
# and the padded tensor bytes.


@dataclass(frozen=True)
class WeightLayout:
    hidden_pad: int
    intermediate_pad: int
    const_gib: tuple[tuple[str, float], ...]  # (minimum version, GiB), ascending
    source: str


WEIGHT_LAYOUTS: dict[str, WeightLayout] = {
    "MARLIN": WeightLayout(
        256, 128, (("0.0", 0.07), ("0.20.0", 0.13)),
        "round_up(hidden, 256), round_up(intermediate, 128) (0.25.1 fused_moe/oracle/mxfp4.py "
        "mxfp4_round_up_hidden_size_and_intermediate_size L640-645); vllm#23278 (0.10.1, H100, "
        "Marlin): 'Model loading took 65.9651 GiB' for 120b vs 65.90 computed (+0.07; also "
        "huikang 0.11.2 and the A100 0.19.0 log, 13.72); +0.13 from apron's RTX 4090 boot on "
        "0.30.0 (model_weight_memory 13.80 GiB for 20b). 0.20.0-0.29.x were not measured: the "
        "larger figure is assumed from 0.20.0 (over-stating weights only shrinks the KV plan)"),
    "TRITON": WeightLayout(
        1, 64, (("0.0", 0.0),),
        "computed part by part by triton_weight_bytes() with the TRITON_LOADS table below"),
    "FLASHINFER": WeightLayout(
        256, 256, (("0.0", 0.0),),
        "round_up(hidden, 256), round_up(intermediate, 256) for the TRT-LLM kernels; no "
        "Blackwell load was measured"),
}


# What the OpenAI Triton (triton_kernels matmul_ogs) MoE path leaves allocated after loading,
# part by part (fused_moe/oracle/mxfp4.py convert_gpt_oss_weight_to_mxfp4_moe_kernel_format,
# TRITON_BACKENDS branch, and quantization/utils/mxfp4_utils.py _swizzle_mxfp4):
# - the dense bf16 tensors (model_specs.rank_dense_bytes);
# - the MXFP4 values, intermediate per rank rounded up to 64, hidden NOT padded (the
#   round-up function's default branch); the Hopper value swizzle (third_party/triton_kernels
#   .../hopper_value.py) pads to 16 x 32 bytes, which 2880 and 1440 already are;
# - the swizzled scales: HopperMXScaleLayout pads the non-MX dim to 256 and the MX dim to 2
#   (hopper_scale.py swizzle_data): w13 5760 -> 5888 rows, w2 2880 -> 3072 rows; from 0.26.0
#   the MX dim is padded to 4 first on SM90 ('Patches #47303: pad K (num scale groups) to 0
#   mod 4', mxfp4_utils.py, read in 0.26.0-0.30.0, absent in 0.25.1): 90 -> 92 groups;
#   below SM90 the layout is strided (no copy, no padding);
# - the checkpoint's own scales: kept as dead Parameters up to 0.24.x, deleted from 0.25.0
#   ('drop the now-dead weight/scale Parameters to free their memory', 0.25.1 oracle L1150;
#   absent in 0.24.0; 0.25.0 not read, assumed like 0.25.1): this is the ~3.3 GiB drop of
#   the 120b load after 0.24 (64.67 -> 61.29 / 61.43 GiB);
# - the expert biases converted to fp32 (w13_bias.to(torch.float32), 0.24.0 oracle L1127);
# - a residual `a + b x experts x layers` GiB the code does not show (fitted, per row).


@dataclass(frozen=True)
class TritonLoad:
    versions: str  # PEP 440 specifier on the base version
    keeps_checkpoint_scales: bool
    scale_groups_pad: int  # the MX (K) dimension of the scales padded to this first (SM90)
    residual_gib: float
    residual_gib_per_expert_layer: float
    source: str


TRITON_LOADS: tuple[TritonLoad, ...] = (
    TritonLoad("<0.24.0", True, 1, 0.08, 0.0,
               "residual fitted: vllm#33155 (0.14.1, H100, 120b) 'Model loading took 64.38 "
               "GiB' (+0.077 over the parts; rounded up), llm-d's 0.14 H100 20b 13.47 GiB "
               "(+0.065); the 0.10.1+gptoss RTX 3090 load (strided, vllm#22331: 12.8848 GiB, "
               "+0.056)"),
    TritonLoad(">=0.24.0,<0.25.0", True, 1, 0.137, 5.0e-5,
               H100_RUNS + ": 13.58 GiB (20b, +0.175 over the parts), 64.67 GiB (120b, "
               "+0.367): two points, two coefficients"),
    TritonLoad(">=0.25.0,<0.26.0", False, 1, 0.137, 5.0e-5,
               "0.24.0's residual; jaminjeong (0.25.1, H100, 120b): 61.29 GiB logged, 61.34 "
               "planned (over-states by 0.05: the safe side)"),
    TritonLoad(">=0.26.0", False, 4, 0.137, 5.46e-5,
               "apron (0.29.0, H100, 120b): model_weight_memory 61.43 GiB (+0.388 over the "
               "parts; 0.24.0's intercept kept, the per-expert-layer term fitted); 0.26.0-"
               "0.28.x and 20b on >= 0.26 not measured"),
)


def row_for_version(rows, vllm: str):
    """The first row of a version-keyed table whose ``versions`` specifier holds ``vllm``."""
    v = Version(parse_version(vllm).base_version)
    for row in rows:
        if v in SpecifierSet(row.versions):
            return row
    raise AssertionError(vllm)


def triton_load(vllm: str) -> TritonLoad:
    return row_for_version(TRITON_LOADS, vllm)


def triton_weight_bytes(spec: ModelSpec, tp: int, vllm: str, hopper_swizzle: bool = True) -> int:
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


# Start-ups that ran out of memory although the accounting above says they fit: version
# regressions reported upstream. A configuration that leaves less than `min_outside_gib`
# outside the requested share (free at start-up - requested) is refused for these versions.
KNOWN_START_UP_OOMS: tuple[dict, ...] = (
    {
        "versions": ">=0.14.0,<0.15.0",
        "min_outside_gib": 2.0,
        "source": "vllm#33155 (open): gpt-oss-120b on one H100 ran with "
                  "--gpu-memory-utilization 0.97 on 0.11.2 and runs out of memory at start-up "
                  "on 0.14.1 even with 5K context and 1 sequence (1.87 GiB left outside)",
    },
)


# What vLLM counts outside the weights and the KV cache, by version. `compile_peak_gib` is
# the torch peak of the profiling run with torch.compile (not eager); `non_torch_gib` the
# non-torch / persistent memory of one rank; `extra_gib_per_layer` what later versions count
# beyond 0.24.0's accounting, per decoder layer (fitted: no line of the code explains it);
# `penalty_bins` the V2 model runner's persistent [max_num_seqs, vocab] int32
# `output_bin_counts` (v1/worker/gpu/sample/penalties.py, allocated at start-up and counted
# since 0.27.0's accounting: total_consumed from mem_get_info); `cudagraph_estimate_extra_gib`
# what the CUDA graph estimate adds to 0.24.0's fit.


@dataclass(frozen=True)
class Accounting:
    versions: str  # PEP 440 specifier on the base version
    sampler: str  # "sort", "kernel" or "light" (see VersionTraits)
    compile_peak_gib: float
    extra_gib_per_layer: float
    penalty_bins: bool
    cudagraph_estimate_extra_gib: float
    source: str


ACCOUNTING: tuple[Accounting, ...] = (
    Accounting(
        "<0.12.0", "sort", 0.83, 0.0, False, 0.0,
        "compile peak fitted on huikang (0.11.2, H100, 120b, Marlin, 6 sequences, 8192 "
        "batched tokens, graphs on): 76.01 requested - 65.9651 weights - 8.99 KV - 0.22 "
        "non-torch = 0.83 GiB, below the 1.10-1.17 GiB that 0.24.0 peaks at; one log only. "
        "Sampler: the torch sort-based top-k/top-p (FACTS sampler_bytes_per_vocab_entry_sort)"),
    Accounting(
        ">=0.12.0,<0.17.0", "sort", FACTS["compile_peak_gib"].value, 0.0, False, 0.0,
        "0.24.0's compile peak (no log of 0.12-0.16 says otherwise); sort-based sampler"),
    Accounting(
        ">=0.17.0,<0.25.0", "kernel", FACTS["compile_peak_gib"].value, 0.0, False, 0.0,
        H100_RUNS + " (0.24.0); the A100 0.19.0 log agrees (KV 36.56 GiB planned and logged)"),
    Accounting(
        ">=0.25.0,<0.29.0", "kernel", FACTS["compile_peak_gib"].value, 0.0405, False, 0.0,
        "jaminjeong (0.25.1, H100, 120b, 8 sequences, 1024 batched tokens, util 0.95): 75.22 "
        "requested - 61.29 weights - 10.52 KV = 3.41 GiB besides, against 1.17 compile peak + "
        "0.22 non-torch + 0.48 graph estimate (logged: 0.95 -> 0.9439) = 1.87: +1.54 GiB. "
        "With the planned weights (61.33) and graph estimate (0.53), 1.45 GiB = 0.0405 GiB a "
        "layer. gpu_worker.py / mem_utils.py of 0.25.1 account as 0.24.0 does (only "
        "torch.accelerator.get_memory_info replaced mem_get_info) and its weights path only "
        "frees memory, so this is FITTED, not explained (torch 2.11 in 0.25.1 vs 0.24.0 is one "
        "suspect); another process shared that GPU (2960 MiB) and may have grown during "
        "profiling. 0.26.0-0.28.x not measured: assumed the same (0.27.0's total_consumed "
        "accounting, mem_utils.py memory_profiling, counts more, not less)"),
    Accounting(
        ">=0.29.0", "light", FACTS["compile_peak_gib"].value, 0.033, True, 0.165,
        "the V2 model runner is the default for every architecture from 0.29.0 (config/"
        "vllm.py use_v2_model_runner; gpt-oss was not in DEFAULT_V2_MODEL_RUNNER_ARCHITECTURES "
        "of 0.24.0-0.28.0): its profiling sampler skips top-k/top-p (v1/worker/gpu/"
        "model_runner.py _dummy_sampler_run, 'the sampler may skip top_k, top_p') and it keeps "
        "output_bin_counts [max_num_seqs, vocab] int32 on the GPU, which 0.27.0's accounting "
        "(non-KV = total_consumed from get_memory_info + transient peak) counts. Fitted on "
        "apron's two boots: 0.29.0 H100 120b (non_pytorch_increase 2.16 GiB, transient peak "
        "1.17, graph estimate 0.80, 1024 sequences) and 0.30.0 RTX 4090 20b (1.30, 1.10, 0.63, "
        "256 sequences): after 0.22 GiB and the penalty bins (0.77 / 0.19 GiB), 1.17 GiB / 36 "
        "layers and 0.89 GiB / 24 layers remain; 0.033 GiB a layer keeps both plans at or "
        "under the logged KV. Graph estimate +0.165 GiB (0.80 logged vs 0.635 from 0.24.0's "
        "fit; the 4090's 0.63 vs 0.50 is +0.13: the larger taken)"),
)


def accounting(vllm: str) -> Accounting:
    return row_for_version(ACCOUNTING, vllm)


# --------------------------------------------------------------------------------------
# vLLM versions: what changed when (read in each wheel).
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VersionTraits:
    version: str
    # "blocks": num_blocks // groups * block_size (0.10.1-0.20.x kv_cache_utils.py
    # _report_kv_cache_config); "concurrency": int(concurrency * max_model_len) (0.22.0+
    # get_kv_cache_capacity). 0.21.x was not read (not on the PyPI mirror): assumed new.
    token_report: str
    # CUDA graph memory estimated and subtracted before sizing the KV cache (0.20.0+).
    cudagraph_in_budget: bool
    # sampler warm-up: "sort" (torch sort-based top-k/top-p, up to 0.16.x), "kernel" (the
    # Triton top-k/top-p kernel from 0.17.0, FlashInfer's sampler from 0.22.0), "light" (the
    # V2 model runner from 0.29.0: logits and a plain sample, no top-k/top-p)
    sampler: str
    # 0.24.0 request_memory: math.ceil(total * util); earlier: a float product.
    source: str = ""


def parse_version(vllm: str) -> Version:
    return vllm_version_or_error(vllm)


def version_traits(vllm: str) -> VersionTraits:
    v = Version(parse_version(vllm).base_version)
    return VersionTraits(
        version=vllm,
        token_report="concurrency" if v >= Version("0.21.0") else "blocks",
        cudagraph_in_budget=v >= Version("0.20.0"),
        sampler=accounting(vllm).sampler,
        source="kv_cache_utils.py / gpu_worker.py / envs.py of the 0.10.1.1, 0.10.2, 0.11.0, "
               "0.11.2, 0.12.0, 0.14.0, 0.17.0-0.20.0, 0.22.0-0.24.0, 0.28.0, 0.33.0 wheels",
    )


def serve_defaults(vllm: str, cuda_total_gib: float, gpu_name: str) -> tuple[int, int]:
    """`vllm serve`'s (max_num_batched_tokens, max_num_seqs) for this GPU (arg_utils.py).

    0.10.1-0.33.0: >= 70 GiB and not an A100 -> 8192 / 1024, else 2048 / 256; 0.33.0 adds
    >= 160 GiB -> 16384 / 1024 (and keeps GB10 on the small tier).
    """
    v = Version(parse_version(vllm).base_version)
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


def driver_reserve_mib(gpu_name: str) -> int:
    name = gpu_name.lower()
    for key, (mib, _src) in DRIVER_RESERVE_MIB.items():
        if key != "default" and key in name:
            return mib
    return DRIVER_RESERVE_MIB["default"][0]


@dataclass
class Estimate:
    """One configuration as vLLM would account for it, per GPU (one tensor-parallel rank)."""

    fits: bool
    failure: str  # "" when it fits; else "free_memory", "no_kv_memory", "kv_too_small",
    # "cudagraph_headroom"
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
    config: ServeConfig = field(repr=False, default=None)  # type: ignore[assignment]

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("config", None)
        return d


def layout_for(moe_backend: str | None) -> str:
    b = (moe_backend or "").upper()
    if "FLASHINFER" in b or "MXFP8" in b:
        return "FLASHINFER"
    if "TRITON" in b:
        return "TRITON"
    return "MARLIN"


def weights_bytes(spec: ModelSpec, tp: int, moe_backend: str | None, vllm: str,
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
    if name == "TRITON":
        return int(triton_weight_bytes(spec, tp, vllm) + extra)
    lay = WEIGHT_LAYOUTS[name]
    base = spec.rank_weight_bytes(tp, lay.hidden_pad, lay.intermediate_pad)
    v = Version(pv.base_version)
    const = 0.0
    for vmin, gib in lay.const_gib:
        if v >= Version(vmin):
            const = gib
    return int(base + const * GIB + extra)


def activation_peak_bytes(spec: ModelSpec, cfg: ServeConfig, traits: VersionTraits) -> int:
    f = FACTS
    forward = (f["forward_base_gib"].value
               + f["forward_gib_per_token"].value * cfg.max_num_batched_tokens) * GIB
    per_entry = f["sampler_bytes_per_vocab_entry_" + traits.sampler].value
    sampler = (f["sampler_base_gib"].value * GIB
               + cfg.max_num_seqs * spec.vocab_size * per_entry)
    hidden = cfg.max_num_batched_tokens * spec.hidden_size * 2
    peak = max(forward, sampler + hidden)
    if not cfg.enforce_eager:
        peak = max(peak, accounting(traits.version).compile_peak_gib * GIB)
    return int(peak)


def non_torch_bytes(spec: ModelSpec, cfg: ServeConfig, vllm: str) -> int:
    """Non-torch and persistent memory of one rank, as the version accounts for it."""
    acc = accounting(vllm)
    gib = FACTS["non_torch_gib"].value + acc.extra_gib_per_layer * spec.num_hidden_layers
    if cfg.tensor_parallel_size > 1:
        gib += FACTS["non_torch_tp_extra_gib"].value
    bins = cfg.max_num_seqs * spec.vocab_size * 4 if acc.penalty_bins else 0
    return int(gib * GIB + bins)


def cudagraph_bytes(spec: ModelSpec, cfg: ServeConfig, vllm: str = "0.24.0"
                    ) -> tuple[int, int]:
    """(estimate vLLM subtracts from 0.20.0, memory the capture really takes)."""
    if cfg.enforce_eager:
        return 0, 0
    f = FACTS
    seqs = min(cfg.max_num_seqs, 1024)  # gpt-oss raises the largest capture size to 1024
    est = (accounting(vllm).cudagraph_estimate_extra_gib
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


def estimate(spec: ModelSpec, gpu: Gpu, cfg: ServeConfig, vllm: str,
             moe_backend: str | None) -> Estimate:
    """Mirror vLLM's start-up for one configuration on one GPU (per rank)."""
    traits = version_traits(vllm)
    total = gpu.cuda_total_bytes
    ctx = FACTS["cuda_context_gib"].value * GIB
    free_at_init = gpu.free_bytes - ctx
    requested = math.ceil(total * cfg.gpu_memory_utilization)
    weights = weights_bytes(spec, cfg.tensor_parallel_size, moe_backend, vllm,
                            cfg.kv_cache_dtype)
    peak = activation_peak_bytes(spec, cfg, traits)
    non_torch = non_torch_bytes(spec, cfg, vllm)
    cg_est, cg_actual = cudagraph_bytes(spec, cfg, vllm)
    cg_in_budget = cg_est if traits.cudagraph_in_budget else 0
    kv = int(requested - weights - peak - non_torch - cg_in_budget)
    page, group_size, groups = kv_layout(spec, cfg)
    bs = int(FACTS["block_size"].value)
    num_blocks = max(kv // (page * group_size), 0)
    bpr = blocks_per_request(spec, cfg.max_model_len, cfg.max_num_batched_tokens)
    concurrency = num_blocks / bpr
    if traits.token_report == "blocks":
        tokens = num_blocks // groups * bs
    else:
        tokens = int(concurrency * cfg.max_model_len)
    needed = group_size * page * bpr
    # graph memory beyond what the budget held must fit in what is left outside it
    beyond = cg_actual - cg_in_budget
    headroom = free_at_init - requested - max(beyond, 0)

    est_len = cfg.max_model_len if kv >= needed else estimate_max_model_len(spec, cfg, kv)
    failure, message = "", ""
    if free_at_init < requested:
        failure = "free_memory"
        message = (f"only {free_at_init / GIB:.2f} GiB of {total / GIB:.2f} GiB will be free "
                   f"when vLLM starts, less than gpu_memory_utilization "
                   f"{cfg.gpu_memory_utilization} x total = {requested / GIB:.2f} GiB "
                   "(vLLM refuses to start)")
    elif kv <= 0:
        failure = "no_kv_memory"
        message = (f"no memory left for the KV cache ({kv / GIB:.2f} GiB): weights "
                   f"{weights / GIB:.2f} + activations {peak / GIB:.2f} + other "
                   f"{(non_torch + cg_in_budget) / GIB:.2f} GiB exceed the "
                   f"{requested / GIB:.2f} GiB requested")
    elif kv < needed:
        failure = "kv_too_small"
        message = (f"one request of {cfg.max_model_len} tokens needs {needed / GIB:.2f} GiB "
                   f"of KV cache, only {kv / GIB:.2f} GiB is left; the longest that fits is "
                   f"about {est_len} tokens")
    elif (oom := _known_oom(vllm, free_at_init - requested, cfg)) is not None:
        failure = "known_oom"
        message = (f"vLLM {vllm} is known to run out of memory at start-up when less than "
                   f"{oom['min_outside_gib']} GiB stays outside the requested share (here "
                   f"{(free_at_init - requested) / GIB:.2f} GiB): {oom['source']}")
    elif headroom < 0:
        failure = "cudagraph_headroom"
        message = (f"CUDA graph capture needs {max(beyond, 0) / GIB:.2f} GiB outside the "
                   f"requested share, only {(free_at_init - requested) / GIB:.2f} GiB is free "
                   "there (out of memory during capture)")
    return Estimate(
        fits=not failure, failure=failure, message=message,
        cuda_total_gib=total / GIB, free_gib=free_at_init / GIB,
        requested_gib=requested / GIB, weights_gib=weights / GIB,
        activation_peak_gib=peak / GIB, non_torch_gib=non_torch / GIB,
        cudagraph_estimate_gib=cg_in_budget / GIB, cudagraph_actual_gib=cg_actual / GIB,
        kv_cache_gib=kv / GIB, kv_cache_tokens=max(tokens, 0),
        max_concurrency=max(concurrency, 0.0), num_blocks=num_blocks,
        blocks_per_request=bpr, kv_needed_gib=needed / GIB,
        estimated_max_model_len=est_len, headroom_gib=headroom / GIB,
        moe_backend=layout_for(moe_backend), config=cfg,
    )


def _known_oom(vllm: str, outside_bytes: float, cfg: ServeConfig) -> dict | None:
    if cfg.enforce_eager:
        return None
    v = Version(parse_version(vllm).base_version)
    for row in KNOWN_START_UP_OOMS:
        if v in SpecifierSet(row["versions"]) and outside_bytes < row["min_outside_gib"] * GIB:
            return row
    return None


# --------------------------------------------------------------------------------------
# Choosing what was not given.
# --------------------------------------------------------------------------------------

# Planning margins (choices of this tool, not facts about vLLM).
PLANNING = {
    # KV memory kept spare beyond one max-length request when choosing, for the model's own
    # error (its worst KV-memory error on the measured runs is ~0.1 GiB; logs from other
    # versions miss by up to ~0.4 GiB).
    "kv_margin_gib": 0.5,
    # max_num_seqs chosen so that every running sequence can hold this many tokens of KV
    # (or max_model_len, when shorter) with kv_fraction of the cache: beyond that vLLM would
    # preempt and recompute rather than fail, but throughput collapses.
    "tokens_per_seq": 8192,
    "kv_fraction": 0.9,
    # gpu_memory_utilization: vLLM's default, the most this planner will raise it to when the
    # default does not hold a max-length request, and what stays outside for graphs/others.
    "default_util": 0.90,
    "max_util": 0.95,
    "min_util": 0.05,
    "outside_gib": 1.0,
    "tp_sizes": (1, 2, 4, 8),
    # sequences assumed while the GPUs, the share and the context are chosen
    "probe_seqs": 64,
}


@dataclass
class Choice:
    config: ServeConfig
    estimate: Estimate
    changed: list[str]  # human sentences on what was chosen and why


def util_ceiling(gpu: Gpu) -> float:
    """Highest utilisation the free memory allows, keeping PLANNING['outside_gib'] outside."""
    free_at_init = gpu.free_bytes - FACTS["cuda_context_gib"].value * GIB
    cap = (free_at_init - PLANNING["outside_gib"] * GIB) / gpu.cuda_total_bytes
    return math.floor(cap * 100) / 100


def choose(spec: ModelSpec, gpu: Gpu, gpus: int, vllm: str, moe_backend: str | None,
           given: dict) -> Choice:
    """Fill in what `given` lacks (keys of ServeConfig), checking what it has.

    Order: tensor-parallel size (smallest that holds one request of the wanted context), then
    utilisation, then context length (longest up to the model's maximum), then sequences.
    """
    changed: list[str] = []
    total_gib = gpu.cuda_total_bytes / GIB
    d_mnbt, d_mns = serve_defaults(vllm, total_gib, gpu.name)
    mnbt = given.get("max_num_batched_tokens") or d_mnbt
    kv_dtype = given.get("kv_cache_dtype") or "auto"
    eager = bool(given.get("enforce_eager"))
    want_len = given.get("max_model_len") or spec.max_position_embeddings
    ceiling = util_ceiling(gpu)

    def cfg_for(tp: int, util: float, mml: int, mns: int) -> ServeConfig:
        return ServeConfig(tp, util, mml, mns, max(mnbt, 1), kv_dtype, eager)

    def probe_mns() -> int:
        # while the context and the GPUs are chosen, a modest sequence count: the sampler's
        # warm-up memory grows with it, and it is settled last
        return given.get("max_num_seqs") or min(d_mns, PLANNING["probe_seqs"])

    def holds(e: Estimate) -> bool:
        return e.fits and e.kv_cache_gib - e.kv_needed_gib >= PLANNING["kv_margin_gib"]

    def best_util(tp: int, mml: int) -> float:
        if given.get("gpu_memory_utilization"):
            return given["gpu_memory_utilization"]
        base = min(PLANNING["default_util"], ceiling)
        if base < PLANNING["min_util"]:  # next to nothing free: let the check say so
            return PLANNING["default_util"]
        if holds(estimate(spec, gpu, cfg_for(tp, base, mml, probe_mns()), vllm, moe_backend)):
            return base
        return max(min(PLANNING["max_util"], ceiling), base)

    # 1. tensor parallel size
    if given.get("tensor_parallel_size"):
        tp = given["tensor_parallel_size"]
    else:
        options = [t for t in PLANNING["tp_sizes"] if t <= max(gpus, 1)] or [1]
        tp = options[-1]
        for t in options:
            u = best_util(t, want_len)
            if holds(estimate(spec, gpu, cfg_for(t, u, want_len, probe_mns()), vllm,
                              moe_backend)):
                tp = t
                break
        if tp > 1:
            changed.append(f"tensor_parallel_size {tp}: the smallest of {options} that holds "
                           f"one request of {want_len} tokens")

    # 2. utilisation
    util = best_util(tp, want_len)
    if not given.get("gpu_memory_utilization") and util != PLANNING["default_util"]:
        changed.append(
            f"gpu_memory_utilization {util}: "
            + ("raised from vLLM's default 0.9 so that a full-length request fits"
               if util > PLANNING["default_util"]
               else "lowered from vLLM's default 0.9 to what is free on the GPU now"))

    # 3. context length and sequences, settled together (the sampler's memory depends on
    # the sequences, the sequences on the KV cache left)
    def longest(mns: int) -> int:
        if given.get("max_model_len"):
            return given["max_model_len"]
        full = spec.max_position_embeddings
        e = estimate(spec, gpu, cfg_for(tp, util, full, mns), vllm, moe_backend)
        if holds(e):
            return full
        spare = int(max(e.kv_cache_gib - PLANNING["kv_margin_gib"], 0) * GIB)
        n = estimate_max_model_len(spec, cfg_for(tp, util, full, mns), spare)
        return n // 1024 * 1024 if n >= 1024 else max(n, 1)

    def most_seqs(mml: int, mns: int) -> int:
        if given.get("max_num_seqs"):
            return given["max_num_seqs"]
        e = estimate(spec, gpu, cfg_for(tp, util, mml, mns), vllm, moe_backend)
        per_seq = min(mml, PLANNING["tokens_per_seq"])
        n = max(1, min(d_mns, int(e.kv_cache_tokens * PLANNING["kv_fraction"] // per_seq)))
        return n // 8 * 8 if n > 8 else n

    mns = probe_mns()
    mml = longest(mns)
    for _ in range(4):
        new_mns = most_seqs(mml, mns)
        new_mml = longest(new_mns)
        if (new_mns, new_mml) == (mns, mml):
            break
        mns, mml = new_mns, new_mml
    if not estimate(spec, gpu, cfg_for(tp, util, mml, mns), vllm, moe_backend).fits:
        # nothing fits: show vLLM's own defaults being refused, the fixes say what would fit
        mml = given.get("max_model_len") or spec.max_position_embeddings
        mns = given.get("max_num_seqs") or d_mns
    elif not given.get("max_model_len") and mml < spec.max_position_embeddings:
        changed.append(f"max_model_len {mml}: the longest (in steps of 1024) whose request "
                       f"fits with margin, below the model's {spec.max_position_embeddings}")
    if not given.get("max_num_seqs") and mns != d_mns:
        changed.append(
            f"max_num_seqs {mns}: each running sequence keeps "
            f"{min(mml, PLANNING['tokens_per_seq'])} tokens of KV cache "
            f"({PLANNING['kv_fraction']:.0%} of it); vLLM's default is {d_mns}")

    cfg = cfg_for(tp, util, mml, mns)
    est = estimate(spec, gpu, cfg, vllm, moe_backend)
    lean = {"enforce_eager": True, "max_num_batched_tokens": min(mnbt, 2048)}
    if not est.fits and not any(k in given for k in lean):
        # small cards: no CUDA graphs or compile peak, a smaller prefill chunk
        alt = choose(spec, gpu, gpus, vllm, moe_backend, {**given, **lean})
        if alt.estimate.fits:
            alt.changed.insert(0, "enforce_eager and max_num_batched_tokens "
                               f"{lean['max_num_batched_tokens']}: without them nothing fits "
                               "(CUDA graphs and torch.compile cost ~1.5 GiB)")
            return alt
    return Choice(cfg, est, changed)


def fixes(spec: ModelSpec, gpu: Gpu, gpus: int, vllm: str, moe_backend: str | None,
          cfg: ServeConfig, est: Estimate) -> list[str]:
    """What would fit instead, each as a sentence with the flag to use."""
    out: list[str] = []
    if est.failure == "free_memory":
        ceiling = util_ceiling(gpu)
        if ceiling >= PLANNING["min_util"]:
            out.append(f"{est.message}; use --gpu-memory-utilization {ceiling:.2f} or lower, "
                       "or stop what holds the GPU's memory (nvidia-smi shows it)")
        else:
            out.append(f"{est.message}; the GPU is nearly full: stop what holds its memory "
                       "(nvidia-smi shows it: a desktop, another server, WSL2's host)")
    elif est.failure == "known_oom":
        out.append(f"{est.message}; lower --gpu-memory-utilization (0.95 leaves enough on an "
                   "80 GB card) or add --enforce-eager")
    elif est.failure == "cudagraph_headroom":
        out.append(f"{est.message}; lower --gpu-memory-utilization by 0.02 or add "
                   "--enforce-eager")
    if est.failure in ("no_kv_memory", "kv_too_small"):
        out.append(est.message)
        if est.estimated_max_model_len >= 256:
            shorter = max(est.estimated_max_model_len // 1024 * 1024,
                          est.estimated_max_model_len // 256 * 256)
            out.append(f"a shorter context fits: --max-model-len {shorter}")
        smaller = replace(cfg, max_num_seqs=max(1, min(cfg.max_num_seqs, 64)))
        if smaller != cfg:
            e = estimate(spec, gpu, smaller, vllm, moe_backend)
            if e.fits:
                out.append(f"fewer sequences free activation memory: --max-num-seqs "
                           f"{smaller.max_num_seqs} fits ({e.kv_cache_gib:.2f} GiB KV cache)")
        if not cfg.kv_cache_dtype.startswith("fp8"):
            e = estimate(spec, gpu, replace(cfg, kv_cache_dtype="fp8"), vllm, moe_backend)
            if e.fits:
                out.append(f"an fp8 KV cache halves it: --kv-cache-dtype fp8 fits "
                           f"{e.kv_cache_tokens} tokens")
        ceiling = util_ceiling(gpu)
        if cfg.gpu_memory_utilization < ceiling:
            e = estimate(spec, gpu, replace(cfg, gpu_memory_utilization=ceiling), vllm,
                         moe_backend)
            if e.fits:
                out.append(f"a larger share fits: --gpu-memory-utilization {ceiling:.2f}")
        for t in PLANNING["tp_sizes"]:
            if t <= cfg.tensor_parallel_size:
                continue
            e = estimate(spec, gpu, replace(cfg, tensor_parallel_size=t), vllm, moe_backend)
            if e.fits:
                where = ("on this host" if t <= gpus
                         else f"(this host has {gpus}; needs {t} GPUs like this one)")
                out.append(f"more GPUs fit: --tensor-parallel-size {t} {where}")
                break
    return out

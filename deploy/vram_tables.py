"""The measured facts behind the VRAM estimate (deploy/vram.py), each with its source.

What vLLM's start-up accounting needs that is not in its source: the activation and sampler
peaks, non-torch memory, CUDA graph memory, the MoE kernels' weight layouts, the CUDA context
and the driver's reserve, and what changed per vLLM version. Plain data: deploy/vram.py
mirrors vLLM's arithmetic over it, bench/planner_accuracy.py checks the whole model against
real start-up logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from packaging.specifiers import SpecifierSet
from packaging.version import Version


class MoeBackend(StrEnum):
    """The MXFP4 MoE kernel families vLLM picks between; each lays the experts out its own
    way in memory (WEIGHT_LAYOUTS), so the weights' size follows from the family."""

    MARLIN = "MARLIN"
    TRITON = "TRITON"
    FLASHINFER = "FLASHINFER"

    @classmethod
    def of(cls, moe_backend: str | None) -> MoeBackend:
        """The layout of a kernel table backend name ("TRITON", "FLASHINFER (...)", ...)."""
        b = (moe_backend or "").upper()
        if "FLASHINFER" in b or "MXFP8" in b:
            return cls.FLASHINFER
        if "TRITON" in b:
            return cls.TRITON
        return cls.MARLIN


class SamplerKind(StrEnum):
    """What the profiling run's sampler warm-up costs, by vLLM version (see ACCOUNTING)."""

    SORT = "sort"  # torch sort-based top-k/top-p, up to 0.16.x
    KERNEL = "kernel"  # Triton top-k/top-p kernel from 0.17.0, FlashInfer's from 0.22.0
    LIGHT = "light"  # the V2 model runner from 0.29.0: logits and a plain sample


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
    "h200": (616, "bench/h200/run1/smi.txt: nvidia-smi 143771 MiB total, torch.cuda.mem_get_info "
                  "total 150109880320 B = 143155.7 MiB on the lent H200 (615.3 MiB, rounded up so "
                  "that the budget is never over-stated); 480 over-stated vLLM's budget by "
                  "utilization x 0.13 GiB (issue 16: 120b, eager, 0.5 planned 0.07 GiB too much KV)"),
    "rtx 3090": (430, "vllm#10517: total_gpu_memory=23.58GiB on an RTX 3090 (24576 MiB)"),
    "default": (480, "assumed equal to the H100's; not measured on other GPUs"),
}

# What vLLM's CUDA graph memory estimate (0.20+) adds on a GPU beyond FACTS' fit on the H100 runs
# (GiB). vLLM captures the graphs and measures them: the figure is the GPU's, not the code's.
CUDAGRAPH_ESTIMATE_GPU_EXTRA_GIB: dict[str, tuple[float, str]] = {
    "h100": (0.0, H100_RUNS + ": the fit itself"),
    "h200": (0.09, "bench/h200/run2 (0.24.0, 20b, 496 sequences): 'Estimated CUDA graph memory: 0.61 "
                   "GiB' against 0.525 from the H100 fit; 120b with 176 sequences logged 0.53 (fit "
                   "0.55): the larger difference taken, so the KV cache is never over-stated"),
    "rtx 4090": (0.0, "apron's 0.30.0 boot (0.63 GiB logged): ACCOUNTING's >=0.29.0 row was fitted "
                      "with it"),
    "default": (0.09, "not measured: the largest difference seen (H200) so that no GPU over-states"),
}

# Marlin MoE's profiling run peaks above the Triton one by a constant on 0.24.x (workspace):
# bench/h200/run1 u20-marlin and b20-marlin-0 (VLLM_MXFP4_USE_MARLIN / moe_backend 'marlin' on
# the H200, 20b, eager, 4 sequences, 2048 batched tokens): 'Available KV cache memory' 27.67 and
# 0.62 GiB, 0.10 GiB under the Triton runs' accounting with Marlin's weights (profile peak 14.88
# vs 14.79 GiB). The public Marlin logs of 0.11.2 (H100), 0.19.0 (A100) and 0.30.0 (RTX 4090)
# need none (their rows of ACCOUNTING were fitted with them): other versions add nothing.
MARLIN_PEAK_EXTRA: tuple[tuple[str, float, str], ...] = (
    (">=0.24.0,<0.25.0", 0.10, "bench/h200/run1 u20-marlin, b20-marlin-0 (see above)"),
)

# How each MoE kernel lays out the MXFP4 experts in memory (vLLM's
# mxfp4_round_up_hidden_size_and_intermediate_size, 0.24.0 fused_moe/oracle/mxfp4.py
# L633-665, and quantization/mxfp4.py in 0.10.x-0.12.x), and what the real loads add.
# `const_gib` by vLLM version range: the difference between the logged "Model loading took"
# and the padded tensor bytes, as (minimum version, GiB, GiB per expert x layer).


@dataclass(frozen=True)
class WeightLayout:
    hidden_pad: int
    intermediate_pad: int
    const_gib: tuple[tuple[str, float, float], ...]  # ascending by minimum version
    source: str


WEIGHT_LAYOUTS: dict[MoeBackend, WeightLayout] = {
    MoeBackend.MARLIN: WeightLayout(
        256, 128, (("0.0", 0.07, 0.0), ("0.20.0", 0.107, 3.0e-5)),
        "round_up(hidden, 256), round_up(intermediate, 128) (0.25.1 fused_moe/oracle/mxfp4.py "
        "mxfp4_round_up_hidden_size_and_intermediate_size L640-645); vllm#23278 (0.10.1, H100, "
        "Marlin): 'Model loading took 65.9651 GiB' for 120b vs 65.90 computed (+0.07; also "
        "huikang 0.11.2 and the A100 0.19.0 log, 13.72). From 0.20.0: 20b +0.13 (apron's RTX 4090 "
        "boot on 0.30.0, model_weight_memory 13.80 GiB; bench/h200/run1 u20-marlin on 0.24.0, "
        "13.8 GiB) and 120b +0.245 (bench/h200/run4 u120-marlin, 0.24.0: 66.14 GiB): 0.107 + "
        "3.0e-5 GiB per expert x layer (768 for 20b, 4608 for 120b). 0.20.0-0.23.x were not "
        "measured: assumed like 0.24.0"),
    MoeBackend.TRITON: WeightLayout(
        1, 64, (("0.0", 0.0, 0.0),),
        "computed part by part by triton_weight_bytes() with the TRITON_LOADS table below"),
    MoeBackend.FLASHINFER: WeightLayout(
        256, 256, (("0.0", 0.0, 0.0),),
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


def row_for_version(rows, version: Version):
    """The first row of a version-keyed table whose ``versions`` specifier holds ``version``
    (judged by its release: ``0.10.1+gptoss`` and ``0.11.1rc4`` by 0.10.1 and 0.11.1)."""
    v = Version(version.base_version)
    for row in rows:
        if v in SpecifierSet(row.versions):
            return row
    raise AssertionError(version)


# Start-ups that ran out of memory although the accounting above says they fit: version
# regressions reported upstream. A configuration that leaves less than `min_outside_gib`
# outside the requested share (free at start-up - requested) is refused for these versions.
@dataclass(frozen=True)
class KnownOom:
    versions: str  # PEP 440 specifier on the base version
    min_outside_gib: float
    source: str


KNOWN_START_UP_OOMS: tuple[KnownOom, ...] = (
    KnownOom(
        ">=0.14.0,<0.15.0", 2.0,
        "vllm#33155 (open): gpt-oss-120b on one H100 ran with --gpu-memory-utilization 0.97 "
        "on 0.11.2 and runs out of memory at start-up on 0.14.1 even with 5K context and 1 "
        "sequence (1.87 GiB left outside)"),
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
    sampler: SamplerKind
    compile_peak_gib: float
    extra_gib_per_layer: float
    penalty_bins: bool
    cudagraph_estimate_extra_gib: float
    source: str


ACCOUNTING: tuple[Accounting, ...] = (
    Accounting(
        "<0.12.0", SamplerKind.SORT, 0.83, 0.0, False, 0.0,
        "compile peak fitted on huikang (0.11.2, H100, 120b, Marlin, 6 sequences, 8192 "
        "batched tokens, graphs on): 76.01 requested - 65.9651 weights - 8.99 KV - 0.22 "
        "non-torch = 0.83 GiB, below the 1.10-1.17 GiB that 0.24.0 peaks at; one log only. "
        "Sampler: the torch sort-based top-k/top-p (FACTS sampler_bytes_per_vocab_entry_sort)"),
    Accounting(
        ">=0.12.0,<0.17.0", SamplerKind.SORT, FACTS["compile_peak_gib"].value, 0.0, False, 0.0,
        "0.24.0's compile peak (no log of 0.12-0.16 says otherwise); sort-based sampler"),
    Accounting(
        ">=0.17.0,<0.25.0", SamplerKind.KERNEL, FACTS["compile_peak_gib"].value, 0.0, False, 0.0,
        H100_RUNS + " (0.24.0); the A100 0.19.0 log agrees (KV 36.56 GiB planned and logged)"),
    Accounting(
        ">=0.25.0,<0.29.0", SamplerKind.KERNEL, FACTS["compile_peak_gib"].value, 0.0405, False, 0.0,
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
        ">=0.29.0", SamplerKind.LIGHT, FACTS["compile_peak_gib"].value, 0.033, True, 0.165,
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


# --------------------------------------------------------------------------------------
# Physical memory beyond the accounting: the load-time peak and the allocator's slack.
# --------------------------------------------------------------------------------------

H200_TIGHT = (
    "bench/h200/run1 (real vLLM 0.24.0 start-ups of gpt-oss-20b on the lent H200 while a second "
    "process held all but 15.8-17.3 GiB; eager, 4 sequences, 16k context)"
)


@dataclass(frozen=True)
class LoadPeak:
    """What converting the MXFP4 experts to a kernel's layout needs beyond the final weights,
    in units of one layer's experts on one rank (the conversion runs layer by layer:
    fused_moe/oracle/mxfp4.py convert_gpt_oss_weight_to_mxfp4_moe_kernel_format, Triton's
    _swizzle_mxfp4, Marlin's repack), read as the least free memory at which the load works."""

    versions: str  # PEP 440 specifier on the release
    backend: MoeBackend
    expert_layers: float
    source: str


LOAD_PEAKS: tuple[LoadPeak, ...] = (
    LoadPeak(">=0.0", MoeBackend.TRITON, 7.0,
             H200_TIGHT + ": b20-triton-0 ran out of memory in _swizzle_mxfp4 with 16.505 GiB "
             "free (process at 16.28 GiB, 254 MiB more wanted); b20-triton-2 loaded with 16.88 "
             "GiB free: 16.365 GiB after the CUDA context = 13.58 GiB of weights + 2.78 GiB = "
             "7.06 x one layer's experts (0.394 GiB); 7.0 keeps the run that worked. The "
             "figure is the least free memory that worked, the load's own slack included. "
             "Measured on 0.24.0 only; assumed for the other releases"),
    LoadPeak(">=0.0", MoeBackend.MARLIN, 3.6,
             H200_TIGHT + ": b20-marlin-1 loaded (and then found no KV memory) with 15.755 GiB "
             "free: 15.24 GiB after the context = 13.80 + 1.42 GiB = 3.6 layers of experts at "
             "most (an upper bound: no Marlin load failed). Measured on 0.24.0 only"),
    LoadPeak(">=0.0", MoeBackend.FLASHINFER, 7.0,
             "not measured (no Blackwell here): Triton's figure assumed"),
)


@dataclass(frozen=True)
class Slack:
    """Free memory the KV cache allocation needs beyond the requested share: PyTorch keeps
    blocks reserved that it cannot reuse for the KV tensors (issue 10)."""

    versions: str
    gib: float
    source: str


SLACKS: tuple[Slack, ...] = (
    Slack(">=0.0", 0.5,
          "issue 10's H200 runs (0.24.0, 20b, eager, utilization set to the free memory): twice "
          "vLLM logged 2.56 and 3.25 GiB of available KV cache and ran out of memory allocating "
          "it, PyTorch holding ~0.3 GiB reserved it could not use; with 0.9 GiB outside "
          "utilization x total (after its context) it started. jaminjeong's public H100 boot "
          "(0.25.1, 120b, 0.95, another process holding 2960 MiB) started with 0.55 GiB "
          "outside; " + H200_TIGHT + ": every run that reached the KV cache had 1.10 GiB "
          "outside and started. The least that works lies between ~0.3 and 0.55 GiB (0.10 of "
          "jaminjeong's 0.55 went to CUDA graphs after the KV cache): 0.5"),
)

"""Choosing the serving flags a user left out, and what would fit when nothing does.

`choose` fills in what a `Request` lacks by asking the estimate (deploy/vram.py) about
candidate configurations, in this order: tensor-parallel size (the smallest that holds one
request of the wanted context), utilisation, context length (the longest up to the model's
maximum), then sequences; when nothing fits it tries once more without CUDA graphs and with a
smaller prefill chunk. `fixes` says, for a configuration that does not fit, which flag would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum

from packaging.version import Version

from deploy.model_specs import GIB, ModelSpec
from deploy.vram import (
    Estimate,
    Failure,
    Gpu,
    ServeConfig,
    estimate,
    estimate_max_model_len,
    serve_defaults,
    slack_bytes,
    weights_bytes,
)
from deploy.vram_tables import FACTS, MoeBackend


@dataclass(frozen=True)
class Margins:
    """Planning margins: choices of this tool, not facts about vLLM."""

    # KV memory kept spare beyond one max-length request when choosing, for the model's own
    # error: 2 % of the requested share, at least 0.15 and at most 0.5 GiB (its KV error on the
    # measured H100/H200 runs is <= 0.1 GiB; logs from other versions miss by up to ~0.4 GiB).
    kv_margin_fraction: float = 0.02
    kv_margin_min_gib: float = 0.15
    kv_margin_max_gib: float = 0.5
    # gpu_memory_utilization: vLLM's default, the most this planner will raise it to, and the
    # least worth planning with
    default_util: float = 0.90
    max_util: float = 0.98
    min_util: float = 0.05
    # memory others hold may grow (a desktop, a browser on the same card): this share of it is
    # kept free besides vLLM's slack, plus a fixed 0.1 GiB
    others_growth: float = 0.10
    others_growth_max_gib: float = 1.0
    fixed_margin_gib: float = 0.1
    tp_sizes: tuple[int, ...] = (1, 2, 4, 8)
    # sequences assumed while the GPUs, the share and the context are chosen
    probe_seqs: int = 64
    # the shortest context worth serving: gpt-oss reasons before it answers, and a reasoning
    # answer with a short prompt runs to a few thousand tokens
    min_context: int = 4096
    # the lean steps for small cards: prefill chunks of at most this, then of this
    lean_batched_tokens: int = 2048
    leanest_batched_tokens: int = 512
    # a batch host whose weights take at most this share of one GPU gets prefill chunks this
    # many times vLLM's default: vLLM's tuning guide recommends max_num_batched_tokens > 8192 for
    # throughput "especially for smaller models on large GPUs" (docs/configuration/optimization.md);
    # on the H200, 20b batches served a median 12,936 tokens/s with 16384 against 11,962 with 8192
    # (bench/h200/run5 to run7); 120b (46 % of the H200) showed no gain (7,246 against 7,253) and
    # keeps the default
    small_model_share: float = 0.25
    batch_chunk_factor: int = 2


PLANNING = Margins()
# what one PCIe 4.0 x16 link moves in practice (32 GB/s raw), for the CPU offload estimate
PCIE_GB_S = 25.0


class Workload(StrEnum):
    """What a host is expected to serve (the `workload` host setting). The scheduling flags
    stay vLLM's own defaults, except bigger prefill chunks for a batch host whose model is small
    for its GPU (Margins.small_model_share; bench/h200/run5 to run7, docs/vram-planner.md). The
    workload decides what gives way when memory is short."""

    CHAT = "chat"  # the longest context for one request first, then concurrency (the default)
    LONG = "long"  # long documents: as chat (the full context is what they need)
    BATCH = "batch"  # offline batches: vLLM's concurrency first, then the longest context


@dataclass(frozen=True)
class Request:
    """The serving flags a user gave, by their vLLM names; None: the planner chooses."""

    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    tensor_parallel_size: int | None = None
    kv_cache_dtype: str | None = None
    enforce_eager: bool | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, given: Request | dict) -> Request:
        return given if isinstance(given, Request) else cls(**given)


class Action(StrEnum):
    """What the planner changed from vLLM's defaults, and why (one sentence each)."""

    TENSOR_PARALLEL = "tensor_parallel"
    UTILIZATION_RAISED = "utilization_raised"
    UTILIZATION_LOWERED = "utilization_lowered"
    CONTEXT_SHORTENED = "context_shortened"
    SEQUENCES_LIMITED = "sequences_limited"
    EAGER_SMALL_CHUNKS = "eager_small_chunks"
    FP8_KV_CACHE = "fp8_kv_cache"
    SMALLEST_CHUNKS = "smallest_chunks"
    BATCH_CHUNKS = "batch_chunks"


@dataclass(frozen=True)
class Change:
    action: Action
    text: str  # for a person: the flag, its value and why


@dataclass
class Choice:
    config: ServeConfig
    estimate: Estimate
    changes: list[Change] = field(default_factory=list)
    default_seqs: int = 0  # vLLM's own max_num_seqs on this GPU

    @property
    def changed(self) -> list[str]:
        """Human sentences on what was chosen and why."""
        return [c.text for c in self.changes]


def kv_margin_gib(requested_gib: float) -> float:
    m = PLANNING
    return min(max(m.kv_margin_fraction * requested_gib, m.kv_margin_min_gib), m.kv_margin_max_gib)


def util_ceiling(gpu: Gpu, vllm: str | Version = "0.24.0") -> float:
    """Highest utilisation the free memory allows: vLLM's CUDA context, the KV allocation's
    slack, and room for what others hold to grow stay outside."""
    ctx = FACTS["cuda_context_gib"].value * GIB
    free_at_init = gpu.free_bytes - ctx
    held = max(gpu.cuda_total_bytes - gpu.free_bytes, 0)
    growth = min(PLANNING.others_growth * held, PLANNING.others_growth_max_gib * GIB)
    outside = slack_bytes(vllm) + growth + PLANNING.fixed_margin_gib * GIB
    cap = (free_at_init - outside) / gpu.cuda_total_bytes
    return math.floor(cap * 100) / 100


@dataclass(frozen=True)
class _Search:
    """One host's question: the model, the GPUs, the vLLM version, what the user gave."""

    spec: ModelSpec
    gpu: Gpu
    gpus: int
    vllm: str | Version
    moe_backend: str | None
    req: Request
    workload: Workload = Workload.CHAT

    @property
    def defaults(self) -> tuple[int, int]:
        """vLLM's own (max_num_batched_tokens, max_num_seqs) on this GPU."""
        return serve_defaults(self.vllm, self.gpu.cuda_total_bytes / GIB, self.gpu.name)

    def batched_tokens(self) -> int:
        if self.req.max_num_batched_tokens:
            return self.req.max_num_batched_tokens
        return self.defaults[0] * (PLANNING.batch_chunk_factor if self.small_batch_host() else 1)

    def small_batch_host(self) -> bool:
        """A batch host whose model's weights take at most PLANNING.small_model_share of one GPU."""
        return (self.workload is Workload.BATCH and weights_bytes(self.spec, 1, self.moe_backend, self.vllm)
                <= PLANNING.small_model_share * self.gpu.cuda_total_bytes)

    def config(self, tp: int, util: float, mml: int, mns: int) -> ServeConfig:
        return ServeConfig(tp, util, mml, mns, max(self.batched_tokens(), 1),
                           self.req.kv_cache_dtype or "auto", bool(self.req.enforce_eager))

    def estimate(self, cfg: ServeConfig) -> Estimate:
        return estimate(self.spec, self.gpu, cfg, self.vllm, self.moe_backend)

    def holds(self, cfg: ServeConfig) -> bool:
        """Fits, with a margin (kv_margin_gib) beyond one max-length request."""
        e = self.estimate(cfg)
        return e.fits and e.kv_cache_gib - e.kv_needed_gib >= kv_margin_gib(e.requested_gib)

    def probe_seqs(self) -> int:
        # while the context and the GPUs are chosen, a modest sequence count: the sampler's
        # warm-up memory grows with it, and it is settled last
        return self.req.max_num_seqs or min(self.defaults[1], PLANNING.probe_seqs)

    def wanted_len(self) -> int:
        return self.req.max_model_len or self.spec.max_position_embeddings

    def utilization(self, tp: int, mml: int) -> float:
        """vLLM's default share, less when less is free, more (in steps of 0.01, up to what is
        free) when a request of `mml` tokens needs it: the least share that holds it with
        vLLM's default sequences, else with a few."""
        if self.req.gpu_memory_utilization:
            return self.req.gpu_memory_utilization
        ceiling = min(util_ceiling(self.gpu, self.vllm), PLANNING.max_util)
        base = min(PLANNING.default_util, ceiling)
        if base < PLANNING.min_util:  # next to nothing free: let the check say so
            return PLANNING.default_util
        steps = [base] + [round(base + k / 100, 2) for k in range(1, 100)
                          if base + k / 100 <= ceiling + 1e-9]
        if self.estimate(self.config(tp, base, mml, self.probe_seqs())).failure \
                is Failure.LOAD_PEAK:
            return base  # the weights do not load: no share helps
        for seqs in dict.fromkeys((self.req.max_num_seqs or self.defaults[1], self.probe_seqs())):
            for u in steps:
                if self.holds(self.config(tp, u, mml, seqs)):
                    return u
        return steps[-1]

    def tensor_parallel(self) -> int:
        """The given size, else the smallest on this host that holds the wanted context."""
        if self.req.tensor_parallel_size:
            return self.req.tensor_parallel_size
        options = [t for t in PLANNING.tp_sizes if t <= max(self.gpus, 1)] or [1]
        want = self.wanted_len()
        for t in options:
            if self.holds(self.config(t, self.utilization(t, want), want, self.probe_seqs())):
                return t
        return options[-1]

    def longest(self, tp: int, util: float, mns: int) -> int:
        """The given context, else the longest (in steps of 1024) that holds with margin; never
        under PLANNING.min_context (that one then does not hold, and the plan says so)."""
        if self.req.max_model_len:
            return self.req.max_model_len
        full = self.spec.max_position_embeddings
        cfg = self.config(tp, util, full, mns)
        e = self.estimate(cfg)
        margin = kv_margin_gib(e.requested_gib)
        if e.fits and e.kv_cache_gib - e.kv_needed_gib >= margin:
            return full
        spare = int(max(e.kv_cache_gib - margin, 0) * GIB)
        n = estimate_max_model_len(self.spec, cfg, spare) // 1024 * 1024
        return max(n, PLANNING.min_context)

    def most_seqs(self, tp: int, util: float, mml: int) -> int:
        """The given count, else vLLM's default, fewer only as far as memory forces (the
        sampler's warm-up grows with the sequences and must leave one request of `mml`)."""
        if self.req.max_num_seqs:
            return self.req.max_num_seqs
        target = self.defaults[1]
        if self.holds(self.config(tp, util, mml, target)):
            return target
        lo, hi, best = 1, target - 1, 1
        while lo <= hi:
            mid = (lo + hi) // 2
            if self.holds(self.config(tp, util, mml, mid)):
                best, lo = mid, mid + 1
            else:
                hi = mid - 1
        return best // 8 * 8 if best > 8 else best

    def choose(self) -> Choice:
        req, spec = self.req, self.spec
        changes: list[Change] = []
        d_mnbt, d_mns = self.defaults
        tp = self.tensor_parallel()
        if not req.tensor_parallel_size and tp > 1:
            options = [t for t in PLANNING.tp_sizes if t <= max(self.gpus, 1)] or [1]
            changes.append(Change(Action.TENSOR_PARALLEL, (
                f"tensor_parallel_size {tp}: the smallest of {options} that holds one request "
                f"of {self.wanted_len()} tokens")))
        util = self.utilization(tp, self.wanted_len())
        if not req.gpu_memory_utilization and util != PLANNING.default_util:
            raised = util > PLANNING.default_util
            changes.append(Change(
                Action.UTILIZATION_RAISED if raised else Action.UTILIZATION_LOWERED,
                f"gpu_memory_utilization {util}: "
                + ("raised from vLLM's default 0.9 so that a full-length request fits" if raised
                   else "lowered from vLLM's default 0.9 to what is free on the GPU now")))
        # the longest context for one request first, then as many sequences as still hold it;
        # a batch host the other way round, while its context stays useful
        mml = self.longest(tp, util, self.probe_seqs())
        mns = self.most_seqs(tp, util, mml)
        if self.workload is Workload.BATCH and mns < d_mns and not req.max_num_seqs:
            wide = self.longest(tp, util, d_mns)
            if self.holds(self.config(tp, util, wide, d_mns)):
                mml, mns = wide, d_mns
        if not self.estimate(self.config(tp, util, mml, mns)).fits:
            # nothing fits: show vLLM's own defaults refused, the fixes say what would fit
            cfg = self.config(tp, util, self.wanted_len(), req.max_num_seqs or d_mns)
            return Choice(cfg, self.estimate(cfg), changes, d_mns)
        if not req.max_model_len and mml < spec.max_position_embeddings:
            changes.append(Change(Action.CONTEXT_SHORTENED, (
                f"max_model_len {mml}: the longest (in steps of 1024) whose request fits with "
                f"margin, below the model's {spec.max_position_embeddings}")))
        if not req.max_num_seqs and mns < d_mns:
            changes.append(Change(Action.SEQUENCES_LIMITED, (
                f"max_num_seqs {mns}, below vLLM's default {d_mns}: the sampler's warm-up over "
                f"{d_mns} sequences takes the memory one request of {mml} tokens needs")))
        cfg = self.config(tp, util, mml, mns)
        if not req.max_num_batched_tokens and cfg.max_num_batched_tokens != d_mnbt:
            changes.append(Change(Action.BATCH_CHUNKS, (
                f"max_num_batched_tokens {cfg.max_num_batched_tokens}, above vLLM's default {d_mnbt}: "
                "a batch host with a model small for its GPU serves more tokens per second with "
                "bigger prefill chunks (vLLM's tuning guide)")))
        return Choice(cfg, self.estimate(cfg), changes, d_mns)


def _relaxations(req: Request, fp8_kv_ok: bool, d_mnbt: int) -> list[tuple[Request, list[Change]]]:
    """What a careful person gives up, in order, when the wanted plan does not fit; only
    what the user left out."""
    steps: list[tuple[Request, list[Change]]] = [(req, [])]
    cur, said = req, []
    if req.enforce_eager is None and req.max_num_batched_tokens is None:
        lean = min(d_mnbt, PLANNING.lean_batched_tokens)
        cur = replace(cur, enforce_eager=True, max_num_batched_tokens=lean)
        said = [*said, Change(Action.EAGER_SMALL_CHUNKS, (
            f"enforce_eager and max_num_batched_tokens {lean}: CUDA graphs and torch.compile "
            "cost ~1.5 GiB that the context needs (decoding is slower without graphs)"))]
        steps.append((cur, said))
    if req.kv_cache_dtype is None and fp8_kv_ok:
        cur = replace(cur, kv_cache_dtype="fp8")
        said = [*said, Change(Action.FP8_KV_CACHE, (
            "kv_cache_dtype fp8: half the KV memory per token (a small loss of precision in "
            "attention)"))]
        steps.append((cur, said))
    if req.max_num_batched_tokens is None:
        cur = replace(cur, max_num_batched_tokens=PLANNING.leanest_batched_tokens)
        said = [*said, Change(Action.SMALLEST_CHUNKS, (
            f"max_num_batched_tokens {PLANNING.leanest_batched_tokens}: the smallest prefill "
            "chunks (long prompts take longer to start answering)"))]
        steps.append((cur, said))
    return steps


def choose(spec: ModelSpec, gpu: Gpu, gpus: int, vllm: str | Version, moe_backend: str | None,
           given: Request | dict, fp8_kv_ok: bool = False,
           workload: Workload | str = Workload.CHAT) -> Choice:
    """Fill in what `given` lacks (a Request, or a dict of its fields), checking what it has.

    When the wanted plan does not fit with the full context, try what a careful person would
    (_relaxations: eager mode and smaller prefill chunks, an fp8 KV cache where `fp8_kv_ok`,
    the smallest chunks) and keep the one with the longest context, then the most sequences,
    then the fewest things given up; what was given up goes first in the changes.
    """
    req = Request.of(given)
    work = Workload(workload)
    d_mnbt = serve_defaults(vllm, gpu.cuda_total_bytes / GIB, gpu.name)[0]
    best: tuple | None = None
    for rank, (step, said) in enumerate(_relaxations(req, fp8_kv_ok, d_mnbt)):
        ch = _Search(spec, gpu, gpus, vllm, moe_backend, step, work).choose()
        key = (ch.estimate.fits, ch.config.max_model_len if ch.estimate.fits else 0,
               ch.config.max_num_seqs if ch.estimate.fits else 0, -rank)
        if best is None or key > best[0]:
            ch.changes[:0] = said
            best = (key, ch)
        if ch.estimate.fits and ch.config.max_model_len >= (req.max_model_len
                                                             or spec.max_position_embeddings):
            break  # the full context fits: nothing more to give up
        if ch.estimate.failure is Failure.LOAD_PEAK:
            break  # the weights do not load: giving up graphs or KV precision cannot help
    return best[1]


def fixes(spec: ModelSpec, gpu: Gpu, gpus: int, vllm: str | Version, moe_backend: str | None,
          cfg: ServeConfig, est: Estimate, fp8_kv_ok: bool = True,
          host_free_ram_gib: float | None = None) -> list[str]:
    """What would fit instead, each as a sentence with the flag to use (an fp8 KV cache only
    when `fp8_kv_ok`: deploy/correctness.py knows releases where it answers wrong; CPU weight
    offload only with the host's free RAM, when it is known)."""
    out: list[str] = []
    if est.failure is Failure.FREE_MEMORY:
        ceiling = util_ceiling(gpu, vllm)
        if ceiling >= PLANNING.min_util:
            out.append(f"{est.message}; use --gpu-memory-utilization {ceiling:.2f} or lower, "
                       "or stop what holds the GPU's memory (nvidia-smi shows it)")
        else:
            out.append(f"{est.message}; the GPU is nearly full: stop what holds its memory "
                       "(nvidia-smi shows it: a desktop, another server, WSL2's host)")
    elif est.failure is Failure.KNOWN_OOM:
        out.append(f"{est.message}; lower --gpu-memory-utilization (0.95 leaves enough on an "
                   "80 GB card) or add --enforce-eager")
    elif est.failure is Failure.CUDAGRAPH_HEADROOM:
        out.append(f"{est.message}; lower --gpu-memory-utilization by 0.02 or add "
                   "--enforce-eager")
    elif est.failure is Failure.NO_SLACK:
        out.append(f"{est.message}; lower --gpu-memory-utilization to "
                   f"{util_ceiling(gpu, vllm):.2f} or free memory on the GPU")
    elif est.failure is Failure.LOAD_PEAK:
        out.extend(cannot_load(spec, gpu, gpus, vllm, moe_backend, cfg, est, host_free_ram_gib))
    if est.failure not in (Failure.NO_KV_MEMORY, Failure.KV_TOO_SMALL):
        return out
    out.append(est.message)
    if est.estimated_max_model_len >= 256:
        shorter = max(est.estimated_max_model_len // 1024 * 1024,
                      est.estimated_max_model_len // 256 * 256)
        out.append(f"a shorter context fits: --max-model-len {shorter}")

    smaller = replace(cfg, max_num_seqs=max(1, min(cfg.max_num_seqs, 64)))
    if smaller != cfg and (e := _fitting(spec, gpu, vllm, moe_backend, smaller)):
        out.append(f"fewer sequences free activation memory: --max-num-seqs "
                   f"{smaller.max_num_seqs} fits ({e.kv_cache_gib:.2f} GiB KV cache)")
    if fp8_kv_ok and not cfg.kv_cache_dtype.startswith("fp8") and (
            e := _fitting(spec, gpu, vllm, moe_backend, replace(cfg, kv_cache_dtype="fp8"))):
        out.append(f"an fp8 KV cache halves it: --kv-cache-dtype fp8 fits "
                   f"{e.kv_cache_tokens} tokens")
    ceiling = util_ceiling(gpu, vllm)
    if cfg.gpu_memory_utilization < ceiling and _fitting(
            spec, gpu, vllm, moe_backend, replace(cfg, gpu_memory_utilization=ceiling)):
        out.append(f"a larger share fits: --gpu-memory-utilization {ceiling:.2f}")
    for t in PLANNING.tp_sizes:
        if t > cfg.tensor_parallel_size and _fitting(
                spec, gpu, vllm, moe_backend, replace(cfg, tensor_parallel_size=t)):
            where = ("on this host" if t <= gpus
                     else f"(this host has {gpus}; needs {t} GPUs like this one)")
            out.append(f"more GPUs fit: --tensor-parallel-size {t} {where}")
            break
    return out


def _fitting(spec: ModelSpec, gpu: Gpu, vllm: str | Version, moe_backend: str | None,
             cfg: ServeConfig) -> Estimate | None:
    """The estimate of `cfg` when it fits, else None."""
    e = estimate(spec, gpu, cfg, vllm, moe_backend)
    return e if e.fits else None


def cannot_load(spec: ModelSpec, gpu: Gpu, gpus: int, vllm: str | Version,
                moe_backend: str | None, cfg: ServeConfig, est: Estimate,
                host_free_ram_gib: float | None = None) -> list[str]:
    """The model does not even load here: the numbers, and the real options."""
    out = [est.message]
    for t in PLANNING.tp_sizes:
        if t > cfg.tensor_parallel_size and _fitting(
                spec, gpu, vllm, moe_backend, replace(cfg, tensor_parallel_size=t)):
            where = ("on this host" if t <= gpus
                     else f"(this host has {gpus}; needs {t} GPUs like this one)")
            out.append(f"more GPUs: --tensor-parallel-size {t} {where}")
            break
    short = est.load_peak_gib - est.free_gib
    gb = math.ceil(short + 1)
    steps = PCIE_GB_S / (gb * GIB / 1e9)  # every forward pass reads the offloaded bytes
    if (MoeBackend.of(moe_backend) is MoeBackend.MARLIN and steps >= 2
            and host_free_ram_gib is not None and host_free_ram_gib < gb + 2):
        out.append(f"CPU weight offload (--cpu-offload-gb {gb}) needs {gb} GiB of pinned host "
                   f"memory and room besides; this host has {host_free_ram_gib:.1f} GiB free")
    elif MoeBackend.of(moe_backend) is MoeBackend.MARLIN and steps >= 2:
        out.append(
            f"CPU weight offload: --cpu-offload-gb {gb} or more keeps that much of the weights "
            f"in pinned host memory ({gb} GiB of free RAM; vLLM 0.24.0 re-offloads Marlin's "
            "repacked experts after loading: model_loader/utils.py device_loading_context); "
            f"every forward pass then reads them over PCIe: at most ~{steps:.0f} decoding steps "
            f"a second at PCIe 4.0 x16's ~{PCIE_GB_S:.0f} GB/s; not measured by this project")
    elif MoeBackend.of(moe_backend) is MoeBackend.MARLIN:
        out.append(f"CPU weight offload would have to keep {gb} of the {est.weights_gib:.0f} "
                   f"GiB of weights in host memory: under {max(steps, 0.1):.1f} decoding steps "
                   "a second over PCIe, too slow to serve")
    else:
        out.append(
            "CPU weight offload does not help with this MoE backend: vLLM 0.24.0 keeps the "
            "converted Triton experts on the GPU (they are not Parameters, so "
            "device_loading_context cannot move them back)")
    out.append("another engine that keeps experts in host memory (llama.cpp or Ollama with "
               "a GGUF of the model) serves it on this card, more slowly")
    return out

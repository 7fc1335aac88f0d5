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
)
from deploy.vram_tables import FACTS


@dataclass(frozen=True)
class Margins:
    """Planning margins: choices of this tool, not facts about vLLM."""

    # KV memory kept spare beyond one max-length request when choosing, for the model's own
    # error (its worst KV-memory error on the measured runs is ~0.1 GiB; logs from other
    # versions miss by up to ~0.4 GiB).
    kv_margin_gib: float = 0.5
    # max_num_seqs chosen so that every running sequence can hold this many tokens of KV
    # (or max_model_len, when shorter) with kv_fraction of the cache: beyond that vLLM would
    # preempt and recompute rather than fail, but throughput collapses.
    tokens_per_seq: int = 8192
    kv_fraction: float = 0.9
    # gpu_memory_utilization: vLLM's default, the most this planner will raise it to when the
    # default does not hold a max-length request, and what stays outside for graphs/others.
    default_util: float = 0.90
    max_util: float = 0.95
    min_util: float = 0.05
    outside_gib: float = 1.0
    tp_sizes: tuple[int, ...] = (1, 2, 4, 8)
    # sequences assumed while the GPUs, the share and the context are chosen
    probe_seqs: int = 64
    # the lean retry for small cards: no CUDA graphs, prefill chunks of at most this
    lean_batched_tokens: int = 2048


PLANNING = Margins()


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


@dataclass(frozen=True)
class Change:
    action: Action
    text: str  # for a person: the flag, its value and why


@dataclass
class Choice:
    config: ServeConfig
    estimate: Estimate
    changes: list[Change] = field(default_factory=list)

    @property
    def changed(self) -> list[str]:
        """Human sentences on what was chosen and why."""
        return [c.text for c in self.changes]


def util_ceiling(gpu: Gpu) -> float:
    """Highest utilisation the free memory allows, keeping PLANNING.outside_gib outside."""
    free_at_init = gpu.free_bytes - FACTS["cuda_context_gib"].value * GIB
    cap = (free_at_init - PLANNING.outside_gib * GIB) / gpu.cuda_total_bytes
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

    @property
    def defaults(self) -> tuple[int, int]:
        """vLLM's own (max_num_batched_tokens, max_num_seqs) on this GPU."""
        return serve_defaults(self.vllm, self.gpu.cuda_total_bytes / GIB, self.gpu.name)

    def config(self, tp: int, util: float, mml: int, mns: int) -> ServeConfig:
        mnbt = self.req.max_num_batched_tokens or self.defaults[0]
        return ServeConfig(tp, util, mml, mns, max(mnbt, 1), self.req.kv_cache_dtype or "auto",
                           bool(self.req.enforce_eager))

    def estimate(self, cfg: ServeConfig) -> Estimate:
        return estimate(self.spec, self.gpu, cfg, self.vllm, self.moe_backend)

    def holds(self, cfg: ServeConfig) -> bool:
        """Fits, with PLANNING.kv_margin_gib spare beyond one max-length request."""
        e = self.estimate(cfg)
        return e.fits and e.kv_cache_gib - e.kv_needed_gib >= PLANNING.kv_margin_gib

    def probe_seqs(self) -> int:
        # while the context and the GPUs are chosen, a modest sequence count: the sampler's
        # warm-up memory grows with it, and it is settled last
        return self.req.max_num_seqs or min(self.defaults[1], PLANNING.probe_seqs)

    def wanted_len(self) -> int:
        return self.req.max_model_len or self.spec.max_position_embeddings

    def utilization(self, tp: int, mml: int) -> float:
        """vLLM's default share, less when less is free, more when a long request needs it."""
        if self.req.gpu_memory_utilization:
            return self.req.gpu_memory_utilization
        ceiling = util_ceiling(self.gpu)
        base = min(PLANNING.default_util, ceiling)
        if base < PLANNING.min_util:  # next to nothing free: let the check say so
            return PLANNING.default_util
        if self.holds(self.config(tp, base, mml, self.probe_seqs())):
            return base
        return max(min(PLANNING.max_util, ceiling), base)

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
        """The given context, else the longest (in steps of 1024) that holds with margin."""
        if self.req.max_model_len:
            return self.req.max_model_len
        full = self.spec.max_position_embeddings
        cfg = self.config(tp, util, full, mns)
        e = self.estimate(cfg)
        if e.fits and e.kv_cache_gib - e.kv_needed_gib >= PLANNING.kv_margin_gib:
            return full
        spare = int(max(e.kv_cache_gib - PLANNING.kv_margin_gib, 0) * GIB)
        n = estimate_max_model_len(self.spec, cfg, spare)
        return n // 1024 * 1024 if n >= 1024 else max(n, 1)

    def most_seqs(self, tp: int, util: float, mml: int, mns: int) -> int:
        """The given count, else as many as keep tokens_per_seq of KV each (at most vLLM's)."""
        if self.req.max_num_seqs:
            return self.req.max_num_seqs
        e = self.estimate(self.config(tp, util, mml, mns))
        per_seq = min(mml, PLANNING.tokens_per_seq)
        n = max(1, min(self.defaults[1], int(e.kv_cache_tokens * PLANNING.kv_fraction // per_seq)))
        return n // 8 * 8 if n > 8 else n

    def choose(self) -> Choice:
        req, spec = self.req, self.spec
        changes: list[Change] = []
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

        # context length and sequences, settled together (the sampler's memory depends on
        # the sequences, the sequences on the KV cache left): at most four rounds
        mns = self.probe_seqs()
        mml = self.longest(tp, util, mns)
        for _ in range(4):
            new_mns = self.most_seqs(tp, util, mml, mns)
            new_mml = self.longest(tp, util, new_mns)
            if (new_mns, new_mml) == (mns, mml):
                break
            mns, mml = new_mns, new_mml
        d_mns = self.defaults[1]
        if not self.estimate(self.config(tp, util, mml, mns)).fits:
            # nothing fits: show vLLM's own defaults being refused, the fixes say what would fit
            mml = self.wanted_len()
            mns = req.max_num_seqs or d_mns
        elif not req.max_model_len and mml < spec.max_position_embeddings:
            changes.append(Change(Action.CONTEXT_SHORTENED, (
                f"max_model_len {mml}: the longest (in steps of 1024) whose request fits with "
                f"margin, below the model's {spec.max_position_embeddings}")))
        if not req.max_num_seqs and mns != d_mns:
            changes.append(Change(Action.SEQUENCES_LIMITED, (
                f"max_num_seqs {mns}: each running sequence keeps "
                f"{min(mml, PLANNING.tokens_per_seq)} tokens of KV cache "
                f"({PLANNING.kv_fraction:.0%} of it); vLLM's default is {d_mns}")))
        cfg = self.config(tp, util, mml, mns)
        return Choice(cfg, self.estimate(cfg), changes)


def choose(spec: ModelSpec, gpu: Gpu, gpus: int, vllm: str | Version, moe_backend: str | None,
           given: Request | dict) -> Choice:
    """Fill in what `given` lacks (a Request, or a dict of its fields), checking what it has.

    When nothing fits and the user left both out, once more with `--enforce-eager` and a
    smaller prefill chunk (small cards: no CUDA graphs or compile peak).
    """
    req = Request.of(given)
    first = _Search(spec, gpu, gpus, vllm, moe_backend, req).choose()
    if first.estimate.fits or req.enforce_eager is not None \
            or req.max_num_batched_tokens is not None:
        return first
    lean_tokens = min(first.config.max_num_batched_tokens, PLANNING.lean_batched_tokens)
    lean = replace(req, enforce_eager=True, max_num_batched_tokens=lean_tokens)
    alt = _Search(spec, gpu, gpus, vllm, moe_backend, lean).choose()
    if not alt.estimate.fits:
        return first
    alt.changes.insert(0, Change(Action.EAGER_SMALL_CHUNKS, (
        f"enforce_eager and max_num_batched_tokens {lean_tokens}: without them nothing fits "
        "(CUDA graphs and torch.compile cost ~1.5 GiB)")))
    return alt


def fixes(spec: ModelSpec, gpu: Gpu, gpus: int, vllm: str | Version, moe_backend: str | None,
          cfg: ServeConfig, est: Estimate, fp8_kv_ok: bool = True) -> list[str]:
    """What would fit instead, each as a sentence with the flag to use (an fp8 KV cache only
    when `fp8_kv_ok`: deploy/correctness.py knows releases where it answers wrong)."""
    out: list[str] = []
    if est.failure is Failure.FREE_MEMORY:
        ceiling = util_ceiling(gpu)
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
    ceiling = util_ceiling(gpu)
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

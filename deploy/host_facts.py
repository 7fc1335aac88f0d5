"""pyinfra facts about a host, one question each: its GPUs, its platform, the active vLLM.

Each fact is one read-only shell command returning a dataclass; its parsing is a plain function
tested on recorded outputs of the real tools (``tests/fixtures/``). pyinfra's own facts answer
what they can (``OsRelease``, ``KernelVersion``, ``Arch``, ``Memory``); a probe of ours reads
several small things in one round trip only where pyinfra has no fact for them, and says so.
A host without a driver or a GPU is a fact, not a crash.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.facts.hardware import Memory
from pyinfra.facts.server import Arch, KernelVersion, OsRelease

# nvidia-smi's CSV query, in this order (nvidia-smi --help-query-gpu)
GPU_FIELDS = ("index", "name", "uuid", "compute_cap", "memory.total", "memory.used", "memory.free",
              "driver_version", "mig.mode.current")
PROC_FIELDS = ("gpu_uuid", "pid", "process_name", "used_memory")
# On WSL2 nvidia-smi comes from the Windows driver, in /usr/lib/wsl/lib, often not on the PATH.
SMI = "PATH=$PATH:/usr/lib/wsl/lib nvidia-smi"


class JsonFact:
    """Lets ``pyinfra INVENTORY fact deploy.host_facts.X`` print these facts as JSON."""

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Gpu(JsonFact):
    index: int
    name: str
    uuid: str
    compute_capability: str
    memory_total_mib: int
    memory_used_mib: int
    memory_free_mib: int
    driver_version: str
    mig_mode: str = "[N/A]"


@dataclass
class NvmlGpu(JsonFact):
    """One GPU as NVML reads it (``deploy/nvml_probe.py``): the driver's own free figure and the
    bytes each compute process holds (0 where the driver does not say)."""

    uuid: str
    free_mib: int
    total_bytes: int
    process_bytes: dict[int, int] = field(default_factory=dict)


def parse_nvml(output: list[str]) -> list[NvmlGpu] | None:
    """``nvml_probe``'s JSON as one NvmlGpu per GPU; None for no output, an error or no GPUs."""
    text = "\n".join(output).strip()
    try:
        data = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not data.get("gpus"):
        return None
    gpus = []
    for g in data["gpus"]:
        held: dict[int, int] = {}
        for p in g["processes"]:  # one pid can be listed more than once (MIG): add them up
            held[p["pid"]] = held.get(p["pid"], 0) + (p["used_bytes"] or 0)
        gpus.append(NvmlGpu(uuid=g["uuid"], free_mib=g["free_mib"], total_bytes=g["total_bytes"],
                            process_bytes=held))
    return gpus


@dataclass
class GpuReport(JsonFact):
    """What nvidia-smi says: ``state`` is ``ok``, ``no-driver`` (no nvidia-smi) or ``error``."""

    state: str
    gpus: list[Gpu] = field(default_factory=list)
    cuda_version: str | None = None
    processes: list[dict] = field(default_factory=list)
    error: str | None = None
    # pids of our own server's unit: its memory is ours to plan with on a re-run
    own_pids: set[int] = field(default_factory=set)
    # NVML's reading (deploy/nvml_probe.py) where the venv's Python could make it, else None
    nvml: list[NvmlGpu] | None = None

    @property
    def driver_version(self) -> str | None:
        return self.gpus[0].driver_version if self.gpus else None

    def free_for_plan_mib(self, gpu: Gpu) -> int:
        """Free memory of ``gpu`` plus what our own running server holds there (it is replaced on
        a restart); memory of every other process counts as taken."""
        by_nvml = next((g for g in self.nvml or [] if g.uuid == gpu.uuid), None)
        if by_nvml:  # NVML: the driver's own free figure and per-process bytes
            own = sum(by_nvml.process_bytes.get(pid, 0) for pid in self.own_pids) // 2**20
            return min(gpu.memory_total_mib, by_nvml.free_mib + own)
        own = sum(p["used_mib"] or 0 for p in self.processes
                  if p["pid"] in self.own_pids and p["gpu_uuid"] == gpu.uuid)
        return min(gpu.memory_total_mib, gpu.memory_free_mib + own)


def _mib(value: str) -> int:
    return int(float(value.strip().split()[0]))


def parse_gpu_csv(lines: list[str]) -> list[Gpu]:
    """Rows of ``nvidia-smi --query-gpu=<GPU_FIELDS> --format=csv,noheader[,nounits]``."""
    gpus = []
    for line in lines:
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 8 or not cells[0].isdigit():
            continue
        cells += ["[N/A]"] * (len(GPU_FIELDS) - len(cells))
        gpus.append(Gpu(int(cells[0]), cells[1], cells[2], cells[3], _mib(cells[4]), _mib(cells[5]),
                        _mib(cells[6]), cells[7], cells[8]))
    return gpus


def parse_gpu_report(output: list[str]) -> GpuReport:
    """The tagged lines that ``GpuFacts.command`` prints."""
    tagged: dict[str, list[str]] = {}
    for line in output:
        tag, _, rest = line.partition(": ")
        tagged.setdefault(tag, []).append(rest)
    state = (tagged.get("STATE") or ["error"])[0]
    if state == "absent":
        return GpuReport("no-driver", error="nvidia-smi was not found: no NVIDIA driver is installed")
    rows = tagged.get("GPU", [])
    if state != "rc0":
        return GpuReport("error", error=" ".join(rows).strip() or f"nvidia-smi failed ({state})")
    cuda = re.search(r"CUDA Version: ([\d.]+)", " ".join(tagged.get("CUDA", [])))
    procs = []
    for row in tagged.get("PROC", []):
        cells = [c.strip() for c in row.split(",")]
        if len(cells) == 4 and cells[1].isdigit():
            procs.append({"gpu_uuid": cells[0], "pid": int(cells[1]), "name": cells[2],
                          "used_mib": _mib(cells[3]) if cells[3][:1].isdigit() else None})
    own = {int(p) for p in tagged.get("OWN", []) if p.strip().isdigit()}
    return GpuReport("ok", parse_gpu_csv(rows), cuda.group(1) if cuda else None, procs, own_pids=own)


class GpuFacts(FactBase):
    """The host's NVIDIA GPUs, driver, CUDA version and compute processes, from nvidia-smi;
    with the pids of ``service``'s unit (our own server, if it runs). One question (what the GPUs
    hold) in one round trip: three nvidia-smi queries and the unit's cgroup, which pyinfra has no
    facts for."""

    def command(self, service: str = "vllm") -> str:
        return (
            f"if ! {SMI} -L >/dev/null 2>&1 && ! command -v nvidia-smi >/dev/null 2>&1 "
            "&& [ ! -x /usr/lib/wsl/lib/nvidia-smi ]; then echo 'STATE: absent'; exit 0; fi; "
            f"out=$({SMI} --query-gpu={','.join(GPU_FIELDS)} --format=csv,noheader,nounits 2>&1); "
            "echo \"STATE: rc$?\"; echo \"$out\" | sed 's/^/GPU: /'; "
            f"{SMI} 2>/dev/null | grep -o 'CUDA Version: [0-9.]*' | sed 's/^/CUDA: /'; "
            f"{SMI} --query-compute-apps={','.join(PROC_FIELDS)} --format=csv,noheader,nounits "
            "2>/dev/null | sed 's/^/PROC: /'; "
            f"cat /sys/fs/cgroup/system.slice/{service}.service/cgroup.procs "
            f"/sys/fs/cgroup/systemd/system.slice/{service}.service/cgroup.procs 2>/dev/null | sed 's/^/OWN: /'; true"
        )

    def process(self, output) -> GpuReport:
        return parse_gpu_report(list(output))


@dataclass
class Platform(JsonFact):
    distro: str  # /etc/os-release ID
    version: str  # VERSION_ID
    like: str  # ID_LIKE
    pretty: str  # PRETTY_NAME
    kernel: str  # uname -r
    kind: str  # native, wsl1, wsl2
    arch: str  # uname -m
    pid1: str
    mem_total_kib: int
    mem_available_kib: int
    python: str | None


def wsl_kind(kernel_release: str, proc_version: str) -> str:
    """native, wsl1 or wsl2 from ``uname -r`` and /proc/version.

    WSL1 reports a 4.4.0-<build>-Microsoft release; WSL2 runs Microsoft's real Linux kernel,
    "<version>-microsoft-standard-WSL2" (learn.microsoft.com/windows/wsl/compare-versions)."""
    text = f"{kernel_release} {proc_version}"
    if "Microsoft" in kernel_release and kernel_release.startswith("4.4.0"):
        return "wsl1"
    if "microsoft" in text.lower():
        return "wsl2"
    return "native"


@dataclass
class Runtime(JsonFact):
    """What pyinfra has no fact for: the kernel's build line, PID 1, available RAM, python3."""

    proc_version: str = ""  # /proc/version: tells WSL kernels from others
    pid1: str = ""  # /proc/1/comm: systemd or not (WSL2 without systemd=true)
    mem_available_kib: int = 0  # /proc/meminfo MemAvailable
    python: str | None = None  # python3's version, None without python3


def parse_runtime(output: list[str]) -> Runtime:
    kv = {}
    for line in output:
        key, _, value = line.partition("=")
        kv[key.strip()] = value.strip()
    available = kv.get("MemAvailable", "")
    return Runtime(proc_version=kv.get("PROCVERSION", ""), pid1=kv.get("PID1", ""),
                   mem_available_kib=int(available) if available.isdigit() else 0, python=kv.get("PYTHON") or None)


class RuntimeFacts(FactBase):
    """/proc/version, PID 1, MemAvailable and python3's version: four small reads pyinfra has no
    facts for, in one round trip (four facts of their own would be four)."""

    def command(self) -> str:
        return (
            "echo \"PROCVERSION=$(cat /proc/version 2>/dev/null)\"; echo \"PID1=$(cat /proc/1/comm 2>/dev/null)\"; "
            "awk '/^MemAvailable:/ {print \"MemAvailable=\" $2}' /proc/meminfo; "
            "echo \"PYTHON=$(python3 -c 'import sys; print(\"%d.%d.%d\" % sys.version_info[:3])' 2>/dev/null)\""
        )

    def process(self, output) -> Runtime:
        return parse_runtime(list(output))


def platform_from(os_release: dict, kernel: str, arch: str, mem_total_mib: int | None, runtime: Runtime) -> Platform:
    """The platform from pyinfra's ``OsRelease``, ``KernelVersion``, ``Arch``, ``Memory`` (MiB) and ours."""
    kernel = (kernel or "").strip()
    return Platform(
        distro=os_release.get("id", "unknown"), version=os_release.get("version_id", ""),
        like=os_release.get("id_like", ""), pretty=os_release.get("pretty_name", ""), kernel=kernel,
        kind=wsl_kind(kernel, runtime.proc_version), arch=(arch or "").strip(), pid1=runtime.pid1,
        mem_total_kib=int(mem_total_mib or 0) * 1024, mem_available_kib=runtime.mem_available_kib,
        python=runtime.python)


def host_platform() -> Platform:
    """This host's platform, from pyinfra's facts and ``RuntimeFacts`` (call inside a deploy)."""
    return platform_from(host.get_fact(OsRelease) or {}, host.get_fact(KernelVersion) or "",
                         host.get_fact(Arch) or "", host.get_fact(Memory), host.get_fact(RuntimeFacts))


@dataclass
class Installed(JsonFact):
    """The vLLM a previous deploy left active: the venv ``current`` points at and its version."""

    vllm: str | None = None
    active_venv: str | None = None


def parse_installed(output: list[str]) -> Installed:
    kv = dict(line.split("=", 1) for line in output if "=" in line)
    return Installed(vllm=kv.get("VLLM") or None, active_venv=kv.get("VENV") or None)


class InstalledFacts(FactBase):
    """Which vLLM is active: the venv ``<install_dir>/current`` points at, and its vLLM's version."""

    def command(self, install_dir: str = "/opt/vllm") -> str:
        current = shlex.quote(f"{install_dir}/current")
        return (
            f"echo \"VENV=$(readlink -f {current} 2>/dev/null)\"; "
            f"echo \"VLLM=$(ls -d {current}/lib/python3*/site-packages/vllm*.dist-info 2>/dev/null | head -1 "
            "| sed -E 's/.*vllm(_cpu)?-([^/]+)\\.dist-info/\\2/')\""
        )

    def process(self, output) -> Installed:
        return parse_installed(list(output))


class NvmlFacts(FactBase):
    """GPU memory through NVML (``deploy/nvml_probe.py``), run with ``python`` where that Python
    and the driver are there (the venv's Python after a first install); None otherwise."""

    def command(self, python: str) -> str:
        source = (Path(__file__).parent / "nvml_probe.py").read_text()
        return f"if [ -x {shlex.quote(python)} ]; then {shlex.quote(python)} -c {shlex.quote(source)}; fi; true"

    def process(self, output) -> list[NvmlGpu] | None:
        return parse_nvml(list(output))

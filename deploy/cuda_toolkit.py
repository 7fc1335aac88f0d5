"""The optional CUDA toolkit (``cuda_toolkit: "13.0"``) and its paths for every login shell.

Serving gpt-oss from vLLM's wheels needs no toolkit: the wheels bring their CUDA runtime and
kernels. It is needed only to compile: FlashInfer's JIT kernels, custom ops, building vLLM or
flash-attention from source. Then ``nvcc`` must be found: the toolkit comes from NVIDIA's repository
for the distribution (on WSL2 only from the WSL-Ubuntu repository, which carries no driver), and
``/etc/profile.d/cuda.sh`` puts that version's ``bin`` on ``PATH`` and ``lib64`` on
``LD_LIBRARY_PATH``, so ``nvcc --version`` works in a fresh login shell. A toolkit already present
(``/usr/local/cuda-X.Y/bin/nvcc``, however it got there) is not installed again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from io import StringIO

from packaging.version import Version
from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.operations import apt, dnf, files

from deploy import platform_data as pd
from deploy.driver import DriverPlan, cuda_repository
from deploy.host_facts import GpuReport, JsonFact, Platform
from deploy.kernel_support import CUDA_MIN_DRIVER
from deploy.render import render
from deploy.settings import Settings
from deploy.stop import stop_host
from deploy.versions import driver_version as parse_driver


@dataclass
class ToolkitHost(JsonFact):
    roots: dict[str, str] = field(default_factory=dict)  # X.Y -> folder holding bin/nvcc of that release


def parse_toolkit_host(output: list[str]) -> ToolkitHost:
    """``NVCC: <folder> release X.Y`` lines. For each release the folder named cuda-X.Y wins (the
    toolkit's own folder), then other cuda-* links (alternatives, which may move), then /usr/local/cuda."""

    def rank(root: str, version: str) -> int:
        return 0 if root.endswith(f"/cuda-{version}") else 2 if root == "/usr/local/cuda" else 1

    t = ToolkitHost()
    for line in output:
        tag, _, rest = line.partition(": ")
        m = re.match(r"^(\S+)\s+release\s+(\d+\.\d+)", rest.strip())
        if tag == "NVCC" and m:
            root, version = m.groups()
            if version not in t.roots or rank(root, version) < rank(t.roots[version], version):
                t.roots[version] = root
    return t


class CudaToolkitFacts(FactBase):
    """CUDA toolkits under /usr/local (every cuda-X.Y and cuda with an nvcc) and their releases."""

    def command(self) -> str:
        return ("for d in /usr/local/cuda-* /usr/local/cuda; do [ -x \"$d/bin/nvcc\" ] && "
                "echo \"NVCC: $d $(\"$d/bin/nvcc\" --version 2>/dev/null | grep -o 'release [0-9.]*' | head -n1)\"; "
                "done; true")

    def process(self, output) -> ToolkitHost:
        return parse_toolkit_host(list(output))


@dataclass
class ToolkitPlan:
    """``none``, ``install`` (package, then profile), ``profile`` (toolkit present) or ``stop``."""

    action: str
    reason: str
    version: str | None = None
    package: str | None = None
    root: str | None = None
    repo: pd.CudaRepo | None = None
    repo_url: str | None = None


def plan_toolkit(s: Settings, platform: Platform, gpu: GpuReport | None, tk: ToolkitHost,
                 driver: DriverPlan | None = None) -> ToolkitPlan:
    """Decide about the toolkit of ``s.cuda_toolkit`` on one host (pure)."""
    if s.backend != "cuda" or not s.cuda_toolkit:
        return ToolkitPlan("none", "no CUDA toolkit asked for (serving from wheels needs none)")
    version = str(s.cuda_toolkit)
    major, minor = version.split(".")
    root = pd.TOOLKIT_ROOT.format(version=version)
    need = CUDA_MIN_DRIVER.get(version)
    driver_version = gpu.driver_version if gpu is not None and gpu.state == "ok" else None
    if driver is not None and driver.action == "install" and driver.branch:
        driver_version = f"{driver.branch}.999"  # the branch's newest release is what gets installed
    have = parse_driver(driver_version) if driver_version else None
    if need and have is not None and have < Version(need):
        return ToolkitPlan("stop", f"CUDA toolkit {version} needs NVIDIA driver >= {need}, this host has "
                           f"{driver_version}: pick an older cuda_toolkit or update the driver")
    if version in tk.roots:
        root = tk.roots[version]
        return ToolkitPlan("profile", f"CUDA toolkit {version} is already at {root} (not installed again)",
                           version, root=root)
    wsl = platform.kind == "wsl2"
    repo = pd.cuda_repo(platform.distro, platform.version, wsl=wsl)
    if repo is None:
        where = ("on WSL2 the toolkit comes only from NVIDIA's WSL-Ubuntu repository, made for Ubuntu "
                 "distributions" if wsl else f"NVIDIA's repositories are set up here for {pd.supported_text()}")
        return ToolkitPlan("stop", f"cannot install CUDA toolkit {version} on {platform.distro} "
                           f"{platform.version}: {where}; install it yourself or unset cuda_toolkit")
    if platform.arch not in repo.arches:
        return ToolkitPlan("stop", f"NVIDIA's {repo.repo_dir} repository has no {platform.arch} toolkit")
    package = pd.TOOLKIT_PACKAGE.format(major=major, minor=minor)
    url = s.cuda_repo_url or repo.url(platform.arch)
    return ToolkitPlan("install", f"install {package} from {url}", version, package, root, repo, url)


def profile_text(root: str, version: str) -> str:
    return render("cuda-profile.sh.j2", root=root, version=version)


def cuda_toolkit(s: Settings, platform: Platform, gpu: GpuReport | None, driver: DriverPlan | None = None
                 ) -> ToolkitPlan:
    """Install the CUDA toolkit of ``s.cuda_toolkit`` if missing, and /etc/profile.d/cuda.sh for it."""
    tk = host.get_fact(CudaToolkitFacts) if s.backend == "cuda" and s.cuda_toolkit else ToolkitHost()
    plan = plan_toolkit(s, platform, gpu, tk, driver)
    if plan.action == "none":
        host.noop(plan.reason)
        return plan
    if plan.action == "stop":
        stop_host(f"host {s.host}: {plan.reason}")
        return plan
    if plan.action == "install":
        assert plan.repo is not None and plan.repo_url and plan.package
        cuda_repository(s, platform, plan.repo, plan.repo_url)
        if plan.repo.family == "apt":
            # only the toolkit: never `cuda` or `cuda-X-Y`, which pull in a driver (fatal on WSL2)
            apt.packages(name=f"CUDA toolkit {plan.version}", packages=[plan.package], update=True,
                         no_recommends=True)
        else:
            dnf.packages(name=f"CUDA toolkit {plan.version}", packages=[plan.package])
    files.put(name=f"CUDA {plan.version} paths for login shells ({pd.PROFILE_SCRIPT})",
              src=StringIO(profile_text(plan.root or "", plan.version or "")), dest=pd.PROFILE_SCRIPT, mode="644")
    return plan

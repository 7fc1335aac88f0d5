"""The NVIDIA driver on native Linux: left alone when it is new enough, else installed from NVIDIA's
CUDA repository (Ubuntu 22.04/24.04, Debian 12, RHEL/Rocky/Alma 9), rebooted into, and verified.

``plan_driver`` is pure (settings + facts in, a plan out); ``nvidia_driver`` turns the plan into
pyinfra operations. The branch follows the pinned vLLM's minimum driver
(``kernel_support.min_driver_for``: 580 for vLLM 0.20+); the kernel-module flavour is open unless
the GPU cannot use it (``platform_data.GPU_ARCHS``). Every package name and URL comes from
``deploy/platform_data.py``, where each has its source. WSL2 never gets a Linux driver (``wsl.py``).
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass, field
from io import StringIO

from pyinfra import host
from pyinfra.api import FactBase, operation
from pyinfra.facts.apt import AptSources
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import File
from pyinfra.facts.rpm import RpmPackages
from pyinfra.facts.server import KernelModules
from pyinfra.operations import apt, dnf, files, python, server
from pyinfra.operations.util import any_changed

from deploy import platform_data as pd
from deploy.fleet import results
from deploy.host_facts import GpuReport, JsonFact, Platform
from deploy.kernel_support import driver_ok, min_driver_for
from deploy.render import render
from deploy.settings import Settings
from deploy.stop import stop_host

REBOOT_TIMEOUT_S = 900  # a server's firmware may take minutes; DKMS already built before the reboot


# --- facts --------------------------------------------------------------------------------


@dataclass
class DriverHost(JsonFact):
    """What the kernel side says about NVIDIA on a host, beyond nvidia-smi."""

    gpus: list[str] = field(default_factory=list)  # lspci lines of NVIDIA display/3D controllers
    secure_boot: str = "unknown"  # enabled, disabled, unknown
    nouveau_loaded: bool = False  # from pyinfra's KernelModules (driver_host)
    module_version: str | None = None  # loaded nvidia kernel module (/proc/driver/nvidia/version)
    module_flavor: str | None = None  # open or proprietary
    headers: bool = False  # /lib/modules/$(uname -r)/build exists


def parse_driver_host(output: list[str]) -> DriverHost:
    """The tagged lines that ``DriverHostFacts.command`` prints."""
    d = DriverHost()
    for line in output:
        tag, _, rest = line.partition(": ")
        rest = rest.strip()
        if tag == "PCI" and rest:
            d.gpus.append(rest)
        elif tag == "SB" and rest:
            d.secure_boot = "enabled" if "enabled" in rest.lower() else \
                "disabled" if "disabled" in rest.lower() else d.secure_boot
        elif tag == "SBVAR" and rest.isdigit() and d.secure_boot == "unknown":
            d.secure_boot = "enabled" if rest == "1" else "disabled"
        elif tag == "MODULE":
            m = re.search(r"\s(\d+\.\d+(?:\.\d+)?)\s", f" {rest} ")
            d.module_version = m.group(1) if m else None
            d.module_flavor = "open" if "Open Kernel Module" in rest else "proprietary"
        elif tag == "HEADERS":
            d.headers = True
    return d


class DriverHostFacts(FactBase):
    """NVIDIA GPUs on the PCI bus, Secure Boot, the loaded nvidia module, kernel headers.

    One round trip for four reads that pyinfra has no facts for (lspci or sysfs, mokutil or the EFI
    variable, /proc/driver/nvidia/version, /lib/modules/<release>/build); four facts would be four.
    Whether nouveau is loaded comes from pyinfra's ``KernelModules`` (``driver_host``)."""

    def command(self) -> str:
        return (
            "echo \"SB: $(mokutil --sb-state 2>/dev/null | head -n1)\"; "
            "for f in /sys/firmware/efi/efivars/SecureBoot-*; do [ -r \"$f\" ] && "
            "echo \"SBVAR: $(od -An -t u1 \"$f\" | awk '{print $NF}')\"; done; "
            "if command -v lspci >/dev/null 2>&1; then lspci -nn -d 10de: | "
            "grep -E 'VGA|3D|Display' | sed 's/^/PCI: /'; else for d in /sys/bus/pci/devices/*; do "
            "[ \"$(cat $d/vendor 2>/dev/null)\" = 0x10de ] && case \"$(cat $d/class)\" in 0x03*) "
            "echo \"PCI: NVIDIA [10de:$(cut -c3- $d/device)]\";; esac; done; fi; "
            "head -n1 /proc/driver/nvidia/version 2>/dev/null | sed 's/^/MODULE: /'; "
            "[ -e /lib/modules/$(uname -r)/build ] && echo 'HEADERS: yes'; true"
        )

    def process(self, output) -> DriverHost:
        return parse_driver_host(list(output))


def driver_host() -> DriverHost:
    """``DriverHostFacts`` with nouveau's state from pyinfra's ``KernelModules`` (call inside a deploy)."""
    d = host.get_fact(DriverHostFacts)
    d.nouveau_loaded = "nouveau" in (host.get_fact(KernelModules) or {})
    return d


# --- planning (pure) ----------------------------------------------------------------------


@dataclass
class DriverPlan:
    """What to do about the driver: ``none``, ``install``, ``reboot`` (installed, not yet loaded) or
    ``stop`` (``reason`` says why and what to do)."""

    action: str
    reason: str
    branch: str | None = None
    flavor: str | None = None  # open or proprietary
    repo: pd.CudaRepo | None = None
    repo_url: str | None = None
    min_driver: str | None = None
    upgrade: bool = False


def gpu_arch(lspci_line: str) -> pd.GpuArch | None:
    """The architecture of one lspci line from its chip code name (``GH100``, ``TU104GL``, ...)."""
    for word in re.findall(r"\b(G[A-Z]\d{2,3}[A-Z]*|[A-Z]{2}\d{3}[A-Z]*)\b", lspci_line):
        for arch in pd.GPU_ARCHS:
            if word.startswith(arch.prefix):
                return arch
    return None


def kernel_module_flavor(wanted: str, gpus: list[str]) -> tuple[str | None, str]:
    """(``open`` or ``proprietary``, why), or (None, why not) when the GPUs cannot take ``wanted``."""
    archs = [(line, gpu_arch(line)) for line in gpus]
    old = [f"{a.name} ({line})" for line, a in archs if a and a.open_modules == "unsupported"]
    if old:
        return None, (f"{', '.join(old)} cannot serve gpt-oss (vLLM's MXFP4 kernels need compute capability "
                      "8.0, Ampere or newer) and the open kernel modules do not support it; use an Ampere or "
                      "newer GPU, or backend: cpu")
    needs_open = [line for line, a in archs if (a and a.open_modules == "required")
                  or any(n in line for n in pd.OPEN_REQUIRED_NAMES)]
    if wanted == "proprietary":
        if needs_open:
            return None, (f"nvidia_kernel_modules: proprietary is not possible on {needs_open[0]}: Blackwell "
                          "and Grace Hopper run only with NVIDIA's open kernel modules; set "
                          "nvidia_kernel_modules: open (or auto)")
        return "proprietary", "proprietary kernel modules, as set"
    return "open", ("open kernel modules (NVIDIA's default since R560; required on Blackwell, "
                    "recommended from Turing on)")


def driver_packages_installed(packages: dict) -> list[str]:
    """Names of installed packages that carry NVIDIA's driver (from DebPackages/RpmPackages)."""
    keep = ("nvidia-open", "cuda-drivers", "nvidia-driver", "nvidia-dkms", "nvidia-kernel",
            "kmod-nvidia", "libnvidia-compute")
    return sorted(p for p in packages if p.startswith(keep) and "pinning" not in p)


def diagnose(d: DriverHost, kernel: str, error: str = "") -> str:
    """The likely reasons a driver does not work, from the host's facts."""
    reasons = []
    if d.nouveau_loaded:
        reasons.append(f"nouveau (the kernel's own driver) holds the GPU: the blacklist in "
                       f"{pd.NOUVEAU_BLACKLIST_FILE} takes effect after `update-initramfs -u` (RHEL: "
                       "`dracut --force`) and a reboot")
    if d.secure_boot == "enabled" and not d.module_version:
        reasons.append("Secure Boot is on and the nvidia module is not loaded: the key that signed it is "
                       "probably not enrolled; run `mokutil --import /var/lib/dkms/mok.pub`, reboot and "
                       "confirm the key in the MOK manager on the console, or turn Secure Boot off")
    if not d.headers:
        reasons.append(f"no kernel headers for the running kernel {kernel}: DKMS cannot build the module; "
                       f"install linux-headers-{kernel} (RHEL: kernel-devel-{kernel}), run `dkms autoinstall` "
                       "and reboot")
    if "mismatch" in error.lower():
        reasons.append("driver/library version mismatch: a new driver is installed but the old module is "
                       "still loaded; reboot")
    if not reasons:
        reasons.append("see `dmesg | grep -i -E 'nvidia|nouveau'` and `dkms status`")
    return "; ".join(reasons)


def plan_driver(s: Settings, platform: Platform, gpu: GpuReport | None, d: DriverHost,
                packages: dict) -> DriverPlan:
    """Decide what to do about the NVIDIA driver on one host."""
    if s.backend != "cuda" or platform.kind == "wsl1":
        return DriverPlan("none", "no NVIDIA driver needed here" if s.backend != "cuda" else "WSL1: see wsl.py")
    if platform.kind == "wsl2":
        asked = s.nvidia_driver == "install" or s.nvidia_driver_branch or s.nvidia_kernel_modules != "auto"
        if asked:
            return DriverPlan("stop", (
                "refused: never install a Linux NVIDIA driver inside WSL2: the Windows driver is the driver "
                f"there (mapped into {pd.WSL_LIB_DIR}), and a Linux one breaks GPU access; remove "
                "nvidia_driver, nvidia_driver_branch and nvidia_kernel_modules from this host's settings and "
                "update the driver on Windows instead"))
        return DriverPlan("none", "WSL2: the Windows driver serves CUDA (checked by deploy/wsl.py)")
    minimum = min_driver_for(s.vllm_version)
    if gpu is not None and gpu.state == "ok" and gpu.gpus:
        good, why = driver_ok(s.vllm_version, gpu.driver_version or "")
        if good:
            return DriverPlan("none", f"driver left alone: {why}")
        if s.nvidia_driver == "none":
            return DriverPlan("none", f"nvidia_driver: none, so not upgraded ({why})")
        upgrade = True
    elif gpu is not None and gpu.state == "ok":
        return DriverPlan("none", "nvidia-smi works but lists no GPU (judged by preflight)")
    elif gpu is not None and gpu.state == "error":
        installed = driver_packages_installed(packages)
        if installed and s.driver_reboot and s.nvidia_driver != "none":
            return DriverPlan("reboot", f"driver packages installed ({', '.join(installed[:3])}) but nvidia-smi "
                              f"fails ({gpu.error}): reboot to load the module, then verify",
                              min_driver=minimum)
        return DriverPlan("stop", f"the NVIDIA driver is installed but not working (nvidia-smi: {gpu.error}); "
                          f"likely: {diagnose(d, platform.kernel, gpu.error or '')}")
    else:
        if s.nvidia_driver == "none":
            return DriverPlan("none", "nvidia_driver: none, so not installed (judged by preflight)")
        if not d.gpus:
            return DriverPlan("stop", "no NVIDIA driver and no NVIDIA GPU on the PCI bus (lspci / sysfs): there "
                              "is nothing to install a driver for; check the card is seated and passed through "
                              "to this machine, or use backend: cpu")
        upgrade = False
    if minimum is None:
        return DriverPlan("stop", f"no minimum NVIDIA driver is known for vLLM {s.vllm_version}: pin a release "
                          "that deploy/kernel_support.py knows, or install a driver yourself")
    repo = pd.cuda_repo(platform.distro, platform.version)
    if repo is None:
        return DriverPlan("stop", (
            f"installing the NVIDIA driver automatically is supported on {pd.supported_text()}, not on "
            f"{platform.distro} {platform.version}: install driver >= {minimum} yourself (NVIDIA's Driver "
            "Installation Guide), or set nvidia_driver: none and use a host that has one"))
    if platform.arch not in repo.arches:
        return DriverPlan("stop", f"NVIDIA's {repo.repo_dir} repository has no {platform.arch} packages here: "
                          f"install driver >= {minimum} yourself")
    flavor, why = kernel_module_flavor(s.nvidia_kernel_modules, d.gpus)
    if flavor is None:
        return DriverPlan("stop", why)
    branch = str(s.nvidia_driver_branch or minimum.split(".")[0])
    verb = "upgrade to" if upgrade else "install"
    return DriverPlan("install", f"{verb} NVIDIA driver branch {branch} ({why}); vLLM {s.vllm_version} needs "
                      f">= {minimum}", branch, flavor, repo, s.cuda_repo_url or repo.url(platform.arch),
                      minimum, upgrade)


# --- rendered files -----------------------------------------------------------------------


def apt_pin_text() -> str:
    return render("nvidia-cuda.pref.j2", label=pd.APT_REPO_LABEL, priority=pd.APT_REPO_PRIORITY)


def nouveau_blacklist_text() -> str:
    return render("blacklist-nouveau.conf.j2")


def verify_script_text(min_driver: str) -> str:
    return render("nvidia-verify.sh.j2", min_driver=min_driver, blacklist=pd.NOUVEAU_BLACKLIST_FILE)


# --- operations ---------------------------------------------------------------------------


def cuda_repository(s: Settings, platform: Platform, repo: pd.CudaRepo, url: str) -> list:
    """NVIDIA's CUDA repository for this host (apt: key, deb822 source, pin; dnf: .repo file);
    left as it is when NVIDIA's own cuda-keyring package already set it up. Returns the ops."""
    ops = []
    if repo.family == "apt":
        installed = host.get_fact(DebPackages)
        missing = [p for p in pd.APT_PREREQUISITES if p not in installed]
        if missing:
            ops.append(apt.packages(name="Tools to fetch NVIDIA's repository key", packages=missing,
                                    update=True, no_recommends=True))
        if pd.CUDA_KEYRING_PACKAGE in installed or _apt_has_source(url):
            host.noop(f"NVIDIA's CUDA repository {url} is already configured (cuda-keyring or an existing entry)")
        else:
            ops.append(verified_key(name=f"NVIDIA CUDA repository key ({repo.key_file}, fingerprint checked)",
                                    src=url + repo.key_file, dest=pd.APT_KEYRING,
                                    fingerprint=pd.KEY_FINGERPRINTS[repo.key_file], dearmor=True))
            ops.append(apt.sources_file(name=f"NVIDIA CUDA repository {url}", filename=pd.APT_SOURCES_NAME,
                                        uris=[url], suites=["/"], signed_by=pd.APT_KEYRING))
        ops.append(files.put(name=f"Prefer NVIDIA's repository for its packages ({pd.APT_PIN_FILE})",
                             src=StringIO(apt_pin_text()), dest=pd.APT_PIN_FILE, mode="644"))
        if repo.needs_contrib:
            ops.extend(_debian_contrib())
    else:
        if repo.epel and repo.epel.startswith("http"):
            ops.append(dnf.rpm(name="EPEL (for dkms)", src=repo.epel))
        elif repo.epel:
            ops.append(dnf.packages(name="EPEL (for dkms)", packages=[repo.epel]))
        key_path = f"{pd.RPM_KEY_DIR}/NVIDIA-CUDA-{repo.key_file}"
        ops.append(verified_key(name=f"NVIDIA CUDA repository key ({repo.key_file}, fingerprint checked)",
                                src=url + repo.key_file, dest=key_path,
                                fingerprint=pd.KEY_FINGERPRINTS[repo.key_file], dearmor=False))
        ops.append(dnf.repo(name=f"NVIDIA CUDA repository {url}", src=f"cuda-{repo.repo_dir}-{platform.arch}",
                            baseurl=url, description="NVIDIA CUDA", gpgcheck=True,
                            gpgkey=f"file://{key_path}"))
    return ops


@operation()
def verified_key(src: str, dest: str, fingerprint: str, dearmor: bool):
    """
    Download a repository's signing key and keep it only when its fingerprint is the published one.

    + src: the key's URL
    + dest: where it goes (a keyring for apt, dearmored; an armored file for dnf)
    + fingerprint: the key's full fingerprint, 40 hex digits
    + dearmor: store it as a binary keyring (apt's ``Signed-By``)

    A key already at ``dest`` is kept (put there by NVIDIA's cuda-keyring package, the admin or an
    earlier run that checked it).
    """
    if host.get_fact(File, path=dest):
        host.noop(f"{dest} is already there")
        return
    temp = shlex.quote(host.get_temp_filename(dest))
    url, target = shlex.quote(src), shlex.quote(dest)
    yield f"mkdir -p {shlex.quote(posixpath.dirname(dest))}"
    yield f"( curl -sSLf {url} -o {temp} ) || wget -q {url} -O {temp} || {{ rm -f {temp}; exit 1; }}"
    yield (f"fp=$(gpg --batch --with-colons --show-keys {temp} 2>/dev/null "
           "| awk -F: '$1==\"fpr\" {print $10; exit}'); "
           f"if [ \"$fp\" != {fingerprint} ]; then rm -f {temp}; echo \"the key at {src} has fingerprint "
           f"${{fp:-none}}, not the published {fingerprint}: not trusted\" >&2; exit 1; fi")
    if dearmor:
        yield f"gpg --batch --yes --dearmor -o {target} {temp} && rm -f {temp} && chmod 644 {target}"
    else:
        yield f"mv -f {temp} {target} && chmod 644 {target}"


def _apt_has_source(url: str) -> bool:
    return any(getattr(r, "url", "").rstrip("/") == url.rstrip("/") for r in host.get_fact(AptSources) or [])


def _debian_contrib() -> list:
    """Debian's contrib component beside main, which NVIDIA's Debian packages need."""
    entries = [r for r in host.get_fact(AptSources) or [] if "main" in getattr(r, "components", [])
               and getattr(r, "distribution", "") in ("bookworm", "bookworm-updates")]
    if any("contrib" in r.components for r in entries) or not entries:
        if not entries:
            host.noop("no Debian bookworm main entry found to add contrib beside; add contrib yourself if apt "
                      "reports unmet dependencies")
        return []
    uris = sorted({r.url for r in entries})
    suites = sorted({r.distribution for r in entries})
    return [apt.sources_file(name="Debian contrib component (NVIDIA's Debian packages need it)",
                             filename="debian-contrib", uris=uris, suites=suites, components=["contrib"])]


def nvidia_driver(s: Settings, platform: Platform, gpu: GpuReport | None) -> DriverPlan:
    """Install, upgrade or reboot into the NVIDIA driver when needed; verify it with nvidia-smi.

    A working driver new enough for the pinned vLLM is left alone (no operation at all). After an
    install or a reboot the host stops with what happened: the GPU check and the VRAM plan need the
    new driver's facts, which the next run reads.
    """
    d, packages = DriverHost(), {}
    if s.backend == "cuda" and platform.kind == "native":
        d = driver_host()
        packages = host.get_fact(DebPackages) or host.get_fact(RpmPackages) or {}
    plan = plan_driver(s, platform, gpu, d, packages)
    if plan.action == "none":
        host.noop(plan.reason)
    elif plan.action == "stop":
        stop_host(f"host {s.host}: {plan.reason}")
    elif plan.action == "reboot":
        _reboot_and_verify(s, plan, changed=None)
    else:
        changed = _install(s, platform, plan)
        _reboot_and_verify(s, plan, changed)
    return plan


def _install(s: Settings, platform: Platform, plan: DriverPlan) -> list:
    """Repository, kernel headers, nouveau blacklist and the driver packages of ``plan``."""
    repo = plan.repo
    assert repo is not None and plan.repo_url and plan.branch and plan.flavor
    ops = cuda_repository(s, platform, repo, plan.repo_url)
    headers = [p.format(kernel=platform.kernel) for p in pd.HEADER_PACKAGES[repo.family]]
    blacklist = files.put(name=f"Blacklist nouveau ({pd.NOUVEAU_BLACKLIST_FILE})",
                          src=StringIO(nouveau_blacklist_text()), dest=pd.NOUVEAU_BLACKLIST_FILE, mode="644")
    server.shell(name="Rebuild the initramfs without nouveau", commands=[pd.INITRAMFS_COMMAND[repo.family]],
                 _if=blacklist.did_change)
    if repo.family == "apt":
        pinning = pd.APT_PINNING_PACKAGE.format(branch=plan.branch)
        ops.append(apt.packages(name=f"Kernel headers and driver branch pin ({pinning})",
                                packages=headers + [pinning], update=True, no_recommends=True))
        ops.append(apt.packages(name=f"NVIDIA driver {plan.branch} ({plan.flavor} kernel modules)",
                                packages=list(pd.APT_DRIVER_PACKAGES[plan.flavor]), latest=plan.upgrade))
    else:
        stream = pd.DNF_DRIVER_MODULE[plan.flavor].format(branch=plan.branch)
        ops.append(dnf.packages(name="Kernel headers for DKMS", packages=headers))
        if plan.upgrade:
            ops.append(server.shell(name=f"Switch the NVIDIA driver to {stream}",
                                    commands=[f"dnf -y module switch-to {stream}"]))
        else:
            module, _, branch_stream = stream.partition(":")
            ops.append(dnf.module(name=f"NVIDIA driver stream {stream}", module=module, stream=branch_stream))
            ops.append(dnf.packages(name=f"NVIDIA driver {plan.branch} ({plan.flavor} kernel modules)",
                                    packages=[f"@{stream}"]))
    return ops + [blacklist]


def _reboot_and_verify(s: Settings, plan: DriverPlan, changed: list | None) -> None:
    """Reboot (unless driver_reboot is off), check nvidia-smi, then stop this host for this run."""
    if not s.driver_reboot:
        stop_host(f"host {s.host}: NVIDIA driver {plan.branch or ''} installed; driver_reboot is off, so reboot "
                  "the host yourself (`sudo reboot`), then run the deploy again")
        return
    server.reboot(name="Reboot into the NVIDIA driver", delay=10, reboot_timeout=REBOOT_TIMEOUT_S,
                  **({"_if": any_changed(*changed)} if changed else {}))
    server.script(name=f"nvidia-smi works and the driver is >= {plan.min_driver}",
                  src=StringIO(verify_script_text(plan.min_driver or "0")))
    # a rollout (deploy/rollout.py) sees this and runs the host's deploy again at once (a second pass)
    if results.results_dir() is not None:
        python.call(name="Driver ready: note it for the rollout's second pass", function=results.note,
                    host_name=s.host, driver_ready=True)
    stop_host(f"host {s.host}: NVIDIA driver ready (nvidia-smi verified after the reboot); run the deploy again: "
              "the GPU check and VRAM plan read the new driver's facts")

"""Where the NVIDIA driver and the CUDA toolkit come from on each platform: the data, with sources.

Plain data, no pyinfra: ``deploy/driver.py``, ``deploy/cuda_toolkit.py`` and ``deploy/wsl.py`` read
it, and ``docs/platforms.md`` is the same table for people. Every row names its source. NVIDIA's
servers cannot be reached from where this was written, so "seen" below means the text was read in
this session (in NVIDIA's, Microsoft's or a public repository's published material); rows marked
"not verified here" rest on that material only and must be checked against NVIDIA's current
Driver Installation Guide before a release that changes them.

Sources, by short name:

- ANSIBLE: NVIDIA/ansible-role-nvidia-driver at f68d4a7 (2026-02-05), defaults/main.yml,
  vars/main.yml, tasks/install-ubuntu-cuda-repo.yml, tasks/install-redhat.yml.
- DRIVER-GUIDE: NVIDIA Driver Installation Guide (docs.nvidia.com/datacenter/tesla/
  driver-installation-guide/), release r580: "Recent updates" (version locking packages
  ``nvidia-driver-pinning-<branch>`` for Debian/Ubuntu, "install the pinning package prior to
  installing the driver"; from branch 590 Ubuntu drops the branch from package names) and
  "Version locking" (DNF 4 for RHEL/Rocky 8-10). Seen as excerpts.
- OPEN-BLOG: NVIDIA technical blog "NVIDIA Transitions Fully Towards Open-Source GPU Kernel
  Modules" (2024, R560): Grace Hopper and Blackwell must use the open modules; Turing, Ampere,
  Ada and Hopper should; Maxwell, Pascal and Volta cannot (proprietary only). Seen.
- CUDA-DOWNLOADS: NVIDIA's network-repository install steps for each distribution, as copied in
  many public scripts (cuda-keyring_1.1-1_all.deb from .../repos/<dir>/<arch>/, for Debian also
  ``add-apt-repository contrib``; ``apt-get install nvidia-open`` (open) or ``cuda-drivers``
  (proprietary); ``cuda-toolkit-X-Y``). Seen in several public repositories.
- KEY-2022: NVIDIA's 2022 CUDA repository key rotation: Debian/Ubuntu/WSL repositories are signed
  with key 3bf863cc (``.../3bf863cc.pub``); RPM repositories with D42D0685 (ANSIBLE's gpgkey).
  Seen in many public Dockerfiles and scripts; NVIDIA's blog post itself not read here.
- DNF-STREAMS: the RHEL 9 CUDA repository's module streams ``nvidia-driver:<branch>-open`` (open
  kernel modules, DKMS) and ``<branch>-dkms`` (proprietary, DKMS), as used in public RHEL 9
  build records ("NVIDIA stream: nvidia-driver:580-open, Kernel-module path: Open-DKMS") and
  ANSIBLE (``@nvidia-driver:<branch>-dkms``). Seen.
- CUDA-GUIDE: NVIDIA CUDA Installation Guide for Linux: post-installation environment
  (``PATH=/usr/local/cuda-X.Y/bin${PATH:+:${PATH}}``,
  ``LD_LIBRARY_PATH=/usr/local/cuda-X.Y/lib64${...}``), and (older releases) "Disabling Nouveau"
  (``blacklist nouveau`` + ``options nouveau modeset=0``, then regenerate the initramfs).
  From the guide as widely quoted; the current page was not read in full here.
- WSL-CUDA: NVIDIA "CUDA on WSL User Guide": the Windows driver is the only driver; it is
  mapped into WSL 2 as ``libcuda.so`` under /usr/lib/wsl/lib; a Linux driver must not be
  installed in WSL 2; the toolkit comes from the WSL-Ubuntu repository
  (.../repos/wsl-ubuntu/x86_64/), whose packages carry no driver (never the ``cuda`` /
  ``cuda-drivers`` meta packages, which pull one in). Seen as excerpts and in public scripts.
- MS-WSL: MicrosoftDocs/WSL at 8842def (2026-07-30): wsl-config.md (``[boot] systemd=true`` in
  /etc/wsl.conf, then ``wsl.exe --shutdown``; "the 8 second rule"; ``networkingMode`` in
  .wslconfig: none, nat, bridged (deprecated), mirrored, virtioproxy), networking.md (NAT:
  ``netsh interface portproxy add v4tov4 listenport=... listenaddress=0.0.0.0 connectport=...
  connectaddress=(wsl hostname -I)``; mirrored: Hyper-V firewall, ``New-NetFirewallHyperVRule
  ... -VMCreatorId '{40E0AC32-46A5-438A-A0B2-2B479E8F2E90}'``). Seen in full.
- WSL-SRC: microsoft/WSL at 3e27a6a (2026-08-08), src/linux/init/wslinfo.cpp: ``wslinfo
  --networking-mode`` prints nat, bridged, mirrored, consomme, none (or wsl1). Seen.
- PCI-IDS: the PCI ID database names NVIDIA GPUs by chip code name (GK/GM/GP/GV/TU/GA/AD/GH/GB),
  which is what ``lspci`` prints, e.g. "GH100 [H100 SXM5 80GB]".
"""

from __future__ import annotations

from dataclasses import dataclass

CUDA_REPO_BASE = "https://developer.download.nvidia.com/compute/cuda/repos"

# uname -m -> the architecture directory of NVIDIA's repositories (ANSIBLE vars/main.yml:
# "replace('aarch64', 'sbsa')").
REPO_ARCH = {"x86_64": "x86_64", "aarch64": "sbsa"}


@dataclass(frozen=True)
class CudaRepo:
    """NVIDIA's CUDA repository for one distribution release."""

    distros: tuple[str, ...]  # /etc/os-release ID values served by it
    major: str  # VERSION_ID, or its major part for RPM distributions
    repo_dir: str
    family: str  # apt or dnf
    arches: tuple[str, ...]
    key_file: str
    source: str
    needs_contrib: bool = False  # Debian: NVIDIA's packages need the contrib component
    epel: str | None = None  # how to get EPEL (dkms): a package name or an RPM URL

    def url(self, arch: str, base: str = CUDA_REPO_BASE) -> str:
        return f"{base.rstrip('/')}/{self.repo_dir}/{REPO_ARCH[arch]}/"


APT_KEY_FILE = "3bf863cc.pub"  # KEY-2022
RPM_KEY_FILE = "D42D0685.pub"  # ANSIBLE defaults/main.yml nvidia_driver_rhel_cuda_repo_gpgkey
EPEL_RPM = "https://dl.fedoraproject.org/pub/epel/epel-release-latest-{major}.noarch.rpm"  # ANSIBLE

CUDA_REPOS: tuple[CudaRepo, ...] = (
    CudaRepo(("ubuntu",), "22.04", "ubuntu2204", "apt", ("x86_64", "aarch64"), APT_KEY_FILE,
             "ANSIBLE _ubuntu_repo_dir (ubuntu + version without dot); CUDA-DOWNLOADS"),
    CudaRepo(("ubuntu",), "24.04", "ubuntu2404", "apt", ("x86_64", "aarch64"), APT_KEY_FILE,
             "ANSIBLE _ubuntu_repo_dir; CUDA-DOWNLOADS"),
    CudaRepo(("debian",), "12", "debian12", "apt", ("x86_64",), APT_KEY_FILE,
             "CUDA-DOWNLOADS (debian12/x86_64, with add-apt-repository contrib)", needs_contrib=True),
    CudaRepo(("rhel",), "9", "rhel9", "dnf", ("x86_64", "aarch64"), RPM_KEY_FILE,
             "ANSIBLE _rhel_repo_dir (rhel + major version), epel_package", epel=EPEL_RPM.format(major=9)),
    CudaRepo(("rocky", "almalinux"), "9", "rhel9", "dnf", ("x86_64", "aarch64"), RPM_KEY_FILE,
             "DRIVER-GUIDE lists Rocky Linux 9 with RHEL 9 (one repository, rhel9); EPEL from the "
             "distribution's own epel-release package", epel="epel-release"),
)

# WSL-CUDA: the only CUDA repository for WSL 2; toolkit packages only, x86_64 only.
WSL_REPO = CudaRepo(("ubuntu",), "*", "wsl-ubuntu", "apt", ("x86_64",), APT_KEY_FILE,
                    "WSL-CUDA (.../repos/wsl-ubuntu/x86_64/, cuda-keyring from there)")


def cuda_repo(distro: str, version: str, wsl: bool = False) -> CudaRepo | None:
    """The repository row for ``/etc/os-release``'s ID and VERSION_ID, or None if unsupported."""
    if wsl:
        return WSL_REPO if distro == "ubuntu" else None
    for row in CUDA_REPOS:
        wanted = version if row.family == "apt" else version.split(".")[0]
        if distro in row.distros and wanted == row.major:
            return row
    return None


def supported_text() -> str:
    return "Ubuntu 22.04 and 24.04, Debian 12, RHEL / Rocky / AlmaLinux 9"


# The repository keys' full fingerprints: a downloaded key is trusted only when its fingerprint is this
# one (KEY-2022 gives the key ids). 3bf863cc: EB69 3B30 35CD 5710 E231 E123 A4B4 6996 3BF8 63CC, the
# ``cudatools <cudatools@nvidia.com>`` key, pinned identically in many public installers (a Puppet
# module's apt key id with source .../repos/GPGKEY, a Chef recipe's apt_keyring, Dockerfile and CI
# scripts that check ``gpg --show-keys`` against it). D42D0685: 610C 7B14 E068 A878 070D A4E9 9CD0
# A493 D42D 0685, the key NVIDIA's RPMs are signed with ("Key ID 9cd0a493d42d0685" in `rpm -qip`,
# NVIDIA/cuda-repo-management SIGNATURES.md), pinned the same way by RHEL 9 driver-mirror scripts.
KEY_FINGERPRINTS = {
    "3bf863cc.pub": "EB693B3035CD5710E231E123A4B469963BF863CC",
    "D42D0685.pub": "610C7B14E068A878070DA4E99CD0A493D42D0685",
}
RPM_KEY_DIR = "/etc/pki/rpm-gpg"

# --- the apt side -------------------------------------------------------------------------
APT_KEYRING = "/etc/apt/keyrings/nvidia-cuda.gpg"  # pyinfra apt.key dearmors into /etc/apt/keyrings
APT_SOURCES_NAME = "nvidia-cuda"  # /etc/apt/sources.list.d/nvidia-cuda.sources
APT_PIN_FILE = "/etc/apt/preferences.d/nvidia-cuda"
# NVIDIA's Release file label, used by its repository pin (the cuda-<distro>.pin file that the
# older network instructions moved to /etc/apt/preferences.d/cuda-repository-pin-600):
# "Package: * / Pin: release l=NVIDIA CUDA / Pin-Priority: 600". The label (not the host name)
# keeps a mirror (cuda_repo_url) pinned too. Recalled from CUDA-DOWNLOADS, not verified here.
APT_REPO_LABEL = "NVIDIA CUDA"
APT_REPO_PRIORITY = 600
# Installed by NVIDIA's own bootstrap (cuda-keyring_1.1-1_all.deb, CUDA-DOWNLOADS); when present
# the repository is already configured and a second entry would clash on Signed-By.
CUDA_KEYRING_PACKAGE = "cuda-keyring"

# --- the driver ---------------------------------------------------------------------------
# DRIVER-GUIDE: pinning package first, then the meta package of the kernel-module flavour.
APT_PINNING_PACKAGE = "nvidia-driver-pinning-{branch}"
APT_DRIVER_PACKAGES = {"open": ("nvidia-open",), "proprietary": ("cuda-drivers",)}  # CUDA-DOWNLOADS
DNF_DRIVER_MODULE = {"open": "nvidia-driver:{branch}-open", "proprietary": "nvidia-driver:{branch}-dkms"}  # DNF-STREAMS
# Packages that build the kernel module for the running kernel (DKMS): ANSIBLE install-redhat.yml
# (kernel-headers-/kernel-devel-<kernel>), CUDA-DOWNLOADS for Debian/Ubuntu (linux-headers-$(uname -r)).
HEADER_PACKAGES = {"apt": ("linux-headers-{kernel}",), "dnf": ("kernel-devel-{kernel}", "kernel-headers-{kernel}")}
APT_PREREQUISITES = ("ca-certificates", "gnupg", "wget", "kmod")  # apt.key downloads + dearmors; ANSIBLE: kmod
NOUVEAU_BLACKLIST_FILE = "/etc/modprobe.d/blacklist-nouveau.conf"  # CUDA-GUIDE "Disabling Nouveau"
INITRAMFS_COMMAND = {"apt": "update-initramfs -u", "dnf": "dracut --force"}  # CUDA-GUIDE


@dataclass(frozen=True)
class GpuArch:
    """One NVIDIA architecture as lspci names its chips."""

    prefix: str  # chip code name prefix in the PCI ID database
    name: str
    open_modules: str  # "required", "recommended" or "unsupported" (OPEN-BLOG)
    capability: str  # first compute capability of the architecture


# Longest prefixes first is not needed: no prefix is a prefix of another.
GPU_ARCHS: tuple[GpuArch, ...] = (
    GpuArch("GB", "Blackwell", "required", "10.0"),
    GpuArch("GH", "Hopper", "recommended", "9.0"),
    GpuArch("AD", "Ada Lovelace", "recommended", "8.9"),
    GpuArch("GA", "Ampere", "recommended", "8.0"),
    GpuArch("TU", "Turing", "recommended", "7.5"),
    GpuArch("GV", "Volta", "unsupported", "7.0"),
    GpuArch("GP", "Pascal", "unsupported", "6.0"),
    GpuArch("GM", "Maxwell", "unsupported", "5.0"),
    GpuArch("GK", "Kepler", "unsupported", "3.0"),
)
# OPEN-BLOG: Grace Hopper (GH200) needs the open modules too, though its chip is a GH100.
OPEN_REQUIRED_NAMES = ("GH200", "Grace Hopper")

# --- the CUDA toolkit ---------------------------------------------------------------------
TOOLKIT_PACKAGE = "cuda-toolkit-{major}-{minor}"  # CUDA-DOWNLOADS, WSL-CUDA (same name in both)
TOOLKIT_ROOT = "/usr/local/cuda-{version}"  # CUDA-GUIDE post-installation actions
PROFILE_SCRIPT = "/etc/profile.d/cuda.sh"  # sourced by /etc/profile in every login shell
# Toolkits this deploy installs: the CUDA builds of the vLLM wheels it knows
# (deploy/kernel_support.py CUDA_MIN_DRIVER holds each one's minimum driver).
TOOLKIT_VERSIONS = ("12.8", "12.9", "13.0")

# --- WSL 2 --------------------------------------------------------------------------------
WSL_LIB_DIR = "/usr/lib/wsl/lib"  # WSL-CUDA: the Windows driver's libcuda.so* appear here
WSL_CONF = "/etc/wsl.conf"
WSL_VM_CREATOR_ID = "{40E0AC32-46A5-438A-A0B2-2B479E8F2E90}"  # MS-WSL networking.md
WSL_NETWORKING_MODES = ("nat", "mirrored", "bridged", "virtioproxy", "consomme", "none")  # WSL-SRC, MS-WSL
# A Linux NVIDIA driver inside WSL 2 shadows the Windows driver's libcuda (WSL-CUDA): packages
# that carry a Linux kernel module or its user-space driver libraries.
WSL_FORBIDDEN_PACKAGE_PREFIXES = (
    "nvidia-open", "cuda-drivers", "nvidia-driver-", "nvidia-dkms-", "nvidia-kernel-",
    "libnvidia-compute-", "nvidia-headless-",
)
WINDOWS_PUBLIC_DIR = "/mnt/c/Users/Public"  # C:\Users\Public, writable by every Windows user
WINDOWS_SCRIPT_SUBDIR = "vllm-deploy"

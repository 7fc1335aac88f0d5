"""Driver, CUDA toolkit and WSL2 operations from recorded facts: facts in, commands out.

Through the shared harness (tests/harness.py: a real pyinfra ``State`` with one host whose
``get_fact`` answers from a dict, the deploy function called as ``deploy.py`` would call it, every
operation's commands compared). No host is touched; every distribution and the WSL2 branches are
covered this way. The simpler operations have their cases as data in tests/operations/.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from pyinfra.facts.apt import AptRepo

from deploy import platform_data as pd
from deploy.cuda_toolkit import cuda_toolkit, parse_toolkit_host, plan_toolkit
from deploy.driver import (
    DriverHost,
    gpu_arch,
    kernel_module_flavor,
    nvidia_driver,
    parse_driver_host,
    plan_driver,
)
from deploy.host_facts import parse_gpu_report
from deploy.settings import SettingsError, load_settings
from deploy.wsl import (
    WSL_CONF_HEADER,
    WslHost,
    nat_firewall_sources,
    parse_wsl_host,
    windows_path,
    wsl_conf_text,
    wsl_host,
    wsl_port_mapping,
)
from tests.harness import KEY, UPLOADS, all_commands, changing, parse_platform, run_ops

H100 = Path(__file__).parent / "fixtures/gpu/h100-80gb-hbm3/query.csv"
KERNEL = {"ubuntu": "6.8.0-45-generic", "debian": "6.1.0-28-amd64", "rocky": "5.14.0-503.14.1.el9_5.x86_64",
          "rhel": "5.14.0-427.42.1.el9_4.x86_64"}


# --- recorded facts -----------------------------------------------------------------------


def platform(distro="ubuntu", version="24.04", kind="native", pid1="systemd", arch="x86_64"):
    kernel = {"wsl2": "6.6.87.2-microsoft-standard-WSL2", "wsl1": "4.4.0-19041-Microsoft"}.get(
        kind, KERNEL.get(distro, "6.8.0-45-generic"))
    return parse_platform([f"ID={distro}", f"VERSION_ID={version}", f"KERNEL={kernel}", f"ARCH={arch}",
                           f"PROCVERSION=Linux version {kernel}", f"PID1={pid1}", "MemTotal=264000000",
                           "MemAvailable=250000000", "PYTHON=3.12.3"])


def gpu_ok(driver="580.159.04"):
    rows = [line.replace("580.159.04", driver) for line in H100.read_text().splitlines()]
    return parse_gpu_report(["STATE: rc0"] + [f"GPU: {r}" for r in rows] + ["CUDA: CUDA Version: 13.0"])


NO_DRIVER = parse_gpu_report(["STATE: absent"])
BROKEN = parse_gpu_report(["STATE: rc9", "GPU: NVIDIA-SMI has failed because it couldn't communicate with "
                           "the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running."])
LSPCI_H100 = "PCI: 17:00.0 3D controller [0302]: NVIDIA Corporation GH100 [H100 SXM5 80GB] [10de:2330] (rev a1)"
LSPCI_B200 = "PCI: 1b:00.0 3D controller [0302]: NVIDIA Corporation GB100 [B200] [10de:2901] (rev a1)"
LSPCI_V100 = "PCI: 3b:00.0 3D controller [0302]: NVIDIA Corporation GV100GL [Tesla V100 SXM2 16GB] [10de:1db1]"
BARE = parse_driver_host(["SB: SecureBoot disabled", LSPCI_H100, "HEADERS: yes"])


def settings(**data):
    return load_settings("gpu1", data, environ={"VLLM_API_KEY": KEY})


def native_facts(pf, gpu, driver_host=BARE, **more):
    return {"GpuFacts": gpu, "DriverHostFacts": driver_host, **more}


def driver_run(s, pf, gpu, driver_host=BARE, **facts):
    return run_ops(nvidia_driver, native_facts(pf, gpu, driver_host, **facts), s, pf, gpu)


# --- the driver: a good one is left alone -------------------------------------------------


@pytest.mark.parametrize("distro,version", [("ubuntu", "22.04"), ("ubuntu", "24.04"), ("debian", "12"),
                                            ("rocky", "9.5"), ("rhel", "9.4")])
def test_good_driver_present_gives_no_operation_at_all(distro, version):
    plan, ops = driver_run(settings(), platform(distro, version), gpu_ok("580.159.04"))
    assert plan.action == "none" and "left alone" in plan.reason and "580.159.04" in plan.reason
    assert ops == []


def test_old_driver_with_old_vllm_is_also_left_alone():
    plan, ops = driver_run(settings(vllm_spec="vllm==0.11.0"), platform(), gpu_ok("570.133.20"))
    assert plan.action == "none" and ops == []


def test_nvidia_driver_none_never_installs():
    plan, ops = driver_run(settings(nvidia_driver="none"), platform(), NO_DRIVER)
    assert plan.action == "none" and ops == []


# --- the driver: installs per distribution ------------------------------------------------

REPO = "https://developer.download.nvidia.com/compute/cuda/repos/{}/x86_64/"


APT_INSTALL = ('DEBIAN_FRONTEND=noninteractive apt-get -y -o Dpkg::Options::="--force-confdef" '
               '-o Dpkg::Options::="--force-confold" install')
REBOOT = [["function", "remove_any_askpass_file"], ["function", "capture_uptime"],
          "( sleep 1 && reboot ) </dev/null >/dev/null 2>&1 &", ["function", "wait_and_reconnect"],
          ["function", "clean_sudo_info"]]
VERIFY = ("nvidia-smi works and the driver is >= 580.65.06",
          ["mkdir -p /tmp", ["upload", "/tmp/TEMP"], "chmod +x /tmp/TEMP", "/tmp/TEMP"])
READY = ("STOP: host gpu1: NVIDIA driver ready (nvidia-smi verified after the reboot); run the deploy again: "
         "the GPU check and VRAM plan read the new driver's facts", [["function", "raise_exc"]])
NOUVEAU = [("Blacklist nouveau (/etc/modprobe.d/blacklist-nouveau.conf)",
            ["mkdir -p /etc/modprobe.d", ["upload", "/etc/modprobe.d/blacklist-nouveau.conf"],
             "chmod 644 /etc/modprobe.d/blacklist-nouveau.conf"])]


def key_op(url, key_file, fingerprint, dest):
    """NVIDIA's key downloaded, kept only with its published fingerprint (platform_data.KEY_FINGERPRINTS)."""
    key = f"{url}{key_file}"
    store = (f"gpg --batch --yes --dearmor -o {dest} /tmp/TEMP && rm -f /tmp/TEMP && chmod 644 {dest}"
             if dest.endswith(".gpg") else f"mv -f /tmp/TEMP {dest} && chmod 644 {dest}")
    return (f"NVIDIA CUDA repository key ({key_file}, fingerprint checked)",
            [f"mkdir -p {dest.rsplit('/', 1)[0]}",
             f"( curl -sSLf {key} -o /tmp/TEMP ) || wget -q {key} -O /tmp/TEMP || {{ rm -f /tmp/TEMP; exit 1; }}",
             "fp=$(gpg --batch --with-colons --show-keys /tmp/TEMP 2>/dev/null | awk -F: '$1==\"fpr\" "
             "{print $10; exit}'); "
             f'if [ "$fp" != {fingerprint} ]; then rm -f /tmp/TEMP; echo "the key at {key} has fingerprint '
             f'${{fp:-none}}, not the published {fingerprint}: not trusted" >&2; exit 1; fi',
             store])


def apt_repository_ops(url):
    return [
        ("Tools to fetch NVIDIA's repository key",
         ["apt-get update", f"{APT_INSTALL} --no-install-recommends ca-certificates gnupg wget kmod"]),
        key_op(url, "3bf863cc.pub", "EB693B3035CD5710E231E123A4B469963BF863CC", "/etc/apt/keyrings/nvidia-cuda.gpg"),
        (f"NVIDIA CUDA repository {url}",
         ["mkdir -p /etc/apt/sources.list.d", ["upload", "/etc/apt/sources.list.d/nvidia-cuda.sources"],
          "chmod 644 /etc/apt/sources.list.d/nvidia-cuda.sources"]),
        ("Prefer NVIDIA's repository for its packages (/etc/apt/preferences.d/nvidia-cuda)",
         ["mkdir -p /etc/apt/preferences.d", ["upload", "/etc/apt/preferences.d/nvidia-cuda"],
          "chmod 644 /etc/apt/preferences.d/nvidia-cuda"]),
    ]


@pytest.mark.parametrize("distro,version,repo_dir", [("ubuntu", "22.04", "ubuntu2204"),
                                                     ("ubuntu", "24.04", "ubuntu2404"),
                                                     ("debian", "12", "debian12")])
def test_missing_driver_on_apt_distributions_exact_commands(distro, version, repo_dir):
    debian_main = AptRepo(type="deb", url="http://deb.debian.org/debian", distribution="bookworm",
                          components=["main"], options={})
    plan, ops = driver_run(settings(), platform(distro, version), NO_DRIVER,
                           AptSources=[debian_main] if distro == "debian" else [])
    url = REPO.format(repo_dir)
    assert (plan.action, plan.branch, plan.flavor, plan.repo_url) == ("install", "580", "open", url)
    contrib = [("Debian contrib component (NVIDIA's Debian packages need it)",
                ["mkdir -p /etc/apt/sources.list.d", ["upload", "/etc/apt/sources.list.d/debian-contrib.sources"],
                 "chmod 644 /etc/apt/sources.list.d/debian-contrib.sources"])] if distro == "debian" else []
    assert ops == apt_repository_ops(url) + contrib + NOUVEAU + [
        ("Rebuild the initramfs without nouveau", ["update-initramfs -u"]),
        ("Kernel headers and driver branch pin (nvidia-driver-pinning-580)",
         ["apt-get update", f"{APT_INSTALL} --no-install-recommends linux-headers-{KERNEL[distro]} "
                            "nvidia-driver-pinning-580"]),
        ("NVIDIA driver 580 (open kernel modules)", [f"{APT_INSTALL} nvidia-open"]),
        ("Reboot into the NVIDIA driver", REBOOT), VERIFY, READY]


def test_uploaded_repository_files():
    driver_run(settings(), platform(), NO_DRIVER)
    url = REPO.format("ubuntu2404")
    assert UPLOADS["/etc/apt/sources.list.d/nvidia-cuda.sources"] == (
        f"Types: deb\nURIs: {url}\nSuites: /\nSigned-By: /etc/apt/keyrings/nvidia-cuda.gpg\n")
    pin = UPLOADS["/etc/apt/preferences.d/nvidia-cuda"]
    assert "Package: *\nPin: release l=NVIDIA CUDA\nPin-Priority: 600\n" in pin
    assert "blacklist nouveau\noptions nouveau modeset=0\n" in UPLOADS["/etc/modprobe.d/blacklist-nouveau.conf"]
    verify = UPLOADS["/tmp/TEMP"]
    assert 'min="580.65.06"' in verify and "mokutil --import /var/lib/dkms/mok.pub" in verify
    driver_run(settings(cuda_repo_url="https://mirror.example/cuda/ubuntu2404/"), platform(), NO_DRIVER)
    assert "URIs: https://mirror.example/cuda/ubuntu2404/\n" in UPLOADS["/etc/apt/sources.list.d/nvidia-cuda.sources"]


def test_driver_install_order_repository_before_packages_before_reboot():
    _, ops = driver_run(settings(), platform(), NO_DRIVER)
    names = [name for name, _ in changing(ops)]
    order = [next(i for i, n in enumerate(names) if key in n) for key in
             ("repository key", "NVIDIA CUDA repository", "Prefer NVIDIA", "Blacklist nouveau",
              "Kernel headers", "NVIDIA driver 580", "Reboot", "nvidia-smi works", "STOP")]
    assert order == sorted(order), names


@pytest.mark.parametrize("distro,version,epel", [
    ("rocky", "9.5", "dnf install -y epel-release"),
    ("rhel", "9.4", "https://dl.fedoraproject.org/pub/epel/epel-release-latest-9.noarch.rpm")])
def test_missing_driver_on_rhel_family_exact_commands(distro, version, epel):
    plan, ops = driver_run(settings(), platform(distro, version), NO_DRIVER)
    url = REPO.format("rhel9")
    assert (plan.action, plan.repo_url, plan.flavor) == ("install", url, "open")
    kernel = KERNEL[distro]
    assert ops[1:] == [
        key_op(url, "D42D0685.pub", "610C7B14E068A878070DA4E99CD0A493D42D0685",
               "/etc/pki/rpm-gpg/NVIDIA-CUDA-D42D0685.pub"),
        (f"NVIDIA CUDA repository {url}", ["mkdir -p /etc/yum.repos.d",
                                          ["upload", "/etc/yum.repos.d/cuda-rhel9-x86_64.repo"],
                                          "chmod 644 /etc/yum.repos.d/cuda-rhel9-x86_64.repo"]),
        *NOUVEAU,
        ("Rebuild the initramfs without nouveau", ["dracut --force"]),
        ("Kernel headers for DKMS", [f"dnf install -y kernel-devel-{kernel} kernel-headers-{kernel}"]),
        ("NVIDIA driver stream nvidia-driver:580-open", ["dnf module enable -y nvidia-driver:580-open"]),
        ("NVIDIA driver 580 (open kernel modules)", ["dnf install -y @nvidia-driver:580-open"]),
        ("Reboot into the NVIDIA driver", REBOOT), VERIFY, READY]
    assert ops[0][0] == "EPEL (for dkms)" and epel in all_commands(ops[:1])
    repo_file = UPLOADS["/etc/yum.repos.d/cuda-rhel9-x86_64.repo"]
    assert f"baseurl={url}" in repo_file and "gpgcheck=1" in repo_file
    assert "gpgkey=file:///etc/pki/rpm-gpg/NVIDIA-CUDA-D42D0685.pub" in repo_file


def test_rpm_repo_file_names_nvidia_key():
    _, ops = driver_run(settings(), platform("rocky", "9.5"), NO_DRIVER)
    uploads = [name for name, _ in ops if name.startswith("NVIDIA CUDA repository")]
    assert uploads == ["NVIDIA CUDA repository key (D42D0685.pub, fingerprint checked)",
                       f"NVIDIA CUDA repository {REPO.format('rhel9')}"]


def test_too_old_driver_is_upgraded_with_latest():
    plan, ops = driver_run(settings(), platform(), gpu_ok("570.133.20"))
    assert plan.action == "install" and plan.upgrade and "upgrade to" in plan.reason
    assert "nvidia-open" in all_commands(ops)
    rocky_plan, rocky_ops = driver_run(settings(), platform("rocky", "9.5"), gpu_ok("570.133.20"))
    assert "dnf -y module switch-to nvidia-driver:580-open" in all_commands(rocky_ops)


def test_existing_cuda_keyring_repository_is_not_configured_twice():
    _, ops = driver_run(settings(), platform(), NO_DRIVER, DebPackages={"cuda-keyring": {"1.1-1"}})
    text = all_commands(ops)
    assert "3bf863cc.pub" not in text
    assert ["upload", "/etc/apt/sources.list.d/nvidia-cuda.sources"] not in [c for _, cs in ops for c in cs]


def test_proprietary_modules_and_a_set_branch():
    plan, ops = driver_run(settings(nvidia_kernel_modules="proprietary", nvidia_driver_branch="590"),
                           platform(), NO_DRIVER)
    assert (plan.branch, plan.flavor) == ("590", "proprietary")
    assert "nvidia-driver-pinning-590" in all_commands(ops) and "cuda-drivers" in all_commands(ops)


def test_blackwell_refuses_proprietary_and_volta_cannot_serve():
    b200 = parse_driver_host([LSPCI_B200])
    plan, ops = driver_run(settings(nvidia_kernel_modules="proprietary"), platform(), NO_DRIVER, b200)
    assert plan.action == "stop" and "Blackwell" in plan.reason
    assert [name for name, _ in ops] == [f"STOP: host gpu1: {plan.reason}"]
    plan, _ = driver_run(settings(), platform(), NO_DRIVER, parse_driver_host([LSPCI_V100]))
    assert plan.action == "stop" and "Volta" in plan.reason and "8.0" in plan.reason


def test_skip_reboot_stops_and_asks_for_one():
    _, ops = driver_run(settings(driver_reboot=False), platform(), NO_DRIVER)
    names = [name for name, _ in ops]
    assert not any(n.startswith("Reboot") for n in names)
    assert names[-1].startswith("STOP: host gpu1: NVIDIA driver 580 installed; driver_reboot is off")


def test_unsupported_distribution_stops_with_the_fix():
    plan, ops = driver_run(settings(), platform("fedora", "41"), NO_DRIVER)
    assert plan.action == "stop" and "fedora 41" in plan.reason and ">= 580.65.06" in plan.reason
    assert len(ops) == 1


def test_broken_driver_after_install_reboots_then_verifies():
    plan, ops = driver_run(settings(), platform(), BROKEN, BARE, DebPackages={"nvidia-open": {"580.95.05-1"}})
    assert plan.action == "reboot"
    names = [name for name, _ in ops]
    assert names[0] == "Reboot into the NVIDIA driver" and names[1].startswith("nvidia-smi works")


@pytest.mark.parametrize("facts,expected", [
    (["NOUVEAU: yes", "HEADERS: yes"], "nouveau"),
    (["SB: SecureBoot enabled", "HEADERS: yes"], "Secure Boot is on"),
    (["SB: SecureBoot disabled"], "no kernel headers for the running kernel 6.8.0-45-generic"),
])
def test_broken_driver_without_packages_stops_with_the_likely_reason(facts, expected):
    modules = {"nouveau": {"size": "2793472", "instances": 0, "state": "Live"}} if "NOUVEAU: yes" in facts else {}
    plan, ops = driver_run(settings(), platform(), BROKEN, parse_driver_host(facts), KernelModules=modules)
    assert plan.action == "stop" and expected in plan.reason
    assert len(ops) == 1 and ops[0][0].startswith("STOP: host gpu1: the NVIDIA driver is installed but not working")


def test_cpu_backend_touches_no_driver():
    plan, ops = driver_run(settings(backend="cpu", model="tiny", model_source="path", model_path="/m"),
                           platform(), None)
    assert plan.action == "none" and ops == []


# --- WSL2: never a Linux driver -----------------------------------------------------------

WSL_OK = parse_wsl_host(["LIBCUDA: /usr/lib/wsl/lib/libcuda.so", "LIBCUDA: /usr/lib/wsl/lib/libcuda.so.1",
                         "CONFFILE: yes", "CONF: [boot]", "CONF: systemd=true", "NETMODE: nat",
                         "WINPUBLIC: yes", "ADDR: 172.28.79.12", "DISTRO: Ubuntu-24.04", "GATEWAY: 172.28.64.1"])


@pytest.mark.parametrize("gpu", [NO_DRIVER, gpu_ok("566.36"), BROKEN])
def test_wsl2_never_gets_a_driver_package(gpu):
    pf = platform(kind="wsl2")
    plan, ops = driver_run(settings(), pf, gpu, DriverHost())
    assert plan.action == "none" and ops == []
    assert plan_driver(settings(), pf, gpu, DriverHost(), {}).action == "none"


@pytest.mark.parametrize("asked", [{"nvidia_driver": "install"}, {"nvidia_driver_branch": "580"},
                                   {"nvidia_kernel_modules": "open"}])
def test_wsl2_refuses_a_linux_driver_when_asked(asked):
    plan, ops = driver_run(settings(**asked), platform(kind="wsl2"), NO_DRIVER, DriverHost())
    assert plan.action == "stop" and plan.reason.startswith("refused: never install a Linux NVIDIA driver")
    assert len(ops) == 1 and "apt" not in all_commands(ops)


def wsl_run(s, pf, w, packages=None):
    facts = {"WslFacts": w, "DebPackages": packages or {}}
    return run_ops(wsl_host, facts, s, pf)


def test_wsl2_ready_host_changes_nothing():
    ok, ops = wsl_run(settings(), platform(kind="wsl2"), WSL_OK)
    assert ok is True and ops == []


def test_wsl2_without_systemd_as_pid1_writes_wsl_conf_and_stops_with_wsl_shutdown():
    w = parse_wsl_host(["LIBCUDA: /usr/lib/wsl/lib/libcuda.so.1", "CONFFILE: yes", "CONF: [user]",
                        "CONF: default=alice"])
    ok, ops = wsl_run(settings(), platform(kind="wsl2", pid1="init"), w)
    assert ok is False
    assert [name for name, _ in ops][0] == "systemd on in /etc/wsl.conf"
    assert ops[0][1] == ["mkdir -p /etc", ["upload", "/etc/wsl.conf"], "chmod 644 /etc/wsl.conf"]
    stop = ops[-1][0]
    assert stop.startswith("STOP: host gpu1: systemd is not PID 1") and "`wsl --shutdown`" in stop
    assert "PID 1 is 'init'" in stop and "run the deploy again" in stop


def test_wsl2_with_systemd_on_but_not_restarted_still_stops():
    ok, ops = wsl_run(settings(), platform(kind="wsl2", pid1="init"), WSL_OK)
    assert ok is False and len(ops) == 1 and "`wsl --shutdown`" in ops[0][0]


def test_wsl2_without_windows_driver_or_with_a_linux_driver_stops():
    w = parse_wsl_host(["CONFFILE: yes", "CONF: [boot]", "CONF: systemd=true"])
    ok, ops = wsl_run(settings(), platform(kind="wsl2"), w, {"nvidia-driver-580-open": {"580"}})
    assert ok is False
    assert "no /usr/lib/wsl/lib/libcuda.so*" in ops[-1][0] and "apt-get purge nvidia-driver-580-open" in ops[-1][0]


def test_wsl1_is_refused():
    ok, ops = wsl_run(settings(), platform(kind="wsl1", pid1="init"), WslHost())
    assert ok is False and "WSL1 cannot reach the GPU" in ops[0][0] and "wsl --set-version" in ops[0][0]


def test_wsl_conf_keeps_the_users_lines_and_is_stable():
    text = wsl_conf_text(["[user]", "default=alice", "", "[boot]", "systemd=false", "command=echo hi"])
    assert text == (f"{WSL_CONF_HEADER}\n[user]\ndefault=alice\n\n[boot]\nsystemd=true\ncommand=echo hi\n")
    assert wsl_conf_text(text.splitlines()) == text
    assert wsl_conf_text(None) == f"{WSL_CONF_HEADER}\n[boot]\nsystemd=true\n"
    assert wsl_conf_text(["[boot]", "command=x", ""]) == f"{WSL_CONF_HEADER}\n[boot]\ncommand=x\nsystemd=true\n\n"


# --- WSL2: the Windows side of the port -------------------------------------------------

# vLLM's own port mapped (front_door: false); the front door's port: test_wsl2_maps_the_front_doors_port
EXPOSED = {"bind_address": "0.0.0.0", "allowed_sources": ["192.168.10.0/24", "10.0.0.5/32"], "front_door": False}


def test_wsl2_port_mapping_script_for_nat_written_to_c_and_how_to_run_it():
    s = settings(**EXPOSED)
    pf = platform(kind="wsl2")
    path, ops = run_ops(wsl_port_mapping, {"WslFacts": WSL_OK}, s, pf)
    assert path == "/mnt/c/Users/Public/vllm-deploy/vllm-wsl-8000.ps1"
    (name, commands), = ops
    assert commands == ["mkdir -p /mnt/c/Users/Public/vllm-deploy", ["upload", path]]  # no chmod on C:
    assert ("as Administrator run: powershell.exe -ExecutionPolicy Bypass -File "
            '"C:\\Users\\Public\\vllm-deploy\\vllm-wsl-8000.ps1"') in name and "nat mode" in name


def test_wsl2_port_mapping_script_content():
    from deploy.wsl import portproxy_script_text

    s = settings(**EXPOSED)
    text = portproxy_script_text(s, WSL_OK, "nat")
    assert "netsh interface portproxy add v4tov4 listenport=$Port listenaddress=0.0.0.0 connectport=$Port " \
           "connectaddress=$Address" in text
    assert "(& wsl.exe @WslArgs hostname -I)" in text  # the address is looked up at every run
    assert '$Sources = @("192.168.10.0/24", "10.0.0.5/32")' in text and "$Port = 8000" in text
    assert "New-NetFirewallRule -Name $RuleName" in text and "-RemoteAddress $Sources" in text
    assert "New-NetFirewallHyperVRule" in text and "{40E0AC32-46A5-438A-A0B2-2B479E8F2E90}" in text
    assert '[string]$Distro = "Ubuntu-24.04"' in text and '$Mode = "nat"' in text
    assert text.isascii()


def test_wsl2_port_mapping_without_c_drive_goes_to_install_dir_and_loopback_needs_none():
    w = parse_wsl_host(["DISTRO: Ubuntu", "NETMODE: mirrored"])
    path, ops = run_ops(wsl_port_mapping, {"WslFacts": w}, settings(**EXPOSED), platform(kind="wsl2"))
    assert path == "/opt/vllm/windows/vllm-wsl-8000.ps1"
    assert '"\\\\wsl.localhost\\Ubuntu\\opt\\vllm\\windows\\vllm-wsl-8000.ps1"' in ops[0][0]
    assert "mirrored mode" in ops[0][0]
    path, ops = run_ops(wsl_port_mapping, {"WslFacts": w}, settings(), platform(kind="wsl2"))
    assert path is None and ops == []


def test_wsl2_maps_the_front_doors_port():
    from deploy.wsl import portproxy_script_text

    s = settings(**{**EXPOSED, "front_door": None})  # bound to 0.0.0.0: the front door, by default
    path, _ops = run_ops(wsl_port_mapping, {"WslFacts": WSL_OK}, s, platform(kind="wsl2"))
    assert path == "/mnt/c/Users/Public/vllm-deploy/vllm-wsl-443.ps1"
    text = portproxy_script_text(s, WSL_OK, "nat")
    assert "$Port = 443" in text and "8000" not in text and '$RuleName = "vllm-wsl-vllm-443"' in text


def test_nat_mode_needs_the_windows_host_address_in_the_linux_firewall():
    assert nat_firewall_sources(WSL_OK, "nat") == ["172.28.64.1/32"]
    assert nat_firewall_sources(WSL_OK, "mirrored") == []


def test_windows_paths():
    assert windows_path("/mnt/d/x/y.ps1", "U") == "D:\\x\\y.ps1"
    assert windows_path("/opt/a.ps1", "") == "\\\\wsl.localhost\\<distro>\\opt\\a.ps1"


# --- the CUDA toolkit -------------------------------------------------------------------


PROFILE = ["mkdir -p /etc/profile.d", ["upload", "/etc/profile.d/cuda.sh"], "chmod 644 /etc/profile.d/cuda.sh"]


def toolkit_run(s, pf, gpu, toolkit_lines=(), **facts):
    tk = parse_toolkit_host(list(toolkit_lines))
    return run_ops(cuda_toolkit, {"CudaToolkitFacts": tk, **facts}, s, pf, gpu)


def test_no_toolkit_by_default():
    plan, ops = toolkit_run(settings(), platform(), gpu_ok())
    assert plan.action == "none" and ops == []


def test_toolkit_present_gets_only_the_profile_script():
    plan, ops = toolkit_run(settings(cuda_toolkit="13.0"), platform(), gpu_ok(),
                            ["NVCC: /usr/local/cuda-13.0 release 13.0", "NVCC: /usr/local/cuda release 13.0"])
    assert plan.action == "profile"
    assert ops == [("CUDA 13.0 paths for login shells (/etc/profile.d/cuda.sh)", PROFILE)]


@pytest.mark.parametrize("distro,version,kind,repo_dir,manager", [
    ("ubuntu", "24.04", "native", "ubuntu2404", "apt-get"), ("debian", "12", "native", "debian12", "apt-get"),
    ("rocky", "9.5", "native", "rhel9", "dnf"), ("ubuntu", "22.04", "wsl2", "wsl-ubuntu", "apt-get")])
def test_toolkit_install_per_platform(distro, version, kind, repo_dir, manager):
    plan, ops = toolkit_run(settings(cuda_toolkit="12.9"), platform(distro, version, kind), gpu_ok())
    assert plan.action == "install" and plan.repo_url == REPO.format(repo_dir)
    text = all_commands(ops)
    assert f"{manager} " in text and "cuda-toolkit-12-9" in text
    assert "nvidia-open" not in text and "cuda-drivers" not in text and " cuda " not in text
    assert ops[-1] == ("CUDA 12.9 paths for login shells (/etc/profile.d/cuda.sh)", PROFILE)


def test_toolkit_facts_prefer_the_versioned_folder():
    # as read on the lent H100 (Ubuntu 24.04): cuda and cuda-13 are alternatives links, cuda-13.0 the folder
    tk = parse_toolkit_host(["NVCC: /usr/local/cuda-12.9 release 12.9", "NVCC: /usr/local/cuda-13 release 13.0",
                             "NVCC: /usr/local/cuda-13.0 release 13.0", "NVCC: /usr/local/cuda release 13.0",
                             "NVCC: /usr/local/cuda-x "])
    assert tk.roots == {"13.0": "/usr/local/cuda-13.0", "12.9": "/usr/local/cuda-12.9"}
    only_link = parse_toolkit_host(["NVCC: /usr/local/cuda release 13.0"])
    plan = plan_toolkit(settings(cuda_toolkit="13.0"), platform(), gpu_ok(), only_link)
    assert (plan.action, plan.root) == ("profile", "/usr/local/cuda")


def test_toolkit_on_wsl2_exact_commands_only_the_toolkit_from_wsl_ubuntu():
    plan, ops = toolkit_run(settings(cuda_toolkit="13.0"), platform("ubuntu", "24.04", "wsl2"), gpu_ok("581.57"),
                            DebPackages={"ca-certificates": {"1"}, "gnupg": {"1"}, "wget": {"1"}, "kmod": {"1"}})
    url = REPO.format("wsl-ubuntu")
    assert ops == apt_repository_ops(url)[1:] + [
        ("CUDA toolkit 13.0", ["apt-get update", f"{APT_INSTALL} --no-install-recommends cuda-toolkit-13-0"]),
        ("CUDA 13.0 paths for login shells (/etc/profile.d/cuda.sh)", PROFILE)]
    assert "/usr/local/cuda-13.0/bin${PATH:+:${PATH}}" in UPLOADS["/etc/profile.d/cuda.sh"]


def test_toolkit_on_wsl_debian_is_refused_and_too_new_for_the_driver_stops():
    plan, _ = toolkit_run(settings(cuda_toolkit="12.9"), platform("debian", "12", "wsl2"), gpu_ok())
    assert plan.action == "stop" and "WSL-Ubuntu" in plan.reason
    plan, _ = toolkit_run(settings(cuda_toolkit="13.0", vllm_spec="vllm==0.11.0"), platform(), gpu_ok("570.133.20"))
    assert plan.action == "stop" and "needs NVIDIA driver >= 580.65.06" in plan.reason


def test_toolkit_plan_follows_a_driver_being_installed():
    from deploy.driver import DriverPlan

    tk = parse_toolkit_host([])
    pending = DriverPlan("install", "", branch="580")
    assert plan_toolkit(settings(cuda_toolkit="13.0"), platform(), NO_DRIVER, tk, pending).action == "install"


def test_profile_script_gives_nvcc_path_in_a_login_shell(tmp_path):
    from deploy.cuda_toolkit import profile_text

    root = tmp_path / "cuda-13.0"
    (root / "bin").mkdir(parents=True)
    (root / "bin/nvcc").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 13.0, V13.0.88'\n")
    (root / "bin/nvcc").chmod(0o755)
    profile = tmp_path / "cuda.sh"
    profile.write_text(profile_text(str(root), "13.0"))
    import subprocess

    out = subprocess.run(["sh", "-c", f". {shlex.quote(str(profile))}; . {shlex.quote(str(profile))}; "
                          "echo \"$PATH\"; echo \"$LD_LIBRARY_PATH\"; nvcc --version"],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, check=True).stdout.splitlines()
    assert out[0] == f"{root}/bin:/usr/bin:/bin"  # sourced twice, added once
    assert out[1] == f"{root}/lib64"
    assert "release 13.0" in out[2]


# --- facts parsing and settings ---------------------------------------------------------


def test_driver_host_facts_parse():
    d = parse_driver_host(["SB: ", "SBVAR: 1", LSPCI_H100,
                           "MODULE: NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  "
                           "Release Build  (dvs-builder@U16-I3-B03-4-3)  Tue Sep 23 09:43:34 UTC 2025"])
    assert d.secure_boot == "enabled" and not d.nouveau_loaded and not d.headers
    assert (d.module_version, d.module_flavor) == ("580.95.05", "open")
    assert gpu_arch(d.gpus[0]).name == "Hopper"
    assert gpu_arch("NVIDIA Corporation AD102GL [L40S] [10de:26b9]").name == "Ada Lovelace"
    assert gpu_arch("NVIDIA [10de:2330]") is None
    assert kernel_module_flavor("auto", ["NVIDIA [10de:2330]"])[0] == "open"


def test_every_repository_row_names_a_source_and_builds_an_https_url():
    for row in pd.CUDA_REPOS + (pd.WSL_REPO,):
        assert row.source and row.url("x86_64").startswith("https://developer.download.nvidia.com/")
    assert pd.cuda_repo("rocky", "9.5").repo_dir == "rhel9" and pd.cuda_repo("ubuntu", "20.04") is None
    assert pd.cuda_repo("ubuntu", "24.04", wsl=True).repo_dir == "wsl-ubuntu"


@pytest.mark.parametrize("data,field", [
    ({"nvidia_driver": "yes"}, "nvidia_driver"), ({"nvidia_driver_branch": "570"}, "nvidia_driver_branch"),
    ({"nvidia_driver_branch": "r580"}, "nvidia_driver_branch"), ({"nvidia_kernel_modules": "nouveau"},
                                                                  "nvidia_kernel_modules"),
    ({"driver_reboot": "no"}, "driver_reboot"), ({"cuda_toolkit": "11.8"}, "cuda_toolkit"),
    ({"cuda_repo_url": "ftp://x"}, "cuda_repo_url"), ({"windows_script_dir": "C:\\x"}, "windows_script_dir")])
def test_bad_platform_settings_name_host_field_value_and_fix(data, field):
    with pytest.raises(SettingsError) as err:
        settings(**data)
    message = str(err.value)
    assert message.startswith(f"host gpu1: setting {field}=") and "is not accepted:" in message
    if field == "nvidia_driver_branch" and data[field] == "570":
        assert "at least 580" in message and "580.65.06" in message


def test_no_driver_and_no_nvidia_gpu_on_the_bus_installs_nothing():
    """A machine without an NVIDIA card (like the disposable test hosts) never gets a driver."""
    no_gpu = parse_driver_host(["SB: SecureBoot disabled", "HEADERS: yes"])
    plan = plan_driver(settings(), platform("debian", "12"), NO_DRIVER, no_gpu, {})
    assert plan.action == "stop" and "no NVIDIA GPU on the PCI bus" in plan.reason and "backend: cpu" in plan.reason


def test_in_a_rollout_a_ready_driver_is_noted_for_the_second_pass(monkeypatch, tmp_path):
    """deploy/rollout.py runs the host again when this note is there (deploy/fleet/results.py)."""
    monkeypatch.setenv("VLLM_ROLLOUT_RESULTS", str(tmp_path))
    _plan, ops = driver_run(settings(), platform("ubuntu", "24.04"), NO_DRIVER)
    assert ops[-3:] == [VERIFY, ("Driver ready: note it for the rollout's second pass", [["function", "note"]]),
                        READY]

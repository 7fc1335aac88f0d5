"""Platform steps for real, on one disposable Debian 12 host (no GPU; NVIDIA's servers unreachable).

What runs for real through the pyinfra CLI and this project's own functions: NVIDIA's CUDA
repository for debian12 (key file, deb822 source, pin, Debian's contrib component) checked with
apt itself; the CUDA toolkit's /etc/profile.d/cuda.sh giving PATH / LD_LIBRARY_PATH and ``nvcc`` in a
login shell; and, with the host's platform read for real but taken as WSL2, /etc/wsl.conf (the
user's lines kept) and the PowerShell port-mapping script. Then a second run changes nothing.

Two things are stood in for, because they need NVIDIA's servers or a GPU: the repository key
(a placeholder file at the keyring path, which the deploy keeps and so downloads nothing) and
the toolkit's files (a stub ``nvcc`` in /usr/local/cuda-13.0, so the toolkit counts as present and
only the profile script is written). apt's update of NVIDIA's repository is expected to fail to
connect; every other source must update cleanly.

Lab hosts share one bridge: this waits (up to 15 minutes) while another lab runs, then skips.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.demo import grand_total
from lab.hosts import DEFAULT_STATE_DIR

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = Path(DEFAULT_STATE_DIR + "-platform")
NVIDIA = "https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/"
KEY = "sk-platform-test-0123456789abcdef"

DEPLOY = '''
from dataclasses import replace

from pyinfra import host

from deploy import platform_data as pd
from deploy.cuda_toolkit import cuda_toolkit
from deploy.driver import cuda_repository
from deploy.host_facts import host_platform
from deploy.settings import load_settings
from deploy.wsl import wsl_host, wsl_port_mapping

data = host.data.dict()
s = load_settings(host.name, data)
platform = host_platform()
repo = pd.cuda_repo(platform.distro, platform.version)
cuda_repository(s, platform, repo, repo.url(platform.arch))
cuda_toolkit(s, platform, None)
# this host's real facts, taken as a WSL2 distribution (cpu backend: no Windows driver to check)
as_wsl2 = replace(platform, kind="wsl2")
s_cpu = load_settings(host.name, {**data, "backend": "cpu", "model": "tiny", "model_source": "path",
                                  "model_path": "/srv/tiny", "cuda_toolkit": None})
wsl_host(s_cpu, as_wsl2)
wsl_port_mapping(s, as_wsl2)
'''


def other_lab_running() -> bool:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return any(line.startswith("systemd-nspawn") and str(STATE_DIR) not in line for line in out.splitlines())


@pytest.fixture(scope="module")
def lab():
    if os.geteuid() != 0:
        pytest.skip("needs root (systemd-nspawn hosts)")
    deadline = time.monotonic() + 900
    while other_lab_running():
        if time.monotonic() > deadline:
            pytest.skip("another lab run kept the shared bridge busy for 15 minutes")
        time.sleep(30)
    from lab.hosts import Lab

    lab = Lab(state_dir=STATE_DIR)
    lab.up(1)
    yield lab
    lab.down()


@pytest.fixture(scope="module")
def host(lab):
    h = lab.hosts[0]
    stand_ins = (
        # the repository key: NVIDIA's server is unreachable here
        "install -d /etc/apt/keyrings && : > /etc/apt/keyrings/nvidia-cuda.gpg; "
        # the toolkit's files: a stub nvcc, so the toolkit counts as installed
        "install -d /usr/local/cuda-13.0/bin /usr/local/cuda-13.0/lib64 && "
        "printf '#!/bin/sh\\necho \"Cuda compilation tools, release 13.0, V13.0.88 (stub)\"\\n' "
        "> /usr/local/cuda-13.0/bin/nvcc && chmod 755 /usr/local/cuda-13.0/bin/nvcc; "
        # a user's own wsl.conf
        "printf '[user]\\ndefault=alice\\n' > /etc/wsl.conf"
    )
    assert h.ssh(stand_ins).returncode == 0
    return h


def run_deploy(lab, h, tmp_path) -> tuple[int, str]:
    inventory = tmp_path / "inventory.py"
    inventory.write_text(
        f"hosts = ([({h.name!r}, {{'ssh_hostname': {h.ip!r}, 'ssh_user': 'root', 'ssh_key': {h.ssh_key!r}, "
        "'ssh_strict_host_key_checking': 'no', 'ssh_known_hosts_file': '/dev/null', 'cuda_toolkit': '13.0', "
        "'bind_address': '0.0.0.0', 'allowed_sources': ['192.168.10.0/24', '10.123.0.1/32']})], {})\n")
    deploy = tmp_path / "platform_deploy.py"
    deploy.write_text(DEPLOY)
    env = dict(os.environ, VLLM_API_KEY=KEY, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.run([str(Path(sys.executable).parent / "pyinfra"), "-y", str(inventory), str(deploy)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def deployed(lab, host, tmp_path_factory):
    rc, output = run_deploy(lab, host, tmp_path_factory.mktemp("first"))
    assert rc == 0, output[-6000:]
    return output


def test_apt_reads_nvidias_source_pin_and_debian_contrib(host, deployed):
    source = host.ssh("cat /etc/apt/sources.list.d/nvidia-cuda.sources").stdout
    assert source == f"Types: deb\nURIs: {NVIDIA}\nSuites: /\nSigned-By: /etc/apt/keyrings/nvidia-cuda.gpg\n"
    uris = host.ssh("apt-get update --print-uris")
    assert uris.returncode == 0 and NVIDIA in uris.stdout and "E:" not in uris.stderr, uris.stdout + uris.stderr
    update = host.ssh("apt-get -o Acquire::Retries=0 -o Acquire::https::Timeout=10 update", timeout=300)
    failed = [line for line in (update.stdout + update.stderr).splitlines() if line.startswith(("Err:", "E:", "W:"))]
    assert failed and all("developer.download.nvidia.com" in line or "some index files failed" in line.lower()
                          or "could not be" in line.lower() or "not signed" in line.lower()
                          for line in failed), failed
    policy = host.ssh("apt-cache policy")
    assert policy.returncode == 0 and "E:" not in policy.stderr and "W:" not in policy.stderr, policy.stderr
    assert "bookworm/contrib" in policy.stdout, policy.stdout
    pin = host.ssh("apt-cache policy nvidia-open 2>&1; cat /etc/apt/preferences.d/nvidia-cuda").stdout
    assert "Pin: release l=NVIDIA CUDA" in pin and "Invalid record" not in pin


def test_profile_gives_cuda_paths_and_nvcc_in_a_login_shell(host, deployed):
    out = host.ssh("bash -lc 'echo \"$PATH\"; echo \"$LD_LIBRARY_PATH\"; echo \"$CUDA_HOME\"; nvcc --version'")
    lines = out.stdout.splitlines()
    assert out.returncode == 0, out.stderr
    assert lines[0].startswith("/usr/local/cuda-13.0/bin:") and lines[0].count("/usr/local/cuda-13.0/bin") == 1
    assert lines[1].split(":")[0] == "/usr/local/cuda-13.0/lib64" and lines[2] == "/usr/local/cuda-13.0"
    assert "release 13.0" in lines[3]
    sh = host.ssh("sh -lc 'command -v nvcc'")  # dash reads /etc/profile.d too
    assert sh.stdout.strip() == "/usr/local/cuda-13.0/bin/nvcc"
    plain = host.ssh("env -i bash --norc --noprofile -c 'echo $PATH'")
    assert "cuda" not in plain.stdout  # only login shells get it, as documented


def test_wsl_conf_turns_systemd_on_and_keeps_the_users_lines(host, deployed):
    text = host.ssh("cat /etc/wsl.conf").stdout
    conf = configparser.ConfigParser()
    conf.read_string(text)
    assert conf["boot"]["systemd"] == "true" and conf["user"]["default"] == "alice"
    assert text.splitlines()[0].startswith("# [boot] systemd=true is kept by the gpt-oss vLLM deploy")


def test_powershell_script_written_where_windows_reaches_it(host, deployed):
    # no /mnt/c on this host: the install folder; bound to 0.0.0.0, the port clients reach is the front door's
    path = "/opt/vllm/windows/vllm-wsl-443.ps1"
    text = host.ssh(f"cat {path}").stdout
    assert "connectaddress=$Address" in text and "(& wsl.exe @WslArgs hostname -I)" in text
    assert '$Sources = @("192.168.10.0/24", "10.123.0.1/32")' in text and "$Port = 443" in text
    assert text.isascii() and text.count("{") == text.count("}") and text.count("(") == text.count(")")
    assert f'powershell.exe -ExecutionPolicy Bypass -File "\\\\wsl.localhost\\<distro>{path.replace("/", chr(92))}"' \
        in deployed


def test_second_run_changes_nothing(lab, host, deployed, tmp_path):
    rc, output = run_deploy(lab, host, tmp_path)
    assert rc == 0, output[-4000:]
    total = grand_total(output)
    assert total["changed"] == "-" and total["errors"] == "-", (total, output[-4000:])

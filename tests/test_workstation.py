"""End to end: the fresh workstation. A person copies the project onto their own machine, makes
a venv with it, and runs ``pyinfra @local deploy.py`` there with ``--data`` settings (README).

Here "their own machine" is one disposable host (lab.hosts): the project is copied in (the files
git tracks or would track), ``python3 -m venv`` + ``pip install -e .`` inside it, then the real
pyinfra CLI runs on that host against ``@local`` with the cpu backend and the tiny model
(lab/tiny_model.py). Checked from inside the host (the server binds to 127.0.0.1 by default) with
the key and without it, from outside (the port is not reachable), and by a second run that
changes nothing.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from lab import demo
from lab.demo import grand_total
from lab.hosts import Lab
from lab.tiny_model import make_tiny_model

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
PROJECT = "/root/gpt-oss-vllm-deploy"
TIMINGS: dict[str, float] = {}
# The lab's specifics, given as a person would on the command line (pyinfra's --data).
DATA = {
    "backend": "cpu",
    "model": "tiny-chat",
    "model_source": "upload",
    "model_upload_from": "/srv/tiny-model",
    "api_key_file": "/root/vllm-api-key",
    "find_links": '["/opt/wheels"]',  # the machine's CPU torch wheel, bound in read-only
    "ca_bundle": "/etc/ssl/certs/ca-certificates.crt",
}
ASK = """
import json, sys, requests
key = open("/root/vllm-api-key").read().strip()
url = "http://127.0.0.1:8000/v1/chat/completions"
body = {"model": "tiny-chat", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}
with_key = requests.post(url, json=body, headers={"Authorization": "Bearer " + key}, timeout=120)
without = requests.post(url, json=body, timeout=30)
print(json.dumps({"with_key": with_key.status_code, "body": with_key.json() if with_key.ok else with_key.text,
                  "without_key": without.status_code}))
"""


@pytest.fixture(scope="module")
def host():
    lab = Lab()
    lab.ensure_tools()
    lab.ensure_rootfs()
    model = lab.state_dir / "tiny-model"
    if not (model / "config.json").is_file():
        make_tiny_model(model)
    binds = [(str(model), "/srv/tiny-model")]
    if Path(demo.WHEELS).is_dir():
        binds.append((demo.WHEELS, demo.WHEELS))
    binds.append("rw:" + str(lab.cache_dir / "uv") + ":/opt/vllm/cache/uv")  # shared with the other e2e tests
    t = time.monotonic()
    (h,) = lab.up(1, binds=binds)
    TIMINGS["host up"] = time.monotonic() - t
    yield h
    lab.down()
    print("\nTIMINGS " + ", ".join(f"{k}: {v:.1f} s" for k, v in TIMINGS.items()))


def run_local(h, *extra: str, timeout: float = 1500) -> tuple[int, str]:
    """``pyinfra -y @local deploy.py --data ...`` on the host itself, in the copied project."""
    data = " ".join(f"--data {k}={v!r}" if "[" in v else f"--data {k}={v}" for k, v in DATA.items())
    cmd = f"cd {PROJECT} && .venv/bin/pyinfra -y @local deploy.py {data} {' '.join(extra)} 2>&1"
    out = h.ssh(cmd, timeout=timeout)
    return out.returncode, out.stdout + out.stderr


@pytest.fixture(scope="module")
def deployed(host):
    t = time.monotonic()
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout
    files = b"\0".join(f for f in files.split(b"\0") if f and (ROOT / f.decode()).is_file())
    tar = subprocess.run(["tar", "--null", "-T", "-", "-czf", "-"], cwd=ROOT, input=files, capture_output=True,
                         check=True).stdout
    subprocess.run(host.ssh_argv() + [f"mkdir -p {PROJECT} && tar -xzf - -C {PROJECT}"], input=tar, check=True,
                   timeout=120)
    key = demo.api_key(Lab())  # a 0600 file on the controller; it reaches the host on stdin, never argv
    host.ssh("umask 077 && cat > /root/vllm-api-key", input=key + "\n", check=True)
    TIMINGS["project copied"] = time.monotonic() - t
    t = time.monotonic()
    setup = host.ssh(f"cd {PROJECT} && python3 -m venv .venv && .venv/bin/pip install -q "
                     "--disable-pip-version-check -e . 2>&1", timeout=900)
    TIMINGS["venv + pip install -e ."] = time.monotonic() - t
    assert setup.returncode == 0, setup.stdout[-3000:]
    t = time.monotonic()
    rc, output = run_local(host)
    TIMINGS["pyinfra @local deploy.py"] = time.monotonic() - t
    assert rc == 0, output[-6000:]
    return output, key


def test_local_deploy_changed_the_machine_without_error(deployed):
    total = grand_total(deployed[0])
    assert total["errors"] == "-" and int(total["changed"]) > 10, total
    assert "[@local] Connected" in deployed[0]
    assert deployed[1] not in deployed[0]


def test_endpoint_answers_with_the_key_and_401_without_on_the_machine(host, deployed):
    out = host.ssh([f"{PROJECT}/.venv/bin/python", "-c", ASK])
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer["with_key"] == 200, answer
    assert answer["body"]["choices"][0]["message"]["role"] == "assistant"
    assert answer["without_key"] == 401
    state = host.ssh(["systemctl", "is-active", "vllm.service"]).stdout.strip()
    assert state == "active"
    assert host.ssh(["systemctl", "is-enabled", "vllm.service"]).stdout.strip() == "enabled"


def test_served_on_loopback_only(host, deployed):
    listening = host.ssh(["ss", "-Hltn", "sport = :8000"]).stdout
    assert "127.0.0.1:8000" in listening and "0.0.0.0:8000" not in listening, listening
    reach = subprocess.run(["curl", "-sS", "--max-time", "4", f"http://{host.ip}:8000/health"], capture_output=True)
    assert reach.returncode != 0, "the workstation's server answered from another machine"


def test_second_local_run_changes_nothing(host, deployed):
    t = time.monotonic()
    rc, output = run_local(host)
    TIMINGS["converged re-run"] = time.monotonic() - t
    assert rc == 0, output[-4000:]
    total = grand_total(output)
    assert total["changed"] == "-" and total["errors"] == "-", total


def test_a_venv_a_killed_run_left_half_made_is_made_again(host, deployed):
    """A run killed inside ``uv venv`` can leave ``pyvenv.cfg`` without ``bin/python`` (made here by removing
    it from the serving venv): the next run makes that venv again, and the server answers from it."""
    venv = host.ssh(["readlink", "-f", "/opt/vllm/current"]).stdout.strip()
    assert venv.startswith("/opt/vllm/venvs/"), venv
    host.ssh(["rm", "-f", f"{venv}/bin/python"], check=True)
    t = time.monotonic()
    rc, output = run_local(host)
    TIMINGS["half-made venv made again"] = time.monotonic() - t
    assert rc == 0, output[-6000:]
    assert grand_total(output)["errors"] == "-" and grand_total(output)["changed"] != "-"
    assert host.ssh(["test", "-x", f"{venv}/bin/python"]).returncode == 0
    out = host.ssh([f"{PROJECT}/.venv/bin/python", "-c", ASK])
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer["with_key"] == 200 and answer["without_key"] == 401, answer

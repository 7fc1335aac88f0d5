"""The rollout driving real pyinfra runs on this machine (``@local``), with small deploy files in
place of deploy.py, for what the lab cannot show: a driver install's second pass, and the waves'
bookkeeping without the minutes a real deploy takes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# pass 1: the driver was installed, rebooted into and verified (run.py's note, then its STOP);
# pass 2: the rest of the deploy, verified
DRIVER_DEPLOY = """
from pyinfra import host
from pyinfra.operations import python
from deploy.fleet import results
from deploy.stop import HostStopped

if results.results_dir().name.endswith("pass1"):
    results.note(host.name, driver="install", vllm_before=None)
    python.call(name="driver ready", function=results.note, host_name=host.name, driver_ready=True)
    python.raise_exception(HostStopped, "NVIDIA driver ready; run the deploy again", name="STOP")
else:
    results.note(host.name, model="m", vllm_before=None)
    python.call(name="served", function=results.note, host_name=host.name, outcome="served",
                vllm_after="0.24.0", changes=3)
"""

FAILING_DEPLOY = """
from pyinfra import host
from pyinfra.operations import server
from deploy.fleet import results

results.note(host.name, model="m")
server.shell(name="a change that does not verify", commands=["echo 'endpoint check failed: 503' >&2; exit 1"])
"""


def run_rollout(tmp_path: Path, deploy: str, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    (tmp_path / "inv.py").write_text('hosts = ["@local"]\n')
    (tmp_path / "d.py").write_text(deploy)
    env = {"PATH": "/usr/bin:/bin", "VLLM_API_KEY": "k" * 32, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "deploy.rollout", str(tmp_path / "inv.py"), "--deploy-file",
                          str(tmp_path / "d.py"), "--report-dir", str(tmp_path / "r"), *args],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    latest = tmp_path / "r" / "latest.json"
    return out, json.loads(latest.read_text()) if latest.is_file() else {}


def test_a_host_that_just_got_its_driver_goes_on_in_a_second_pass(tmp_path):
    out, report = run_rollout(tmp_path, DRIVER_DEPLOY)
    assert out.returncode == 0, out.stdout + out.stderr
    (h,) = report["hosts"]
    assert (h["state"], h["passes"], h["vllm_after"], h["changes"]) == ("served", 2, "0.24.0", 3), h
    assert "pass 2" not in out.stdout or "served" in out.stdout


def test_a_failed_canary_halts_and_resume_tries_it_again(tmp_path):
    out, report = run_rollout(tmp_path, FAILING_DEPLOY)
    assert out.returncode == 1
    (h,) = report["hosts"]
    assert h["state"] == "failed" and "endpoint check failed: 503" in h["reason"], h
    assert report["halted"] and "canary" in report["stop_reason"]
    state = json.loads((tmp_path / "r" / "state.json").read_text())
    assert state["next_wave"] == 1 and state["halted"]
    out, report = run_rollout(tmp_path, DRIVER_DEPLOY, "--resume")
    assert out.returncode == 0, out.stdout + out.stderr
    assert report["hosts"][0]["state"] == "served" and report["waves"] == [["@local"], ["@local"]]

"""End to end: ``python -m deploy.rollout`` over 4 real disposable hosts (one lab for the module).

The tests share the lab and build on each other, in this order:
1. a first rollout (canary 1, then a wave of 3) through the fleet cache (proxpi + the hub mirror
   serving the tiny model at a pinned revision, downloaded by huggingface_hub on each host); lab4 is
   killed in the middle of its wave: the others finish, the report says lab4 is unreachable; bytes
   from outside for 1 host (the canary wave) and for 4 hosts are compared;
2. lab4 boots again and ``--resume`` completes it;
3. a bad change (an ``extra_args`` value vLLM rejects) fails its verification on the canary, which
   goes back to what served; the rollout stops there, every host still answers with the old config;
4. a change that serves on lab1 but fails on lab2 and lab3 (per-host settings): the budget (1) is
   spent in wave 2, lab4 is never touched;
5. the change fixed, ``--resume`` continues that halted rollout to the end.
Every rollout runs with the same fleet cache, so that only the intended change differs between runs.
Timings are printed (pytest -s).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deploy.fleet.hub_mirror import publish
from lab import demo
from lab.hosts import CONTROLLER_IP

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
TIMINGS: dict[str, float] = {}
REPO = "tiny-chat"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    t = time.monotonic()
    lab = demo.prepare(4, ufw_hosts=0)
    TIMINGS["4 hosts up"] = time.monotonic() - t
    yield lab
    lab.down()
    print("\nTIMINGS " + ", ".join(f"{k}: {v:.1f} s" for k, v in TIMINGS.items()))


@pytest.fixture(scope="module")
def fleet_dir(lab, tmp_path_factory):
    """A fresh fleet cache folder with the tiny model published in its hub mirror."""
    folder = tmp_path_factory.mktemp("fleet")
    commit = publish(lab.state_dir / "tiny-model", folder / "hub", REPO)
    return folder, commit


@pytest.fixture(scope="module")
def key(lab):
    return demo.api_key(lab)


def rollout(lab, report_dir: Path, *args: str, fleet: Path, commit: str, settings: dict | None = None):
    """``python -m deploy.rollout inventories/lab.py`` with the fleet cache; ``settings``: $VLLM_LAB_SETTINGS."""
    env = dict(os.environ, VLLM_LAB_DIR=str(lab.state_dir), COLUMNS="200")
    env.pop("VLLM_LAB_SETTINGS", None)
    if settings is not None:
        path = report_dir / "lab-settings.json"
        path.write_text(json.dumps(settings))
        env["VLLM_LAB_SETTINGS"] = str(path)
    cmd = [sys.executable, "-m", "deploy.rollout", "inventories/lab.py", "--report-dir", str(report_dir),
           "--data", "model_source=hub", "--data", f"model_revision={commit}",
           "--fleet-cache", CONTROLLER_IP, "--fleet-cache-dir", str(fleet), *args]
    cmd += ["--data", "front_door=false"]  # about vLLM's own port (demo.chat, URLs on :8000): no front door
    t = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=2400)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the rollout, its pyinfra and its mirrors
        stdout, stderr = proc.communicate()
    seconds = time.monotonic() - t
    print(stdout[-5000:], stderr[-3000:])
    latest = report_dir / "latest.json"
    return proc.returncode, json.loads(latest.read_text()) if latest.is_file() else None, stdout, seconds


def wave_log(run: dict) -> str:
    """For a failure message: the tail of the last wave's pyinfra log of that rollout."""
    logs = sorted(run["reports"].glob("runs/*/wave*.log"), key=lambda p: p.stat().st_mtime)
    return logs[-1].read_text()[-6000:] if logs else "no wave log"


def by_host(report: dict) -> dict[str, dict]:
    return {h["host"]: h for h in report["hosts"]}


def answers(lab, key, skip: tuple[str, ...] = ()) -> dict[str, int]:
    return {h.name: demo.chat(h.ip, key).status_code for h in lab.hosts if h.name not in skip}


def host(lab, name: str):
    return next(h for h in lab.hosts if h.name == name)


def unit(lab, name: str) -> str:
    """The vLLM unit that host runs now."""
    return host(lab, name).ssh(["systemctl", "cat", "vllm.service"]).stdout


def started_at(lab, name: str) -> str:
    """When the host's vLLM last became active (unchanged: not restarted)."""
    return host(lab, name).ssh(["systemctl", "show", "-p", "ActiveEnterTimestampMonotonic", "vllm.service"]).stdout


def journal(lab, name: str) -> str:
    """For a failure message: the host's vLLM journal, and any OOM kill on this machine."""
    tail = host(lab, name).ssh("journalctl -u vllm.service --no-pager -o short-precise | tail -120").stdout
    oom = subprocess.run("dmesg | grep -i -E 'out of memory|oom-kill|killed process' | tail -5", shell=True,
                         capture_output=True, text=True).stdout
    return f"\n--- journal of vllm on {name} ---\n{tail}\n--- OOM kills on this machine ---\n{oom or 'none'}"


BAD = ["--max-model-len", "lots"]  # vLLM's own argument parser refuses it: the server never starts
GOOD = ["--max-num-seqs", "8"]  # a real change: a new unit, a restart, it serves


@pytest.fixture(scope="module")
def first(lab, fleet_dir, tmp_path_factory):
    folder, commit = fleet_dir
    reports = tmp_path_factory.mktemp("reports")
    lab4 = next(h for h in lab.hosts if h.name == "lab4")
    killed = {}

    def kill_lab4_mid_install():
        deadline = time.monotonic() + 800
        while time.monotonic() < deadline:
            if lab4.ssh(["test", "-d", "/opt/vllm/venvs"]).returncode == 0:
                time.sleep(3)
                lab.kill("lab4")
                killed["at"] = time.monotonic()
                return
            time.sleep(2)

    threading.Thread(target=kill_lab4_mid_install, daemon=True).start()
    nat_before = lab.outside_bytes()
    rc, report, out, seconds = rollout(lab, reports, "--canary", "1", "--serial", "100%", "--max-fail", "25%",
                                       fleet=folder, commit=commit)
    TIMINGS["first rollout, 4 hosts (one killed)"] = seconds
    return {"rc": rc, "report": report, "out": out, "reports": reports, "killed": killed, "commit": commit,
            "nat": lab.outside_bytes() - nat_before, "folder": folder}


def test_first_rollout_serves_three_and_names_the_killed_host(first, lab, key):
    assert first["killed"], "lab4 was never killed: its wave did not reach the install"
    assert first["rc"] == 1, first["out"][-3000:]
    report, hosts = first["report"], by_host(first["report"])
    assert hosts["lab1"]["state"] == "served", hosts["lab1"]["reason"] + journal(lab, "lab1")
    why = {n: (h["state"], h["reason"]) for n, h in hosts.items()}
    assert report["waves"] == [["lab1"], ["lab2", "lab3", "lab4"]] and not report["halted"], (why, wave_log(first))
    assert [hosts[n]["wave"] for n in ("lab1", "lab2", "lab3", "lab4")] == [1, 2, 2, 2]
    for name in ("lab1", "lab2", "lab3"):
        h = hosts[name]
        assert h["state"] == "served" and h["reason"] is None, h
        assert h["vllm_before"] is None and h["vllm_after"] == "0.32.0", h
        assert h["model"] == REPO and h["revision"] == first["commit"], h
        assert h["url"] == f"http://{next(x.ip for x in lab.hosts if x.name == name)}:8000", h
        assert h["changes"] > 10 and h["seconds"] > 0 and h["passes"] == 1, h
    assert hosts["lab4"]["state"] in ("unreachable", "failed") and hosts["lab4"]["reason"], hosts["lab4"]
    assert answers(lab, key, skip=("lab4",)) == {f"lab{i}": 200 for i in range(1, 4)}
    text = first["out"]
    assert "lab4" in text and hosts["lab4"]["state"] in text and "served" in text
    files = sorted(p.name for p in first["reports"].glob("rollout-*.json"))  # + latest.json, state.json
    assert len(files) == 1 and (first["reports"] / "latest.json").is_file()


def test_hub_source_downloaded_through_huggingface_hub_at_the_pinned_revision(first, lab):
    h = next(x for x in lab.hosts if x.name == "lab2")
    folder = f"/var/lib/vllm/models/{REPO}"
    assert h.ssh(["test", "-f", f"{folder}/model.safetensors"]).returncode == 0
    assert h.ssh(["test", "-f", f"{folder}.{first['commit']}.complete"]).returncode == 0  # that revision's
    assert folder in h.ssh(["systemctl", "cat", "vllm.service"]).stdout


def test_bytes_from_outside_for_one_host_and_for_four(first, lab):
    """Every host fetched uv through the package mirror (pip's cache is each host's own), the mirror
    fetched it from PyPI once: the bytes from outside after the canary wave (1 host) and after all
    waves (4 hosts) are the same. (The lab shares one uv cache between hosts to keep this test short:
    vLLM's own wheels come through the mirror only where that cache misses; bench/rollout_fleet.py
    measures with a cache per host.)"""
    by_wave = first["report"]["outside_bytes"]["by_wave"]
    canary, fleet = by_wave[0], by_wave[-1]
    print(f"\nbytes from outside: canary wave (1 host) {canary}, all waves (4 hosts) {fleet}, "
          f"host NAT (apt etc., 4 hosts) {first['nat']}")
    log = (first["folder"] / "proxpi.log").read_text()
    for h in lab.hosts[:3]:  # lab4 was killed: maybe before, maybe after its uv
        assert f"{h.ip} - - " in log and "/index/uv/uv-" in log, h.name
    assert canary["packages"] > 10 * 2**20, canary  # at least uv's wheel
    assert fleet["packages"] - canary["packages"] < 0.01 * canary["packages"] + 2**20, (canary, fleet)
    assert fleet["weights"] == 0 and fleet["weights_served"] > 0


@pytest.fixture(scope="module")
def resumed(first, lab):
    """lab4, killed in the first rollout, boots again from its disk as the kill left it; ``--resume``."""
    lab.start_again("lab4")
    rc, report, out, seconds = rollout(lab, first["reports"], "--resume", fleet=first["folder"],
                                       commit=first["commit"])
    TIMINGS["--resume completes lab4"] = seconds
    return {"rc": rc, "report": report, "out": out}


def test_resume_completes_the_host_killed_mid_rollout(resumed, first, lab, key):
    assert resumed["rc"] == 0, resumed["out"][-3000:] + journal(lab, "lab4")
    report, hosts = resumed["report"], by_host(resumed["report"])
    assert report["waves"] == [["lab1"], ["lab2", "lab3", "lab4"], ["lab4"]] and not report["halted"], report
    assert hosts["lab4"]["state"] == "served" and hosts["lab4"]["wave"] == 3, hosts["lab4"]
    assert hosts["lab4"]["vllm_after"] == "0.32.0" and hosts["lab4"]["revision"] == first["commit"], hosts["lab4"]
    assert hosts["lab4"]["changes"] > 0 and hosts["lab4"]["reason"] is None, hosts["lab4"]
    for name in ("lab1", "lab2", "lab3"):  # their records from the first run, not run again
        assert hosts[name] == by_host(first["report"])[name], name
    assert report["outside_bytes"]["packages"] < 2**20, report["outside_bytes"]  # the fleet cache had it all
    assert answers(lab, key) == {f"lab{i}": 200 for i in range(1, 5)}
    assert len(list(first["reports"].glob("rollout-*.json"))) == 2


@pytest.fixture(scope="module")
def bad_canary(resumed, lab, fleet_dir, tmp_path_factory):
    folder, commit = fleet_dir
    reports = tmp_path_factory.mktemp("bad-canary")
    before = {h.name: started_at(lab, h.name) for h in lab.hosts[1:]}
    rc, report, out, seconds = rollout(lab, reports, "--canary", "1", "--serial", "100%", "--max-fail", "25%",
                                       "--data", "extra_args=" + json.dumps(BAD), fleet=folder, commit=commit)
    TIMINGS["bad change stopped after the canary"] = seconds
    return {"rc": rc, "report": report, "out": out, "before": before}


def test_a_bad_change_stops_after_the_canary_and_every_host_serves_the_old_config(bad_canary, lab, key):
    assert bad_canary["rc"] == 1, bad_canary["out"][-3000:]
    report, hosts = bad_canary["report"], by_host(bad_canary["report"])
    assert report["halted"] and "canary wave failed (lab1)" in report["stop_reason"], report["stop_reason"]
    assert report["waves"] == [["lab1"], ["lab2", "lab3", "lab4"]], report["waves"]
    canary = hosts["lab1"]
    assert canary["state"] == "rolled back" and canary["wave"] == 1, canary
    assert "endpoint check failed" in canary["reason"] and "rolled back" in canary["reason"], canary
    assert (canary["vllm_before"] or "").startswith("0.32.0") and canary["vllm_after"] is None, canary
    for name in ("lab2", "lab3", "lab4"):
        assert hosts[name]["state"] == "skipped" and "serves what it had" in hosts[name]["reason"], hosts[name]
        assert started_at(lab, name) == bad_canary["before"][name], f"{name} was restarted"
    for h in lab.hosts:  # the old configuration everywhere, lab1's put back
        assert "lots" not in unit(lab, h.name), h.name
    assert answers(lab, key) == {f"lab{i}": 200 for i in range(1, 5)}
    assert "rolled back" in bad_canary["out"] and "skipped" in bad_canary["out"]
    assert "canary wave failed" in bad_canary["out"]


@pytest.fixture(scope="module")
def over_budget(bad_canary, lab, fleet_dir, tmp_path_factory):
    """GOOD everywhere but BAD on lab2 and lab3; waves [lab1], [lab2, lab3], [lab4]; 1 failure allowed."""
    folder, commit = fleet_dir
    reports = tmp_path_factory.mktemp("budget")
    settings = {"extra_args": GOOD, "per_host": {"lab2": {"extra_args": BAD}, "lab3": {"extra_args": BAD}}}
    lab4 = started_at(lab, "lab4")
    rc, report, out, seconds = rollout(lab, reports, "--canary", "1", "--serial", "2", "--max-fail", "1",
                                       fleet=folder, commit=commit, settings=settings)
    TIMINGS["budget spent in wave 2"] = seconds
    return {"rc": rc, "report": report, "out": out, "reports": reports, "lab4": lab4}


def test_the_budget_spent_in_a_later_wave_halts_and_leaves_the_rest_untouched(over_budget, lab, key):
    assert over_budget["rc"] == 1, over_budget["out"][-3000:]
    report, hosts = over_budget["report"], by_host(over_budget["report"])
    assert report["waves"] == [["lab1"], ["lab2", "lab3"], ["lab4"]], report["waves"]
    assert report["halted"] and "failure budget spent: 2 host(s) failed, --max-fail allows 1" in \
        report["stop_reason"], report["stop_reason"]
    assert hosts["lab1"]["state"] == "served" and hosts["lab1"]["changes"] > 0, hosts["lab1"]
    assert "--max-num-seqs" in unit(lab, "lab1")
    for name in ("lab2", "lab3"):
        assert hosts[name]["state"] == "rolled back" and hosts[name]["wave"] == 2, hosts[name]
        text = unit(lab, name)
        assert "lots" not in text and "--max-num-seqs" not in text, name  # what served before
    assert hosts["lab4"]["state"] == "skipped" and hosts["lab4"]["wave"] == 3, hosts["lab4"]
    assert "--max-num-seqs" not in unit(lab, "lab4") and started_at(lab, "lab4") == over_budget["lab4"]
    assert answers(lab, key) == {f"lab{i}": 200 for i in range(1, 5)}
    assert "failure budget spent" in over_budget["out"]


@pytest.fixture(scope="module")
def budget_resumed(over_budget, lab, fleet_dir):
    """The change fixed (no more BAD on lab2 and lab3), the halted rollout goes on with ``--resume``."""
    folder, commit = fleet_dir
    rc, report, out, seconds = rollout(lab, over_budget["reports"], "--resume", fleet=folder, commit=commit,
                                       settings={"extra_args": GOOD})
    TIMINGS["--resume of the halted rollout"] = seconds
    return {"rc": rc, "report": report, "out": out}


def test_resume_continues_the_halted_rollout_to_the_end(budget_resumed, over_budget, lab, key):
    assert budget_resumed["rc"] == 0, budget_resumed["out"][-3000:]
    report, hosts = budget_resumed["report"], by_host(budget_resumed["report"])
    # the failed hosts of the waves already run go first, then the wave not reached
    assert report["waves"] == [["lab1"], ["lab2", "lab3"], ["lab2", "lab3"], ["lab4"]], report["waves"]
    assert not report["halted"] and report["stop_reason"] is None
    assert [hosts[n]["wave"] for n in ("lab1", "lab2", "lab3", "lab4")] == [1, 3, 3, 4]
    assert all(h["state"] == "served" for h in report["hosts"]), report["hosts"]
    assert hosts["lab1"] == by_host(over_budget["report"])["lab1"]  # served before the halt: not run again
    for h in lab.hosts:
        assert "--max-num-seqs" in unit(lab, h.name), h.name
    assert answers(lab, key) == {f"lab{i}": 200 for i in range(1, 5)}

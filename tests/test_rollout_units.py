"""The rollout's planning, budget, failure reading and report, without hosts.

Output lines in PYINFRA_FAILED are from a real ``pyinfra -y @local,nohost.invalid`` run of a
deploy whose second operation prints 'rolled back: ...' and exits 1 (pyinfra 3.10.0)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from deploy import rollout
from deploy.fleet import report, results
from deploy.fleet.waves import (
    FAILED,
    ROLLED_BACK,
    SERVED,
    SKIPPED,
    STOPPED,
    UNREACHABLE,
    RolloutInputError,
    parse_budget,
    plan_waves,
    stop_reason,
)

HOSTS = [f"h{i}" for i in range(1, 11)]
ROOT = Path(__file__).resolve().parent.parent

PYINFRA_FAILED = """\
--> Connecting to hosts...
    [@local]         Connected
    [nohost.invalid] Could not resolve hostname ([Errno -2] Name or service not known)
--> Beginning operation run...
--> Starting operation: ok op
    [@local]         Success
--> Starting operation: bad op
    [@local]         endpoint check failed: GET /health never answered
    [@local]         rolled back: vllm serves again
    [@local]         Error: executed 0 commands
--> Disconnecting from hosts...""".splitlines()


def test_canary_then_serial_sizes_with_the_last_repeating():
    assert plan_waves(HOSTS, 1, "1,2,25%") == [["h1"], ["h2"], ["h3", "h4"], ["h5", "h6"], ["h7", "h8"], ["h9", "h10"]]
    assert plan_waves(HOSTS[:4], 1, "100%") == [["h1"], ["h2", "h3", "h4"]]
    assert plan_waves(HOSTS[:4], 0, "2") == [["h1", "h2"], ["h3", "h4"]]
    assert plan_waves(HOSTS[:3], 2, "5%") == [["h1", "h2"], ["h3"]]  # a percentage is at least one host
    assert plan_waves(HOSTS[:1], 1, "100%") == [["h1"]]


@pytest.mark.parametrize("serial", ["0", "x", "150%", "1,,2", "-1"])
def test_bad_serial_names_the_option(serial):
    with pytest.raises(RolloutInputError, match="--serial"):
        plan_waves(HOSTS, 1, serial)


def test_budget_is_a_share_of_all_hosts_or_a_count():
    assert parse_budget("20%", 10) == 2 and parse_budget("20%", 4) == 0 and parse_budget("25%", 4) == 1
    assert parse_budget("3", 10) == 3
    with pytest.raises(RolloutInputError, match="--max-fail"):
        parse_budget("lots", 10)


def test_a_failed_canary_stops_whatever_the_budget_and_the_budget_holds_across_waves():
    assert "canary" in stop_reason(0, 1, ["h1"], 1, budget=5)
    assert stop_reason(0, 1, [], 0, budget=0) is None
    assert stop_reason(2, 1, ["h5"], 2, budget=2) is None
    assert "budget" in stop_reason(3, 1, ["h7"], 3, budget=2)
    assert "budget" in stop_reason(0, 0, ["h1"], 1, budget=0)  # no canary: the budget decides


def test_failure_reading_from_real_pyinfra_output():
    state, why = rollout.failure_of(PYINFRA_FAILED, "@local", {"host": "@local"}, None)
    assert state == ROLLED_BACK and "GET /health never answered" in why and "rolled back" in why
    state, why = rollout.failure_of(PYINFRA_FAILED, "nohost.invalid", None, None)
    assert state == UNREACHABLE and "Could not resolve hostname" in why
    state, why = rollout.failure_of(PYINFRA_FAILED, "x", {"outcome": STOPPED, "reason": "host x: no GPU"}, None)
    assert (state, why) == (STOPPED, "host x: no GPU")
    lines = ["    [h] Downloading", "    [h] Error: executed 0 commands"]
    state, why = rollout.failure_of(lines, "h", {"host": "h"}, ("127.0.0.1", 9))  # port 9: nothing listens
    assert state == UNREACHABLE and "does not answer" in why
    state, why = rollout.failure_of(lines, "h", {"host": "h"}, None)
    assert state == FAILED and "Downloading | Error: executed 0 commands" == why


def test_a_host_stopped_by_pyinfras_own_crash_is_told_so():
    """tests/data/pyinfra/internal_error.txt: a real run where a lost host stopped pyinfra for both."""
    lines = [ln for ln in (ROOT / "tests/data/pyinfra/internal_error.txt").read_text().splitlines()
             if not ln.startswith("# ")]
    assert rollout.internal_error(lines) == "EOFError"
    state, why = rollout.failure_of(lines, "lab1", {"host": "lab1"}, None)
    assert state == FAILED and "error of its own (EOFError)" in why and "--resume" in why
    assert rollout.internal_error(PYINFRA_FAILED) is None
    lines = [ln for ln in (ROOT / "tests/data/pyinfra/exception_in_deploy_file.txt").read_text().splitlines()
             if not ln.startswith("# ")]
    assert rollout.internal_error(lines) == "AttributeError: 'NoneType' object has no attribute 'proc_version'"
    state, why = rollout.failure_of(lines, "@local", None, None)  # stopped before its first note
    assert state == FAILED and "AttributeError" in why
    assert rollout.internal_error(["--> pyinfra error: No hosts remaining!"]) == "No hosts remaining!"


def test_record_of_a_served_host_keeps_versions_plan_and_vram():
    note = {"outcome": SERVED, "vllm_before": "0.31.0", "vllm_after": "0.32.0", "model": "tiny-chat",
            "plan": {"max_model_len": 2048}, "url": "http://10.0.0.1:8000", "changes": 7,
            "verified": {"gpu_free_mib": [1200], "completion_s": 0.1}}
    rec = rollout.record_for("h1", 1, note, [], 12.34, 1, None)
    assert rec["state"] == SERVED and rec["reason"] is None and rec["vllm_after"] == "0.32.0"
    assert rec["vram"] == {"gpu_free_mib": [1200]} and rec["seconds"] == 12.3 and rec["changes"] == 7


def test_results_notes_merge_and_only_with_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(results.ENV, raising=False)
    results.note("h1", model="m")
    assert not list(tmp_path.iterdir())
    monkeypatch.setenv(results.ENV, str(tmp_path))
    results.note("h1", model="m")
    results.note("h1", outcome="served")
    assert {"model": "m", "outcome": "served", "host": "h1"}.items() <= results.read(tmp_path, "h1").items()
    assert results.last_json_line(["x", '{"a": 1}', "not json", "{broken"]) == {"a": 1}


def test_report_has_every_schema_key_and_latest_copy(tmp_path):
    recs = [rollout.record_for("h1", 1, {"outcome": SERVED, "model": "m"}, [], 1.0, 1, None),
            {"host": "h2", "wave": 2, "state": SKIPPED, "reason": "not reached"}]
    data = report.build("inv.py", 1_800_000_000, 1_800_000_060, recs, [["h1"], ["h2"]], "budget spent")
    path = report.write(data, tmp_path)
    assert path.name == "rollout-20270115T080100.json"
    saved = json.loads((tmp_path / "latest.json").read_text())
    assert saved == json.loads(path.read_text()) == data
    assert {"started", "finished", "inventory", "hosts"} <= saved.keys() and saved["halted"]
    for h in saved["hosts"]:
        assert set(report.HOST_KEYS) == h.keys()
    console = Console(record=True, width=200)
    report.print_report(data, path, console)
    text = console.export_text()
    assert "h1" in text and "served" in text and "skipped" in text and "budget spent" in text


def _args(tmp_path, *extra):
    return rollout.parse_args(["inv.py", "--report-dir", str(tmp_path), *extra])


def test_resume_puts_hosts_not_served_back_before_the_waves_left(tmp_path):
    r = rollout.Rollout(_args(tmp_path, "--serial", "1"))
    state = r.new_state(["h1", "h2", "h3", "h4"])
    state["inventory"] = "inv.py"
    state["records"] = {"h1": {"state": SERVED}, "h2": {"state": SERVED}, "h3": {"state": ROLLED_BACK}}
    state["next_wave"], state["halted"] = 3, "budget"
    r.save(state)
    resumed = rollout.Rollout(_args(tmp_path, "--resume")).resumed_state(["h1", "h2", "h3", "h4"])
    assert resumed["waves"] == [["h1"], ["h2"], ["h3"], ["h3"], ["h4"]] and resumed["next_wave"] == 3
    assert "h3" not in resumed["records"] and resumed["halted"] is None
    with pytest.raises(RolloutInputError, match="no longer in"):
        rollout.Rollout(_args(tmp_path, "--resume")).resumed_state(["h1", "h2"])


def test_resume_without_a_rollout_says_so(tmp_path):
    with pytest.raises(RolloutInputError, match="no rollout to resume"):
        rollout.Rollout(_args(tmp_path, "--resume")).resumed_state(["h1"])


def test_bad_settings_stop_the_rollout_before_any_host(tmp_path):
    inv = tmp_path / "inv.py"
    inv.write_text('hosts = [("gpu1.example", {"port": 70000, "bind_address": "0.0.0.0"})]\n')
    out = subprocess.run([sys.executable, "-m", "deploy.rollout", str(inv), "--report-dir", str(tmp_path / "r")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "before any host was touched" in out.stdout and "host gpu1.example: setting port=70000" in out.stdout
    assert not (tmp_path / "r").exists()

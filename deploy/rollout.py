"""``python -m deploy.rollout INVENTORY``: the same ``deploy.py``, host group by host group.

    python -m deploy.rollout inventories/lab.py [--canary 1] [--serial 1,5,25%] [--max-fail 20%]
                             [--resume] [--report-dir .deploy-reports] [--data KEY=VALUE ...]
                             [--fleet-cache ADDRESS [--fleet-cache-dir DIR]]

Every host's settings are checked first. Then the canary wave runs (``pyinfra --limit``), then the
serial waves; each wave ends with every host of it verifying its endpoint, and the next wave starts
only when the failure budget holds (a failed canary stops it at once). Hosts not reached keep
serving what they had. A host that just got its NVIDIA driver (installed, rebooted, verified) goes
on through the rest of its deploy at once (a second pass). The state after each wave is kept in
``<report dir>/state.json``; ``--resume`` continues a halted rollout from there. At the end:
a table and the JSON report (``deploy/fleet/report.py``).

``--fleet-cache ADDRESS`` (off by default, and for a single host): the controller runs a caching
package mirror and a hub mirror at ADDRESS (an address of the controller the hosts reach) for the
rollout, and every host downloads through them: one download per fleet (``deploy/fleet/cache.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live

from deploy.fleet import cache, report, results
from deploy.fleet.waves import (
    FAILED,
    FAILURES,
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
from deploy.settings import SettingsError, validate_inventory, with_groups

STATE_FILE = "state.json"
DEPLOY_FILE = "deploy.py"
MAX_PASSES = 2  # the deploy, and once more after a driver install and reboot


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m deploy.rollout", description=__doc__.split("\n\n")[0])
    p.add_argument("inventory", help="pyinfra inventory file, e.g. inventories/lab.py")
    p.add_argument("--canary", type=int, default=1, help="hosts in the canary wave (0: none); default 1")
    p.add_argument("--serial", default="100%", help="wave sizes after the canary, e.g. 1,5,25%% (last repeats)")
    p.add_argument("--max-fail", default="0%", help="failure budget over the whole rollout: 20%% or a count")
    p.add_argument("--resume", action="store_true", help="continue the halted rollout of the report dir")
    p.add_argument("--report-dir", default=report.DEFAULT_DIR, help="where reports and the state file go")
    p.add_argument("--data", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting on every host (pyinfra's --data)")
    p.add_argument("--fleet-cache", metavar="ADDRESS",
                   help="run the fleet's package and hub mirrors on this controller address (one download per fleet)")
    p.add_argument("--fleet-cache-dir", default=cache.DEFAULT_DIR, help="the mirrors' folder (kept between rollouts)")
    p.add_argument("--deploy-file", default=DEPLOY_FILE, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for item in args.data:
        if "=" not in item:
            p.error(f"--data {item!r} is not accepted: KEY=VALUE")
    return args


def override_data(items: list[str]) -> dict:
    from pyinfra_cli.util import parse_cli_arg  # pyinfra's own reading of --data values

    return {k: parse_cli_arg(v) for k, v in (item.split("=", 1) for item in items)}


def load_hosts(inventory: str, data: list[str]) -> list[tuple[str, dict]]:
    """(name, data) per host in inventory order, as pyinfra reads the inventory."""
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    if not Path(inventory).is_file():
        raise RolloutInputError(f"inventory {inventory!r} is not a file: give a pyinfra inventory such as "
                                "inventories/lab.py")
    with ctx_state.use(State()):
        inv = make_inventory(inventory, override_data=override_data(data), cwd=os.getcwd())
    return [(h.name, with_groups(h.data.dict(), h.groups)) for h in inv]  # as deploy.run checks them


class WaveRun:
    """One ``pyinfra --limit`` run of deploy.py over some hosts, with live progress."""

    def __init__(self, args, hosts: list[str], results_dir: Path, log_path: Path, console: Console):
        self.args, self.hosts, self.results_dir = args, hosts, results_dir
        self.log_path, self.console = log_path, console
        self.lines: list[str] = []
        self.operation = "connecting"

    def command(self) -> list[str]:
        cmd = [str(Path(sys.executable).parent / "pyinfra"), "-y"]
        for name in self.hosts:
            cmd += ["--limit", name]
        for item in self.args.data:
            cmd += ["--data", item]
        return cmd + [self.args.inventory, self.args.deploy_file]

    def status_text(self, label: str, started: float) -> str:
        done = failed = 0
        for name in self.hosts:
            r = results.read(self.results_dir, name) or {}
            if r.get("outcome") == SERVED:
                done += 1
            elif r.get("outcome") or any(f"[{name}]" in line and "Error" in line for line in self.lines):
                failed += 1
        waiting = len(self.hosts) - done - failed
        return (f"{label}: {done} done, {failed} failed, {waiting} waiting; {time.monotonic() - started:.0f} s; "
                f"{self.operation}")

    def run(self, label: str) -> int:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **{results.ENV: str(self.results_dir)})
        self.results_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.log_path, "a") as log, Live(self.status_text(label, started), console=self.console,
                                                   refresh_per_second=2, transient=True) as live:
            proc = subprocess.Popen(self.command(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)
            for line in proc.stdout:
                log.write(line)
                log.flush()  # the wave's log can be followed while it runs
                self.lines.append(line.rstrip("\n"))
                if line.startswith("--> Starting operation:"):
                    self.operation = line[len("--> Starting operation:"):].strip()
                live.update(self.status_text(label, started))
            rc = proc.wait()
        return rc


def host_lines(lines: list[str], name: str) -> list[str]:
    """pyinfra's output lines about one host, without the ``[name]`` prefix."""
    tag = f"[{name}]"
    return [line.split(tag, 1)[1].strip() for line in lines if line.strip().startswith(tag)]


PYINFRA_STOPS = ("--> An internal exception occurred", "--> An exception occurred in", "--> pyinfra error")


def internal_error(lines: list[str]) -> str | None:
    """The exception that stopped pyinfra itself (for every host of its run), from its output; else None."""
    start = next((i for i, ln in enumerate(lines) if ln.startswith(PYINFRA_STOPS)), None)
    if start is None:
        return None
    if lines[start].startswith("--> pyinfra error"):  # one line: "--> pyinfra error: No hosts remaining!"
        return lines[start].split(":", 1)[-1].strip() or "unknown"
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("--> The full traceback")), len(lines))
    said = [ln.strip() for ln in lines[start + 1: end] if ln.strip()]
    return said[-1] if said else "unknown"


def stopped_by_pyinfra(crash: str) -> str:
    return f"pyinfra stopped for every host of the wave on an error of its own ({crash}); --resume runs this host again"


def failure_of(lines: list[str], name: str, note: dict | None, address: tuple[str, int] | None) -> tuple[str, str]:
    """(state, why) of a host that did not end served, from its notes and pyinfra's output."""
    crash = internal_error(lines)
    if note is None:
        said = [ln for ln in host_lines(lines, name) if ln.lower().startswith(("could not", "failed", "error"))]
        if crash and not said and (address is None or reachable(*address)):
            return FAILED, stopped_by_pyinfra(crash)
        return UNREACHABLE, (said[-1] if said else "pyinfra could not connect")
    if note.get("outcome") == STOPPED:
        return STOPPED, note.get("reason") or ""
    own = [ln for ln in host_lines(lines, name) if ln]
    rolled = [ln for ln in own if ln.startswith("rolled back")]
    if rolled:
        errors = [ln for ln in own if ln.startswith("endpoint check failed")]
        return ROLLED_BACK, "; ".join(errors[-1:] + rolled[-1:])
    if address and not reachable(*address):
        return UNREACHABLE, f"lost during the deploy: SSH port {address[0]}:{address[1]} does not answer"
    if note.get("reason") and note.get("outcome") == FAILED:
        return FAILED, note["reason"]
    idx = max((i for i, ln in enumerate(own) if ln.startswith("Error")), default=None)
    if idx is None and crash:
        return FAILED, stopped_by_pyinfra(crash)
    idx = len(own) if idx is None else idx
    return FAILED, " | ".join(own[max(0, idx - 3): idx + 1])[-500:] or "failed (see the wave's log)"


def reachable(addr: str, port: int, timeout: float = 3) -> bool:
    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return True
    except OSError:
        return False


def record_for(name: str, wave: int, note: dict | None, lines: list[str], seconds: float, passes: int,
               address: tuple[str, int] | None) -> dict:
    """A host's report entry after its wave."""
    note = note or {}
    if note.get("outcome") == SERVED:
        state, why = SERVED, None
    else:
        state, why = failure_of(lines, name, note or None, address)
    figures = note.get("verified") or {}
    vram = {"gpu_free_mib": figures["gpu_free_mib"]} if figures.get("gpu_free_mib") else None
    return {"host": name, "wave": wave, "state": state, "reason": why, "vllm_before": note.get("vllm_before"),
            "vllm_after": note.get("vllm_after") if state == SERVED else None, "model": note.get("model"),
            "revision": note.get("revision"), "plan": note.get("plan"), "vram": vram, "url": note.get("url"),
            "seconds": round(seconds, 1), "changes": note.get("changes"), "passes": passes}


class Rollout:
    """The waves, their state file, and the report."""

    def __init__(self, args, console: Console | None = None):
        self.args = args
        self.console = console or Console()
        self.dir = Path(args.report_dir)
        self.state_path = self.dir / STATE_FILE
        self.fleet: cache.FleetCache | None = None

    def save(self, state: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1) + "\n")
        tmp.replace(self.state_path)

    def new_state(self, hosts: list[str]) -> dict:
        waves = plan_waves(hosts, self.args.canary, self.args.serial)
        return {"inventory": self.args.inventory, "canary": self.args.canary, "serial": self.args.serial,
                "max_fail": self.args.max_fail, "data": self.args.data, "started": time.time(),
                "waves": waves, "next_wave": 0, "records": {}, "halted": None, "run": time.strftime("%Y%m%dT%H%M%S")}

    def resumed_state(self, hosts: list[str]) -> dict:
        if not self.state_path.is_file():
            raise RolloutInputError(f"--resume: no rollout to resume in {self.dir} ({STATE_FILE} is missing); "
                                    "start one without --resume")
        state = json.loads(self.state_path.read_text())
        if state["inventory"] != self.args.inventory:
            raise RolloutInputError(f"--resume: the rollout in {self.dir} is of {state['inventory']}, not "
                                    f"{self.args.inventory}")
        missing = [n for wave in state["waves"] for n in wave if n not in hosts]
        if missing:
            raise RolloutInputError(f"--resume: hosts {', '.join(missing)} are no longer in {self.args.inventory}")
        # hosts that did not end served go again, in the wave where the rollout stopped
        again = [n for wave in state["waves"][: state["next_wave"]] for n in wave
                 if state["records"].get(n, {}).get("state") != SERVED]
        rest = state["waves"][state["next_wave"]:]
        state["waves"] = state["waves"][: state["next_wave"]] + ([again] if again else []) + rest
        for n in again:
            state["records"].pop(n, None)
        state["halted"] = None
        state["data"] = self.args.data or state.get("data", [])
        return state

    def run(self) -> int:
        try:
            named = load_hosts(self.args.inventory, self.args.data)
            validate_inventory(named)
            hosts = [n for n, _ in named]
            state = self.resumed_state(hosts) if self.args.resume else self.new_state(hosts)
            budget = parse_budget(state["max_fail"], len(hosts))
        except (SettingsError, RolloutInputError) as exc:
            self.console.print(f"[bold red]rollout refused before any host was touched:[/]\n{exc}")
            return 2
        self.args.data = state["data"]
        addresses = {n: (str(d.get("ssh_hostname") or n), int(d.get("ssh_port") or 22)) for n, d in named
                     if not n.startswith("@")}  # @local, @docker/...: no SSH to check
        self.save(state)
        fleet = self.fleet = None
        if self.args.fleet_cache and len(hosts) > 1:
            fleet = self.fleet = cache.FleetCache(self.args.fleet_cache, self.args.fleet_cache_dir).start()
            self.console.print(f"fleet cache: packages {fleet.index_url}, weights {fleet.hub_url}")
        try:
            if fleet:
                self.args.data = state["data"] + self.fleet_data(fleet, named)
            state["outside_bytes"] = None
            self.run_waves(state, hosts, budget, addresses)
        finally:
            if fleet:
                state["outside_bytes"] = dict(fleet.outside_bytes(), by_wave=state.get("outside_by_wave", []))
                fleet.stop()
        return self.finish(state, hosts)

    def fleet_data(self, fleet: cache.FleetCache, named: list[tuple[str, dict]]) -> list[str]:
        """``--data`` for the hosts to download through the fleet cache; hub models fetched once."""
        data = [f"fleet_index_url={fleet.index_url}"]
        hub = {(d.get("model"), d.get("model_revision"), d.get("hf_endpoint")) for _n, d in named
               if d.get("model_source", "hub") == "hub"}
        commits = {fleet.fetch_model(model or "openai/gpt-oss-20b", rev, upstream) for model, rev, upstream in hub}
        if hub:
            data.append(f"fleet_hub_url={fleet.hub_url}")
        if len(commits) == 1 and not any(rev for _m, rev, _u in hub):
            data.append(f"model_revision={commits.pop()}")
        return data

    def run_waves(self, state: dict, hosts: list[str], budget: int, addresses: dict) -> None:
        runs = self.dir / "runs" / state["run"]
        for index in range(state["next_wave"], len(state["waves"])):
            wave = state["waves"][index]
            label = f"wave {index + 1}/{len(state['waves'])}" + (" (canary)" if index == 0 and state["canary"] else "")
            self.console.print(f"[bold]{label}[/]: {', '.join(wave)}")
            for rec in self.run_wave(index, wave, runs, addresses, label):
                state["records"][rec["host"]] = rec
                why = f" ({rec['reason']})" if rec["reason"] else ""
                self.console.print(f"  {rec['host']}: {rec['state']}{why}")
            if self.fleet:  # what the fleet cache fetched from outside so far, wave by wave
                state.setdefault("outside_by_wave", []).append(self.fleet.outside_bytes())
            failed_wave = [n for n in wave if state["records"][n]["state"] in FAILURES]
            failed_total = sum(1 for r in state["records"].values() if r["state"] in FAILURES)
            state["next_wave"] = index + 1
            why = stop_reason(index, state["canary"], failed_wave, failed_total, budget)
            if why:
                state["halted"] = why
                self.save(state)
                break
            self.save(state)

    def run_wave(self, index: int, wave: list[str], runs: Path, addresses: dict, label: str) -> list[dict]:
        started = time.monotonic()
        todo, passes, done = list(wave), {n: 0 for n in wave}, {}
        lines: list[str] = []
        for p in range(1, MAX_PASSES + 1):
            folder = runs / f"wave{index + 1}-pass{p}"
            run = WaveRun(self.args, todo, folder, runs / f"wave{index + 1}.log", self.console)
            run.run(label + (f", pass {p} (after the driver)" if p > 1 else ""))
            lines += run.lines
            again = []
            for name in todo:
                passes[name] = p
                note = results.read(folder, name)
                if note and note.get("driver_ready") and p < MAX_PASSES:
                    again.append(name)
                    continue
                if p > 1 and note is not None:  # keep what the first pass saw before the driver
                    first = results.read(runs / f"wave{index + 1}-pass1", name) or {}
                    note = {**first, **{k: v for k, v in note.items() if v is not None},
                            "changes": (note.get("changes") or 0) + (first.get("changes") or 0)}
                done[name] = note
            if not again:
                break
            todo = again
        seconds = time.monotonic() - started
        return [record_for(n, index + 1, done.get(n), lines, seconds, passes[n], addresses.get(n)) for n in wave]

    def finish(self, state: dict, hosts: list[str]) -> int:
        waves_of = {n: i + 1 for i, wave in enumerate(state["waves"]) for n in wave}
        records = []
        for name in hosts:
            rec = state["records"].get(name)
            if rec is None:
                rec = {"host": name, "wave": waves_of.get(name), "state": SKIPPED,
                       "reason": "not reached: the rollout stopped before its wave; it serves what it had"}
            records.append(rec)
        data = report.build(self.args.inventory, state["started"], time.time(), records, state["waves"],
                            state["halted"], state.get("outside_bytes"))
        path = report.write(data, self.dir)
        report.print_report(data, path, self.console)
        return 0 if all(r["state"] == SERVED for r in records) else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the fleet cache's mirrors on the way out
    return Rollout(args).run()


if __name__ == "__main__":
    sys.exit(main())

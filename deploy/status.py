"""Fleet status: ``python -m deploy.status inventories/lab.py [--json]``.

Read-only and quick: every host of the inventory is read in parallel through pyinfra's facts (one
short SSH command each, ``deploy.status_facts.ServingFacts``; nvidia-smi through
``deploy.host_facts.GpuFacts`` on cuda hosts), with short timeouts. One table (or one JSON object):
host, serving or not and since when, vLLM version, model and revision, the client-facing URL, GPU
memory used/free, KV cache usage, requests running and waiting, tokens per second, and the last
deploy's result from the rollout's report (``.deploy-reports/latest.json``). Tokens per second come
from Prometheus' one-minute rate when a monitor answers (``--prometheus``, or the inventory's
``monitor`` host), else from two reads of each server's counters ``--sample-seconds`` apart.

Exit status: 0 when every server serves; 1 when one is down, unreachable or not serving; 2 for
bad settings or a bad inventory (nothing is read then).
"""

if __name__ == "__main__":  # pyinfra's SSH runs in greenlets: patch before anything opens a socket
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import requests  # noqa: E402

from deploy.host_facts import GpuReport  # noqa: E402
from deploy.monitor import MONITOR_GROUP  # noqa: E402
from deploy.settings import Settings, SettingsError, validate_inventory, with_groups  # noqa: E402
from deploy.status_facts import ServingState  # noqa: E402

DEFAULT_REPORT = ".deploy-reports/latest.json"


@dataclass
class HostStatus:
    """One row of the fleet table (and one object of ``--json``'s ``hosts``)."""

    host: str
    serving: bool = False
    state: str = "unknown"  # active, inactive, failed, ... or "unreachable"
    since: str | None = None  # ISO time the unit entered that state
    problem: str | None = None  # why it does not serve, when it does not
    vllm: str | None = None
    venv: str | None = None
    model: str | None = None
    revision: str | None = None
    url: str | None = None
    gpus: list[dict] = field(default_factory=list)  # index, name, used_mib, free_mib
    kv_cache_usage: float | None = None  # 0..1
    requests_running: int | None = None
    requests_waiting: int | None = None
    generation_tokens_per_s: float | None = None
    prompt_tokens_per_s: float | None = None
    tokens_per_s_over_s: float | None = None  # the window the rates are over
    tokens_per_s_from: str | None = None  # "prometheus" or "two reads"
    last_deploy: dict | None = None  # state, finished, reason of this host in the rollout report


def iso(ts: int | float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None


def report_entries(report: dict | None) -> dict[str, dict]:
    """The rollout report's hosts by name: {"state", "reason", "finished", ...} (empty without one)."""
    if not report:
        return {}
    out = {}
    for entry in report.get("hosts", []):
        if isinstance(entry, dict) and entry.get("host"):
            out[entry["host"]] = dict(entry, finished=entry.get("finished") or report.get("finished"))
    return out


def host_status(s: Settings, serving: ServingState | None, gpu: GpuReport | None,
                deploy: dict | None, error: str | None = None) -> HostStatus:
    """One host's row from what was read (pure: settings and facts in, a row out)."""
    row = HostStatus(host=s.host, url=s.client_url, model=s.served_model_name,
                     revision=(deploy or {}).get("revision") or s.model_revision)
    if deploy:
        row.last_deploy = {k: deploy.get(k) for k in ("state", "reason", "finished", "vllm_after") if k in deploy}
    if serving is None:
        row.state = "unreachable"
        row.problem = error or "no answer"
        return row
    row.state = serving.active or "no unit"
    row.since = iso(serving.since)
    row.vllm, row.venv = serving.vllm, serving.venv
    row.serving = serving.serving
    if serving.metrics:
        m = serving.metrics
        row.model = ", ".join(m.models) or row.model
        row.kv_cache_usage = m.kv_cache_usage
        row.requests_running, row.requests_waiting = m.running, m.waiting
    if serving.sample_s:
        row.generation_tokens_per_s = serving.generation_tokens_per_s
        row.prompt_tokens_per_s = serving.prompt_tokens_per_s
        row.tokens_per_s_over_s, row.tokens_per_s_from = round(serving.sample_s, 2), "two reads"
    if gpu is not None and gpu.state == "ok":
        row.gpus = [{"index": g.index, "name": g.name, "used_mib": g.memory_used_mib, "free_mib": g.memory_free_mib}
                    for g in gpu.gpus]
    elif gpu is not None:
        row.gpus = [{"error": gpu.error}]
    if not row.serving:
        if serving.active != "active":
            row.problem = f"unit {s.service_name}.service is {serving.active or 'missing'}"
        elif serving.health != 200:
            row.problem = f"/health answered {serving.health or 'nothing'}"
            if serving.metrics_error:
                row.problem += f"; {serving.metrics_error}"
        else:  # vLLM serves, its front door does not pass requests on
            row.problem = (f"front door {s.front_door_check_url}/health answered "
                           f"{serving.front_door_health or 'nothing'} (nginx.service)")
    return row


# ---- Prometheus (a monitor host), optional ------------------------------------------------------

# the scrape targets carry the inventory name as label ``host`` (deploy/monitor.py)
PROMQL_RATE = "sum by (host) (rate({name}[1m]))"


def prometheus_rates(base_url: str, timeout: float = 3) -> dict[str, dict[str, float]]:
    """{host: {"generation": tok/s, "prompt": tok/s}} over the last minute, from Prometheus' HTTP
    API; {} when it does not answer."""
    rates: dict[str, dict[str, float]] = {}
    for key, name in (("generation", "vllm:generation_tokens_total"), ("prompt", "vllm:prompt_tokens_total")):
        try:
            answer = requests.get(f"{base_url}/api/v1/query", params={"query": PROMQL_RATE.format(name=name)},
                                  timeout=timeout)
            answer.raise_for_status()
            result = answer.json()["data"]["result"]
        except (requests.RequestException, ValueError, KeyError):
            return {}
        for series in result:
            rates.setdefault(series["metric"].get("host", ""), {})[key] = float(series["value"][1])
    return rates


def apply_prometheus(row: HostStatus, rates: dict[str, dict[str, float]]) -> None:
    """Use Prometheus' one-minute rates for this host where it has them."""
    found = rates.get(row.host, {})
    if "generation" in found:
        row.generation_tokens_per_s = found["generation"]
        row.prompt_tokens_per_s = found.get("prompt")
        row.tokens_per_s_over_s, row.tokens_per_s_from = 60, "prometheus"


# ---- output -------------------------------------------------------------------------------------

def _ago(since: str | None, now: float) -> str:
    if not since:
        return ""
    seconds = max(0, int(now - datetime.fromisoformat(since).timestamp()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _num(value, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def table_cells(row: HostStatus, now: float) -> list[str]:
    """The table's cells for one row, as text."""
    if row.serving:
        serving = f"yes, {_ago(row.since, now)}"
    else:
        serving = f"NO: {row.problem}" + (f" ({_ago(row.since, now)})" if row.since else "")
    gpus = [g for g in row.gpus if "used_mib" in g]
    gpu = " ".join(f"{g['used_mib'] / 1024:.1f}/{g['free_mib'] / 1024:.1f}" for g in gpus) + " GiB" if gpus else "-"
    deploy = "-"
    if row.last_deploy:
        deploy = str(row.last_deploy.get("state", "?"))
        if row.last_deploy.get("finished"):
            deploy += f" {row.last_deploy['finished']}"
        if row.last_deploy.get("reason"):
            deploy += f": {row.last_deploy['reason']}"
    model = (row.model or "-") + (f"@{row.revision[:10]}" if row.revision else "")
    requests_ = "-" if row.requests_running is None else f"{row.requests_running}/{row.requests_waiting}"
    return [row.host, serving, row.vllm or "-", model, row.url or "-", gpu,
            _num(row.kv_cache_usage * 100 if row.kv_cache_usage is not None else None, "{:.0f}%"),
            requests_, _num(row.generation_tokens_per_s), deploy]


HEADERS = ["host", "serving", "vLLM", "model", "URL", "GPU used/free", "KV cache", "run/wait", "tok/s",
           "last deploy"]


def print_table(rows: list[HostStatus], now: float, file=None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"fleet status, {iso(now)}", title_justify="left")
    for header in HEADERS:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*table_cells(row, now), style=None if row.serving else "red")
    window = {r.tokens_per_s_from: r.tokens_per_s_over_s for r in rows if r.tokens_per_s_from}
    out = file or sys.stdout
    Console(file=out, width=None if out.isatty() else 200).print(table)
    if window:
        print("tok/s: generated tokens per second, " + ", ".join(
            f"over {w:g} s ({src})" for src, w in window.items()), file=out)


# ---- reading the fleet --------------------------------------------------------------------------

def servers_and_monitors(inventory, settings: dict[str, Settings]) -> tuple[list, list]:
    """(servers, monitors): monitor hosts (``monitor``, set by the group of that name) run Prometheus, not vLLM."""
    monitors = [h for h in inventory if settings[h.name].monitor]
    return [h for h in inventory if h not in monitors], monitors


def load_inventory(path: str, timeout: int):
    """The inventory as pyinfra's CLI loads it (group data included) and a State to read it with."""
    from pyinfra.api import Config, State
    from pyinfra.context import ctx_inventory, ctx_state
    from pyinfra_cli.inventory import make_inventory

    state = State(check_for_changes=False)
    state.cwd = os.getcwd()
    ctx_state.set(state)
    inventory = make_inventory(path, cwd=state.cwd)
    ctx_inventory.set(inventory)
    state.init(inventory, Config(CONNECT_TIMEOUT=timeout))
    return inventory, state


def read_fleet(state, settings: dict[str, Settings], sample_s: float, timeout: int) -> dict[str, tuple]:
    """{host name: (ServingState | None, GpuReport | None, error | None)}, every host in parallel."""
    import gevent
    from pyinfra.api.exceptions import ConnectError

    from deploy.host_facts import GpuFacts
    from deploy.status_facts import ServingFacts

    inventory = state.inventory

    def read(host):
        s = settings[host.name]
        try:
            host.connect(show_errors=False, raise_exceptions=True)
            serving = host.get_fact(ServingFacts, service=s.service_name, install_dir=s.install_dir,
                                    url=s.check_url, sample_s=sample_s, front_door_url=s.front_door_check_url or "",
                                    _timeout=int(timeout + sample_s + 10))
            gpu = host.get_fact(GpuFacts, service=s.service_name, _timeout=timeout + 10) \
                if s.backend == "cuda" else None
            return serving, gpu, None
        except ConnectError as exc:
            return None, None, f"no SSH connection: {exc}"
        except Exception as exc:  # noqa: BLE001 - one host's failure is a row, not a crash
            return None, None, f"{type(exc).__name__}: {exc}"

    servers, _monitors = servers_and_monitors(inventory, settings)
    jobs = {h.name: state.pool.spawn(read, h) for h in servers}
    gevent.joinall(list(jobs.values()), timeout=2 * timeout + sample_s + 30)
    return {name: job.value if job.ready() else (None, None, "timed out") for name, job in jobs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.status", description=__doc__.split("\n\n")[0])
    parser.add_argument("inventory", help="pyinfra inventory file, e.g. inventories/lab.py")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--report", default=DEFAULT_REPORT,
                        help=f"the rollout's report to show the last deploy from (default {DEFAULT_REPORT})")
    parser.add_argument("--sample-seconds", type=float, default=2.0,
                        help="seconds between the two reads of each server's counters (default 2)")
    parser.add_argument("--timeout", type=int, default=5, help="SSH connect timeout in seconds (default 5)")
    parser.add_argument("--prometheus", help="Prometheus base URL for one-minute token rates "
                        f"(default: the inventory's {MONITOR_GROUP} host, its prometheus_port, if it answers)")
    args = parser.parse_args(argv)
    logging.getLogger("pyinfra").setLevel(logging.CRITICAL)  # failures are rows of the table
    if not Path(args.inventory).is_file():
        print(f"inventory {args.inventory} is not accepted: not a file", file=sys.stderr)
        return 2
    try:
        inventory, state = load_inventory(args.inventory, args.timeout)
        settings = validate_inventory([(h.name, with_groups(h.data.dict(), h.groups)) for h in inventory])
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    report = None
    if Path(args.report).is_file():
        try:
            report = json.loads(Path(args.report).read_text())
        except ValueError as exc:
            print(f"report {args.report} ignored: not JSON ({exc})", file=sys.stderr)
    deploys = report_entries(report)
    started = time.time()
    reads = read_fleet(state, settings, args.sample_seconds, args.timeout)
    servers, monitors = servers_and_monitors(inventory, settings)
    monitor = settings[monitors[0].name] if monitors else None
    prometheus = args.prometheus or (
        f"http://{monitor.ssh_hostname or monitor.host}:{monitor.prometheus_port}" if monitor else None)
    rates = prometheus_rates(prometheus) if prometheus else {}
    rows = []
    for h in servers:
        s = settings[h.name]
        row = host_status(s, *reads[h.name][:2], deploys.get(h.name), reads[h.name][2])
        apply_prometheus(row, rates)
        rows.append(row)
    ok = bool(rows) and all(r.serving for r in rows)
    if args.json:
        print(json.dumps({"read_at": iso(started), "inventory": args.inventory, "ok": ok,
                          "report": args.report if report else None, "prometheus": prometheus if rates else None,
                          "hosts": [asdict(r) for r in rows]}, indent=2))
    else:
        print_table(rows, started)
        if not rows:
            print(f"no servers in {args.inventory}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

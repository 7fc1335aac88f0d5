"""The rollout's report: one JSON file for tools, one table for a person.

The JSON goes to ``<report dir>/rollout-<UTC yyyymmddThhmmss>.json`` with a copy in
``<report dir>/latest.json`` (``deploy.status`` reads that one). Schema:
``{"started", "finished", "inventory", "halted", "stop_reason", "waves", "outside_bytes",
"hosts": [{"host", "wave", "state", "reason", "vllm_before", "vllm_after", "model", "revision",
"plan": {...}, "vram": {...}, "url", "seconds", "changes", "passes"}]}``.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from deploy.fleet.waves import FAILURES, SERVED, SKIPPED

DEFAULT_DIR = ".deploy-reports"
HOST_KEYS = ("host", "wave", "state", "reason", "vllm_before", "vllm_after", "model", "revision", "plan", "vram",
             "url", "seconds", "changes", "passes")
STYLE = {SERVED: "green", SKIPPED: "yellow"}


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None


def host_row(record: dict) -> dict:
    """A host's entry with every schema key present."""
    return {k: record.get(k) for k in HOST_KEYS}


def build(inventory: str, started: float, finished: float, records: list[dict], waves: list[list[str]],
          stop_reason: str | None, outside_bytes: dict | None = None) -> dict:
    return {
        "started": iso(started), "finished": iso(finished), "inventory": inventory,
        "halted": stop_reason is not None, "stop_reason": stop_reason, "waves": waves,
        "outside_bytes": outside_bytes,
        "hosts": [host_row(r) for r in records],
    }


def write(report: dict, folder: str | os.PathLike) -> Path:
    """Write the report and ``latest.json`` beside it (atomically); return the report's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(report["finished"]).strftime("%Y%m%dT%H%M%S")
    path = folder / f"rollout-{stamp}.json"
    text = json.dumps(report, indent=1) + "\n"
    for target in (path, folder / "latest.json"):
        tmp = target.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(target)
    return path


def _plan_text(plan: dict | None) -> str:
    if not plan:
        return "-"
    return (f"len {plan.get('max_model_len')}, seqs {plan.get('max_num_seqs')}, util "
            f"{plan.get('gpu_memory_utilization')}, tp {plan.get('tensor_parallel_size')}, "
            f"KV {plan.get('kv_cache_tokens')}")


def _vram_text(vram) -> str:
    if not vram:
        return "-"
    if isinstance(vram, dict):
        return ", ".join(f"{k} {v}" for k, v in vram.items())
    return str(vram)


def table(report: dict) -> Table:
    """The report as a rich table, one row per host."""
    t = Table(title=f"Rollout of {report['inventory']} ({report['started']} -> {report['finished']})",
              show_lines=False)
    for col in ("host", "wave", "state", "vLLM", "model@revision", "plan", "VRAM", "URL", "s", "changes", "why"):
        t.add_column(col, overflow="fold")
    for h in report["hosts"]:
        state = h["state"] or "-"
        style = STYLE.get(state, "red" if state in FAILURES else "")
        model = f"{h['model'] or '-'}" + (f"@{h['revision'][:12]}" if h.get("revision") else "")
        t.add_row(h["host"], str(h["wave"] if h["wave"] is not None else "-"), f"[{style}]{state}[/]" if style
                  else state, f"{h['vllm_before'] or '-'} -> {h['vllm_after'] or '-'}", model,
                  _plan_text(h["plan"]), _vram_text(h["vram"]), h["url"] or "-",
                  f"{h['seconds']:.0f}" if h.get("seconds") is not None else "-",
                  str(h["changes"] if h["changes"] is not None else "-"), h["reason"] or "")
    return t


def print_report(report: dict, path: Path | None = None, console: Console | None = None) -> None:
    console = console or Console()
    console.print(table(report))
    counts: dict[str, int] = {}
    for h in report["hosts"]:
        counts[h["state"]] = counts.get(h["state"], 0) + 1
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()))
    if report.get("stop_reason"):
        console.print(f"[bold red]stopped:[/] {report['stop_reason']}")
    if report.get("outside_bytes"):
        console.print(f"bytes from outside: {report['outside_bytes']}")
    if path:
        console.print(f"report: {path}")

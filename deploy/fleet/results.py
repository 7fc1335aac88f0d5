"""One small JSON file per host, written on the controller while pyinfra deploys it.

``python -m deploy.rollout`` sets ``VLLM_ROLLOUT_RESULTS`` to a folder; ``deploy/run.py`` then
notes what it learns while it prepares a host (vLLM before, model, plan, a preflight stop, a
driver install) and, as the host's last operation, verifies the endpoint once more and notes the
outcome (served, vLLM after, VRAM read back, operations changed). A host that failed on the way has
no outcome; one that pyinfra could not reach has no file at all. Without the variable (a plain
``pyinfra inventories/lab.py deploy.py``) nothing is written.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path

ENV = "VLLM_ROLLOUT_RESULTS"


def results_dir() -> Path | None:
    folder = os.environ.get(ENV)
    return Path(folder) if folder else None


def path_for(folder: Path, host_name: str) -> Path:
    return folder / f"{host_name}.json"


def read(folder: Path, host_name: str) -> dict | None:
    path = path_for(folder, host_name)
    return json.loads(path.read_text()) if path.is_file() else None


def note(host_name: str, **fields) -> None:
    """Merge ``fields`` into this host's result file (nothing when no rollout asked for one)."""
    folder = results_dir()
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    data = read(folder, host_name) or {"host": host_name, "noted_at": time.time()}
    data.update(fields)
    tmp = path_for(folder, host_name).with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    tmp.replace(path_for(folder, host_name))


def last_json_line(lines) -> dict | None:
    """The last line of ``lines`` that parses as a JSON object (the endpoint check's success line)."""
    for line in reversed(list(lines)):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def changed_operations(state, host) -> int:
    """How many operations changed something on ``host`` in this run so far."""
    count = 0
    for op_hash in state.get_op_order():
        data = state.ops.get(host, {}).get(op_hash)
        if data is None:
            continue
        try:
            if data.operation_meta.did_change():
                count += 1
        except RuntimeError:  # not executed yet (this very operation)
            continue
    return count


def finish(check_command: list[str], install_dir: str) -> None:
    """The host's last operation (``python.call``): verify its endpoint, note what serves now."""
    from pyinfra import host, state

    ok, output = host.run_shell_command(" ".join(shlex.quote(c) for c in check_command),
                                        _sudo=bool(host.data.get("_sudo")))
    figures = last_json_line(output.stdout_lines) if ok else None
    _ok, current = host.run_shell_command(
        f"ls -d {shlex.quote(install_dir)}/current/lib/python3*/site-packages/vllm*.dist-info 2>/dev/null | head -1")
    after = None
    for line in current.stdout_lines:
        name = line.strip().rsplit("/", 1)[-1]
        if name.endswith(".dist-info"):
            after = name[: -len(".dist-info")].split("-", 1)[-1]
    note(host.name, outcome="served" if figures else "failed", verified=figures,
         reason=None if figures else "the endpoint check after the deploy failed: "
         + " ".join(output.stderr_lines)[-400:],
         vllm_after=after, changes=changed_operations(state, host), finished_at=time.time())
    if not figures:
        raise RuntimeError(f"host {host.name}: the endpoint does not verify after the deploy")

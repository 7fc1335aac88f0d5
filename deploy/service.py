"""The systemd unit, its 0600 environment file (the API key), start-up, and the endpoint checks.

Whether the server restarts is decided on the host: ``endpoint_check.py`` records a fingerprint of
what serves (unit, environment file, check settings, firewall rules, venv link) at each successful
activation; a run restarts it when this run changed one of them or when what is on disk already
differed from that record at the start (an earlier run that died between writing a file and its
restart), and when the unit is not running.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.api import FactBase, FileUploadCommand, StringCommand, operation
from pyinfra.facts.files import File, Sha1File
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from deploy.render import render
from deploy.serving import SERVER_MODULE, exec_line, serve_args, server_env
from deploy.settings import API_KEY_MIN, Settings

CHECK_SCRIPT = Path(__file__).resolve().parent / "endpoint_check.py"


class ServingStatus(FactBase):
    """``endpoint_check.py status``: does what is on disk match the fingerprint recorded at the last
    successful activation, and does the unit run. Not converged when nothing is installed yet."""

    def command(self, python: str, script: str, check_file: str) -> str:
        py, sc, cfg = (shlex.quote(p) for p in (python, script, check_file))
        return (f"if [ -x {py} ] && [ -f {sc} ] && [ -f {cfg} ]; then {py} {sc} status {cfg} || true; "
                "else echo '{\"converged\": false, \"differs\": [\"not installed\"]}'; fi")

    def process(self, output):
        try:
            return json.loads("\n".join(output).strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            return {"converged": False, "differs": ["unreadable status"]}


# The device nodes of an NVIDIA GPU that CUDA opens (ls -l /dev/nvidia* on a driver 595 host, in
# github.com/NixOS/nixpkgs pull 525475; the same set in negativo17/nvidia-driver issue 29): the control
# node, unified memory and its tools node, modeset, one node per GPU; nvidia-caps (read) for MIG.
# WSL2 has none of them: CUDA reaches Windows' driver through /dev/dxg (Microsoft's WSL CUDA docs).
NVIDIA_NODES = ("/dev/nvidiactl rw", "/dev/nvidia-uvm rw", "/dev/nvidia-uvm-tools rw", "/dev/nvidia-modeset rw",
                "/dev/nvidia-caps/nvidia-cap1 r", "/dev/nvidia-caps/nvidia-cap2 r")
WSL_NODES = ("/dev/dxg rw",)


def device_allow(s: Settings, gpus: int, wsl: bool) -> list[str]:
    """``DeviceAllow=`` entries for the unit (with ``DevicePolicy=closed``): none for the cpu backend."""
    if s.backend != "cuda":
        return []
    if wsl:
        return list(WSL_NODES)
    return list(NVIDIA_NODES) + [f"/dev/nvidia{i} rw" for i in range(max(gpus, 1))]


def key_check_line(s: Settings) -> str:
    """``ExecStartPre``: no key, no server. ``$$`` is systemd's escape for ``$``: the shell, not
    systemd, reads the variable, so the key never appears on a command line."""
    return (f"/bin/sh -c '[ \"$${{#VLLM_API_KEY}}\" -ge {API_KEY_MIN} ] || {{ echo \"VLLM_API_KEY in {s.env_file} "
            "is empty or short: not starting without a key\" >&2; exit 1; }'")


def unit_text(s: Settings, plan_args: list[str] | None = None, firewall_unit: str | None = None,
              devices: list[str] | None = None) -> str:
    python = f"{s.current_link}/bin/python"
    check = f"{s.install_dir}/bin/endpoint_check.py"
    return render(
        "vllm.service.j2", s=s, firewall_unit=firewall_unit, device_allow=devices or [],
        exec_key_check=key_check_line(s),
        exec_start=exec_line([python, "-m", SERVER_MODULE, *serve_args(s, plan_args)]),
        # $MAINPID: the check gives up at once when the server process dies while loading
        exec_ready=exec_line([python, check, "ready", s.check_url, str(s.start_timeout_s)]) + " $MAINPID",
    )


def env_text(s: Settings, kernel_env: dict[str, str] | None = None) -> str:
    return render("vllm.env.j2", s=s, env=server_env(s, kernel_env))


@operation()
def secret_file(path: str, content: str):
    """
    Write a root-only (0600) file whose content must never be shown, atomically.

    + path: the file on the host
    + content: its text (e.g. ``VLLM_API_KEY=...``)

    Unlike ``files.put``, this never prints a diff (not even with ``--diff``), and every file the
    content passes through exists with mode 0600 before a byte is written to it (also the
    temporary file used under sudo); only hashes are compared. The content goes to a 0600 file
    beside ``path`` that is then renamed over it: a run that dies half-way leaves the old file or
    the new one, never an empty or partial one.
    """
    wanted = hashlib.sha1(content.encode()).hexdigest()
    present = host.get_fact(File, path=path)
    if present and host.get_fact(Sha1File, path=path) == wanted and present.get("mode") == 600 \
            and present.get("user") == "root":
        host.noop(f"{path} is up to date")
        return
    target = shlex.quote(path)
    beside = shlex.quote(f"{path}.new")
    yield StringCommand("install", "-m", "600", "-o", "root", "-g", "root", "/dev/null", beside)
    temp = host.get_temp_filename(path)
    ssh_user = shlex.quote(str(host.data.get("ssh_user") or "root"))
    yield StringCommand("install", "-m", "600", "-o", ssh_user, "/dev/null", shlex.quote(temp))
    yield FileUploadCommand(StringIO(content), f"{path}.new", remote_temp_filename=temp)
    yield StringCommand("rm", "-f", shlex.quote(temp), "&&", "chmod", "600", beside, "&&",
                        "mv", "-f", beside, target)


def check_settings(s: Settings, firewall: dict | None) -> dict:
    """What the on-host checks read: the endpoint, the files that make up what serves, the firewall."""
    return {"url": s.check_url, "model": s.served_model_name, "env_file": s.env_file,
            "service": s.service_name, "timeout_s": s.start_timeout_s,
            "unit_file": f"/etc/systemd/system/{s.service_name}.service",
            "check_file": f"{s.config_dir}/check.json", "current_link": s.current_link,
            "last_good_dir": f"{s.config_dir}/last-good", "firewall": firewall or {"kind": "none"}}


def service(s: Settings, changed_before: list, plan_args: list[str] | None = None,
            kernel_env: dict[str, str] | None = None, firewall: dict | None = None,
            devices: list[str] | None = None) -> None:
    """Unit, environment file, checks; restart and verify when anything it runs changed in this run
    or since the last successful activation (going back to the last good state when the new one
    does not serve); enable at boot."""
    python = f"{s.current_link}/bin/python"
    script = f"{s.install_dir}/bin/endpoint_check.py"
    cfg = check_settings(s, firewall)
    before = host.get_fact(ServingStatus, python=python, script=script, check_file=cfg["check_file"]) or {
        "converged": False, "differs": ["not installed"]}
    files.put(name="Endpoint check script", src=str(CHECK_SCRIPT), dest=script, mode="755")
    check_op = files.put(name="Endpoint check settings", src=StringIO(json.dumps(cfg, indent=1) + "\n"),
                         dest=cfg["check_file"], mode="600")
    env_op = secret_file(name=f"Environment file {s.env_file} (0600, holds the API key)",
                         path=s.env_file, content=env_text(s, kernel_env))
    unit_op = files.put(name=f"Unit {s.service_name}.service",
                        src=StringIO(unit_text(s, plan_args, (firewall or {}).get("unit"), devices)),
                        dest=cfg["unit_file"], mode="644")
    systemd.daemon_reload(name="Reload systemd units", _if=unit_op.did_change)
    changed = any_changed(env_op, unit_op, check_op, *changed_before)
    stale = not before.get("converged")
    differs = before.get("differs") or []
    why = ("first activation" if differs == ["not installed"] or not before.get("recorded", True) else
           "the unit is not running" if not differs else
           ", ".join(differs) + " not as at the last successful activation (an earlier run did not finish)")
    run = [shlex.quote(python), shlex.quote(script)]
    name = f"Restart {s.service_name} and verify {s.check_url} (back to the last good state on failure)"
    # changed in this run: restart (a venv or weights change leaves the fingerprint as it was)
    server.shell(name=name, commands=[StringCommand(*run, "activate", shlex.quote(cfg["check_file"]))], _if=changed)
    # nothing changed in this run, but what is on disk is not what last served: finish that run's work
    server.shell(name=f"{name}: {why}", commands=[StringCommand(*run, "converge", shlex.quote(cfg["check_file"]))],
                 _if=lambda: stale and not changed())
    systemd.service(name=f"{s.service_name} enabled at boot", service=f"{s.service_name}.service",
                    running=None, enabled=True)

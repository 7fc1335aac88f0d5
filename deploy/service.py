"""The systemd unit, its 0600 environment file (the API key), start-up, and the endpoint checks."""

from __future__ import annotations

import hashlib
import json
import shlex
from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.api import FileUploadCommand, StringCommand, operation
from pyinfra.facts.files import File, Sha1File
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from deploy.render import render
from deploy.serving import SERVER_MODULE, exec_line, serve_args, server_env
from deploy.settings import Settings

CHECK_SCRIPT = Path(__file__).resolve().parent / "endpoint_check.py"


def unit_text(s: Settings, plan_args: list[str] | None = None, firewall_unit: str | None = None) -> str:
    python = f"{s.current_link}/bin/python"
    check = f"{s.install_dir}/bin/endpoint_check.py"
    return render(
        "vllm.service.j2", s=s, firewall_unit=firewall_unit,
        exec_start=exec_line([python, "-m", SERVER_MODULE, *serve_args(s, plan_args)]),
        # $MAINPID: the check gives up at once when the server process dies while loading
        exec_ready=exec_line([python, check, "ready", s.check_url, str(s.start_timeout_s)]) + " $MAINPID",
    )


def env_text(s: Settings, kernel_env: dict[str, str] | None = None) -> str:
    return render("vllm.env.j2", s=s, env=server_env(s, kernel_env))


@operation()
def secret_file(path: str, content: str):
    """
    Write a root-only (0600) file whose content must never be shown.

    + path: the file on the host
    + content: its text (e.g. ``VLLM_API_KEY=...``)

    Unlike ``files.put``, this never prints a diff (not even with ``--diff``), and every file the
    content passes through exists with mode 0600 before a byte is written to it (also the
    temporary file used under sudo); only hashes are compared.
    """
    wanted = hashlib.sha1(content.encode()).hexdigest()
    present = host.get_fact(File, path=path)
    if present and host.get_fact(Sha1File, path=path) == wanted and present.get("mode") == 600 \
            and present.get("user") == "root":
        host.noop(f"{path} is up to date")
        return
    target = shlex.quote(path)
    yield StringCommand("install", "-m", "600", "-o", "root", "-g", "root", "/dev/null", target)
    temp = host.get_temp_filename(path)
    ssh_user = shlex.quote(str(host.data.get("ssh_user") or "root"))
    yield StringCommand("install", "-m", "600", "-o", ssh_user, "/dev/null", shlex.quote(temp))
    yield FileUploadCommand(StringIO(content), path, remote_temp_filename=temp)
    yield StringCommand("rm", "-f", shlex.quote(temp), "&&", "chmod", "600", target)


def service(s: Settings, changed_before: list, plan_args: list[str] | None = None,
            kernel_env: dict[str, str] | None = None, firewall_unit: str | None = None) -> None:
    """Unit, environment file, checks; restart and verify when anything it runs changed (going back
    to the last good state when the new one does not serve); start, enable and verify otherwise."""
    check_script = files.put(name="Endpoint check script", src=str(CHECK_SCRIPT),
                             dest=f"{s.install_dir}/bin/endpoint_check.py", mode="755")
    unit_file = f"/etc/systemd/system/{s.service_name}.service"
    check_cfg = {"url": s.check_url, "model": s.served_model_name, "env_file": s.env_file,
                 "service": s.service_name, "timeout_s": s.start_timeout_s, "unit_file": unit_file,
                 "current_link": s.current_link, "last_good_dir": f"{s.config_dir}/last-good"}
    files.put(name="Endpoint check settings", src=StringIO(json.dumps(check_cfg, indent=1) + "\n"),
              dest=f"{s.config_dir}/check.json", mode="600")
    env_op = secret_file(name=f"Environment file {s.env_file} (0600, holds the API key)",
                         path=s.env_file, content=env_text(s, kernel_env))
    unit_op = files.put(name=f"Unit {s.service_name}.service",
                        src=StringIO(unit_text(s, plan_args, firewall_unit)),
                        dest=unit_file, mode="644")
    systemd.daemon_reload(name="Reload systemd units", _if=unit_op.did_change)
    restart_if = any_changed(env_op, unit_op, check_script, *changed_before)
    check = [shlex.quote(f"{s.current_link}/bin/python"), shlex.quote(f"{s.install_dir}/bin/endpoint_check.py")]
    cfg = shlex.quote(f"{s.config_dir}/check.json")
    server.shell(name=f"Restart {s.service_name} and verify {s.check_url} (back to the last good state on failure)",
                 commands=[StringCommand(*check, "activate", cfg)], _if=restart_if)
    started = systemd.service(name=f"{s.service_name} running and enabled at boot",
                              service=f"{s.service_name}.service", running=True, enabled=True)
    server.shell(name=f"Verify the endpoint ({s.check_url}) after a start",
                 commands=[StringCommand(*check, "verify", cfg)], _if=started.did_change)

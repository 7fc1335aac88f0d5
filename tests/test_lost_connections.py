"""A host whose SSH connection is lost as a command starts fails alone; the run goes on for the others.

pyinfra's own runner (``add_op`` + ``run_ops``) and fact reader over two hosts: ``@local`` runs real
commands, the other is an SSH host whose connection broke the way paramiko reports it when the peer
vanishes while a channel opens: ``EOFError`` from ``open_session``, the transport marked inactive (the
traceback of pyinfra issue #1220, and the one a lab host killed mid-rollout gave here,
tests/data/pyinfra/internal_error.txt). The e2e rollout (tests/test_rollout_e2e.py) kills a real host;
bench/lost_host.py counts how often the others were stopped, with and without the fix.
"""

from __future__ import annotations

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operation import add_op
from pyinfra.api.operations import run_ops
from pyinfra.api.state import StateStage
from pyinfra.connectors.ssh import SSHConnector
from pyinfra.context import ctx_host, ctx_state
from pyinfra.operations import server

from deploy import lost_connections
from deploy.host_facts import host_platform


class Transport:
    def __init__(self, active: bool):
        self.active = active

    def is_active(self) -> bool:
        return self.active


class Client:
    """paramiko's SSHClient as it is once the peer went (``gone``), or with a live connection where
    something else raised EOFError (getpass without a terminal, asking for a sudo password)."""

    def __init__(self, gone: bool = True):
        self.transport = Transport(active=not gone)

    def get_transport(self):
        return self.transport

    def exec_command(self, *args, **kwargs):
        raise EOFError()


def two_hosts(tmp_path, gone: bool = True):
    inventory = Inventory((["@local", "lost.example"], {}))
    state = State(inventory, Config())
    lost = inventory.get_host("lost.example")
    lost.connector.client = Client(gone)
    for h in inventory:
        h.connected = True
        state.activate_host(h)
    add_op(state, server.shell, name="write a file", commands=[f"echo ran >> {tmp_path}/out"])
    add_op(state, server.shell, name="write it again", commands=[f"echo again >> {tmp_path}/out"])
    return state, lost


@pytest.fixture
def restore_connector(monkeypatch):
    for name in ("run_shell_command", "put_file", "get_file", "connect"):
        monkeypatch.setattr(SSHConnector, name, getattr(SSHConnector, name))


def test_without_the_fix_the_lost_host_stops_every_host(tmp_path, restore_connector):
    if getattr(SSHConnector.run_shell_command, "tolerates_lost_connections", False):
        pytest.skip("the fix is already applied in this process")
    state, _lost = two_hosts(tmp_path)
    with pytest.raises(EOFError):
        run_ops(state)
    assert not (tmp_path / "out").exists() or "again" not in (tmp_path / "out").read_text()


def test_with_the_fix_only_the_lost_host_fails(tmp_path, restore_connector):
    lost_connections.tolerate_lost_connections()
    lost_connections.tolerate_lost_connections()  # pyinfra runs deploy.py once per host: applied once
    assert not getattr(SSHConnector.run_shell_command.__wrapped__, "tolerates_lost_connections", False)
    state, lost = two_hosts(tmp_path)
    run_ops(state)
    assert (tmp_path / "out").read_text() == "ran\nagain\n"  # @local went on to the end
    assert lost in state.failed_hosts and lost not in state.active_hosts


def test_an_eoferror_on_a_live_connection_is_not_called_a_lost_host(tmp_path, restore_connector):
    lost_connections.tolerate_lost_connections()
    state, lost = two_hosts(tmp_path, gone=False)
    with pytest.raises(EOFError):
        lost.run_shell_command("true")


def test_a_host_lost_while_its_facts_are_read_ends_its_deploy_file_only(tmp_path, restore_connector):
    """deploy.py reads the platform facts first; from a lost host they come back empty (pyinfra fails
    the host and returns the fact's default), and the deploy's use of them must end that host only."""
    lost_connections.tolerate_lost_connections()
    state, lost = two_hosts(tmp_path)
    state.current_stage = StateStage.Prepare
    with ctx_state.use(state), ctx_host.use(lost):
        with pytest.raises(AttributeError):  # what deploy.py met: a fact of None
            host_platform()
        assert lost in state.failed_hosts
        with lost_connections.lost_host_stops_here():
            host_platform()  # the same, ended quietly: pyinfra reports the host failed
        with pytest.raises(PyinfraError, match="No hosts remaining"), lost_connections.lost_host_stops_here():
            raise PyinfraError("No hosts remaining!")  # pyinfra's own stop goes on
    local = state.inventory.get_host("@local")
    with ctx_state.use(state), ctx_host.use(local), pytest.raises(ZeroDivisionError):
        with lost_connections.lost_host_stops_here():  # a host not failed: its error is not hidden
            1 / 0  # noqa: B018


class LiveTransport(Transport):
    """paramiko's Transport as notice_silence uses it: a keepalive setting and its TCP socket."""

    def __init__(self, sock):
        super().__init__(active=True)
        self.sock, self.keepalive = sock, None

    def set_keepalive(self, interval):
        self.keepalive = interval


def test_a_live_connection_gets_keepalives_and_a_tcp_user_timeout():
    import socket

    with socket.create_server(("127.0.0.1", 0)) as server_sock, \
            socket.create_connection(server_sock.getsockname()) as sock:
        connector = SSHConnector.__new__(SSHConnector)
        connector.client = Client(gone=False)
        connector.client.transport = LiveTransport(sock)
        lost_connections.notice_silence(connector)
        assert connector.client.transport.keepalive == lost_connections.KEEPALIVE_S
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == lost_connections.SILENCE_S * 1000
        sock.close()  # closed meanwhile: nothing to set, nothing raised
        connector.client.transport = LiveTransport(sock)
        lost_connections.notice_silence(connector)
    gone = SSHConnector.__new__(SSHConnector)
    gone.client = Client(gone=True)
    lost_connections.notice_silence(gone)  # a connection already gone: left to pyinfra
    assert not getattr(gone.client.transport, "notices_silence", False)


SILENT_DEPLOY = """\
from pyinfra.operations import server
from deploy.lost_connections import lost_host_stops_here, tolerate_lost_connections

tolerate_lost_connections()
with lost_host_stops_here():
    server.shell(name="a long command", commands=["sleep 20"])
    server.shell(name="the last operation", commands=["true"])
"""


@pytest.mark.e2e
def test_a_host_gone_silent_mid_command_fails_alone_and_the_run_ends(tmp_path):
    """Two real lab hosts; lab2's cable is pulled 3 s into a 20 s command (no FIN, no RST: the command's
    output never comes). Without keepalives pyinfra waits for it forever, and lab1 with it (seen here:
    still waiting after 480 s); with them, lab2's connection closes ``SILENCE_S`` after its packets stop
    being acknowledged, it fails, and lab1 runs the last operation."""
    import os
    import subprocess
    import sys
    import threading
    import time
    from pathlib import Path

    from lab.hosts import Lab

    root = Path(__file__).resolve().parent.parent
    lab = Lab()
    lab.up(2)
    deploy_file = tmp_path / "silent.py"
    deploy_file.write_text(SILENT_DEPLOY)
    env = dict(os.environ, VLLM_LAB_DIR=str(lab.state_dir))
    proc = subprocess.Popen([str(Path(sys.executable).parent / "pyinfra"), "-y", "--limit", "lab1", "--limit", "lab2",
                             "inventories/lab.py", str(deploy_file)], cwd=root, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    killer = threading.Timer(lost_connections.SILENCE_S + 300, proc.kill)  # never hang the suite
    killer.start()
    lines, pulled = [], None
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if pulled is None and line.startswith("--> Starting operation: a long command"):
                time.sleep(3)  # the command runs on both hosts now
                lab.pull_cable("lab2")
                pulled = time.monotonic()
        proc.wait()
        seconds = time.monotonic() - pulled if pulled else None
    finally:
        killer.cancel()
        lab.pull_cable("lab2", plugged=True)
        lab.down()
    out = "\n".join(lines)[-3000:]
    assert pulled is not None, out
    print(f"\nTIMINGS a host gone silent failed {seconds:.1f} s after its cable was pulled "
          f"(SILENCE_S {lost_connections.SILENCE_S})")
    last = next((i for i, ln in enumerate(lines) if ln.startswith("--> Starting operation: the last operation")), None)
    assert last is not None, out  # pyinfra went on past the long command
    assert any("[lab1]" in ln and "Success" in ln for ln in lines[last:last + 4]), out
    assert not any("[lab2]" in ln for ln in lines[last:]), out  # failed before it
    assert any("[lab2] Error" in ln for ln in lines[:last]), out
    assert lost_connections.SILENCE_S <= seconds < lost_connections.SILENCE_S + 120, out  # + keepalive, last RTO

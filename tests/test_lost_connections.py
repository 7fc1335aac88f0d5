"""A host whose SSH connection is lost as a command starts fails alone; the run goes on for the others.

pyinfra's own runner (``add_op`` + ``run_ops``) over two hosts: ``@local`` runs a real command, the other
is an SSH host whose connection breaks the way paramiko reports it when the peer vanishes while a
channel opens (``EOFError`` from ``open_session``; the traceback of pyinfra issue #1220, and the one a
lab host killed mid-rollout gave here). The e2e rollout (tests/test_rollout_e2e.py) kills a real host.
"""

from __future__ import annotations

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.operation import add_op
from pyinfra.api.operations import run_ops
from pyinfra.connectors.ssh import SSHConnector
from pyinfra.operations import server

from deploy import lost_connections


class LostClient:
    """What paramiko's SSHClient does once the peer is gone mid-handshake of a new channel."""

    def exec_command(self, *args, **kwargs):
        raise EOFError()


def two_hosts(tmp_path):
    inventory = Inventory((["@local", "lost.example"], {}))
    state = State(inventory, Config())
    lost = inventory.get_host("lost.example")
    lost.connector.client = LostClient()
    for host in inventory:
        host.connected = True
        state.activate_host(host)
    add_op(state, server.shell, name="write a file", commands=[f"echo ran >> {tmp_path}/out"])
    add_op(state, server.shell, name="write it again", commands=[f"echo again >> {tmp_path}/out"])
    return state, lost


@pytest.fixture
def restore_connector(monkeypatch):
    for name in ("run_shell_command", "put_file", "get_file"):
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

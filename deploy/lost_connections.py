"""One lost host must not stop the deploy of the others.

pyinfra 3.10 handles a host whose SSH connection breaks (``OSError``, paramiko's ``SSHException``):
that host fails, the rest go on. But when the connection breaks while paramiko opens a channel for
the next command, fact or file transfer, paramiko raises ``EOFError`` (or pyinfra a ``ConnectError``
for SFTP), which pyinfra does not catch: the whole run stops with "An internal exception occurred",
for every host (https://github.com/pyinfra-dev/pyinfra/issues/1220, open). Seen here: a lab host
killed mid-rollout failed its wave-mates. ``tolerate_lost_connections`` turns those, when the
connection is really gone, into the ``OSError`` pyinfra already handles for one host;
``lost_host_stops_here`` ends the deploy file of a host lost while its facts were read.
"""

from __future__ import annotations

import contextlib
import functools

from pyinfra import host, state
from pyinfra.api.exceptions import ConnectError
from pyinfra.connectors.ssh import SSHConnector

LOST = (EOFError, ConnectError)


def connection_gone(connector: SSHConnector) -> bool:
    """True when the connector's SSH transport is closed (paramiko marks it inactive when the peer went)."""
    transport = connector.client.get_transport() if connector.client is not None else None
    return transport is None or not transport.is_active()


def _as_oserror(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except LOST as exc:
            if not connection_gone(self):  # e.g. getpass's EOFError without a terminal: not ours to hide
                raise
            raise OSError(f"SSH connection to {self.host.name} lost: {type(exc).__name__} {exc}".strip()) from exc

    wrapper.tolerates_lost_connections = True
    return wrapper


def tolerate_lost_connections() -> None:
    """Make a connection lost mid-command fail that host only.

    Idempotent: pyinfra runs deploy.py and preflight.py once per host."""
    for name in ("run_shell_command", "put_file", "get_file"):
        method = getattr(SSHConnector, name)
        if not getattr(method, "tolerates_lost_connections", False):
            setattr(SSHConnector, name, _as_oserror(method))


@contextlib.contextmanager
def lost_host_stops_here():
    """Around a host's deploy file: if pyinfra failed the host meanwhile (its connection lost while a
    fact was read, so the fact came back empty), what broke on that empty fact ends this host only."""
    try:
        yield
    except Exception:
        if host in state.failed_hosts:
            print(f"--> {host.name}: connection lost while its facts were read; not deployed", flush=True)
            return
        raise

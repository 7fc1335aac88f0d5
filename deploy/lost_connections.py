"""One lost host must not stop the deploy of the others.

pyinfra 3.10 handles a host whose SSH connection breaks (``OSError``, paramiko's ``SSHException``):
that host fails, the rest go on. But when the connection breaks while paramiko opens a channel for
the next command, fact or file transfer, paramiko raises ``EOFError`` (or pyinfra a ``ConnectError``
for SFTP), which pyinfra does not catch: the whole run stops with "An internal exception occurred",
for every host (https://github.com/pyinfra-dev/pyinfra/issues/1220, open). Seen here: a lab host
killed mid-rollout failed its wave-mates. ``tolerate_lost_connections`` turns those, when the
connection is really gone, into the ``OSError`` pyinfra already handles for one host;
``lost_host_stops_here`` ends the deploy file of a host lost while its facts were read.

A host that goes silent (power cut, cable pulled: no FIN, no RST) is another trap: pyinfra sets no
SSH keepalive, so a command running there waits for its output forever, and with it every host of the
run. ``tolerate_lost_connections`` also sends an SSH keepalive every ``KEEPALIVE_S`` and sets
``TCP_USER_TIMEOUT`` (Linux, tcp(7)): a connection whose packets go unacknowledged for ``SILENCE_S``
closes, and that host fails alone. (Through a ProxyCommand or jump host there is no socket to set:
the keepalives alone do not end a silent connection there.)
"""

from __future__ import annotations

import contextlib
import functools
import socket

from pyinfra import host, state
from pyinfra.api.exceptions import ConnectError, PyinfraError
from pyinfra.connectors.ssh import SSHConnector
from pyinfra.context import ctx_host

LOST = (EOFError, ConnectError)
KEEPALIVE_S = 15  # an SSH keepalive request this often, so that a silent peer is noticed...
SILENCE_S = 120  # ...once this long has passed without an acknowledgement


def connection_gone(connector: SSHConnector) -> bool:
    """True when the connector's SSH transport is closed (paramiko marks it inactive when the peer went)."""
    if not isinstance(connector, SSHConnector):  # @local, @docker/...: no SSH connection to lose
        return False
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


def notice_silence(connector) -> None:
    """Keepalives and TCP_USER_TIMEOUT on an SSH connector's connection (nothing for @local and the like)."""
    client = getattr(connector, "client", None) if isinstance(connector, SSHConnector) else None
    transport = client.get_transport() if client is not None else None
    if transport is None or not transport.is_active() or getattr(transport, "notices_silence", False):
        return  # a connection already gone is pyinfra's to report, at the host's next command
    transport.set_keepalive(KEEPALIVE_S)
    sock = transport.sock
    if hasattr(sock, "setsockopt") and hasattr(socket, "TCP_USER_TIMEOUT"):  # a socket, not a ProxyCommand
        with contextlib.suppress(OSError):  # closed meanwhile: the same
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, SILENCE_S * 1000)
    transport.notices_silence = True


def _noticing_silence(connect):
    @functools.wraps(connect)
    def wrapper(self, *args, **kwargs):
        result = connect(self, *args, **kwargs)
        notice_silence(self)
        return result

    wrapper.tolerates_lost_connections = True
    return wrapper


def tolerate_lost_connections() -> None:
    """Make a connection lost mid-command, or gone silent, fail that host only.

    Idempotent: pyinfra runs deploy.py and preflight.py once per host, after connecting to it."""
    for name in ("run_shell_command", "put_file", "get_file"):
        method = getattr(SSHConnector, name)
        if not getattr(method, "tolerates_lost_connections", False):
            setattr(SSHConnector, name, _as_oserror(method))
    if not getattr(SSHConnector.connect, "tolerates_lost_connections", False):  # reconnects (after a reboot)
        SSHConnector.connect = _noticing_silence(SSHConnector.connect)
    if ctx_host.isset():  # the connection pyinfra made before it ran this file
        notice_silence(host.connector)


@contextlib.contextmanager
def lost_host_stops_here():
    """Around a host's deploy file: if pyinfra failed the host meanwhile (its connection lost while a
    fact was read, so the fact came back empty), what broke on that empty fact ends this host only.
    pyinfra's own stops (no hosts left, ``--fail-percent``) go on as they are."""
    try:
        yield
    except PyinfraError:
        raise
    except Exception as exc:
        if host not in state.failed_hosts:
            raise
        why = "its connection was lost" if connection_gone(host.connector) else "pyinfra failed it"
        print(f"--> {host.name}: not deployed: {why} while its facts were read "
              f"(then {type(exc).__name__}: {exc})", flush=True)

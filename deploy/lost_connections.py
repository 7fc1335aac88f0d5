"""One lost host must not stop the deploy of the others.

pyinfra 3.10 handles a host whose SSH connection breaks (``OSError``, paramiko's ``SSHException``):
that host fails, the rest go on. But when the connection breaks while paramiko opens a channel for
the next command, fact or file transfer, paramiko raises ``EOFError`` (or pyinfra a ``ConnectError``
for SFTP), which pyinfra does not catch: the whole run stops with "An internal exception occurred",
for every host (https://github.com/pyinfra-dev/pyinfra/issues/1220, open). Seen here: a lab host
killed mid-rollout failed its two wave-mates. ``tolerate_lost_connections`` turns those into the
``OSError`` pyinfra already handles for one host.
"""

from __future__ import annotations

import functools

from pyinfra.api.exceptions import ConnectError
from pyinfra.connectors.ssh import SSHConnector

LOST = (EOFError, ConnectError)


def _as_oserror(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except LOST as exc:
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

"""One deploy at a time per host: a lock held for as long as this run's connection to the host lives.

Before anything else is read or changed, a deploy takes (as a fact, so that a run with nothing to do
still reports no change) an exclusive ``flock`` on ``/run/lock/vllm-deploy.lock`` and
hands it to a small background process that lives exactly as long as pyinfra's connection (the
``sshd`` session the command runs under; pyinfra's own process with ``@local``). A second deploy
to the same host meanwhile stops that host before any operation, with a message naming the run
that holds the lock (its other hosts go on). The lock goes when the first run ends, however it
ends (finished, failed, killed): the kernel drops a ``flock`` with the last process holding it, and
``/run`` is emptied at boot, so a dead run never leaves a stale lock.
"""

from __future__ import annotations

import os
import shlex
import socket
import time

from pyinfra import host
from pyinfra.api import FactBase

from deploy.stop import stop_host

LOCK_FILE = "/run/lock/vllm-deploy.lock"
# A run that has just ended frees the lock within a second (its holder polls the connection): wait
# that long before calling the host busy, so back-to-back runs never trip over each other.
WAIT_S = 10
CONNECTION = "sshd*"  # the per-connection process of OpenSSH (``sshd``; ``sshd-session`` from 9.8)

# Runs on the host. Finds the connection's process (the nearest ancestor that is sshd/sshd-session,
# or pyinfra itself with @local; else the shell's parent), takes the lock on fd 9 and leaves a
# sleeper holding fd 9 until that process ends.
LOCK_SCRIPT = r"""
lock={lock}; owner={owner}
command -v flock >/dev/null 2>&1 || {{ echo "flock is not installed"; exit 0; }}
mkdir -p "$(dirname "$lock")" && exec 9>>"$lock" || {{ echo "cannot open $lock"; exit 0; }}
if ! flock -w {wait} 9; then
  echo "BUSY $(cat "$lock.owner" 2>/dev/null || echo unknown)"
  exit 0
fi
pid=$PPID; conn=$PPID
while [ "$pid" -gt 1 ]; do
  comm=$(cat /proc/$pid/comm 2>/dev/null) || break
  case "$comm" in {holder}) conn=$pid; break ;; esac
  if awk -v RS='\0' 'NR <= 2 && /(^|\/)pyinfra$/ {{f = 1}} END {{exit !f}}' /proc/$pid/cmdline 2>/dev/null; then
    conn=$pid; break  # @local: pyinfra's own process
  fi
  pid=$(awk '/^PPid:/ {{print $2}}' /proc/$pid/status 2>/dev/null) || break
  [ -n "$pid" ] || break
done
echo "$owner (held while connection process $conn lives)" > "$lock.owner"
nohup setsid sh -c "while kill -0 $conn 2>/dev/null; do sleep 1; done" </dev/null >/dev/null 2>&1 &
echo "TAKEN $owner"
"""


def owner_text() -> str:
    return (f"pyinfra pid {os.getpid()} on {socket.gethostname()}, "
            f"started {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")


class DeployLock(FactBase):
    """Take this host's deploy lock for the rest of this run's connection: ``("taken", owner)`` or
    ``("busy", the other run's owner line)``."""

    def command(self, owner: str) -> str:
        return LOCK_SCRIPT.format(lock=shlex.quote(LOCK_FILE), owner=shlex.quote(owner), holder=CONNECTION,
                                  wait=WAIT_S)

    def process(self, output):
        line = next((x for x in output if x.startswith(("TAKEN ", "BUSY "))), None)
        if line is None:
            return "error", " ".join(output).strip() or "no answer"
        state, _, who = line.partition(" ")
        return state.lower(), who


def deploy_lock() -> bool:
    """Take the host's deploy lock; stop this host (nothing changed) when another deploy holds it."""
    state, who = host.get_fact(DeployLock, owner=OWNER) or ("error", "no answer")
    if state == "error":
        stop_host(f"host {host.name}: the deploy lock ({LOCK_FILE}) could not be taken: {who}. Nothing was "
                  "changed; this host needs flock (util-linux) and a writable /run/lock")
        return False
    if state != "taken":
        stop_host(f"host {host.name}: another deploy holds the lock on this host ({LOCK_FILE}): {who}. "
                  "This run stopped before changing anything; run it again once that deploy has ended")
        return False
    return True


OWNER = owner_text()

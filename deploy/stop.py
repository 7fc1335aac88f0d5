"""Stopping one host with a reason, while the other hosts go on."""

from __future__ import annotations

from pyinfra.operations import python


class HostStopped(Exception):
    """A host cannot go on; the message says why and what to do."""


def stop_host(reason: str) -> None:
    """Fail this host at this point of the deploy with ``reason``; no later operation runs on it."""
    python.raise_exception(HostStopped, reason, name=f"STOP: {reason}")

"""Checks before anything heavy is installed: the place where a host's hardware is judged.

The cpu backend needs nothing beyond settings. The cuda backend's GPU facts, kernel support and
VRAM plan plug in here (``gpu_preflight``); a host that cannot serve is stopped with the reason.
"""

from __future__ import annotations

from deploy.settings import Settings


def preflight(s: Settings) -> dict | None:
    """Judge this host; return what later steps need (plan arguments, kernel environment)
    or None when the host was stopped."""
    return {"plan_args": None, "kernel_env": {}}

"""One version type for the whole project: packaging's `Version` (PEP 440).

Every place that compares versions (vLLM releases, NVIDIA drivers, CUDA toolkits) parses
them here. NVIDIA driver versions such as `580.65.06` or `570.26` are valid PEP 440 release
numbers: packaging compares them numerically part by part and pads missing parts with zeros
(`570.26 == 570.26.0`, `580.159.04 > 580.65.06`).
"""

from __future__ import annotations

import re

from packaging.version import InvalidVersion, Version

__all__ = ["Version", "driver_version", "vllm_version", "vllm_version_or_error"]


def vllm_version(text: str) -> Version | None:
    """`0.24.0`, `v0.24.0`, `0.10.1+gptoss`, `0.11.1rc4` -> Version; None when not PEP 440."""
    text = str(text).strip()
    if text[:1] in ("v", "V"):
        text = text[1:]
    try:
        return Version(text)
    except InvalidVersion:
        return None


def vllm_version_or_error(text: str, flag: str = "--vllm") -> Version:
    """As `vllm_version`, but bad input raises ValueError naming the flag and what it accepts."""
    version = vllm_version(text)
    if version is None:
        raise ValueError(f"{flag}: {text!r} is not a version such as 0.10.1+gptoss, 0.11.0 or 0.33.0")
    return version


def driver_version(text: str) -> Version | None:
    """An NVIDIA driver or CUDA version (`580.159.04`, `570.26`, `13.0`) -> Version, else None.

    Only dotted numbers are accepted: nvidia-smi never prints a pre-release or a local label,
    and a stray word must not be read as one.
    """
    text = str(text).strip()
    if not re.fullmatch(r"\d+(\.\d+)*", text):
        return None
    return Version(text)

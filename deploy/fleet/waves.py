"""Pure planning of a rollout: which hosts go in which wave, and when the failure budget is spent.

Waves follow Ansible's ``serial``: a canary wave first (``--canary N``), then waves sized by the
``--serial`` list (``1,5,25%``: counts, or percentages of the whole inventory rounded down, at
least 1); the last size repeats until every host has had its wave. The failure budget
(``--max-fail``, a percentage of all hosts or a count) is kept across waves: once more hosts have
failed than it allows, no further wave starts; a failed canary always stops the rollout.
"""

from __future__ import annotations

import math
import re

# states of a host in the report (docs/rollout.md)
SERVED = "served"
ROLLED_BACK = "rolled back"
SKIPPED = "skipped"  # not reached: the rollout stopped before its wave; it serves what it had
UNREACHABLE = "unreachable"
STOPPED = "stopped by preflight"
FAILED = "failed"
FAILURES = (ROLLED_BACK, UNREACHABLE, STOPPED, FAILED)
STATES = (SERVED, *FAILURES, SKIPPED)


class RolloutInputError(ValueError):
    """A rollout option that cannot be used; the message names it and what is accepted."""


def parse_size(text: str, total: int, option: str) -> int:
    """``5`` or ``25%`` of ``total`` hosts as a count (a percentage rounds down, to at least 1)."""
    text = text.strip()
    match = re.fullmatch(r"(\d+)(%?)", text)
    if not match or (not match.group(2) and int(match.group(1)) < 1) or (match.group(2) and not
                                                                        0 < int(match.group(1)) <= 100):
        raise RolloutInputError(f"{option} {text!r} is not accepted: a count of hosts (1, 5) or a percentage "
                                "from 1% to 100% (25%)")
    number = int(match.group(1))
    return max(1, math.floor(total * number / 100)) if match.group(2) else number


def plan_waves(hosts: list[str], canary: int, serial: str = "100%") -> list[list[str]]:
    """The rollout's waves over ``hosts`` in inventory order: the canary wave, then the serial waves."""
    if canary < 0:
        raise RolloutInputError(f"--canary {canary} is not accepted: 0 (no canary) or a count of hosts")
    sizes = [parse_size(part, len(hosts), "--serial") for part in serial.split(",")] if serial.strip() else []
    if not sizes:
        raise RolloutInputError(f"--serial {serial!r} is not accepted: sizes such as 1,5,25%")
    waves, rest = [], list(hosts)
    if canary and rest:
        waves.append(rest[:canary])
        rest = rest[canary:]
    i = 0
    while rest:
        size = sizes[min(i, len(sizes) - 1)]
        waves.append(rest[:size])
        rest = rest[size:]
        i += 1
    return waves


def parse_budget(text: str, total: int) -> int:
    """How many hosts may fail in the whole rollout: ``20%`` of ``total`` (rounded down) or a count."""
    match = re.fullmatch(r"(\d+)(%?)", text.strip())
    if not match or (match.group(2) and int(match.group(1)) > 100):
        raise RolloutInputError(f"--max-fail {text!r} is not accepted: a percentage of the hosts (0% to 100%) "
                                "or a count (0, 2)")
    number = int(match.group(1))
    return math.floor(total * number / 100) if match.group(2) else number


def stop_reason(wave_index: int, canary: int, failed_in_wave: list[str], failed_total: int,
                budget: int) -> str | None:
    """Why the rollout stops after this wave, or None to go on."""
    if wave_index == 0 and canary and failed_in_wave:
        return f"the canary wave failed ({', '.join(failed_in_wave)}): no other host was touched"
    if failed_total > budget:
        return (f"failure budget spent: {failed_total} host(s) failed, --max-fail allows {budget}; "
                "hosts not reached keep serving what they had")
    return None

"""Every case in tests/operations/<module>.<function>/*.json: facts in, commands out (tests/harness.py).

A case holds the ``facts`` the host reports, the ``settings`` (inventory data) and/or ``args`` and
``kwargs``, and what must come out: ``commands`` (one operation) or ``operations`` (a composed step:
every operation's name and commands, in order), ``noops`` (the host.noop descriptions), ``env`` (the
``_env`` of the operations that set one) and ``uploads`` (the full text of the files named there).
Record a new case with ``python tests/harness.py CASE.json``, then read what it recorded.
"""

from __future__ import annotations

import pytest

from tests.harness import CASES, load_case, outcome, target_of

CASE_FILES = sorted(CASES.glob("*/*.json"))


@pytest.mark.parametrize("path", CASE_FILES, ids=[f"{p.parent.name}/{p.stem}" for p in CASE_FILES])
def test_case(path):
    case = load_case(path)
    got = outcome(target_of(path.parent.name), case)
    for key, value in got.items():
        assert value == case.get(key, type(value)()), f"{path.name}: {key}"


def test_every_operation_of_the_project_has_cases():
    """The @operation functions and the composed steps deploy_this_host calls."""
    covered = {p.parent.name for p in CASE_FILES}
    wanted = {"firewall.ufw_rules", "service.secret_file", "python_env.uv_venv", "system.base_system",
              "python_env.vllm_venv", "weights.model_weights", "weights.check_disk", "firewall.firewall",
              "service.service"}
    assert wanted <= covered, wanted - covered

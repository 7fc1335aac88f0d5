"""Facts in, commands out: the one harness every operation test of this project runs through.

The way pyinfra tests its own operations (pyinfra-dev/pyinfra, tests/operations/*/*.json run by
tests/test_operations.py: the ``facts`` a host reports, the ``args``, the ``commands`` expected
and the ``noop_description``), done with a real pyinfra 3.10 ``State`` and ``Inventory``: one host
whose ``get_fact`` answers from a dict, the function called as ``deploy.py`` would call it, then
every operation's commands generated and rendered. No host is touched.

Facts are given by class name (``"File"``, ``"UfwAddedRules"``). A fact asked with arguments can
be answered per argument, keyed as pyinfra's own fixtures do: ``{"path=/etc/vllm/vllm.env": {...}}``.
Cases as data live in ``tests/operations/<module>.<function>/<case>.json`` (``test_operations.py``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pyinfra.api import Config, FileUploadCommand, FunctionCommand, Inventory, State, StringCommand
from pyinfra.api.state import StateStage
from pyinfra.context import ctx_host, ctx_state

from deploy.host_facts import Platform, Runtime, platform_from
from deploy.settings import validate_inventory

KEY = "sk-test-0123456789abcdef"
CASES = Path(__file__).parent / "operations"
UPLOADS: dict[str, str] = {}  # what the last run_ops uploaded, by destination
NOOPS: list[str] = []  # the host.noop descriptions of the last run_ops
ENVS: dict[str, dict] = {}  # the _env of each operation of the last run_ops that has one, by name

# What an empty host answers when a test does not say otherwise.
EMPTY_HOST = {"File": None, "Directory": None, "Sha1File": None, "AptSources": [], "DebPackages": {},
              "RpmPackages": {}, "RpmPackageProvides": [], "DnfEnabledModules": {}, "Which": None,
              "TmpDir": "/tmp", "DebArch": "amd64", "Os": "Linux"}


def settings(host: str = "gpu1", **data):
    """One host's checked settings, through the settings contract (``validate_inventory``)."""
    return validate_inventory([(host, data)], environ={"VLLM_API_KEY": KEY})[host]


def parse_platform(lines: list[str]) -> Platform:
    """A Platform from ``KEY=VALUE`` lines, the way the facts would give it: the /etc/os-release keys
    (``ID``, ``VERSION_ID``...) as pyinfra's ``OsRelease`` reads them, ``KERNEL`` (``KernelVersion``),
    ``ARCH`` (``Arch``), ``MemTotal`` in KiB (``Memory`` gives MiB), and ``RuntimeFacts``' own keys."""
    kv = dict(line.split("=", 1) for line in lines if "=" in line)
    os_release = {k.lower(): v.strip('"') for k, v in kv.items() if k in ("ID", "VERSION_ID", "ID_LIKE", "PRETTY_NAME")}
    runtime = Runtime(proc_version=kv.get("PROCVERSION", ""), pid1=kv.get("PID1", ""),
                      mem_available_kib=int(kv.get("MemAvailable", 0)), python=kv.get("PYTHON") or None)
    return platform_from(os_release, kv.get("KERNEL", ""), kv.get("ARCH", ""), int(kv.get("MemTotal", 0)) // 1024,
                         runtime)


def render_command(command) -> str | list:
    """A command as text; pyinfra's temporary file names (hashes, some random) become /tmp/TEMP."""
    if isinstance(command, StringCommand):
        return re.sub(r"/tmp/pyinfra-[0-9a-f]+", "/tmp/TEMP", command.get_raw_value())
    if isinstance(command, FileUploadCommand):
        dest = re.sub(r"/tmp/pyinfra-[0-9a-f]+", "/tmp/TEMP", str(command.dest))
        if hasattr(command.src, "read"):
            command.src.seek(0)
            UPLOADS[dest] = command.src.read()
        return ["upload", dest]
    if isinstance(command, FunctionCommand):
        return ["function", command.function.__name__]
    return str(command)


def _answer(facts: dict, cls, args, kwargs):
    name = cls.__name__
    if name not in facts:
        return EMPTY_HOST[name] if name in EMPTY_HOST else getattr(cls(), "default", lambda: None)()
    value = facts[name]
    if isinstance(value, dict) and getattr(cls, "json_type", None):  # a typed fact given as JSON
        return cls.json_type(**value)
    if callable(value):
        return value(*args, **kwargs)
    if isinstance(value, dict) and value and all("=" in k for k in value) and (args or kwargs):
        key = ", ".join([*map(str, args), *(f"{k}={v}" for k, v in sorted(kwargs.items()))])
        return value.get(key, EMPTY_HOST.get(name))
    return value


def run_ops(function, facts: dict, *args, host_name: str = "gpu1", host_data: dict | None = None, **kwargs):
    """Call ``function(*args, **kwargs)`` as deploy.py would, with ``facts`` (fact class name -> value)
    as the host's answers; return (its result, [(operation name, [commands...]), ...]).

    The noop descriptions are left in ``NOOPS``, uploaded contents in ``UPLOADS``."""
    inventory = Inventory(([(host_name, host_data or {})], {}))
    state = State(inventory, Config())
    state.current_stage = StateStage.Prepare
    host = inventory.get_host(host_name)
    host.get_fact = lambda cls, *a, **kw: _answer(facts, cls, a, kw)
    host.noop = NOOPS.append
    UPLOADS.clear()
    NOOPS.clear()
    ENVS.clear()
    with ctx_state.use(state), ctx_host.use(host):
        result = function(*args, **kwargs)
        ops = []
        for op_hash in state.get_op_order():
            op_data = state.get_op_data_for_host(host, op_hash)
            name = ", ".join(state.op_meta[op_hash].names)
            ops.append((name, [render_command(c) for c in op_data.command_generator()]))
            if op_data.global_arguments.get("_env"):
                ENVS[name] = dict(op_data.global_arguments["_env"])
    return result, ops


def changing(ops):
    return [(name, commands) for name, commands in ops if commands]


def all_commands(ops) -> str:
    return "\n".join(str(c) for _name, commands in ops for c in commands)


def load_case(path: Path) -> dict:
    return json.loads(path.read_text())


def run_case(target, case: dict):
    """One JSON case: ``settings`` (a host's inventory data: passed first as its checked Settings)
    and/or ``args``/``kwargs``; ``facts``; returns what ``run_ops`` returns, as JSON-like lists."""
    args = list(case.get("args", []))
    if "settings" in case:
        args.insert(0, settings(**case["settings"]))
    result, ops = run_ops(target, case.get("facts", {}), *args, host_data=case.get("host_data"),
                          **case.get("kwargs", {}))
    return result, [[name, commands] for name, commands in ops]


def target_of(folder: str):
    """``firewall.ufw_rules`` -> deploy.firewall.ufw_rules."""
    module, function = folder.rsplit(".", 1)
    return getattr(__import__(f"deploy.{module}", fromlist=[function]), function)


def outcome(target, case: dict) -> dict:
    """What a case gives now, in the case's own terms (``commands`` for one operation, else
    ``operations``; ``noops``; ``stop`` when the host is stopped)."""
    _result, ops = run_case(target, case)
    out: dict = {}
    if "commands" in case:
        assert len(ops) == 1, ops
        out["commands"] = ops[0][1]
    else:
        out["operations"] = ops
    out["noops"] = list(dict.fromkeys(NOOPS))  # pyinfra runs a generator twice: at creation and at execution
    out["env"] = dict(ENVS)
    if "uploads" in case:  # the contents of the files named there
        out["uploads"] = {dest: UPLOADS.get(dest) for dest in case["uploads"]}
    return out


if __name__ == "__main__":
    # Write what a case gives now into it: `python tests/harness.py tests/operations/x.y/case.json ...`.
    # Read the result before committing it: a recorded case is only as right as the reading.
    import sys

    for arg in sys.argv[1:]:
        path = Path(arg)
        case = load_case(path)
        case.update(outcome(target_of(path.parent.name), case))
        path.write_text(json.dumps(case, indent=2) + "\n")
        print(f"recorded {path}")

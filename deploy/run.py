"""The whole deploy of one host, in order; ``deploy.py`` and ``preflight.py`` call it per host."""

from __future__ import annotations

from pyinfra import host, inventory
from pyinfra.api.exceptions import PyinfraError

from deploy.firewall import firewall
from deploy.host_facts import GpuFacts, InstalledFacts, NvmlFacts, PlatformFacts
from deploy.preflight import Verdict, judge, table
from deploy.python_env import vllm_venv
from deploy.service import service
from deploy.settings import SettingsError, validate_inventory
from deploy.stop import stop_host
from deploy.system import base_system
from deploy.weights import check_disk, model_weights

# verdicts of this run, by host name: the table is printed once every active host is judged
VERDICTS: dict[str, Verdict] = {}


def inventory_settings() -> dict:
    """Every host's settings, checked before any host is touched."""
    try:
        return validate_inventory([(h.name, h.data.dict()) for h in inventory])
    except SettingsError as exc:
        raise PyinfraError(str(exc)) from None


def preflight_this_host() -> Verdict:
    """Read this host's facts, judge it, and print the inventory's table after the last host."""
    s = inventory_settings()[host.name]
    gpu = host.get_fact(GpuFacts, service=s.service_name) if s.backend == "cuda" else None
    if gpu is not None and gpu.state == "ok":
        gpu.nvml = host.get_fact(NvmlFacts, python=f"{s.current_link}/bin/python")
    verdict = judge(s, host.get_fact(PlatformFacts), gpu)
    installed = host.get_fact(InstalledFacts, install_dir=s.install_dir)
    verdict.installed = f"vllm {installed.vllm}" if installed.vllm else "-"
    VERDICTS[host.name] = verdict
    active = [h.name for h in inventory.get_active_hosts()]
    if all(name in VERDICTS for name in active):
        print("\n--> Preflight\n" + table([VERDICTS[name] for name in active]) + "\n", flush=True)
    return verdict


def deploy_this_host() -> None:
    """Preflight, base system, venv, weights, firewall, service and verification for ``host``."""
    s = inventory_settings()[host.name]
    verdict = preflight_this_host()
    if not verdict.ok:
        stop_host(verdict.message)
        return
    if not check_disk(s):
        return
    base_system(s)
    changed = vllm_venv(s)
    changed += model_weights(s)
    firewall_unit = firewall(s)
    service(s, changed, plan_args=verdict.plan_args, kernel_env=verdict.kernel_env, firewall_unit=firewall_unit)

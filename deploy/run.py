"""The whole deploy of one host, in order; ``deploy.py`` calls it for every host."""

from __future__ import annotations

from pyinfra import host, inventory
from pyinfra.api.exceptions import PyinfraError

from deploy.firewall import firewall
from deploy.preflight import preflight
from deploy.python_env import vllm_venv
from deploy.service import service
from deploy.settings import SettingsError, validate_inventory
from deploy.system import base_system
from deploy.weights import check_disk, model_weights


def inventory_settings() -> dict:
    """Every host's settings, checked before any host is touched (once per run)."""
    try:
        return validate_inventory([(h.name, h.data.dict()) for h in inventory])
    except SettingsError as exc:
        raise PyinfraError(str(exc)) from None


def deploy_this_host() -> None:
    """Preflight, base system, venv, weights, firewall, service and verification for ``host``."""
    s = inventory_settings()[host.name]
    judged = preflight(s)
    if judged is None or not check_disk(s):
        return
    base_system(s)
    changed = vllm_venv(s)
    changed += model_weights(s)
    firewall_unit = firewall(s)
    service(s, changed, plan_args=judged["plan_args"], kernel_env=judged["kernel_env"],
            firewall_unit=firewall_unit)

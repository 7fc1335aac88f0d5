"""The whole deploy of one host, in order; ``deploy.py`` and ``preflight.py`` call it per host."""

from __future__ import annotations

from pyinfra import host, inventory
from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import python

from deploy.cuda_toolkit import cuda_toolkit
from deploy.driver import nvidia_driver
from deploy.firewall import firewall, guarded_ports
from deploy.fleet import results
from deploy.front_door import front_door
from deploy.gateway import backend_addresses, backend_ca_pem, gateway_clients, gateway_key, gateway_sources
from deploy.host_facts import GpuFacts, InstalledFacts, NvmlFacts, host_platform
from deploy.host_lock import deploy_lock
from deploy.monitor import monitor_host, node_exporter
from deploy.preflight import Verdict, judge, platform_text, table
from deploy.python_env import vllm_venv
from deploy.service import device_allow, service
from deploy.settings import Settings, SettingsError, validate_inventory, with_groups
from deploy.stop import stop_host
from deploy.system import base_system
from deploy.weights import check_disk, model_weights
from deploy.wsl import WslFacts, nat_firewall_sources, networking_mode, wsl_host, wsl_port_mapping

# verdicts of this run, by host name: the table is printed once every active host is judged
VERDICTS: dict[str, Verdict] = {}


def inventory_settings() -> dict:
    """Every host's settings, checked before any host is touched."""
    try:
        return validate_inventory([(h.name, with_groups(h.data.dict(), h.groups)) for h in inventory])
    except SettingsError as exc:
        raise PyinfraError(str(exc)) from None


def gateway_this_host(s: Settings, settings: dict[str, Settings]) -> None:
    """A gateway: firewall and a front door over every backend of the inventory, no vLLM."""
    backends = backend_addresses(settings)
    if not backends:
        stop_host(f"host {s.host}: a gateway needs backends: hosts with front_door: true in the same inventory")
        return
    firewall(s)
    front_door(s, gateway_key(s.ca_dir), backends=backends, backend_ca_pem=backend_ca_pem(settings))
    announce(s)


def announce(s: Settings) -> None:
    """Print the client-facing URL and the CA file (while pyinfra prepares the host's operations)."""
    ca = f", CA file {s.ca_file} (on this controller)" if s.front_door and s.ca_file else ""
    print(f"--> {s.host}: clients use {s.client_url}/v1{ca}", flush=True)


def record(verdict: Verdict) -> Verdict:
    """Keep this host's verdict; after the last active host, print the inventory's table."""
    VERDICTS[verdict.host] = verdict
    active = [h.name for h in inventory.get_active_hosts()]
    if all(name in VERDICTS for name in active):
        print("\n--> Preflight\n" + table([VERDICTS[name] for name in active]) + "\n", flush=True)
    return verdict


def preflight_this_host(s: Settings) -> Verdict:
    """Read this host's facts (platform, GPUs through nvidia-smi and NVML, what is installed) and judge it."""
    gpu = host.get_fact(GpuFacts, service=s.service_name) if s.backend == "cuda" else None
    if gpu is not None and gpu.state == "ok":
        gpu.nvml = host.get_fact(NvmlFacts, python=f"{s.current_link}/bin/python")
    verdict = judge(s, host_platform(), gpu)
    installed = host.get_fact(InstalledFacts, install_dir=s.install_dir)
    verdict.installed = f"vllm {installed.vllm}" if installed.vllm else "-"
    results.note(s.host, vllm_before=installed.vllm or None, plan=plan_figures(verdict.plan))
    return verdict


def plan_figures(plan: dict | None) -> dict | None:
    """The plan's figures a rollout report shows."""
    keys = ("max_model_len", "max_num_seqs", "gpu_memory_utilization", "tensor_parallel_size", "kv_cache_tokens")
    return {k: plan.get(k) for k in keys} if plan else None


def preflight_only() -> None:
    """``preflight.py``: the verdict and the table, no operation."""
    s = inventory_settings()[host.name]
    if s.monitor:
        record(Verdict(host.name, True, "-", summary="monitor: Prometheus, no vLLM"))
        return
    record(preflight_this_host(s))


def deploy_this_host() -> None:
    """The lock, WSL2 and the driver, preflight, base system, venv, weights, firewall, service,
    verification; on a host of the ``monitor`` group: Prometheus (deploy/monitor.py) instead."""
    settings = inventory_settings()
    s = settings[host.name]
    if not deploy_lock():  # another deploy runs on this host: stop before reading or changing anything
        return
    if s.monitor:
        monitor_host(s, [o for o in settings.values() if not o.monitor and not o.gateway])
        return
    if s.gateway:
        gateway_this_host(s, settings)
        return
    results.note(s.host, model=s.served_model_name, source_model=s.model, url=s.client_url,
                 revision=s.model_revision if s.model_source == "hub" else None, vllm_wanted=s.vllm_version)
    platform = host_platform()
    if not wsl_host(s, platform):
        record(Verdict(s.host, False, platform_text(platform), summary="WSL: stopped (see the STOP line)"))
        results.note(s.host, outcome="stopped by preflight", reason="WSL: see the STOP line")
        return
    gpu = host.get_fact(GpuFacts, service=s.service_name) if s.backend == "cuda" else None
    driver = nvidia_driver(s, platform, gpu)
    if driver.action != "none":  # installed or stopped: the verdict needs the new driver's facts
        record(Verdict(s.host, False, platform_text(platform), summary=f"driver: {driver.action}",
                       detail=driver.reason))
        # a rollout runs this host again once the driver is in (a second pass)
        results.note(s.host, driver=driver.action, reason=driver.reason)
        return
    verdict = record(preflight_this_host(s))
    if not verdict.ok:
        results.note(s.host, outcome="stopped by preflight", reason=verdict.message)
        stop_host(verdict.message)
        return
    if not check_disk(s):
        return
    if cuda_toolkit(s, platform, gpu, driver).action == "stop":
        return
    if platform.kind == "wsl2":  # NAT mode: Windows' portproxy connects from the WSL gateway
        wsl = host.get_fact(WslFacts)
        nat = nat_firewall_sources(wsl, networking_mode(wsl)[0])
        s = s.model_copy(update={"allowed_sources": s.allowed_sources + nat})
    base_system(s)
    changed = vllm_venv(s)
    changed += model_weights(s)
    rules = firewall(s, guarded_ports(s, extra_sources=gateway_sources(settings) if s.front_door else None))
    if rules is None:  # stopped (e.g. firewalld active): never serve unfiltered
        return
    node_exporter(s)
    devices = device_allow(s, gpus=len(gpu.gpus) if gpu is not None and gpu.gpus else 1, wsl=platform.kind == "wsl2")
    service(s, changed, plan_args=verdict.plan_args, kernel_env=verdict.kernel_env, firewall=rules, devices=devices)
    if s.front_door:
        front_door(s, s.api_key, extra_clients=gateway_clients(settings))
    wsl_port_mapping(s, platform)
    announce(s)
    if results.results_dir() is not None:  # a rollout gates each wave on every host's verification
        python.call(name="Verify the endpoint for the rollout", function=results.finish,
                    check_command=[f"{s.current_link}/bin/python", f"{s.install_dir}/bin/endpoint_check.py",
                                   "verify", f"{s.config_dir}/check.json"],
                    install_dir=s.install_dir)

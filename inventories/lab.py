"""Example inventory: `pyinfra inventories/lab.py deploy.py`.

Your own machines: list them in ``gpu_servers`` below, one ``(address, settings)`` each. Every
setting, its default and its meaning is in ``docs/settings.md`` (from ``deploy/settings.py``); what is
common to all hosts goes in ``_common``. The API key is read on this machine (the controller) from
``$VLLM_API_KEY`` or the file named by ``api_key_file``; it reaches the hosts only inside a 0600 file.

Left empty, this inventory deploys to the disposable lab hosts that ``python -m lab.hosts up`` (or
the README's demo, ``python -m lab.demo``) started on this machine: systemd-nspawn containers on a
private bridge, served with the cpu backend and a tiny locally made model. Lab hosts named in
``VLLM_LAB_MONITOR`` (e.g. ``lab3``) form the ``monitor`` group instead: Prometheus scraping the others.
Your own monitor: a ``monitor`` group with one host, and ``monitor_sources`` (its address) on the servers.
"""

import json
import os
from pathlib import Path

_common = {
    # "ssh_user": "ubuntu", "_sudo": True,            # pyinfra's own connection settings
    # "bind_address": "0.0.0.0",                      # serve beyond localhost...
    # "allowed_sources": ["192.168.10.0/24"],         # ...to these sources only (firewalled), through
    # "clients": {"alice": {"key_file": "~/keys/alice", "rate": "10r/s"}},  # the front door (https, on by default)
    # "model": "openai/gpt-oss-20b",
    # "vllm_spec": "vllm==0.24.0",
}

gpu_servers = [
    # ("gpu1.lab.example", {}),
    # ("gpu2.lab.example", {"model": "openai/gpt-oss-120b", "tensor_parallel_size": 2}),
]
# Optional: one address for the fleet (a front door over every host above: failover, session affinity);
# the servers need their front doors (on by default when bound beyond loopback) and ``clients`` (docs/front-door.md)
gateway_hosts = [
    # ("llm.lab.example", {}),
]

_LAB_ID = os.environ.get("VLLM_LAB_ID", "0")  # lab/hosts.py: several labs side by side
# lab hosts named here (e.g. VLLM_LAB_MONITOR=lab3) form the ``monitor`` group: Prometheus, no vLLM
_MONITORS = [n for n in os.environ.get("VLLM_LAB_MONITOR", "").split(",") if n]
_LAB_DIR = Path(os.environ.get("VLLM_LAB_DIR") or "/var/tmp/vllm-lab" + ("" if _LAB_ID == "0" else _LAB_ID))


def _lab_hosts() -> list:
    """The disposable hosts listed by the lab harness, with the settings of the cpu demo.

    ``$VLLM_LAB_SETTINGS``: a JSON file of more settings for every lab host (the tests use it); under its
    ``per_host`` key, ``{"lab2": {...}}``, settings for single hosts (a change that fails on some hosts only)."""
    state = _LAB_DIR / "hosts.json"
    if not state.is_file():
        return []
    lab = json.loads(state.read_text())
    cores = os.cpu_count() or 1
    more = json.loads(Path(os.environ["VLLM_LAB_SETTINGS"]).read_text()) if os.environ.get("VLLM_LAB_SETTINGS") else {}
    per_host = more.pop("per_host", {})
    monitors = [f"{h['ip']}/32" for h in lab["hosts"] if h["name"] in _MONITORS]
    return [
        (h["name"], {
            "ssh_hostname": h["ip"],
            "ssh_user": "root",
            "ssh_key": h["ssh_key"],
            "ssh_strict_host_key_checking": "no",
            "ssh_known_hosts_file": "/dev/null",
            "backend": "cpu",
            "model": "tiny-chat",
            "model_source": "upload",
            "model_upload_from": str(_LAB_DIR / "tiny-model"),
            "bind_address": "0.0.0.0",
            "allowed_sources": [f"{lab['controller_ip']}/32"],
            "api_key_file": str(_LAB_DIR / "api-key"),
            # the machine's CPU torch wheel, bind-mounted read-only into every lab host
            "find_links": ["/opt/wheels"],
            "ca_bundle": "/etc/ssl/certs/ca-certificates.crt",
            # one core per server, so that two servers on a small machine do not fight over one
            "cpu_threads_bind": str(i % cores),
            # the monitor's Prometheus reads vLLM's /metrics and the node exporter, nobody else
            "monitor_sources": monitors,
            "scrape_interval_s": 5,
            # bound to 0.0.0.0, each lab host gets its front door by default (nginx, https on 443): the lab's
            # own CA and one client key (lab.demo); tests about vLLM's own port set front_door: false
            "tls_ca_dir": str(_LAB_DIR / "ca"),
            "clients": {"demo": {"key_file": str(_LAB_DIR / "client-demo.key"), "rate": "10r/s", "burst": 20}},
            **more,
            **per_host.get(h["name"], {}),
        })
        for i, h in enumerate(lab["hosts"])
    ]


if gpu_servers:
    gpu_servers = (gpu_servers, _common)
    if gateway_hosts:
        gateway = (gateway_hosts, _common)
else:
    # $VLLM_LAB_GATEWAY=N: the last N lab hosts (not monitors) are the fleet's gateway
    _servers = [h for h in _lab_hosts() if h[0] not in _MONITORS]
    _n_gateway = int(os.environ.get("VLLM_LAB_GATEWAY", "0"))
    lab_hosts = (_servers[:len(_servers) - _n_gateway], _common)
    if _n_gateway:
        gateway = (_servers[len(_servers) - _n_gateway:], _common)
    if _MONITORS:
        monitor = ([h for h in _lab_hosts() if h[0] in _MONITORS], _common)

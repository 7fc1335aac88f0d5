"""Monitoring: Prometheus on a host of the inventory's ``monitor`` group, node exporters on servers.

On the monitor host: Prometheus and its node exporter from the distribution's packages (Debian's
``prometheus``, ``prometheus-node-exporter``), scrape targets generated from the inventory (each
server's vLLM ``/metrics``, its node exporter, NVIDIA's dcgm-exporter where a host sets
``dcgm_exporter_port``), and alert rules (``ALERTS``); ``promtool`` checks both before Prometheus
reloads them. Its port is open only to the monitor's ``allowed_sources``.

On a server with ``monitor_sources``: Debian's node exporter, its port (and the serving port, where
vLLM's ``/metrics`` is) open to those sources only (``deploy.firewall.guarded_ports``). Behind a front
door vLLM listens on loopback: Prometheus scrapes ``https://ADDRESS:front_door_port/metrics``, the
certificate checked against the CA that signed it (``FRONT_DOOR_CA`` on the monitor), and nginx lets
only ``monitor_sources`` have ``/metrics`` (``templates/nginx-front-door.conf.j2``).

The configuration is planned by plain functions (``scrape_jobs``, ``prometheus_config``,
``alert_rules``); the operations only put the files and run the checks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.facts.server import Which
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from deploy.render import render
from deploy.settings import Settings
from deploy.stop import stop_host
from deploy.system import install_os_packages

MONITOR_GROUP = "monitor"  # hosts of this inventory group run Prometheus, not vLLM
PROMETHEUS_CONFIG = "/etc/prometheus/prometheus.yml"
ALERT_RULES = "/etc/prometheus/vllm-alerts.yml"
# the CAs of the servers' front doors: what Prometheus checks their certificates against
FRONT_DOOR_CA = "/etc/prometheus/vllm-front-door-ca.crt"
# Debian's units read their flags from these files ($ARGS)
PROMETHEUS_DEFAULTS = "/etc/default/prometheus"
NODE_EXPORTER_DEFAULTS = "/etc/default/prometheus-node-exporter"
MONITOR_PACKAGES = {"apt": ["prometheus", "prometheus-node-exporter"], "dnf": []}
NODE_EXPORTER_PACKAGES = {"apt": ["prometheus-node-exporter"], "dnf": []}


@dataclass(frozen=True)
class Alert:
    """One alert rule: a PromQL expression that must hold ``for`` a while."""

    name: str
    expr: str
    for_: str
    summary: str  # Prometheus' template text ($labels, $value)


# vLLM named the KV cache gauge gpu_cache_usage_perc before its V1 engine, kv_cache_usage_perc since
# (docs.vllm.ai, "Production Metrics"); the expression takes either.
ALERTS = (
    Alert("VllmKvCacheAlmostFull", 'max by (host) ({__name__=~"vllm:(kv|gpu)_cache_usage_perc"}) > 0.9', "5m",
          "{{ $labels.host }}: KV cache {{ $value | humanizePercentage }} full; requests will be preempted"),
    Alert("VllmRequestsWaiting", "sum by (host) (vllm:num_requests_waiting) > 0", "10m",
          "{{ $labels.host }}: {{ $value }} requests waiting for 10 minutes; the server is saturated"),
    Alert("HostDown", "up == 0", "2m",
          "{{ $labels.host }}: {{ $labels.job }} on {{ $labels.instance }} does not answer the monitor"),
)


def _bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def scrape_jobs(servers: list[Settings], monitor: Settings) -> dict[str, list[dict]]:
    """{job: [{"target": "address:port", "host": inventory name, "scheme": "http" or "https"}]} from
    the servers' settings (the address pyinfra reaches a server at, ``ssh_hostname``, is the one the
    monitor scrapes; behind a front door, the address its certificate names and clients use)."""
    jobs: dict[str, list[dict]] = {"vllm": [], "node": [], "dcgm": []}
    for s in servers:
        name, address = s.host, _bracketed(s.ssh_hostname or s.host)
        if s.front_door:
            jobs["vllm"].append({"target": f"{_bracketed(s.client_address)}:{s.front_door_port}", "host": name,
                                 "scheme": "https"})
        else:
            jobs["vllm"].append({"target": f"{address}:{s.port}", "host": name, "scheme": "http"})
        if s.monitor_sources:
            jobs["node"].append({"target": f"{address}:{s.node_exporter_port}", "host": name, "scheme": "http"})
        if s.dcgm_exporter_port:
            jobs["dcgm"].append({"target": f"{address}:{s.dcgm_exporter_port}", "host": name, "scheme": "http"})
    jobs["node"].append({"target": f"127.0.0.1:{monitor.node_exporter_port}", "host": monitor.host, "scheme": "http"})
    return {job: targets for job, targets in jobs.items() if targets}


def front_door_ca_pem(servers: list[Settings]) -> str:
    """The certificates the servers' front doors are checked against: each tool CA that signed one,
    and the chain file of each operator's certificate (its issuers); "" without a front door."""
    from cryptography.hazmat.primitives import serialization

    from deploy.tls import ensure_ca

    pems = []
    for s in servers:
        if not s.front_door:
            continue
        if s.tls_cert_file:
            pems.append(Path(os.path.expanduser(s.tls_cert_file)).read_text())
        else:
            pems.append(ensure_ca(s.ca_dir)[0].public_bytes(serialization.Encoding.PEM).decode())
    return "".join(pem if pem.endswith("\n") else pem + "\n" for pem in dict.fromkeys(pems))


def prometheus_config(servers: list[Settings], monitor: Settings) -> str:
    """prometheus.yml: one job per kind of target; a front door's target is scraped over https
    (the target's ``__scheme__`` label) with the certificate checked against ``FRONT_DOOR_CA``."""
    jobs = scrape_jobs(servers, monitor)
    https = any(t["scheme"] == "https" for targets in jobs.values() for t in targets)
    return render("prometheus.yml.j2", jobs=jobs, interval=monitor.scrape_interval_s, rules=ALERT_RULES,
                  ca_file=FRONT_DOOR_CA if https else None)


def alert_rules() -> str:
    return render("vllm-alerts.yml.j2", alerts=ALERTS)


def monitor_host(s: Settings, servers: list[Settings]) -> None:
    """Prometheus and its node exporter on this host, scraping ``servers``; firewall first."""
    from deploy.firewall import firewall, guarded_ports

    if not host.get_fact(Which, command="apt-get"):
        stop_host("the monitor needs Debian's or Ubuntu's prometheus packages (apt-get not found): use a "
                  "Debian/Ubuntu host as the monitor")
        return
    firewall(s, guarded_ports(s, monitor=True))
    install_os_packages(MONITOR_PACKAGES, "Prometheus and its node exporter (distribution packages)")
    defaults = files.put(name=f"Prometheus listens on port {s.prometheus_port}",
                         src=StringIO(render("prometheus.default.j2", port=s.prometheus_port)),
                         dest=PROMETHEUS_DEFAULTS, mode="644")
    node_defaults = _node_exporter_defaults(s)
    ca_pem = front_door_ca_pem(servers)
    ca = files.put(name=f"CA of the servers' front doors ({FRONT_DOOR_CA})", src=StringIO(ca_pem),
                   dest=FRONT_DOOR_CA, mode="644") if ca_pem else None
    config = files.put(name=f"Prometheus scrape targets ({len(servers)} servers)",
                       src=StringIO(prometheus_config(servers, s)), dest=PROMETHEUS_CONFIG, mode="644")
    rules = files.put(name=f"Alert rules ({', '.join(a.name for a in ALERTS)})", src=StringIO(alert_rules()),
                      dest=ALERT_RULES, mode="644")
    checked = any_changed(*(op for op in (config, rules, ca) if op is not None))
    server.shell(name="promtool checks the configuration and the alert rules",
                 commands=[f"promtool check config {PROMETHEUS_CONFIG}"], _if=checked)
    _running("prometheus-node-exporter", node_defaults)
    _running("prometheus", defaults)
    systemd.service(name="prometheus reloads its targets and rules", service="prometheus", reloaded=True,
                    _if=checked)


def _running(service: str, defaults) -> None:
    """The service enabled and running, restarted when its flags (``defaults``) changed."""
    systemd.service(name=f"{service} running", service=service, running=True, enabled=True)
    systemd.service(name=f"{service} restarted for its new flags", service=service, restarted=True,
                    _if=defaults.did_change)


def _node_exporter_defaults(s: Settings):
    return files.put(name=f"Node exporter listens on port {s.node_exporter_port}",
                     src=StringIO(render("node-exporter.default.j2", port=s.node_exporter_port)),
                     dest=NODE_EXPORTER_DEFAULTS, mode="644")


def node_exporter(s: Settings) -> None:
    """On a server with ``monitor_sources``: Debian's node exporter (its port is firewalled before)."""
    if not s.monitor_sources:
        return
    if not host.get_fact(Which, command="apt-get"):
        host.noop("node exporter: only Debian's package is installed by this deploy; install one yourself")
        return
    install_os_packages(NODE_EXPORTER_PACKAGES, "Node exporter (distribution package)")
    _running("prometheus-node-exporter", _node_exporter_defaults(s))

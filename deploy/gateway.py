"""The fleet's gateway: one address for every endpoint of the inventory (planned on the controller).

Hosts in the inventory group ``gateway`` run only a front door (``deploy/front_door.py``) whose
upstream is every other host's front door: TLS checked against the fleet's CA, the gateway's own
key (made once on the controller, 0600, given to each backend as a client without a rate limit),
the clients' keys and rates checked at the gateway. nginx's upstream gives failover (a backend that
refuses, times out or answers 502-504 is skipped for ``fail_timeout`` and the request retried on the
next) and session affinity (``X-Session-ID`` hashed onto the backends).

Why nginx rather than vllm-router (PyPI 0.1.17, a usable manylinux wheel, tried on this machine
against two stub workers): with its default cache_aware policy it sent 6 of 6 distinct prompts
to one worker; when that worker stopped, the next 2 of 4 requests failed with 500 until its circuit
breaker opened (its retries went to the same dead worker); it calls ``/v1/chat/completions/render``
on the workers, which a front door that serves only the inference API refuses; and it takes the
workers' key only as ``--api-key`` on its command line, where every local user can read it.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
from pathlib import Path

from deploy.settings import Settings
from deploy.tls import ensure_ca

GATEWAY_CLIENT = "gateway"


def gateway_key(ca_dir: Path) -> str:
    """The gateway's key for its backends, made once on the controller (mode 0600)."""
    path = ca_dir / "gateway.key"
    if not path.is_file():
        ca_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, (secrets.token_urlsafe(32) + "\n").encode())
        os.close(fd)
    return path.read_text().strip()


def gateways(all_settings: dict[str, Settings]) -> list[Settings]:
    return [s for s in all_settings.values() if s.gateway]


def backends_of(all_settings: dict[str, Settings]) -> list[Settings]:
    """The hosts a gateway sends to: every host of the inventory with a front door that is not one."""
    return [s for s in all_settings.values() if s.front_door and not s.gateway]


def backend_addresses(all_settings: dict[str, Settings]) -> list[str]:
    """``address:port`` of each backend's front door, as nginx's upstream lists them."""
    out = []
    for b in backends_of(all_settings):
        addr = f"[{b.client_address}]" if ":" in b.client_address else b.client_address
        out.append(f"{addr}:{b.front_door_port}")
    return out


def backend_ca_pem(all_settings: dict[str, Settings]) -> str:
    """The CA (or CAs) the backends' certificates come from."""
    from cryptography.hazmat.primitives import serialization

    pems = {ensure_ca(b.ca_dir)[0].public_bytes(serialization.Encoding.PEM).decode()
            for b in backends_of(all_settings)}
    return "".join(sorted(pems))


def gateway_sources(all_settings: dict[str, Settings]) -> list[str]:
    """CIDRs the backends let through to their front door: each gateway's address."""
    out = []
    for g in gateways(all_settings):
        addr = g.ssh_hostname or g.client_address
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            ip = ipaddress.ip_address(socket.gethostbyname(addr))
        out.append(f"{ip}/{ip.max_prefixlen}")
    return out


def gateway_clients(all_settings: dict[str, Settings]) -> dict[str, str]:
    """What each backend adds to its clients when the inventory has a gateway: {name: key}."""
    found = gateways(all_settings)
    return {GATEWAY_CLIENT: gateway_key(found[0].ca_dir)} if found else {}

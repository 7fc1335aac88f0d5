"""The front door: nginx from the distribution's packages, in front of vLLM (or of a fleet).

TLS with the operator's certificate or one from the controller's CA (``deploy/tls.py``); a key per
client (``clients``) with its own rate; only the inference API from outside; ``/metrics`` only from
``monitor_sources``; streams unbuffered. vLLM then listens on loopback only and gets its own key
from nginx, so that key never leaves the host. Clients' keys and vLLM's key are in files of
``SECRET_DIR`` (mode 0600, root: nginx's master process reads its configuration as root), never on
a command line or in a log; a change of clients is ``nginx -t`` and a reload: old workers finish
their streams, vLLM is not restarted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from io import StringIO

from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from deploy.render import render
from deploy.service import secret_file
from deploy.settings import Settings
from deploy.system import install_os_packages
from deploy.tls import FLEET_NAME, HostTls, host_names, issue_host_cert, operator_tls

SECRET_DIR = "/etc/nginx/vllm"
PACKAGES = {"apt": ["nginx", "curl"], "dnf": ["nginx", "curl"]}
# Debian's and Ubuntu's package enables a welcome page on port 80: not ours to leave open
DEFAULT_SITE = "/etc/nginx/sites-enabled/default"


@dataclass
class Client:
    """One key holder as the front door sees it; ``rate`` None: no limit (a gateway)."""

    name: str
    rate: str | None
    burst: int
    retry_after: int


def retry_after_s(rate: str | None) -> int:
    """Seconds until one more request fits under ``rate`` (``10r/s``, ``30r/m``): Retry-After."""
    if not rate:
        return 1
    count, unit = rate[:-3], rate[-1]
    return max(1, math.ceil((60 if unit == "m" else 1) / int(count)))


DEFAULT_CLIENT = "api-key"


def key_holders(s: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Every key the front door takes beyond ``clients``: ``extra`` (a gateway's key) and, on a host
    without ``clients``, the API key as client ``api-key`` (no rate): an exposed host (front door on
    by default) takes the key its users already have, now over TLS, until it lists its clients."""
    return {**({} if s.clients else {DEFAULT_CLIENT: s.api_key}), **(extra or {})}


def client_rows(s: Settings, extra: dict[str, str] | None = None) -> list[Client]:
    """The host's clients, and ``extra`` key holders without a rate (a gateway's own key)."""
    rows = []
    for name, c in sorted(s.clients.items()):
        rows.append(Client(name, c.rate, c.burst, retry_after_s(c.rate)))
    rows += [Client(name, None, 0, 1) for name in sorted(extra or {})]
    return rows


def clients_map_text(keys: dict[str, str]) -> str:
    """The secret half of the client map: ``"Bearer KEY" name;`` per client (mode 0600)."""
    lines = [f'"Bearer {key}" {name};' for name, key in sorted(keys.items())]
    return "# Managed by the gpt-oss vLLM deploy (pyinfra). Secret: mode 0600, root.\n" + "\n".join(lines) + "\n"


def upstream_auth_text(key: str, gateway: bool = False) -> str:
    """Headers nginx sends on: forwarding headers and its own key, never the client's."""
    return ("# Managed by the gpt-oss vLLM deploy (pyinfra). Secret: mode 0600, root.\n"
            + ("" if gateway else "proxy_set_header Host $host;\n")
            + "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
            "proxy_set_header X-Forwarded-Proto https;\n"
            'proxy_set_header Connection "";\n'
            f'proxy_set_header Authorization "Bearer {key}";\n')


def conf_text(s: Settings, clients: list[Client], backends: list[str] | None = None,
              fail_timeout_s: int = 10) -> str:
    """The nginx site: no secret in it (they are included from ``SECRET_DIR``)."""
    listen = s.bind_address if s.bind_address not in ("0.0.0.0", "::") else "0.0.0.0"
    return render("nginx-front-door.conf.j2", s=s, clients=clients, backends=backends or [],
                  secret_dir=SECRET_DIR, upstream=f"{s.service_name}_upstream".replace("-", "_"),
                  scheme="https" if backends else "http", listen=listen, fleet_name=FLEET_NAME,
                  fail_timeout_s=fail_timeout_s, connect_timeout_s=3 if backends else 10)


def host_tls(s: Settings) -> HostTls:
    """The host's certificate and key: the operator's, or issued by the controller's CA."""
    if s.tls_cert_file and s.tls_key_file:
        return operator_tls(s.tls_cert_file, s.tls_key_file)
    return issue_host_cert(s.ca_dir, s.host, host_names(s.host, s.client_address, s.tls_names))


def conf_path(s: Settings) -> str:
    return f"/etc/nginx/conf.d/{s.service_name}-front-door.conf"


def front_door(s: Settings, upstream_key: str, extra_clients: dict[str, str] | None = None,
               backends: list[str] | None = None, backend_ca_pem: str | None = None) -> None:
    """Install and configure nginx as the host's front door; reload it when anything changed.

    + upstream_key: the key nginx sends on (vLLM's own, or a gateway's key for its backends)
    + extra_clients: more key holders without a rate limit, {name: key} (a gateway's key)
    + backends: ``address:port`` of the backends' front doors (this host is a gateway)
    + backend_ca_pem: the CA the backends' certificates are checked against
    """
    install_os_packages(PACKAGES, "nginx for the front door")
    removed = files.link(name="No nginx welcome site on port 80", path=DEFAULT_SITE, present=False)
    files.directory(name=f"Front door secrets folder {SECRET_DIR} (0700)", path=SECRET_DIR,
                    user="root", group="root", mode="700")
    tls = host_tls(s)
    holders = key_holders(s, extra_clients)
    keys = {**s.client_keys, **holders}
    changed = [
        removed,
        files.put(name="Front door certificate", src=StringIO(tls.cert_pem), dest=f"{SECRET_DIR}/tls.crt",
                  user="root", group="root", mode="644"),
        secret_file(name="Front door TLS key (0600)", path=f"{SECRET_DIR}/tls.key", content=tls.key_pem),
        secret_file(name=f"Client keys: {', '.join(sorted(keys)) or 'none'} (0600)",
                    path=f"{SECRET_DIR}/clients.map", content=clients_map_text(keys)),
        secret_file(name="Key nginx sends on (0600)", path=f"{SECRET_DIR}/upstream-auth.conf",
                    content=upstream_auth_text(upstream_key, gateway=bool(backends))),
    ]
    if backends:
        changed.append(files.put(name="CA of the backends' certificates", src=StringIO(backend_ca_pem or ""),
                                 dest=f"{SECRET_DIR}/backend-ca.crt", user="root", group="root", mode="644"))
    changed.append(files.put(
        name=f"Front door site: https port {s.front_door_port}" + (f", {len(backends)} backends" if backends else ""),
        src=StringIO(conf_text(s, client_rows(s, holders), backends)), dest=conf_path(s),
        user="root", group="root", mode="644"))
    # reload-or-restart: old workers finish their streams; vLLM is not touched
    server.shell(name="nginx -t, then reload (clients change without a vLLM restart or a cut stream)",
                 commands=["nginx -t -q", "systemctl reload-or-restart nginx.service"], _if=any_changed(*changed))
    systemd.service(name="nginx running and enabled at boot", service="nginx.service", running=True, enabled=True)
    url = f"{s.front_door_check_url}/v1/models"
    server.shell(name=f"Front door answers: an unknown key gets 401 at {url}", _if=any_changed(*changed), commands=[
        "for i in 1 2 3 4 5; do code=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 5 " + url + "); "
        "[ \"$code\" = 401 ] && exit 0; sleep 1; done; "
        "echo \"front door: $code instead of 401 from " + url + "\" >&2; exit 1"])

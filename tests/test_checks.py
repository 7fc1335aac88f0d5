"""Pure decisions of the deploy: firewall choice, disk needs, and the endpoint checks over real HTTP."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deploy import endpoint_check
from deploy.firewall import Firewalls, FirewallState, choose_firewall
from deploy.model_specs import MODELS
from deploy.settings import load_settings
from deploy.weights import GIB, VENV_BYTES, disk_needed

KEY = "k" * 32


def s(**data):
    return load_settings("gpu1", data, environ={"VLLM_API_KEY": KEY})


@pytest.mark.parametrize("setting, state, expected", [
    ("auto", {"ufw": "active", "firewalld": "inactive", "nft": "present"}, "ufw"),
    ("auto", {"ufw": "inactive", "firewalld": "inactive", "nft": "present"}, "nftables"),
    ("auto", {"ufw": "absent", "firewalld": "inactive", "nft": "absent"}, "nftables"),
    ("nftables", {"ufw": "active", "firewalld": "inactive", "nft": "present"}, "nftables"),
    ("none", {"ufw": "absent", "firewalld": "active", "nft": "present"}, "none"),
])
def test_firewall_choice(setting, state, expected):
    assert choose_firewall(s(firewall=setting), Firewalls(**state)) == (expected, None)


def test_firewall_state_from_the_probe_output():
    # `ufw status` on a Debian 12 lab host with ufw enabled, firewalld not installed, nft present
    got = FirewallState().process(["ufw=active", "firewalld=inactive", "nft=present"])
    assert got == Firewalls("active", "inactive", "present")
    assert FirewallState().process(["ufw=absent", "firewalld=", "nft=present"]) == Firewalls(nft="present")


def test_active_firewalld_is_refused_never_bypassed():
    backend, why = choose_firewall(s(), Firewalls(ufw="absent", firewalld="active", nft="present"))
    assert backend is None and "firewalld is active" in why and "systemctl disable --now firewalld" in why
    backend, why = choose_firewall(s(firewall="ufw"), Firewalls(ufw="inactive", firewalld="inactive", nft="present"))
    assert backend is None and "ufw is not active" in why


def test_disk_needed_counts_only_what_is_missing():
    settings = s()
    assert disk_needed(settings, weights_present=False, venv_present=False) == [
        ("/var/lib/vllm/models", MODELS["openai/gpt-oss-20b"].checkpoint_bytes), ("/opt/vllm", VENV_BYTES["cuda"])]
    assert disk_needed(settings, weights_present=True, venv_present=True) == []
    assert disk_needed(s(model="openai/gpt-oss-120b"), False, True)[0][1] > 60 * GIB


class FakeVllm(BaseHTTPRequestHandler):
    """Answers like vLLM's OpenAI server; `models` and `open_to_all` are set per test."""

    models = ["tiny-chat"]
    open_to_all = False

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self):
        return self.open_to_all or self.headers.get("Authorization") == f"Bearer {KEY}"

    def do_GET(self):  # noqa: N802
        if self.path == "/health":
            return self._send(200, {})
        if not self._authorized():
            return self._send(401, {"error": "Unauthorized"})
        return self._send(200, {"data": [{"id": m} for m in self.models]})

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        if not self._authorized():
            return self._send(401, {"error": "Unauthorized"})
        return self._send(200, {"choices": [{"message": {"role": "assistant", "content": "hi"}}],
                                "usage": {"completion_tokens": 1}})

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeVllm)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", FakeVllm
    httpd.shutdown()
    FakeVllm.models, FakeVllm.open_to_all = ["tiny-chat"], False


def test_verify_passes_on_a_good_endpoint(server):
    url, _ = server
    figures = endpoint_check.verify(url, "tiny-chat", KEY, timeout_s=5)
    assert figures["content"] == "hi" and figures["completion_tokens"] == 1


def test_verify_fails_when_the_model_is_missing_or_the_endpoint_is_open(server):
    url, handler = server
    handler.models = ["other"]
    with pytest.raises(AssertionError, match="lists \\['other'\\], not 'tiny-chat'"):
        endpoint_check.verify(url, "tiny-chat", KEY, timeout_s=5)
    handler.models, handler.open_to_all = ["tiny-chat"], True
    with pytest.raises(AssertionError, match="without the key gave 200, not 401"):
        endpoint_check.verify(url, "tiny-chat", KEY, timeout_s=5)


def test_ready_gives_up_when_the_server_process_is_gone():
    with pytest.raises(RuntimeError, match="ended"):
        endpoint_check.wait_ready("http://127.0.0.1:9", 60, unit_active=lambda: False)
    with pytest.raises(TimeoutError):
        endpoint_check.wait_ready("http://127.0.0.1:9", 0)


def test_env_file_is_read_without_a_shell(tmp_path):
    f = tmp_path / "vllm.env"
    f.write_text("# comment\nVLLM_API_KEY=abc=def\nHF_HUB_OFFLINE=1\n")
    assert endpoint_check.read_env_file(str(f)) == {"VLLM_API_KEY": "abc=def", "HF_HUB_OFFLINE": "1"}


def test_last_good_state_is_kept_root_only_and_not_restored_onto_itself(tmp_path):
    unit, env, venv = tmp_path / "vllm.service", tmp_path / "vllm.env", tmp_path / "venv-a"
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    env.write_text(f"VLLM_API_KEY={KEY}\n")
    venv.mkdir()
    (tmp_path / "current").symlink_to(venv)
    cfg = {"unit_file": str(unit), "env_file": str(env), "current_link": str(tmp_path / "current"),
           "last_good_dir": str(tmp_path / "last-good")}
    assert endpoint_check.restore_last_good(cfg) is None  # nothing kept yet
    endpoint_check.save_last_good(cfg)
    saved = tmp_path / "last-good" / "state.json"
    assert oct(saved.stat().st_mode & 0o777) == "0o600" and oct(saved.parent.stat().st_mode & 0o777) == "0o700"
    assert json.loads(saved.read_text())["current"] == str(venv)
    assert endpoint_check.restore_last_good(cfg) is None  # what failed is the last good state itself

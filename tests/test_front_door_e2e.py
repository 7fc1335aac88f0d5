"""End to end: the front door and the gateway on real disposable hosts, used with the OpenAI SDK.

Three hosts: lab1 and lab2 serve the tiny model behind their front doors (nftables), lab3 is the
fleet's gateway (ufw, no vLLM). Clients are this machine (an allowed source and the monitoring
address) and the lab's outsider namespace (an allowed source, not a monitor). Every TLS connection
is checked against the lab's CA. Run pytest with -s to see the SDK session and the timings.
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
import threading
import time
from types import SimpleNamespace

import openai
import pytest
from openai import OpenAI

from lab import demo
from lab.demo import grand_total
from lab.hosts import CONTROLLER_IP, OUTSIDER_IP

pytestmark = pytest.mark.e2e
MODEL = "tiny-chat"
TIMINGS: dict[str, float] = {}


def write_key(path, key: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, (key + "\n").encode())
    os.close(fd)


@pytest.fixture(scope="module")
def fleet():
    t = time.monotonic()
    lab = demo.prepare(3, ufw_hosts=1)
    TIMINGS["hosts up (3)"] = time.monotonic() - t
    keys = {"limited": secrets.token_urlsafe(24), "rotor": secrets.token_urlsafe(24)}
    for name, key in keys.items():
        write_key(lab.state_dir / f"client-{name}.key", key)
    keys["demo"] = demo.client_key(lab)
    more = {
        "front_door": True,
        "allowed_sources": [f"{CONTROLLER_IP}/32", f"{OUTSIDER_IP}/32"],
        "monitor_sources": [f"{CONTROLLER_IP}/32"],
        "clients": {
            "demo": {"key_file": str(lab.state_dir / "client-demo.key"), "rate": "100r/s", "burst": 100},
            "limited": {"key_file": str(lab.state_dir / "client-limited.key"), "rate": "6r/m", "burst": 0},
            "rotor": {"key_file": str(lab.state_dir / "client-rotor.key")},
        },
    }
    (lab.state_dir / "front-door-test.json").write_text(json.dumps(more))
    os.environ["VLLM_LAB_SETTINGS"] = str(lab.state_dir / "front-door-test.json")
    os.environ["VLLM_LAB_GATEWAY"] = "1"
    try:
        rc, output, seconds = demo.deploy(lab)
        TIMINGS["first deploy, 2 backends + gateway"] = seconds
        assert rc == 0, output[-6000:]
        yield SimpleNamespace(lab=lab, output=output, keys=keys, backends=lab.hosts[:2], gateway=lab.hosts[2],
                              ca=str(demo.ca_file(lab.state_dir)))
    finally:
        os.environ.pop("VLLM_LAB_SETTINGS", None)
        os.environ.pop("VLLM_LAB_GATEWAY", None)
        lab.down()
        print("\nTIMINGS " + ", ".join(f"{k}: {v:.1f} s" for k, v in TIMINGS.items()))


def url(h) -> str:
    return f"https://{h.ip}:443"


def sdk(fleet, h, key: str) -> OpenAI:
    """The OpenAI SDK as a user sets it up: base URL, key, the CA file; no retries (we count)."""
    return OpenAI(base_url=f"{url(h)}/v1", api_key=key, max_retries=0,
                  http_client=openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile=fleet.ca)))


def test_deploy_prints_the_client_url_and_the_ca_file_and_no_key(fleet):
    for h in fleet.lab.hosts:
        assert f"--> {h.name}: clients use https://{h.ip}:443/v1, CA file {fleet.ca}" in fleet.output
    for key in fleet.keys.values():
        assert key not in fleet.output
    total = grand_total(fleet.output)
    assert total["errors"] == "-", total


def test_openai_sdk_over_tls_checked_against_the_ca(fleet):
    h = fleet.backends[0]
    client = sdk(fleet, h, fleet.keys["demo"])
    log = [f">>> client = OpenAI(base_url='{url(h)}/v1', api_key=<demo's key>, http_client=DefaultHttpxClient("
           f"verify=ssl.create_default_context(cafile='{fleet.ca}')))"]
    models = [m.id for m in client.models.list()]
    log.append(f">>> client.models.list() -> {models}")
    assert models == [MODEL]
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say hello."}],
                                          max_tokens=12)
    log.append(f">>> client.chat.completions.create(...) -> {chat.choices[0].message.content!r} "
               f"({chat.usage.completion_tokens} tokens, finish {chat.choices[0].finish_reason})")
    assert chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens > 0
    pieces, t = [], time.monotonic()
    first = None
    for chunk in client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Count."}],
                                                max_tokens=40, stream=True, extra_body={"ignore_eos": True}):
        if chunk.choices and chunk.choices[0].delta.content is not None:
            first = first or time.monotonic() - t
            pieces.append(chunk.choices[0].delta.content)
    log.append(f">>> stream=True -> {len(pieces)} chunks, first after {first * 1000:.0f} ms, "
               f"all after {(time.monotonic() - t) * 1000:.0f} ms: {''.join(pieces)[:60]!r}...")
    assert len(pieces) >= 20  # piece by piece: nothing buffered into one
    completion = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=8,
                                           extra_body={"ignore_eos": True})
    log.append(f">>> client.completions.create(...) -> {completion.choices[0].text!r}")
    assert completion.choices[0].text
    with pytest.raises(openai.AuthenticationError) as err:
        sdk(fleet, h, "sk-unknown-" + secrets.token_hex(8)).models.list()
    log.append(f">>> OpenAI(api_key='sk-unknown-...').models.list() -> {err.value.status_code} "
               f"{err.value.body}")
    print("\nSDK SESSION\n" + "\n".join(log))
    with pytest.raises(openai.APIConnectionError):  # without the CA the certificate is refused
        OpenAI(base_url=f"{url(h)}/v1", api_key=fleet.keys["demo"], max_retries=0).models.list()


def test_past_its_rate_a_client_gets_429_with_retry_after_and_others_go_on(fleet):
    h = fleet.backends[0]
    limited = sdk(fleet, h, fleet.keys["limited"])
    assert [m.id for m in limited.models.list()] == [MODEL]
    with pytest.raises(openai.RateLimitError) as err:
        limited.models.list()
    assert err.value.status_code == 429 and err.value.response.headers["retry-after"] == "10"
    assert [m.id for m in sdk(fleet, h, fleet.keys["demo"]).models.list()] == [MODEL]


def curl(where, *args: str) -> str:
    """HTTP status of a curl run here or in the outsider namespace (TLS checked against the CA)."""
    cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", *args]
    out = where.run(cmd) if where is not None else __import__("subprocess").run(cmd, capture_output=True, text=True)
    return out.stdout.strip()


def test_only_the_inference_api_from_outside_and_metrics_only_for_the_monitor(fleet):
    h, outsider = fleet.backends[0], fleet.lab.outsider()
    demo_auth = ["-H", f"Authorization: Bearer {fleet.keys['demo']}", "--cacert", fleet.ca]
    assert curl(outsider, *demo_auth, f"{url(h)}/v1/models") == "200"  # the outsider does reach the front door
    assert curl(outsider, "--cacert", fleet.ca, f"{url(h)}/health") == "200"
    assert curl(outsider, *demo_auth, f"{url(h)}/metrics") == "403"
    for path in ("/tokenize", "/detokenize", "/pause", "/v1/chat/completions/render", "/v1/load_lora_adapter"):
        assert curl(outsider, *demo_auth, "-X", "POST", "-H", "Content-Type: application/json", "-d", "{}",
                    f"{url(h)}{path}") == "404", path
    assert curl(outsider, *demo_auth, f"{url(h)}/docs") == "404"
    assert curl(outsider, *demo_auth, "--path-as-is", f"{url(h)}/v1/models/../../metrics") == "400"
    assert curl(outsider, *demo_auth, f"{url(h)}/v1/models/%2e%2e/%2e%2e/metrics") == "400"
    assert curl(outsider, f"http://{h.ip}:8000/v1/models") == "000"  # vLLM itself: not reachable
    monitor = __import__("requests").get(f"{url(h)}/metrics", verify=fleet.ca, timeout=10)
    assert monitor.status_code == 200 and "vllm:" in monitor.text


def test_a_key_rotated_while_a_stream_runs(fleet):
    h = fleet.backends[0]
    old = fleet.keys["rotor"]
    pid = h.ssh("systemctl show -p MainPID --value vllm.service").stdout.strip()
    chunks: list = []
    ended: dict = {}

    def stream():
        try:
            for chunk in sdk(fleet, h, old).chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "Tell a long story."}], max_tokens=1500,
                    stream=True, extra_body={"ignore_eos": True}):
                chunks.append(chunk)
                time.sleep(0.02)  # a slow reader: the stream outlives the reload
        except Exception as exc:  # noqa: BLE001 - reported below
            ended["error"] = repr(exc)
        ended["t"] = time.monotonic()

    reader = threading.Thread(target=stream)
    reader.start()
    while len(chunks) < 5 and reader.is_alive():
        time.sleep(0.1)
    new = secrets.token_urlsafe(24)
    write_key(fleet.lab.state_dir / "client-rotor.key", new)
    rc, output, seconds = demo.deploy(fleet.lab, "--limit", h.name)
    TIMINGS["key rotation (deploy --limit 1 host)"] = seconds
    reloaded_at = time.monotonic()
    assert rc == 0, output[-4000:]
    assert "nginx -t, then reload" in output and new not in output and old not in output
    assert reader.is_alive(), f"the stream ended before the reload: {len(chunks)} chunks, {ended}"
    reader.join(180)
    assert "error" not in ended, ended
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["length"] and ended["t"] > reloaded_at, (finish, len(chunks))
    print(f"\nrotation: stream of {len(chunks)} chunks went on {ended['t'] - reloaded_at:.1f} s past the reload")
    assert h.ssh("systemctl show -p MainPID --value vllm.service").stdout.strip() == pid  # vLLM not restarted
    assert [m.id for m in sdk(fleet, h, new).models.list()] == [MODEL]
    with pytest.raises(openai.AuthenticationError):
        sdk(fleet, h, old).models.list()


def delta(backends, before: list[int]) -> list[int]:
    return [a - b for a, b in zip(served(backends), before, strict=True)]


def served(backends) -> list[int]:
    """Chat completions each backend's front door served to the gateway (its access log)."""
    log = "/var/log/nginx/vllm-front-door.log"
    return [int(b.ssh(f"grep -c ' gateway .*\"POST /v1/chat/completions\" 200 ' {log} || true").stdout.strip() or 0)
            for b in backends]


def ask_gateway(fleet, n: int, session: str | None = None) -> list[int]:
    client = sdk(fleet, fleet.gateway, fleet.keys["demo"])
    codes = []
    for i in range(n):
        answer = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": f"Question {i}?"}], max_tokens=4,
            extra_headers={"X-Session-ID": session or f"s-{secrets.token_hex(4)}"})
        codes.append(answer.status_code)
    return codes


def test_gateway_spreads_keeps_sessions_fails_over_and_takes_a_backend_back(fleet):
    backends = fleet.backends
    for b in backends:  # backends let the gateway through the firewall
        assert f"{fleet.gateway.ip}" in b.ssh(["nft", "list", "table", "inet", "vllm_guard"]).stdout
    before = served(backends)
    assert ask_gateway(fleet, 16) == [200] * 16
    spread = delta(backends, before)
    assert sum(spread) == 16 and min(spread) > 0, spread
    before = served(backends)
    assert ask_gateway(fleet, 6, session="conversation-1") == [200] * 6
    sticky = delta(backends, before)
    assert sorted(sticky) == [0, 6], sticky
    # one backend stopped: every request still succeeds, on the other
    backends[1].ssh("systemctl stop vllm.service")
    before = served(backends)
    t = time.monotonic()
    assert ask_gateway(fleet, 10) == [200] * 10
    TIMINGS["10 requests with one backend down"] = time.monotonic() - t
    down = delta(backends, before)
    assert down == [10, 0], down
    # back again: after nginx's fail_timeout it gets traffic again
    backends[1].ssh("systemctl start vllm.service")
    t = time.monotonic()
    while backends[1].ssh("curl -sf -o /dev/null http://127.0.0.1:8000/health").returncode != 0:
        assert time.monotonic() - t < 180, "vllm did not come back on " + backends[1].name
        time.sleep(2)
    TIMINGS["backend restart to healthy"] = time.monotonic() - t
    time.sleep(11)  # fail_timeout 10 s
    before = served(backends)
    assert ask_gateway(fleet, 16) == [200] * 16
    back = delta(backends, before)
    assert back[1] > 0, back
    print(f"\ngateway: spread {spread}, one session {sticky}, one backend down {down}, back {back}")

"""What the front door and the gateway add to a request: p50 and p99 beside direct access, in one run.

Boots two disposable hosts (``lab``): lab1 serves the tiny model behind its front door, lab2 is the
gateway with lab1 as its only backend, so every path ends at the same vLLM. The client runs on lab1
(Python's standard library, one kept-alive connection per path, as an SDK keeps one) and
interleaves the paths request by request, so that all three share the same moments of load:

- direct: ``http://127.0.0.1:8000`` (vLLM's own port, loopback only, vLLM's key)
- front door: ``https://<lab1>:443`` (nginx on the same host: TLS, client key, rate check)
- gateway: ``https://<lab2>:443`` (nginx on another host, then lab1's front door)

Two requests: ``GET /v1/models`` (no model work: the proxies' own cost) and a chat completion of
one token. Needs root; run through the lab slot:

    /work/tools/lab-slot .venv/bin/python bench/front_door_latency.py [--requests 300] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab import demo  # noqa: E402
from lab.hosts import CONTROLLER_IP  # noqa: E402

# Runs on lab1 with the system's python3; the client key and the CA come on stdin, vLLM's key is
# read from its 0600 environment file there (as root): no key on a command line.
CLIENT = r'''
import http.client, json, re, ssl, sys, time
cfg = json.load(sys.stdin)
server_key = re.search(r"^VLLM_API_KEY=(.*)$", open("/etc/vllm/vllm.env").read(), re.M).group(1).strip()
ctx = ssl.create_default_context(cadata=cfg["ca_pem"])
paths = {
    "direct": (lambda: http.client.HTTPConnection("127.0.0.1", 8000, timeout=60), server_key),
    "front door": (lambda: http.client.HTTPSConnection(cfg["host_ip"], 443, context=ctx, timeout=60), cfg["key"]),
    "gateway": (lambda: http.client.HTTPSConnection(cfg["gateway_ip"], 443, context=ctx, timeout=60), cfg["key"]),
}
conns = {name: make() for name, (make, _) in paths.items()}
chat = json.dumps({"model": "tiny-chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1})
kinds = {"GET /v1/models": ("GET", "/v1/models", None), "chat, 1 token": ("POST", "/v1/chat/completions", chat)}

def one(name, method, url, body):
    key = paths[name][1]
    headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
    t = time.perf_counter()
    conns[name].request(method, url, body=body, headers=headers)
    r = conns[name].getresponse()
    r.read()
    dt = time.perf_counter() - t
    if r.status != 200:
        raise SystemExit(f"{name} {url}: HTTP {r.status}")
    return dt * 1000

out = {}
for kind, (method, url, body) in kinds.items():
    for _ in range(10):  # warm-up: connections, TLS sessions, caches
        for name in paths:
            one(name, method, url, body)
    times = {name: [] for name in paths}
    for _ in range(cfg["n"]):
        for name in paths:
            times[name].append(one(name, method, url, body))
    out[kind] = times
print(json.dumps(out))
'''


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else max(values)


def table(results: dict[str, dict[str, list[float]]], n: int) -> str:
    lines = [f"{'request':16} {'path':11} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8}   (n={n} each)"]
    for kind, times in results.items():
        base50, base99 = pct(times["direct"], 50), pct(times["direct"], 99)
        for name, values in times.items():
            p50, p99 = pct(values, 50), pct(values, 99)
            extra = "" if name == "direct" else f"{p50 - base50:8.2f} {p99 - base99:8.2f}"
            lines.append(f"{kind:16} {name:11} {p50:8.2f} {p99:8.2f} {extra}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300, help="requests per path and kind")
    ap.add_argument("--out", help="also write the table here")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    lab = demo.prepare(2, ufw_hosts=0)
    host, gateway = lab.hosts
    more = {"front_door": True, "allowed_sources": [f"{CONTROLLER_IP}/32", f"{host.ip}/32"],
            "clients": {"demo": {"key_file": str(lab.state_dir / "client-demo.key"), "rate": "1000r/s",
                                 "burst": 1000}}}
    settings = lab.state_dir / "bench-front-door.json"
    settings.write_text(json.dumps(more))
    os.environ.update(VLLM_LAB_SETTINGS=str(settings), VLLM_LAB_GATEWAY="1")
    try:
        rc, output, seconds = demo.deploy(lab)
        if rc != 0:
            print(output[-4000:], file=sys.stderr)
            return rc
        print(f"lab up and deployed in {time.monotonic() - t0:.0f} s (deploy {seconds:.0f} s)", flush=True)
        cfg = {"n": args.requests, "key": demo.client_key(lab), "host_ip": host.ip, "gateway_ip": gateway.ip,
               "ca_pem": demo.ca_file(lab.state_dir).read_text()}
        t = time.monotonic()
        run = host.ssh(["python3", "-c", CLIENT], input=json.dumps(cfg), timeout=1800)
        if run.returncode != 0:
            print(run.stdout[-2000:], run.stderr[-2000:], file=sys.stderr)
            return 1
        results = json.loads(run.stdout.strip().splitlines()[-1])
        report = (f"front door / gateway latency, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
                  f"client on lab1, nginx {host.ssh('nginx -v 2>&1').stdout.strip().split('/')[-1]}, "
                  f"measured in {time.monotonic() - t:.0f} s\n"
                  "+p50/+p99: added over direct access (keep-alive connections, TLS session set up once)\n"
                  + table(results, args.requests))
        print(report)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(report + "\n")
        return 0
    finally:
        lab.down()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

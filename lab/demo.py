"""The README's main job: disposable hosts, a tiny model, a real deploy, a real completion.

``python -m lab.demo [N]`` boots N (default 2) disposable Debian hosts on this machine
(``lab.hosts``), makes a tiny chat model offline (``lab.tiny_model``), runs
``pyinfra -y inventories/lab.py deploy.py`` against them with the cpu backend, then asks each
endpoint for a chat completion from outside and prints it. The lab hosts serve beyond loopback, so
each gets its front door by default: the completion goes over https, checked against the lab's CA,
with the lab's client key. The hosts stay up for you to try; ``python -m lab.hosts down`` removes them.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import requests

from lab.hosts import Lab
from lab.tiny_model import make_tiny_model

ROOT = Path(__file__).resolve().parent.parent
PORT = 8000
FRONT_DOOR_PORT = 443
WHEELS = "/opt/wheels"  # the machine's CPU torch wheel, which PyPI does not have


def api_key(lab: Lab, name: str = "api-key") -> str:
    """The lab's API key (or another key named ``name``), made once and kept in a 0600 file here."""
    path = lab.state_dir / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, (secrets.token_urlsafe(32) + "\n").encode())
        os.close(fd)
    return path.read_text().strip()


def client_key(lab: Lab) -> str:
    """The key of the lab's front door client ``demo`` (inventories/lab.py), made once, 0600."""
    return api_key(lab, "client-demo.key")


def ca_file(state_dir: Path | str) -> Path:
    """The lab CA's certificate: what clients verify the front doors against."""
    return Path(state_dir) / "ca" / "ca.crt"


def prepare(n: int = 2, ufw_hosts: int = 1, shared_uv_cache: bool = True) -> Lab:
    """Boot n fresh hosts (the last ufw_hosts with ufw as their firewall), the model and the key.

    shared_uv_cache: one uv cache on this machine for all hosts (fast); off, each host downloads its
    packages itself, as separate machines would (what the fleet cache's measurements need)."""
    lab = Lab()
    lab.ensure_tools()
    lab.ensure_rootfs()
    model = lab.state_dir / "tiny-model"
    if not (model / "config.json").is_file():
        make_tiny_model(model)
    api_key(lab)
    client_key(lab)  # the front door's client "demo" (inventories/lab.py): its key file must exist
    binds = [(WHEELS, WHEELS)] if Path(WHEELS).is_dir() else []
    # one uv cache for all hosts: a second host or a second run downloads nothing again
    if shared_uv_cache:
        binds.append("rw:" + str(lab.cache_dir / "uv") + ":/opt/vllm/cache/uv")
    lab.up(n, ufw_hosts=ufw_hosts, binds=binds)
    return lab


def deploy(lab: Lab, *args: str, echo: bool = False, deploy_file: str = "deploy.py") -> tuple[int, str, float]:
    """Run the real pyinfra CLI on inventories/lab.py; return (exit code, output, seconds)."""
    env = dict(os.environ, VLLM_LAB_DIR=str(lab.state_dir), PYTHONUNBUFFERED="1")
    start = time.monotonic()
    cmd = [str(Path(sys.executable).parent / "pyinfra"), "-y", *args, "inventories/lab.py", deploy_file]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if echo:
            print(line, end="", flush=True)
    return proc.wait(), "".join(lines), time.monotonic() - start


def grand_total(output: str) -> dict[str, str]:
    """pyinfra's closing 'Grand total' row: hosts, changed (its 'Success'), errors, no change."""
    rows = [line for line in output.splitlines() if line.strip().startswith("Grand total")]
    if not rows:
        raise ValueError("no 'Grand total' row in pyinfra's output:\n" + output[-3000:])
    hosts, changed, errors, unchanged = rows[-1].split()[2:6]
    return {"hosts": hosts, "changed": changed, "errors": errors, "no_change": unchanged}


def chat(ip: str, key: str | None, prompt: str = "Say hello.", timeout: float = 120,
         ca: Path | str | None = None) -> requests.Response:
    """POST /v1/chat/completions to one lab host from this machine: to vLLM's own port, or with
    ``ca`` (the CA file) through the host's front door over https, checked against that CA."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": "tiny-chat", "messages": [{"role": "user", "content": prompt}], "max_tokens": 16}
    url = f"https://{ip}:{FRONT_DOOR_PORT}" if ca else f"http://{ip}:{PORT}"
    return requests.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=timeout,
                         verify=str(ca) if ca else True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.demo", description="Boot disposable hosts, deploy vLLM "
                                     "(cpu backend, a tiny model) to them, print each endpoint and a real completion.")
    parser.add_argument("hosts", nargs="?", type=int, default=2, choices=range(1, 9), metavar="HOSTS",
                        help="how many hosts (1 to 8, default 2)")
    n = parser.parse_args(argv).hosts
    t0 = time.monotonic()
    lab = prepare(n, ufw_hosts=1 if n > 1 else 0)
    print(f"lab: {n} hosts up in {time.monotonic() - t0:.0f} s: "
          + ", ".join(f"{h.name} {h.ip} ({h.firewall})" for h in lab.hosts), flush=True)
    rc, output, seconds = deploy(lab, echo=True)
    print(f"deploy: exit {rc} in {seconds:.0f} s", flush=True)
    if rc != 0:
        return rc
    # the lab hosts serve beyond loopback: each has its front door (https, the lab's CA, client keys)
    key, ca = client_key(lab), ca_file(lab.state_dir)
    for h in lab.hosts:
        answer = chat(h.ip, key, ca=ca)
        content = answer.json()["choices"][0]["message"]["content"] if answer.ok else answer.text
        print(f"endpoint https://{h.ip}:{FRONT_DOOR_PORT}/v1  (model tiny-chat, CA file {ca}, "
              f"client key in {lab.state_dir / 'client-demo.key'})")
        print(f"  POST /v1/chat/completions -> {answer.status_code}: {content!r}")
    print("remove the hosts with: python -m lab.hosts down")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

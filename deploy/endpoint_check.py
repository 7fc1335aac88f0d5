"""Checks of a running vLLM endpoint, run ON the host with the server's own venv Python.

Uploaded by the deploy to ``<install_dir>/bin/endpoint_check.py``; it needs only the standard
library and ``requests`` (a dependency of vLLM, so it is in the venv).

- ``ready URL TIMEOUT [PID]``: wait until ``GET /health`` answers 200 (the unit's ``ExecStartPost``,
  so systemd calls the service started only once the weights are loaded); give up at once when
  the server process PID dies.
- ``verify CONFIG_JSON``: wait for ``/health``; ``GET /v1/models`` with the key lists the model;
  ``POST /v1/chat/completions`` with the key gives 200 and well-formed choices; without the key
  gives 401. The key is read from the unit's environment file, never from the command line. On
  failure it prints the tail of the unit's journal and exits 1. On success it prints one JSON line.
- ``activate CONFIG_JSON``: restart the unit and verify. Success: the unit file, the environment
  file and the ``current`` venv link are kept as the last good state. Failure: the journal tail is
  printed, the last good state (if it differs) is put back, restarted and verified, and it exits 1:
  a change that does not serve never takes down a server that did.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import requests


def read_env_file(path: str) -> dict[str, str]:
    """The KEY=value lines of a systemd environment file."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                env[key.strip()] = value.strip()
    return env


def wait_ready(url: str, timeout_s: float, unit_active=None) -> float:
    """Poll GET {url}/health until 200; return seconds waited. Raise TimeoutError."""
    start = time.monotonic()
    while True:
        try:
            if requests.get(f"{url}/health", timeout=5).status_code == 200:
                return time.monotonic() - start
        except requests.RequestException:
            pass
        if unit_active is not None and not unit_active():
            raise RuntimeError("the server process ended while waiting for /health")
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{url}/health did not answer 200 within {timeout_s:.0f} s")
        time.sleep(2)


def verify(url: str, model: str, key: str, timeout_s: float, unit_active=None) -> dict:
    """Run the endpoint checks; return measured figures or raise AssertionError with what failed."""
    figures = {"health_wait_s": round(wait_ready(url, timeout_s, unit_active), 1)}
    auth = {"Authorization": f"Bearer {key}"}
    models = requests.get(f"{url}/v1/models", headers=auth, timeout=30)
    assert models.status_code == 200, f"GET /v1/models gave {models.status_code}: {models.text[:200]}"
    ids = [m.get("id") for m in models.json().get("data", [])]
    assert model in ids, f"GET /v1/models lists {ids}, not {model!r}"
    body = {"model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}
    t = time.monotonic()
    chat = requests.post(f"{url}/v1/chat/completions", headers=auth, json=body, timeout=300)
    figures["completion_s"] = round(time.monotonic() - t, 2)
    assert chat.status_code == 200, f"POST /v1/chat/completions gave {chat.status_code}: {chat.text[:300]}"
    answer = chat.json()
    choices = answer.get("choices") or []
    assert choices and "message" in choices[0], f"chat completion has no choices: {str(answer)[:300]}"
    figures["completion_tokens"] = (answer.get("usage") or {}).get("completion_tokens")
    figures["content"] = choices[0]["message"].get("content")
    anonymous = requests.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    assert anonymous.status_code == 401, (
        f"POST /v1/chat/completions without the key gave {anonymous.status_code}, not 401: "
        "the endpoint is open to anyone")
    figures["gpu_free_mib"] = gpu_headroom_mib()
    return figures


def gpu_headroom_mib() -> list[int] | None:
    """Free memory per GPU as NVML reads it once the server runs (None without a GPU/NVML)."""
    try:
        import pynvml as nv

        nv.nvmlInit()
    except Exception:  # noqa: BLE001 - no NVIDIA driver or no nvidia-ml-py: nothing to read
        return None
    try:
        return [nv.nvmlDeviceGetMemoryInfo(nv.nvmlDeviceGetHandleByIndex(i)).free // 2**20
                for i in range(nv.nvmlDeviceGetCount())]
    finally:
        nv.nvmlShutdown()


def unit_is_active(service: str) -> bool:
    state = subprocess.run(["systemctl", "is-active", service], capture_output=True, text=True).stdout
    return state.strip() in ("active", "activating", "reloading")


def journal_tail(service: str, lines: int = 40) -> str:
    out = subprocess.run(["journalctl", "-u", service, "-n", str(lines), "--no-pager", "-o", "cat"],
                         capture_output=True, text=True)
    return out.stdout or out.stderr


def _state(cfg: dict) -> dict[str, str]:
    """The unit file, environment file and venv link target that make up a configuration."""
    with open(cfg["unit_file"]) as unit, open(cfg["env_file"]) as env:
        return {"unit": unit.read(), "env": env.read(), "current": os.readlink(cfg["current_link"])}


def save_last_good(cfg: dict) -> None:
    """Keep the running configuration (root-only: the environment file holds the key)."""
    os.makedirs(cfg["last_good_dir"], mode=0o700, exist_ok=True)
    path = os.path.join(cfg["last_good_dir"], "state.json")
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(_state(cfg), f)
    os.replace(path + ".tmp", path)


def restore_last_good(cfg: dict) -> bool:
    """Put the last good configuration back; False when there is none or it is what failed."""
    path = os.path.join(cfg["last_good_dir"], "state.json")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        good = json.load(f)
    if good == _state(cfg):
        return False
    for key, mode in (("unit", 0o644), ("env", 0o600)):
        target = cfg["unit_file" if key == "unit" else "env_file"]
        fd = os.open(target + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as f:
            f.write(good[key])
        os.replace(target + ".tmp", target)
    link = cfg["current_link"] + ".tmp"
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(good["current"], link)
    os.replace(link, cfg["current_link"])
    subprocess.run(["systemctl", "daemon-reload"], check=True)
    return True


def restart(service: str) -> None:
    """systemctl restart; the unit's ExecStartPost makes it wait until /health answers."""
    out = subprocess.run(["systemctl", "restart", service], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"systemctl restart {service} failed: {(out.stderr or out.stdout).strip()}")


FAILURES = (AssertionError, TimeoutError, RuntimeError, requests.RequestException)


def verify_configured(cfg: dict) -> dict:
    """``verify`` with the settings of check.json and the key from the unit's environment file."""
    key = read_env_file(cfg["env_file"]).get("VLLM_API_KEY", "")
    return verify(cfg["url"], cfg["model"], key, cfg["timeout_s"], lambda: unit_is_active(cfg["service"]))


def report_failure(service: str, exc: Exception) -> None:
    print(f"endpoint check failed: {exc}", file=sys.stderr)
    print(f"--- last lines of the journal of {service} ---", file=sys.stderr)
    print(journal_tail(service), file=sys.stderr)


def report_success(cfg: dict, figures: dict) -> None:
    print(json.dumps({"endpoint": cfg["url"], "model": cfg["model"], **figures}))


def activate(cfg: dict) -> int:
    """Restart and verify; on failure go back to the last good configuration."""
    service = cfg["service"]

    def check() -> dict:
        restart(service)
        return verify_configured(cfg)

    try:
        figures = check()
    except FAILURES as exc:
        report_failure(service, exc)
        if restore_last_good(cfg):
            try:
                check()
                print(f"rolled back: {service} serves again with its last good configuration; the new "
                      "configuration above was not kept", file=sys.stderr)
            except FAILURES as again:
                print(f"rolled back, but the last good configuration does not serve either: {again}",
                      file=sys.stderr)
        return 1
    save_last_good(cfg)
    report_success(cfg, figures)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) in (3, 4) and argv[0] == "ready":
        pid = argv[3] if len(argv) == 4 else None
        try:
            wait_ready(argv[1], float(argv[2]), (lambda: os.path.exists(f"/proc/{pid}")) if pid else None)
        except (TimeoutError, RuntimeError) as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    if len(argv) == 2 and argv[0] == "verify":
        with open(argv[1]) as f:
            cfg = json.load(f)
        try:
            figures = verify_configured(cfg)
        except FAILURES as exc:
            report_failure(cfg["service"], exc)
            return 1
        report_success(cfg, figures)
        return 0
    if len(argv) == 2 and argv[0] == "activate":
        with open(argv[1]) as f:
            return activate(json.load(f))
    print("usage: endpoint_check.py ready URL TIMEOUT_S [PID] | verify CONFIG_JSON | activate CONFIG_JSON",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

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
  file, the check settings, the firewall rules and the ``current`` venv link are kept as the last
  good state, with their fingerprint. Failure: the journal tail is printed, the last good state (if
  it differs) is put back with its firewall rules, restarted and verified with its own check
  settings, and it exits 1: a change that does not serve never takes down a server that did.
- ``converge CONFIG_JSON``: ``activate`` unless the fingerprint of what is on disk is the one
  recorded at the last successful activation and the unit is active (a run interrupted between
  writing a file and the restart is finished by the next one).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
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


STATE_FILES = ("unit_file", "env_file", "check_file")  # and the firewall's rules file, when it has one


def _files(cfg: dict) -> dict[str, str]:
    """Name -> path of every file that decides what serves (the fingerprint's and the last good state's)."""
    files = {key: cfg[key] for key in STATE_FILES if cfg.get(key)}
    rules = (cfg.get("firewall") or {}).get("rules_file")
    if rules:
        files["firewall"] = rules
    return files


def _sha256(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return "-"


def fingerprint(cfg: dict) -> str:
    """What is on disk now, one ``name value`` line each: the sha256 of the unit, environment file, check
    settings and firewall rules, and the venv link's target (deploy/service.py reads the same lines)."""
    lines = [f"{name.removesuffix('_file')} {_sha256(path)}" for name, path in _files(cfg).items()]
    try:
        target = os.readlink(cfg["current_link"])
    except OSError:
        target = "-"
    return "\n".join(lines + [f"current {target}"]) + "\n"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def _write_atomic(path: str, text: str, mode: int) -> None:
    """Write beside ``path`` with ``mode`` from the first byte, then rename over it."""
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _state(cfg: dict) -> dict:
    """Everything that decides serving: the files' contents, the venv link target, the firewall's kind."""
    state = {name: _read(path) for name, path in _files(cfg).items()}
    state["current"] = os.readlink(cfg["current_link"])
    state["firewall_kind"] = (cfg.get("firewall") or {}).get("kind", "none")
    return state


def save_last_good(cfg: dict) -> None:
    """Keep the running configuration and its fingerprint (root-only: the environment file holds the key)."""
    os.makedirs(cfg["last_good_dir"], mode=0o700, exist_ok=True)
    os.chmod(cfg["last_good_dir"], 0o700)
    _write_atomic(os.path.join(cfg["last_good_dir"], "state.json"), json.dumps(_state(cfg)), 0o600)
    _write_atomic(os.path.join(cfg["last_good_dir"], "fingerprint"), fingerprint(cfg), 0o600)


def load_last_good(cfg: dict) -> dict | None:
    text = _read(os.path.join(cfg["last_good_dir"], "state.json"))
    if not text:
        return None
    good = json.loads(text)
    for old, new in (("unit", "unit_file"), ("env", "env_file")):  # kept by an earlier release
        if old in good and new not in good:
            good[new] = good.pop(old)
    return good


FILE_MODES = {"unit": 0o644, "env": 0o600, "check": 0o600, "firewall": 0o600}


def restore_last_good(cfg: dict) -> dict | None:
    """Put the last good configuration back, its firewall rules loaded; return its check settings, or
    None when there is none or it is what failed."""
    good = load_last_good(cfg)
    if good is None or good == _state(cfg):
        return None
    failed_rules = _read(_files(cfg).get("firewall", "")) if "firewall" in _files(cfg) else None
    for name, path in _files(cfg).items():
        key = name if name == "firewall" else name.removesuffix("_file")
        if good.get(name) is not None:
            _write_atomic(path, good[name], FILE_MODES.get(key, 0o600))
    link = cfg["current_link"] + ".tmp"
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(good["current"], link)
    os.replace(link, cfg["current_link"])
    with open(cfg["check_file"]) as f:
        restored = json.load(f)
    apply_firewall(restored, failed_rules)
    subprocess.run(["systemctl", "daemon-reload"], check=True)
    return restored


def ufw_rules(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip().startswith("ufw ")]


def apply_firewall(cfg: dict, previous_rules: str | None) -> None:
    """Load ``cfg``'s firewall rules: nftables replaces its table in one transaction; ufw drops the
    rules of ``previous_rules`` that are not wanted any more and adds the missing ones, allows first."""
    fw = cfg.get("firewall") or {}
    if fw.get("kind") == "nftables":
        subprocess.run(["nft", "-f", fw["rules_file"]], check=True)
    elif fw.get("kind") == "ufw":
        wanted = ufw_rules(_read(fw["rules_file"]))
        for rule in ufw_rules(previous_rules):
            if rule not in wanted:
                subprocess.run(["ufw", "delete", *shlex.split(rule)[1:]], check=False, capture_output=True)
        present = subprocess.run(["ufw", "show", "added"], capture_output=True, text=True).stdout
        missing = [r for r in wanted if r not in ufw_rules(present)]
        deny = [r for r in wanted if r.startswith("ufw deny")]
        if any(not r.startswith("ufw deny") for r in missing) and deny and deny[0] in ufw_rules(present):
            subprocess.run(["ufw", "delete", *shlex.split(deny[0])[1:]], check=False, capture_output=True)
            missing = [r for r in missing if r not in deny] + deny
        for rule in missing:
            subprocess.run(shlex.split(rule), check=True, capture_output=True)


def reset_failed(service: str) -> None:
    """An earlier failure (or systemd's start limit) must not block this start."""
    subprocess.run(["systemctl", "reset-failed", service], capture_output=True)


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
    """Restart and verify; on failure go back to the last good configuration (unit, environment, venv
    link, check settings and firewall rules), restart it and say whether it serves again."""
    service = cfg["service"]
    previous = load_last_good(cfg)

    def check(c: dict) -> dict:
        reset_failed(service)
        restart(service)
        return verify_configured(c)

    try:
        figures = check(cfg)
    except FAILURES as exc:
        report_failure(service, exc)
        restored = restore_last_good(cfg)
        if restored is None:
            print(f"no last good configuration of {service} to go back to: it does not serve", file=sys.stderr)
            return 1
        try:
            check(restored)
            print(f"rolled back: {service} serves again with its last good configuration ({restored['url']}); "
                  "the new configuration above was not kept", file=sys.stderr)
        except FAILURES as again:
            print(f"rolled back, but the last good configuration does not serve either: {again}", file=sys.stderr)
        return 1
    if previous is not None and previous.get("firewall_kind") == "ufw" == (cfg.get("firewall") or {}).get("kind"):
        apply_firewall(cfg, previous.get("firewall"))  # the old port's rules go once the new one serves
    save_last_good(cfg)
    report_success(cfg, figures)
    return 0


def status(cfg: dict) -> dict:
    """Whether what is on disk is what was last activated, and the unit runs (what ``converge`` decides by)."""
    recorded = dict(line.split(" ", 1) for line in (_read(os.path.join(cfg["last_good_dir"], "fingerprint")) or "")
                    .splitlines() if " " in line)
    on_disk = dict(line.split(" ", 1) for line in fingerprint(cfg).splitlines())
    differs = sorted(k for k in set(recorded) | set(on_disk) if recorded.get(k) != on_disk.get(k))
    active = unit_is_active(cfg["service"])
    return {"converged": not differs and active, "differs": differs, "active": active,
            "recorded": bool(recorded)}


def converge(cfg: dict) -> int:
    """Activate unless what is on disk is what was last activated and the unit runs: a run that died
    between writing a file and the restart is finished by the next one."""
    if status(cfg)["converged"]:
        print(json.dumps({"endpoint": cfg["url"], "converged": True}))
        return 0
    return activate(cfg)


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
    if len(argv) == 2 and argv[0] == "status":
        with open(argv[1]) as f:
            print(json.dumps(status(json.load(f))))
        return 0
    if len(argv) == 2 and argv[0] in ("activate", "converge"):
        with open(argv[1]) as f:
            cfg = json.load(f)
        cfg.setdefault("check_file", argv[1])
        return (activate if argv[0] == "activate" else converge)(cfg)
    print("usage: endpoint_check.py ready URL TIMEOUT_S [PID] | verify CONFIG_JSON | activate CONFIG_JSON | "
          "converge CONFIG_JSON | status CONFIG_JSON",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

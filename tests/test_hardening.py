"""Hardening without a host: atomic secret writes, the key check before start, the locked-down unit
(scored by the real ``systemd-analyze``), fingerprint convergence and the last good state with its
firewall and checks, the deploy lock (the real shell script, run here), disk needs per filesystem,
and the ufw rules that must not outlive the allow-list."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from deploy import endpoint_check
from deploy.firewall import names_port, nft_live_ok, nft_rules_text, ufw_rules, ufw_wanted_rules
from deploy.host_lock import LOCK_SCRIPT
from deploy.service import check_settings, device_allow, secret_file, unit_text
from deploy.settings import load_settings
from deploy.weights import GIB, short_on_disk
from tests.harness import UPLOADS, run_ops

KEY = "sk-test-0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent
CPU = {"backend": "cpu", "model": "tiny-chat", "model_source": "path", "model_path": "/srv/tiny",
       "bind_address": "0.0.0.0", "allowed_sources": ["10.123.0.1/32"],
       "front_door": False}  # these tests are about vLLM's own port, which the front door moves to loopback


def settings(**data):
    return load_settings("lab1", data, environ={"VLLM_API_KEY": KEY})


# --- secrets ---------------------------------------------------------------------------------


def test_secret_file_goes_to_a_0600_file_beside_it_then_is_renamed_over_it():
    _result, ops = run_ops(lambda: secret_file(name="env", path="/etc/vllm/vllm.env",
                                               content=f"VLLM_API_KEY={KEY}\n"), {})
    (_name, commands), = ops
    assert commands[0] == "install -m 600 -o root -g root /dev/null /etc/vllm/vllm.env.new"
    assert commands[1] == "install -m 600 -o root /dev/null /tmp/TEMP"
    assert commands[2] == ["upload", "/etc/vllm/vllm.env.new"]
    assert commands[3] == ("rm -f /tmp/TEMP && chmod 600 /etc/vllm/vllm.env.new && "
                           "mv -f /etc/vllm/vllm.env.new /etc/vllm/vllm.env")
    assert UPLOADS["/etc/vllm/vllm.env.new"] == f"VLLM_API_KEY={KEY}\n"
    assert all(KEY not in str(c) for c in commands)  # the key only in the upload, never in a command
    # the target itself is never written in place: only the rename touches it
    assert [c for c in commands if "/etc/vllm/vllm.env " in f"{c} " and "mv -f" not in str(c)] == []


def key_check(unit: str) -> str:
    line = next(x for x in unit.splitlines() if x.startswith("ExecStartPre="))
    command = line.split("=", 1)[1]
    assert command.startswith("/bin/sh -c '") and command.endswith("'")
    return command[len("/bin/sh -c '"):-1].replace("$$", "$")  # systemd turns $$ into $


@pytest.mark.parametrize("key, ok", [(None, False), ("", False), ("short", False), (KEY, True)])
def test_the_server_refuses_to_start_without_a_key(key, ok):
    script = key_check(unit_text(settings(**CPU)))
    env = {"PATH": os.environ["PATH"]} | ({} if key is None else {"VLLM_API_KEY": key})
    run = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True)
    assert (run.returncode == 0) is ok, run.stderr
    if not ok:
        assert "not starting without a key" in run.stderr


# --- the unit --------------------------------------------------------------------------------

HARDENING = ("UMask=0077", "ProtectSystem=strict", "ReadWritePaths=/var/lib/vllm", "ProtectKernelTunables=true",
             "ProtectKernelModules=true", "ProtectKernelLogs=true", "ProtectControlGroups=true",
             "RestrictNamespaces=true", "RestrictSUIDSGID=true", "LockPersonality=true", "CapabilityBoundingSet=\n",
             "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK", "DevicePolicy=closed",
             "NoNewPrivileges=true")


def test_unit_is_locked_down_and_requires_its_firewall():
    unit = unit_text(settings(**CPU), firewall_unit="vllm-firewall.service")
    for line in HARDENING:
        assert line in unit, line
    assert "Requires=vllm-firewall.service" in unit and "After=network-online.target vllm-firewall.service" in unit
    for absent in ("MemoryDenyWriteExecute=", "PrivateDevices=", "DeviceAllow="):
        assert f"\n{absent}" not in unit


def test_cuda_unit_allows_exactly_the_nvidia_device_nodes():
    s = settings()
    nodes = device_allow(s, gpus=2, wsl=False)
    assert nodes == ["/dev/nvidiactl rw", "/dev/nvidia-uvm rw", "/dev/nvidia-uvm-tools rw", "/dev/nvidia-modeset rw",
                     "/dev/nvidia-caps/nvidia-cap1 r", "/dev/nvidia-caps/nvidia-cap2 r",
                     "/dev/nvidia0 rw", "/dev/nvidia1 rw"]
    assert device_allow(s, gpus=1, wsl=True) == ["/dev/dxg rw"]
    assert device_allow(settings(**CPU), gpus=0, wsl=False) == []
    unit = unit_text(s, devices=nodes)
    assert "DevicePolicy=closed\nDeviceAllow=/dev/nvidiactl rw\n" in unit and "DeviceAllow=/dev/nvidia1 rw" in unit


def exposure(unit: str, tmp_path) -> float:
    path = tmp_path / "vllm.service"
    path.write_text(unit)
    out = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(path)], capture_output=True, text=True)
    return float(re.search(r"Overall exposure level for vllm.service: ([0-9.]+)", out.stdout + out.stderr).group(1))


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed here")
def test_exposure_score_of_the_cpu_and_cuda_units(tmp_path):
    """The real systemd-analyze scores the rendered units offline (the e2e test scores them on the hosts)."""
    cpu = exposure(unit_text(settings(**CPU), firewall_unit="vllm-firewall.service"), tmp_path)
    s = settings()
    cuda = exposure(unit_text(s, devices=device_allow(s, gpus=1, wsl=False)), tmp_path)
    print(f"\nsystemd-analyze security: cpu unit {cpu}, cuda unit {cuda}")
    assert cpu <= 3.0 and cuda <= 3.0


# --- fingerprint, last good state, rollback --------------------------------------------------


@pytest.fixture
def host_files(tmp_path, monkeypatch):
    """A served configuration in a folder: unit, env, check settings, nftables rules, venv link."""
    calls = []
    monkeypatch.setattr(endpoint_check.subprocess, "run",
                        lambda args, **kw: calls.append(list(args)) or subprocess.CompletedProcess(args, 0, "", ""))
    (tmp_path / "venv-a").mkdir()
    (tmp_path / "venv-b").mkdir()
    (tmp_path / "current").symlink_to(tmp_path / "venv-a")

    def configure(port: int, key: str = KEY, venv: str = "venv-a"):
        s = settings(**CPU, port=port)
        fw = {"kind": "nftables", "rules_file": str(tmp_path / "firewall.nft"), "unit": "vllm-firewall.service"}
        cfg = check_settings(s, fw) | {
            "unit_file": str(tmp_path / "vllm.service"), "env_file": str(tmp_path / "vllm.env"),
            "check_file": str(tmp_path / "check.json"), "current_link": str(tmp_path / "current"),
            "last_good_dir": str(tmp_path / "last-good")}
        (tmp_path / "vllm.service").write_text(unit_text(s))
        (tmp_path / "vllm.env").write_text(f"VLLM_API_KEY={key}\n")
        (tmp_path / "firewall.nft").write_text(nft_rules_text(s))
        (tmp_path / "check.json").write_text(json.dumps(cfg))
        os.remove(tmp_path / "current")
        (tmp_path / "current").symlink_to(tmp_path / venv)
        return cfg

    return configure, calls, tmp_path


def test_status_compares_what_is_on_disk_with_the_last_activation(host_files, monkeypatch):
    configure, _calls, tmp_path = host_files
    monkeypatch.setattr(endpoint_check, "unit_is_active", lambda service: True)
    cfg = configure(8000)
    assert endpoint_check.status(cfg) == {"converged": False, "differs": ["check", "current", "env", "firewall",
                                                                          "unit"], "active": True, "recorded": False}
    endpoint_check.save_last_good(cfg)
    assert endpoint_check.status(cfg)["converged"] is True
    assert oct((tmp_path / "last-good" / "fingerprint").stat().st_mode & 0o777) == "0o600"
    # a run that wrote a new key and died before its restart: the next run sees it
    (tmp_path / "vllm.env").write_text("VLLM_API_KEY=" + "n" * 24 + "\n")
    assert endpoint_check.status(cfg)["differs"] == ["env"]
    os.remove(tmp_path / "current")
    (tmp_path / "current").symlink_to(tmp_path / "venv-b")
    assert endpoint_check.status(cfg)["differs"] == ["current", "env"]
    monkeypatch.setattr(endpoint_check, "unit_is_active", lambda service: False)
    configure(8000)
    assert endpoint_check.status(cfg) == {"converged": False, "differs": [], "active": False, "recorded": True}


def test_fingerprint_is_a_hash_per_file_and_the_link_target(host_files):
    configure, _calls, tmp_path = host_files
    cfg = configure(8000)
    lines = dict(line.split(" ", 1) for line in endpoint_check.fingerprint(cfg).splitlines())
    assert set(lines) == {"unit", "env", "check", "firewall", "current"}
    assert lines["env"] == hashlib.sha256((tmp_path / "vllm.env").read_bytes()).hexdigest()
    assert lines["current"] == str(tmp_path / "venv-a")
    assert KEY not in endpoint_check.fingerprint(cfg)


def test_converge_restarts_only_when_something_differs(host_files, monkeypatch):
    configure, _calls, tmp_path = host_files
    restarts = []
    monkeypatch.setattr(endpoint_check, "restart", restarts.append)
    monkeypatch.setattr(endpoint_check, "unit_is_active", lambda service: True)
    monkeypatch.setattr(endpoint_check, "verify_configured", lambda c: {"health_wait_s": 0})
    cfg = configure(8000)
    assert endpoint_check.converge(cfg) == 0 and restarts == ["vllm"]  # first activation
    assert endpoint_check.converge(cfg) == 0 and restarts == ["vllm"]  # nothing differs: no restart
    configure(8000, key="r" * 24)  # the env file of an interrupted run
    assert endpoint_check.converge(cfg) == 0 and restarts == ["vllm", "vllm"]
    assert endpoint_check.status(cfg)["converged"]


def test_a_failed_port_change_brings_back_the_old_unit_env_checks_firewall_and_venv(host_files, monkeypatch, capsys):
    configure, calls, tmp_path = host_files
    monkeypatch.setattr(endpoint_check, "restart", lambda service: None)
    monkeypatch.setattr(endpoint_check, "unit_is_active", lambda service: True)
    verified = []

    def verify(c):
        verified.append(c["url"])
        if c["url"].endswith(":8001"):
            raise AssertionError("GET /v1/models gave 503")
        return {"health_wait_s": 1}

    monkeypatch.setattr(endpoint_check, "verify_configured", verify)
    monkeypatch.setattr(endpoint_check, "journal_tail", lambda service, lines=40: "journal")
    good = configure(8000)
    assert endpoint_check.activate(good) == 0
    before = {n: (tmp_path / n).read_text() for n in ("vllm.service", "vllm.env", "check.json", "firewall.nft")}
    calls.clear()
    new = configure(8001, key="z" * 24, venv="venv-b")
    assert "dport 8001" in (tmp_path / "firewall.nft").read_text()
    assert endpoint_check.activate(new) == 1
    err = capsys.readouterr().err
    assert "rolled back: vllm serves again with its last good configuration (http://127.0.0.1:8000)" in err
    assert verified[-2:] == ["http://127.0.0.1:8001", "http://127.0.0.1:8000"]  # the old checks, on the old port
    assert {n: (tmp_path / n).read_text() for n in before} == before
    assert os.readlink(tmp_path / "current") == str(tmp_path / "venv-a")
    assert ["nft", "-f", str(tmp_path / "firewall.nft")] in calls and ["systemctl", "daemon-reload"] in calls
    assert ["systemctl", "reset-failed", "vllm"] in calls
    assert oct((tmp_path / "vllm.env").stat().st_mode & 0o777) == "0o600"
    assert endpoint_check.status(good)["converged"]  # the next run with the old settings changes nothing


def test_ufw_rollback_deletes_the_new_ports_rules_and_keeps_the_old(tmp_path, monkeypatch):
    calls = []
    shown = "ufw allow from 10.0.0.1 to any port 8000 proto tcp\nufw deny 8000/tcp\n"
    monkeypatch.setattr(endpoint_check.subprocess, "run", lambda args, **kw: calls.append(list(args)) or
                        subprocess.CompletedProcess(args, 0, shown if args[:2] == ["ufw", "show"] else "", ""))
    rules = tmp_path / "firewall.ufw"
    rules.write_text(shown)
    failed = "ufw allow from 10.0.0.1 to any port 8001 proto tcp\nufw deny 8001/tcp\n"
    endpoint_check.apply_firewall({"firewall": {"kind": "ufw", "rules_file": str(rules)}}, failed)
    assert calls == [["ufw", "delete", "allow", "from", "10.0.0.1", "to", "any", "port", "8001", "proto", "tcp"],
                     ["ufw", "delete", "deny", "8001/tcp"], ["ufw", "show", "added"]]


# --- firewall rules --------------------------------------------------------------------------


@pytest.mark.parametrize("rule, ours", [
    ("ufw allow 8000", True), ("ufw allow 8000/tcp", True), ("ufw allow 7990:8010/tcp", True),
    ("ufw allow 80,443,8000/tcp", True), ("ufw allow from 10.0.0.0/8 to any port 8000", True),
    ("ufw allow proto tcp from any to any port 8000", True), ("ufw limit 8000/tcp", True),
    ("ufw allow 22/tcp", False), ("ufw allow 80", False), ("ufw allow from 10.0.0.0/8 to any port 22", False),
    ("ufw allow from 10.0.0.0/8", False), ("ufw allow 'Nginx Full'", False), ("ufw allow 18000/tcp", False),
])
def test_which_existing_ufw_rules_are_about_the_serving_port(rule, ours):
    assert names_port(rule, 8000) is ours


def test_ufw_never_adds_ssh_and_removes_an_earlier_open_rule_for_the_port():
    s = settings(**CPU)
    wanted = ufw_wanted_rules(s)
    assert wanted == ["ufw allow from 10.123.0.1 to any port 8000 proto tcp", "ufw deny 8000/tcp"]
    added = ["ufw allow from 192.168.1.0/24 to any port 22 proto tcp", "ufw allow 8000", "ufw allow 8000/tcp"]
    _r, ops = run_ops(lambda: ufw_rules(name="ufw", ports=[8000], wanted=wanted), {"UfwAddedRules": added})
    (_name, commands), = ops
    assert commands == ["ufw delete allow 8000", "ufw delete allow 8000/tcp",
                        "ufw allow from 10.123.0.1 to any port 8000 proto tcp", "ufw deny 8000/tcp"]
    assert not any("22" in c for c in commands)


def test_live_nft_table_is_judged_from_nft_list_output():
    s = settings(**CPU)
    live = ("table inet vllm_guard {\n\tchain input {\n\t\ttype filter hook input priority filter - 5; policy accept;\n"
            "\t\tiif \"lo\" tcp dport 8000 accept\n\t\tip saddr 10.123.0.1 tcp dport 8000 accept\n"
            "\t\ttcp dport 8000 counter packets 3 bytes 180 drop\n\t}\n}")
    assert nft_live_ok(s, live)
    assert not nft_live_ok(s, "")  # flushed
    assert not nft_live_ok(settings(**CPU, port=8001), live)  # an old port's table


# --- disk ------------------------------------------------------------------------------------


def test_disk_needs_are_summed_per_filesystem():
    s = settings(model="openai/gpt-oss-120b")
    needs = [("/var/lib/vllm/models", int(60.8 * GIB)), ("/opt/vllm", 11 * GIB)]
    one_fs = {"/var/lib/vllm/models": ("/", 66 * GIB), "/opt/vllm": ("/", 66 * GIB)}
    (message,) = short_on_disk(s, needs, one_fs)  # 66 GiB passes each alone, not both
    assert message.startswith("not enough disk on /: 66.0 GiB free, 76.8 GiB needed")
    assert "/var/lib/vllm/models 60.8 GiB + /opt/vllm 11.0 GiB" in message
    two_fs = {"/var/lib/vllm/models": ("/srv", 66 * GIB), "/opt/vllm": ("/", 66 * GIB)}
    assert short_on_disk(s, needs, two_fs) == []


# --- the deploy lock: the real script, run here ----------------------------------------------


NO_SSHD = "no-such-process-name"  # here the shell that starts the script stands for pyinfra's connection


def lock(tmp_path, owner: str, parent_lives_s: float = 0) -> str:
    script = LOCK_SCRIPT.format(lock=str(tmp_path / "deploy.lock"), owner=f"'{owner}'", holder=NO_SSHD, wait=1)
    # the script holds the lock while its connection process (here: the shell that starts it) lives
    wrapper = f"sh -c {shlex.quote(script)}; sleep {parent_lives_s}"
    out = subprocess.run(["sh", "-c", wrapper], capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


def test_a_second_deploy_is_stopped_while_the_first_holds_the_lock(tmp_path):
    script = LOCK_SCRIPT.format(lock=str(tmp_path / "deploy.lock"), owner="'first run'", holder=NO_SSHD, wait=1)
    holder = subprocess.Popen(["sh", "-c", f"sh -c {shlex.quote(script)}; sleep 4"], stdout=subprocess.PIPE, text=True)
    first = holder.stdout.readline().strip()
    assert first == "TAKEN first run"
    second = lock(tmp_path, "second run")
    assert second.startswith("BUSY first run (held while connection process")
    holder.wait(timeout=10)
    deadline = time.monotonic() + 10  # the holder's connection ended: the lock goes within a second or two
    while (third := lock(tmp_path, "third run")).startswith("BUSY") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert third == "TAKEN third run"


# --- the demo's usage, and no citation of files users do not have ----------------------------


@pytest.mark.parametrize("args, rc", [(["--help"], 0), (["-h"], 0), (["bogus"], 2), (["2", "3"], 2), (["0"], 2)])
def test_demo_script_answers_help_and_unknown_words_with_its_usage(args, rc):
    out = subprocess.run(["bash", str(ROOT / "scripts/demo.sh"), *args], capture_output=True, text=True, timeout=30)
    assert out.returncode == rc
    assert "usage: sudo bash scripts/demo.sh [HOSTS]" in out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr


def test_no_citation_of_the_sessions_shared_folder():
    """Users of the project do not have the session's shared folder: facts cite docs/ or public sources."""
    marker = "../" + "shared"
    suffixes = (".py", ".md", ".j2", ".sh", ".json", ".txt")
    places = [p for d in ("deploy", "docs", "templates", "inventories", "tests", "lab", "scripts", "bench")
              for p in (ROOT / d).rglob("*") if p.is_file() and p.suffix in suffixes]
    places.append(ROOT / "README.md")
    assert [str(p.relative_to(ROOT)) for p in places if marker in p.read_text(errors="ignore")] == []


# --- a repository key kept only with its published fingerprint: the real commands, run here ---


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory):
    """A throwaway OpenPGP key made with the real gpg: (armored public key file, its fingerprint)."""
    home = tmp_path_factory.mktemp("gnupg")
    os.chmod(home, 0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch"]
    subprocess.run([*gpg, "--passphrase", "", "--quick-gen-key", "test <test@example.invalid>", "ed25519", "sign",
                    "1d"], check=True, capture_output=True, timeout=60)
    listing = subprocess.run([*gpg, "--with-colons", "--list-keys"], capture_output=True, text=True).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    key = home / "key.pub"
    key.write_text(subprocess.run([*gpg, "--armor", "--export"], capture_output=True, text=True).stdout)
    yield key, fingerprint
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True)


@pytest.mark.skipif(not (shutil.which("gpg") and shutil.which("curl")), reason="gpg and curl are needed")
@pytest.mark.parametrize("right", [True, False])
def test_repository_key_is_kept_only_with_its_published_fingerprint(signing_key, tmp_path, right):
    from deploy.driver import verified_key

    key, fingerprint = signing_key
    wanted = fingerprint if right else "EB693B3035CD5710E231E123A4B469963BF863CC"
    dest = tmp_path / "keyrings" / "nvidia-cuda.gpg"
    _r, ops = run_ops(lambda: verified_key(name="key", src=f"file://{key}", dest=str(dest), fingerprint=wanted,
                                           dearmor=True), {})
    (_name, commands), = ops
    script = " && ".join(f"{{ {c}; }}" for c in commands).replace("/tmp/TEMP", str(tmp_path / "download"))
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)
    if right:
        assert out.returncode == 0, out.stderr
        listed = subprocess.run(["gpg", "--with-colons", "--show-keys", str(dest)], capture_output=True, text=True)
        assert fingerprint in listed.stdout  # apt's Signed-By keyring, dearmored
    else:
        assert out.returncode == 1 and not dest.exists()
        assert f"has fingerprint {fingerprint}, not the published EB693B3035CD5710E231E123A4B469963BF863CC: " \
               "not trusted" in out.stderr
    assert not (tmp_path / "download").exists()

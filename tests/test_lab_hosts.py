"""Real end-to-end checks of lab.hosts: boots two hosts (one with ufw). Needs root."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lab.hosts import BRIDGE, CGROUP, CONTROLLER_IP, NETNS_PREFIX, NFT_TABLE, OUTSIDER_IP, Lab, _cgroup_roots

NET = CONTROLLER_IP.rsplit(".", 1)[0]

# boots lab hosts: e2e, so that `-m "not e2e"` never touches a lab another run is using
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(os.geteuid() != 0, reason="lab hosts need root")]

WHEELS = "/opt/wheels"


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("shared")


@pytest.fixture(scope="module")
def lab(shared_dir):
    lab = Lab()
    t0 = time.monotonic()
    lab.ensure_tools()
    lab.ensure_rootfs()
    print(f"\nensure_tools + ensure_rootfs: {time.monotonic() - t0:.1f} s")
    binds = [(WHEELS, WHEELS)] if Path(WHEELS).is_dir() else []
    binds.append(f"rw:{shared_dir}:/srv/shared")
    t0 = time.monotonic()
    lab.up(2, ufw_hosts=1, binds=binds)
    print(f"\nup(2, ufw_hosts=1): {time.monotonic() - t0:.1f} s")
    yield lab
    lab.down()


def uptime(host) -> float:
    res = host.ssh(["cat", "/proc/uptime"], check=True, timeout=30)
    return float(res.stdout.split()[0])


def test_inventory(lab, tmp_path):
    path = lab.write_inventory_json(tmp_path / "inv.json")
    data = json.loads(path.read_text())
    assert data == json.loads(lab.inventory_path.read_text())
    assert data["controller_ip"] == CONTROLLER_IP
    assert data["outsider_ip"] == OUTSIDER_IP
    assert [(h["name"], h["ip"], h["firewall"]) for h in data["hosts"]] == [
        ("lab1", f"{NET}.11", "nftables"),
        ("lab2", f"{NET}.12", "ufw"),
    ]
    assert all(Path(h["ssh_key"]).is_file() for h in data["hosts"])


def test_ssh_and_hostname(lab):
    for host in lab.hosts:
        res = host.ssh(["hostname"], check=True)
        assert res.stdout.strip() == host.name
    ids = {h.ssh(["cat", "/etc/machine-id"], check=True).stdout for h in lab.hosts}
    assert len(ids) == len(lab.hosts), "hosts share a machine-id"


def test_hosts_have_their_own_cgroups(lab):
    """Each guest's units live in its own cgroup tree, holding only its own processes."""
    for host in lab.hosts:
        netns = os.stat(f"/run/netns/{NETNS_PREFIX}{host.name}").st_ino
        for root in _cgroup_roots():
            procs = root / CGROUP / host.name / "payload/system.slice/ssh.service/cgroup.procs"
            pids = procs.read_text().split()
            assert pids, f"no sshd in {procs}"
            for pid in pids:
                assert os.stat(f"/proc/{pid}/ns/net").st_ino == netns, f"{pid} of another host in {procs}"


def test_system_running(lab):
    for host in lab.hosts:
        res = host.ssh(["systemctl", "is-system-running", "--wait"], timeout=120)
        state = res.stdout.strip()
        if state == "degraded":
            failed = host.ssh(["systemctl", "--failed", "--no-legend"]).stdout
            print(f"{host.name} degraded, failed units:\n{failed}")
        assert state in ("running", "degraded"), f"{host.name}: {state} {res.stderr}"
        assert host.ssh(["systemctl", "is-active", "ssh"]).stdout.strip() == "active"


def test_egress_https_to_pypi(lab):
    res = lab.hosts[0].ssh(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "https://pypi.org/simple/uv/"],
        timeout=60,
    )
    assert res.stdout.strip() == "200", res.stderr


def test_nft_inside(lab):
    for host in lab.hosts:
        res = host.ssh(["nft", "list", "ruleset"])
        assert res.returncode == 0, res.stderr


def test_ufw_host(lab):
    ufw_host, nft_host = lab.hosts[1], lab.hosts[0]
    assert "Status: active" in ufw_host.ssh(["ufw", "status"], check=True).stdout
    assert nft_host.ssh(["sh", "-c", "command -v ufw"]).returncode != 0


def test_binds(lab, shared_dir):
    host = lab.hosts[0]
    if Path(WHEELS).is_dir():
        assert host.ssh(["ls", WHEELS], check=True).stdout.split() == sorted(os.listdir(WHEELS))
        assert host.ssh(["touch", f"{WHEELS}/.probe"]).returncode != 0, "should be read-only"
    host.ssh(["sh", "-c", "echo hi > /srv/shared/probe"], check=True)
    assert (shared_dir / "probe").read_text() == "hi\n"


def test_outsider_reaches_hosts(lab):
    out = lab.outsider()
    host = lab.hosts[0]
    assert out.run(["ip", "-4", "-o", "addr", "show", "eth0"]).stdout.count(out.ip) == 1
    res = out.run(["ping", "-c", "1", "-W", "2", host.ip])
    assert res.returncode == 0, res.stdout + res.stderr
    res = out.run(host.ssh_argv() + ["hostname"])
    assert res.stdout.strip() == host.name, res.stderr


def test_reboot(lab):
    host = lab.hosts[0]
    before = uptime(host)
    if before < 5:  # keep the old and the new boot's uptimes well apart
        time.sleep(5 - before)
        before = uptime(host)
    t0 = time.monotonic()
    try:
        host.ssh(["systemctl", "reboot"], timeout=15)
    except subprocess.TimeoutExpired:
        pass
    new = None
    while time.monotonic() - t0 < 60:
        time.sleep(0.2)
        try:
            new = uptime(host) if host.ssh_ok() else None
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            new = None
        # the old boot would show before + elapsed; the new one at most elapsed + 1
        if new is not None and new < before + time.monotonic() - t0 - 2:
            break
    elapsed = time.monotonic() - t0
    print(f"\nreboot: ssh back after {elapsed:.1f} s, uptime {new} (was {before:.1f})")
    assert new is not None and new < before + elapsed - 2, "host did not come back"
    assert new < 60
    assert host.ssh(["hostname"]).stdout.strip() == host.name
    lab2 = Lab()  # a fresh Lab sees the same hosts through hosts.json
    assert [h.name for h in lab2.hosts] == [h.name for h in lab.hosts]
    assert all(row["running"] and row["ssh"] for row in lab2.status())


def test_down_cleans_everything(lab):
    # as after a crash: lab2's systemd-nspawn killed, its guest lives on without it
    _loops, nspawns = lab._lab_processes()
    os.kill(max(nspawns), signal.SIGKILL)
    t0 = time.monotonic()
    lab.down()
    print(f"\ndown: {time.monotonic() - t0:.1f} s")
    lab.down()  # idempotent
    assert not Path(f"/sys/class/net/{BRIDGE}").exists()
    netns = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    assert not [n for n in netns if n.startswith(NETNS_PREFIX)]
    assert lab._lab_processes() == ([], []), "boot loops or systemd-nspawn left behind"
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _is_nspawn(p, f"{lab.state_dir}/")]
    assert subprocess.run(["nft", "list", "table", "ip", NFT_TABLE], check=False, capture_output=True).returncode != 0
    assert f"{lab.state_dir}/" not in Path("/proc/self/mountinfo").read_text()
    assert not [root for root in _cgroup_roots() if (root / CGROUP).exists()]
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _in_lab_cgroup(p)]


def _in_lab_cgroup(proc: Path) -> bool:
    """A live process in one of the lab's cgroups (a guest's)."""
    try:
        return f"/{CGROUP}/" in (proc / "cgroup").read_text() and _is_alive(proc)
    except OSError:
        return False


def _is_alive(proc: Path) -> bool:
    return (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _is_nspawn(proc: Path, state_dir: str) -> bool:
    """A live (not zombie) systemd-nspawn process of this lab (other labs may run beside it)."""
    try:
        stat = (proc / "stat").read_text()
        if state_dir.encode() not in (proc / "cmdline").read_bytes():
            return False
    except OSError:
        return False
    comm, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1].split()[0]
    return comm == "systemd-nspawn" and state != "Z"

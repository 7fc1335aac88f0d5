"""Real disposable Debian bookworm hosts for end-to-end tests and demos.

Each host is a copy-on-write overlayfs of one cached debootstrap rootfs, with its
own network namespace on the bridge ``vllmlab0`` and real systemd booted inside
by ``systemd-nspawn -b``.  Hosts are reached over plain SSH with a generated key.

    python -m lab.hosts up 2 --ufw-hosts 1 --bind /opt/wheels
    python -m lab.hosts status
    python -m lab.hosts down

Needs root.  Several labs can run on one machine side by side: ``VLLM_LAB_ID=N`` (0-9, default
0) gives the bridge, subnet (10.123+N.0.0/24), namespaces, nft table, cgroups and state folder
names of their own; the rootfs cache is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

SUITE = "bookworm"
# several labs side by side on one machine: VLLM_LAB_ID=N gives each its own names and subnet
LAB_ID = int(os.environ.get("VLLM_LAB_ID", "0"))
if not 0 <= LAB_ID <= 9:
    raise SystemExit(f"VLLM_LAB_ID={LAB_ID} is not accepted: a number from 0 to 9")
_SUFFIX = str(LAB_ID) if LAB_ID else ""
DEFAULT_STATE_DIR = f"/var/tmp/vllm-lab{_SUFFIX}"
DEFAULT_CACHE_DIR = "/var/cache/vllm-lab"
ROOTFS_VERSION = "vllm-lab rootfs v3"  # bump to force a rebuild of the cache
MARKER = "etc/vllm-lab-rootfs"  # written last, inside the rootfs

BRIDGE = f"vllmlab{LAB_ID}"
CONTROLLER_IP = f"10.{123 + LAB_ID}.0.1"
OUTSIDER_IP = f"10.{123 + LAB_ID}.0.200"
FIRST_HOST_OCTET = 11
MAX_HOSTS = 100
NETNS_PREFIX = f"vllmlab{_SUFFIX}-"  # namespaces: vllmlab-lab1, vllmlab-outsider
VETH_PREFIX = f"vlab{_SUFFIX}-"  # root-side veth ends: vlab-lab1, vlab-outsider
NFT_TABLE = f"vllmlab{_SUFFIX}"
CGROUP = f"vllm-lab{_SUFFIX}"  # below each cgroup root: one cgroup per host
OUTSIDER = "outsider"

# netbase: /etc/hosts, /etc/services, /etc/protocols (minbase lacks them; real servers have them)
INCLUDE = (
    "systemd,systemd-sysv,dbus,openssh-server,python3,python3-venv,sudo,"
    "iproute2,nftables,ca-certificates,curl,procps,netbase"
)
# binary -> Debian package, installed on this machine by ensure_tools()
TOOLS = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "nft": "nftables",
    "ip": "iproute2",
    "ping": "iputils-ping",
}

SSHD_DROPIN = """\
# vllm-lab: key-only root login
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""

PIP_CONF = "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"

UFW_SETUP = "ufw default deny incoming && ufw allow 22/tcp && ufw --force enable"

BOOT_SCRIPT = """\
#!/bin/bash
# vllm-lab boot loop for {name}: every boot gets a fresh uptime (time namespace);
# nspawn exits 133 when the guest reboots, so start it again.
# Own cgroups first: nspawn --keep-unit makes supervisor/ and payload/ below the
# current cgroup, and two guests sharing one payload/ would share their units' cgroups.
for cg in {cgroups}; do
    mkdir -p "$cg" && echo $$ > "$cg/cgroup.procs" || exit 1
done
while true; do
    up=$(cut -d. -f1 /proc/uptime)
    echo "vllm-lab: booting {name} $(date -Is)"
    unshare --time --boottime -"$up" {nspawn}
    rc=$?
    echo "vllm-lab: systemd-nspawn exited with $rc"
    # 133: the guest rebooted; the stop file: down() is stopping this host
    [ "$rc" -eq 133 ] && [ ! -e {stop} ] || exit "$rc"
done
"""


def log(msg: str) -> None:
    """Progress message on stderr."""
    print(f"[lab] {msg}", file=sys.stderr, flush=True)


def sh(*cmd: str, check: bool = True, quiet: bool = False, **kw) -> subprocess.CompletedProcess:
    """Run a command; raise with its output on failure."""
    res = subprocess.run(list(cmd), check=False, capture_output=True, text=True, **kw)
    if check and res.returncode != 0:
        raise RuntimeError(f"command failed (rc {res.returncode}): {shlex.join(cmd)}\n{res.stdout}{res.stderr}")
    if not quiet and res.returncode != 0:
        log(f"ignored rc {res.returncode}: {shlex.join(cmd)}: {res.stderr.strip()}")
    return res


def apt_mirrors() -> tuple[str, str]:
    """(debian mirror, security mirror) as configured in this machine's apt sources."""
    mirror, security = "http://deb.debian.org/debian", "http://deb.debian.org/debian-security"
    files = [Path("/etc/apt/sources.list")]
    src_dir = Path("/etc/apt/sources.list.d")
    if src_dir.is_dir():
        files += sorted(p for p in src_dir.iterdir() if p.suffix in (".list", ".sources"))
    entries: list[tuple[list[str], list[str]]] = []  # (uris, suites)
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in text.split("\n\n"):
                fields: dict[str, list[str]] = {}
                for line in stanza.splitlines():
                    if ":" in line and not line.startswith(("#", " ")):
                        key, value = line.split(":", 1)
                        fields[key.strip().lower()] = value.split()
                if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
                    entries.append((fields.get("uris", []), fields.get("suites", [])))
        else:
            for line in text.splitlines():
                words = [w for w in line.split("#", 1)[0].split() if not w.startswith("[")]
                if len(words) >= 3 and words[0] == "deb":
                    entries.append(([words[1]], [words[2]]))
    for uris, suites in entries:
        for uri in uris:
            if SUITE in suites:
                mirror = uri.rstrip("/")
            if f"{SUITE}-security" in suites:
                security = uri.rstrip("/")
    return mirror, security


def parse_bind(spec) -> tuple[str, str, bool]:
    """'SRC', 'SRC:DST', 'rw:SRC:DST', ('SRC', 'DST') or ('SRC', 'DST', 'rw') -> (src, dst, rw)."""
    if isinstance(spec, str):
        rw = False
        for prefix, mode in (("rw:", True), ("ro:", False)):
            if spec.startswith(prefix):
                spec, rw = spec[len(prefix) :], mode
        src, _, dst = spec.partition(":")
        parts = (src, dst or src, "rw" if rw else "ro")
    else:
        parts = tuple(spec) if len(spec) == 3 else (spec[0], spec[1], "ro")
    src, dst, mode = str(parts[0]), str(parts[1]), parts[2]
    if mode not in ("ro", "rw"):
        raise ValueError(f"bind mode must be 'ro' or 'rw': {spec!r}")
    if not os.path.isabs(src) or not os.path.isabs(dst):
        raise ValueError(f"bind paths must be absolute: {spec!r}")
    return os.path.abspath(src), dst, mode == "rw"


def _processes():
    """Yield (pid, argv) for every process."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            yield int(entry), [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


def _alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below path, deepest first."""
    prefix = str(path).rstrip("/")
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def _unmount_all(path: Path) -> None:
    for point in _mounts_under(path):
        if sh("umount", point, check=False, quiet=True).returncode != 0:
            sh("umount", "-l", point, check=False)


def _remove_tree(path: Path) -> None:
    """Unmount anything below path, then delete it without crossing filesystems."""
    if path.exists() or path.is_symlink():
        _unmount_all(path)
        sh("rm", "-rf", "--one-file-system", str(path))


def _cgroup_roots() -> list[Path]:
    """Mount points of the cgroup2 hierarchy and of the v1 name=systemd one (hybrid)."""
    roots = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        fstype, _source, options = right.split()[:3]
        if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in options.split(",")):
            roots.append(Path(left.split()[4]))
    return roots


def _cgroup_pids(leaf: str = "") -> list[int]:
    """Pids in the lab's cgroups (only in cgroups named leaf, if given)."""
    pids = set()
    for root in _cgroup_roots():
        for dirpath, _dirs, files in os.walk(root / CGROUP):
            if "cgroup.procs" in files and (not leaf or os.path.basename(dirpath) == leaf):
                pids.update(int(p) for p in _read(Path(dirpath) / "cgroup.procs").split())
    return sorted(pids)


def _remove_cgroups(top: Path) -> None:
    """rmdir a cgroup tree, deepest first (only empty cgroups go)."""
    if not top.is_dir():
        return
    for dirpath, _dirs, _files in os.walk(top, topdown=False):
        try:
            os.rmdir(dirpath)
        except OSError as err:
            log(f"cannot remove cgroup {dirpath}: {err}")


def _read(path: Path) -> str:
    """A file's text, or '' if it is missing."""
    try:
        return path.read_text()
    except OSError:
        return ""


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Host:
    """One booted lab host, reached over SSH as root."""

    name: str
    ip: str
    ssh_key: str
    firewall: str = "nftables"  # or "ufw"
    log_path: str = ""

    def ssh_argv(self, connect_timeout: int = 5) -> list[str]:
        """The ssh command line (without the remote command) for this host."""
        return [
            "ssh", "-i", self.ssh_key,
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            "-o", f"ConnectTimeout={connect_timeout}",
            f"root@{self.ip}",
        ]  # fmt: skip

    def ssh(
        self, cmd, *, check: bool = False, timeout: float = 300, input: str | None = None
    ) -> subprocess.CompletedProcess:
        """Run cmd (list, or a shell string) on the host; capture text output."""
        remote = cmd if isinstance(cmd, str) else shlex.join(cmd)
        return subprocess.run(
            self.ssh_argv() + [remote], capture_output=True, text=True, timeout=timeout, check=check, input=input
        )

    def ssh_ok(self) -> bool:
        """True if the host answers ssh right now."""
        try:
            res = subprocess.run(
                self.ssh_argv(connect_timeout=2) + ["true"], check=False, capture_output=True, timeout=10
            )
        except subprocess.TimeoutExpired:
            return False
        return res.returncode == 0

    def wait_ssh(self, timeout: float = 60) -> None:
        """Wait until the host answers ssh; TimeoutError with the boot log tail if not."""
        deadline = time.monotonic() + timeout
        pid_file = Path(self.log_path).parent / "wrapper.pid"
        while not self.ssh_ok():
            pid = _read(pid_file).strip()
            if pid and not _alive(int(pid)):
                raise RuntimeError(
                    f"{self.name}: its boot loop ended; tail of {self.log_path}:\n{_tail(Path(self.log_path))}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name} ({self.ip}) did not answer ssh within {timeout:.0f} s; "
                    f"tail of {self.log_path}:\n{_tail(Path(self.log_path))}"
                )
            time.sleep(0.3)

    def inventory(self) -> dict:
        return {"name": self.name, "ip": self.ip, "ssh_key": self.ssh_key, "firewall": self.firewall}


@dataclass
class Outsider:
    """A network namespace on the lab bridge that is not a host."""

    ip: str = OUTSIDER_IP
    netns: str = NETNS_PREFIX + OUTSIDER

    def run(self, cmd: list[str], *, check: bool = False, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        """Run cmd (on this machine's filesystem) inside the outsider's namespace."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(["ip", "netns", "exec", self.netns, *cmd], check=check, timeout=timeout, **kw)


@dataclass
class Lab:
    """The set of lab hosts; state in state_dir, rootfs and key cached in cache_dir."""

    state_dir: Path = field(default_factory=lambda: Path(os.environ.get("VLLM_LAB_DIR", DEFAULT_STATE_DIR)))
    cache_dir: Path = field(default_factory=lambda: Path(os.environ.get("VLLM_LAB_CACHE", DEFAULT_CACHE_DIR)))
    hosts: list[Host] = field(default_factory=list)

    def __post_init__(self):
        self.state_dir = Path(self.state_dir).absolute()
        self.cache_dir = Path(self.cache_dir).absolute()
        if not self.hosts and self.inventory_path.is_file():
            data = json.loads(self.inventory_path.read_text())
            self.hosts = [
                Host(**h, log_path=str(self._host_dir(h["name"]) / "nspawn.log")) for h in data.get("hosts", [])
            ]

    # ---- paths -------------------------------------------------------------
    @property
    def key_path(self) -> Path:
        return self.cache_dir / "id_ed25519"

    @property
    def rootfs(self) -> Path:
        return self.cache_dir / f"rootfs-{SUITE}"

    @property
    def ufw_layer(self) -> Path:
        return self.cache_dir / f"layer-{SUITE}-ufw"

    @property
    def inventory_path(self) -> Path:
        return self.state_dir / "hosts.json"

    def _host_dir(self, name: str) -> Path:
        return self.state_dir / "hosts" / name

    # ---- machine preparation ---------------------------------------------
    def ensure_tools(self) -> None:
        """apt-get install the tools this harness runs, if any is missing."""
        missing = sorted({pkg for tool, pkg in TOOLS.items() if not shutil.which(tool)})
        if not missing:
            return
        log(f"installing {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        wait = ("-o", "DPkg::Lock::Timeout=600")  # another lab's harness may be installing at the same moment
        sh("apt-get", *wait, "update", env=env)
        sh("apt-get", *wait, "install", "-y", "--no-install-recommends", *missing, env=env)

    @contextlib.contextmanager
    def _cache_lock(self):
        """The shared cache (key, rootfs, ufw layer) is made by one lab at a time: labs side by side
        (VLLM_LAB_ID) on a fresh machine would otherwise run two debootstraps into one folder (seen:
        "Couldn't download .../Packages" while another lab's debootstrap emptied it). Not
        re-entrant: under it, call the unlocked ``_ensure_*``."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with open(self.cache_dir / ".lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log(f"waiting for another lab to finish preparing {self.cache_dir}")
                fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def ensure_key(self) -> Path:
        """Generate the lab's ed25519 key pair once."""
        with self._cache_lock():
            return self._ensure_key()

    def _ensure_key(self) -> Path:
        if not self.key_path.is_file():
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            self.key_path.with_suffix(".pub").unlink(missing_ok=True)
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vllm-lab", "-f", str(self.key_path))
        os.chmod(self.key_path, 0o600)
        return self.key_path

    def ensure_rootfs(self) -> Path:
        """Build the bookworm rootfs once (into a temp dir, renamed when complete)."""
        with self._cache_lock():
            return self._ensure_rootfs()

    def _ensure_rootfs(self) -> Path:
        self._ensure_key()
        if _read(self.rootfs / MARKER).split("\n")[0] != ROOTFS_VERSION:
            self._refuse_if_in_use(self.rootfs)
            self._build_rootfs()
        self._authorize_key(self.rootfs)
        return self.rootfs

    def ensure_ufw_layer(self) -> Path:
        """Build once an overlay layer on top of the rootfs with ufw installed."""
        with self._cache_lock():
            self._ensure_rootfs()
            # the layer's marker holds the base's marker: a rebuilt base means a rebuilt layer
            if _read(self.ufw_layer / MARKER) != "ufw on " + _read(self.rootfs / MARKER):
                self._refuse_if_in_use(self.ufw_layer)
                self._build_ufw_layer()
            return self.ufw_layer

    def _refuse_if_in_use(self, path: Path) -> None:
        """Raise if a mounted overlay uses path as a lower layer."""
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fstype, _source, options = line.split(" - ", 1)[1].split()[:3]
            for opt in options.split(",") if fstype == "overlay" else ():
                if opt.startswith("lowerdir=") and str(path) in opt[9:].split(":"):
                    raise RuntimeError(f"{path} must be rebuilt but hosts use it: down() first")

    def _build_rootfs(self) -> None:
        mirror, security = apt_mirrors()
        tmp = self.rootfs.with_name(self.rootfs.name + ".tmp")
        _remove_tree(tmp)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        log(f"debootstrap {SUITE} from {mirror} into {tmp} (about a minute)")
        t0 = time.monotonic()
        sh("debootstrap", "--variant=minbase", f"--include={INCLUDE}", SUITE, str(tmp), mirror)
        log(f"debootstrap done in {time.monotonic() - t0:.0f} s; configuring")
        etc = tmp / "etc"
        (etc / "machine-id").write_text("")  # each host gets its own in up()
        dbus_id = tmp / "var/lib/dbus/machine-id"  # dbus made one: all hosts would share it
        dbus_id.unlink(missing_ok=True)
        dbus_id.symlink_to("/etc/machine-id")
        (etc / "apt/sources.list").write_text(
            f"deb {mirror} {SUITE} main\ndeb {mirror} {SUITE}-updates main\ndeb {security} {SUITE}-security main\n"
        )
        (etc / "pip.conf").write_text(PIP_CONF)
        (etc / "ssh/sshd_config.d/vllm-lab.conf").write_text(SSHD_DROPIN)
        pam = etc / "pam.d/sshd"
        pam.write_text(
            pam.read_text().replace(
                "session    required     pam_loginuid.so", "session    optional     pam_loginuid.so"
            )
        )
        if "required     pam_loginuid" in pam.read_text():
            raise RuntimeError("could not make pam_loginuid optional in /etc/pam.d/sshd")
        cas = tmp / "usr/local/share/ca-certificates"
        cas.mkdir(parents=True, exist_ok=True)
        for crt in Path("/usr/local/share/ca-certificates").glob("*.crt"):
            shutil.copy(crt, cas / crt.name)
        sh("chroot", str(tmp), "update-ca-certificates")
        sh("chroot", str(tmp), "systemctl", "enable", "ssh.service")
        sh("chroot", str(tmp), "systemctl", "mask", "getty@tty1.service", "serial-getty@ttyS0.service")
        sh("chroot", str(tmp), "apt-get", "clean")
        _unmount_all(tmp)
        (tmp / MARKER).write_text(f"{ROOTFS_VERSION}\nbuilt {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        old = self.rootfs.with_name(self.rootfs.name + ".old")
        if self.rootfs.exists():
            self.rootfs.rename(old)
        tmp.rename(self.rootfs)
        _remove_tree(old)
        log(f"rootfs ready in {time.monotonic() - t0:.0f} s: {self.rootfs}")

    def _authorize_key(self, root: Path) -> None:
        """Make root's authorized_keys in root hold exactly the lab key."""
        pub = self.key_path.with_suffix(".pub").read_text()
        ssh_dir = root / "root/.ssh"
        keys = ssh_dir / "authorized_keys"
        if keys.is_file() and keys.read_text() == pub:
            return
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        keys.write_text(pub)
        os.chmod(ssh_dir, 0o700)
        os.chmod(keys, 0o600)

    def _build_ufw_layer(self) -> None:
        t0 = time.monotonic()
        layer = self.ufw_layer
        tmp, work, mnt = (layer.with_name(layer.name + s) for s in (".tmp", ".work", ".mnt"))
        for path in (mnt, tmp, work):
            _remove_tree(path)
            path.mkdir(parents=True)
        log("building the ufw layer (apt-get install ufw in a chroot)")
        sh("mount", "-t", "overlay", "overlay", "-o", f"lowerdir={self.rootfs},upperdir={tmp},workdir={work}", str(mnt))
        try:
            sh("mount", "-t", "proc", "proc", str(mnt / "proc"))
            shutil.copy("/etc/resolv.conf", mnt / "etc/resolv.conf")
            policy = mnt / "usr/sbin/policy-rc.d"  # keep services from starting in the chroot
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            sh("chroot", str(mnt), "apt-get", "update", env=env)
            sh("chroot", str(mnt), "apt-get", "install", "-y", "--no-install-recommends", "ufw", env=env)
            sh("chroot", str(mnt), "apt-get", "clean")
            policy.unlink()
            for lst in (mnt / "var/lib/apt/lists").iterdir():
                if lst.is_file() and lst.name != "lock":
                    lst.unlink()
            (mnt / MARKER).write_text("ufw on " + _read(self.rootfs / MARKER))
        finally:
            _unmount_all(mnt)
        _remove_tree(self.ufw_layer)
        tmp.rename(self.ufw_layer)
        _remove_tree(work)
        _remove_tree(mnt)
        log(f"ufw layer ready in {time.monotonic() - t0:.0f} s: {self.ufw_layer}")

    # ---- network -----------------------------------------------------------
    def _net_up(self) -> None:
        """Bridge with the controller address, IP forwarding and masquerade NAT."""
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        if not Path(f"/sys/class/net/{BRIDGE}").exists():
            sh("ip", "link", "add", BRIDGE, "type", "bridge")
            sh("ip", "addr", "add", f"{CONTROLLER_IP}/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        subnet = CONTROLLER_IP.rsplit(".", 1)[0] + ".0/24"
        ruleset = f"""
add table ip {NFT_TABLE}
delete table ip {NFT_TABLE}
table ip {NFT_TABLE} {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {subnet} oifname != "{BRIDGE}" masquerade
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname != "{BRIDGE}" oifname "{BRIDGE}" counter
    }}
}}
"""
        sh("nft", "-f", "-", input=ruleset)

    def outside_bytes(self) -> int:
        """Bytes that came from outside this machine to the lab hosts (through the NAT) since the lab's
        network came up: the counter of the forward chain."""
        out = sh("nft", "-j", "list", "chain", "ip", NFT_TABLE, "forward", check=False, quiet=True)
        if out.returncode != 0:
            return 0
        for item in json.loads(out.stdout).get("nftables", []):
            for expr in item.get("rule", {}).get("expr", []):
                if "counter" in expr:
                    return int(expr["counter"]["bytes"])
        return 0

    def _netns_up(self, name: str, ip: str) -> str:
        """Namespace NETNS_PREFIX+name with eth0 (ip/24) on the bridge; returns its name."""
        netns, veth = NETNS_PREFIX + name, VETH_PREFIX + name
        sh("ip", "netns", "add", netns)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        sh("ip", "link", "set", veth, "master", BRIDGE, "up")
        sh("ip", "-n", netns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", netns, "link", "set", "lo", "up")
        sh("ip", "-n", netns, "link", "set", "eth0", "up")
        sh("ip", "-n", netns, "route", "add", "default", "via", CONTROLLER_IP)
        return netns

    def outsider(self) -> Outsider:
        """The outsider namespace (created if needed): on the bridge, not a host."""
        out = Outsider()
        if not Path(f"/run/netns/{out.netns}").exists():
            self._net_up()
            self._netns_up(OUTSIDER, out.ip)
        return out

    # ---- hosts -------------------------------------------------------------
    def up(self, n: int, ufw_hosts: int = 0, binds=(), boot_timeout: float = 90) -> list[Host]:
        """Boot n fresh hosts lab1..labN (the last ufw_hosts with ufw); return them.

        binds: 'SRC[:DST]' / 'rw:SRC:DST' strings or (src, dst[, 'ro'|'rw']) tuples;
        read-only unless marked rw.
        """
        if not 1 <= n <= MAX_HOSTS or not 0 <= ufw_hosts <= n:
            raise ValueError(f"need 1 <= n <= {MAX_HOSTS} and 0 <= ufw_hosts <= n")
        bind_list = [parse_bind(b) for b in binds]
        for src, _dst, rw in bind_list:
            if rw:
                os.makedirs(src, exist_ok=True)
            elif not os.path.exists(src):
                raise FileNotFoundError(f"bind source does not exist: {src}")
        self.down()
        self.ensure_tools()
        self.ensure_rootfs()
        if ufw_hosts:
            self.ensure_ufw_layer()
        self._net_up()
        self.outsider()
        key = str(self.ensure_key())
        net_prefix = CONTROLLER_IP.rsplit(".", 1)[0]
        self.hosts = []
        for i in range(n):
            name = f"lab{i + 1}"
            firewall = "ufw" if i >= n - ufw_hosts else "nftables"
            host = Host(
                name, f"{net_prefix}.{FIRST_HOST_OCTET + i}", key, firewall, str(self._host_dir(name) / "nspawn.log")
            )
            self._start_host(host, bind_list)
            self.hosts.append(host)
        self.write_inventory_json(self.inventory_path)
        deadline = time.monotonic() + boot_timeout
        for host in self.hosts:
            host.wait_ssh(max(1.0, deadline - time.monotonic()))
        for host in self.hosts:
            if host.firewall == "ufw":
                res = host.ssh(UFW_SETUP)
                if res.returncode != 0:
                    raise RuntimeError(f"ufw setup on {host.name} failed:\n{res.stdout}{res.stderr}")
        return self.hosts

    def _start_host(self, host: Host, binds: list[tuple[str, str, bool]]) -> None:
        hdir = self._host_dir(host.name)
        upper, work, merged = hdir / "upper", hdir / "work", hdir / "merged"
        for path in (upper / "etc", work, merged):
            path.mkdir(parents=True, exist_ok=True)
        (upper / "etc/hostname").write_text(host.name + "\n")
        (upper / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
        base_hosts = self.rootfs / "etc/hosts"
        hosts_file = base_hosts.read_text() if base_hosts.is_file() else "127.0.0.1\tlocalhost\n"
        (upper / "etc/hosts").write_text(hosts_file + f"127.0.1.1\t{host.name}\n")
        lower = str(self.rootfs)
        if host.firewall == "ufw":
            lower = f"{self.ufw_layer}:{lower}"
        sh("mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged))
        netns = self._netns_up(host.name, host.ip)
        nspawn = [
            "systemd-nspawn", "-b", "-D", str(merged), "--register=no", "--keep-unit",
            f"--network-namespace-path=/run/netns/{netns}", "--capability=CAP_NET_ADMIN",
            "--resolv-conf=copy-host", "--timezone=off", "--console=read-only",
            f"--machine={host.name}{_SUFFIX and '-l' + _SUFFIX}",
        ]  # fmt: skip
        for src, dst, rw in binds:
            nspawn.append(f"--bind={src}:{dst}" if rw else f"--bind-ro={src}:{dst}")
        script = hdir / "boot.sh"
        cgroups = [root / CGROUP / host.name for root in _cgroup_roots()]
        script.write_text(
            BOOT_SCRIPT.format(
                name=host.name,
                nspawn=shlex.join(nspawn),
                stop=shlex.quote(str(hdir / "stop")),
                cgroups=shlex.join(map(str, cgroups)),
            )
        )
        with open(host.log_path, "ab") as out:
            proc = subprocess.Popen(
                ["bash", str(script)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (hdir / "wrapper.pid").write_text(f"{proc.pid}\n")

    def kill(self, name: str) -> None:
        """Cut one host's power: SIGKILL every process of it (boot loop, nspawn, its systemd and
        services); its disk (the overlay) stays as it was, for ``start_again``."""
        for root in _cgroup_roots():
            for dirpath, _dirs, files in os.walk(root / CGROUP / name):
                if "cgroup.procs" in files:
                    for pid in _read(Path(dirpath) / "cgroup.procs").split():
                        _signal(int(pid), signal.SIGKILL)

    def pull_cable(self, name: str, plugged: bool = False) -> None:
        """Unplug one host's network cable (its bridge port goes down; nothing is closed: no FIN, no RST,
        as when a machine loses power or its link), or plug it back (``plugged=True``)."""
        sh("ip", "link", "set", VETH_PREFIX + name, "up" if plugged else "down")

    def start_again(self, name: str, boot_timeout: float = 90) -> Host:
        """Boot a host that ``kill`` stopped, from its disk as it was, and wait for SSH."""
        host = next(h for h in self.hosts if h.name == name)
        hdir = self._host_dir(name)
        with open(host.log_path, "ab") as out:
            proc = subprocess.Popen(["bash", str(hdir / "boot.sh")], stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        (hdir / "wrapper.pid").write_text(f"{proc.pid}\n")
        host.wait_ssh(boot_timeout)
        return host

    def _lab_processes(self) -> tuple[list[int], list[int]]:
        """(boot-loop pids, nspawn pids) that belong to this lab's state dir."""
        hosts_dir = str(self.state_dir / "hosts") + "/"
        loops, nspawns = [], []
        for pid, argv in _processes():
            if len(argv) >= 2 and argv[0].endswith("bash") and argv[1].startswith(hosts_dir):
                loops.append(pid)
            elif argv and os.path.basename(argv[0]) == "systemd-nspawn" and any(a.startswith(hosts_dir) for a in argv):
                nspawns.append(pid)
        return loops, nspawns

    def write_inventory_json(self, path) -> Path:
        """Write the hosts, controller and outsider addresses as JSON to path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "hosts": [h.inventory() for h in self.hosts],
            "controller_ip": CONTROLLER_IP,
            "outsider_ip": OUTSIDER_IP,
        }
        path.write_text(json.dumps(data, indent=2) + "\n")
        return path

    def down(self, timeout: float = 20) -> None:
        """Stop every host and remove overlays, namespaces, bridge and NAT; idempotent.

        Finds hosts by their processes and cgroups, so it also cleans up after a
        crashed run (even guests whose systemd-nspawn was killed: they live on).
        """
        loops, nspawns = self._lab_processes()
        hosts_dir = self.state_dir / "hosts"
        if hosts_dir.is_dir():  # tell the boot loops not to boot again
            for hdir in hosts_dir.iterdir():
                (hdir / "stop").touch()
        for pid in nspawns:  # clean poweroff of the guest, the loop then exits
            _signal(pid, signal.SIGTERM)
        for pid in _cgroup_pids("init.scope"):  # guests whose nspawn is gone: poweroff
            _signal(pid, signal.SIGRTMIN + 4)
        deadline = time.monotonic() + timeout
        while _wait_gone(loops + nspawns + _cgroup_pids()) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [p for p in loops + nspawns + _cgroup_pids() if _alive(p)]
        if left:
            log(f"processes {left} still there after {timeout:.0f} s; killing them")
        for _ in range(50):
            for pid in loops + nspawns + _cgroup_pids():
                _signal(pid, signal.SIGKILL)
            if not _wait_gone(loops + nspawns + _cgroup_pids()):
                break
            time.sleep(0.1)
        _remove_tree(hosts_dir)
        for root in _cgroup_roots():
            _remove_cgroups(root / CGROUP)
        netns_dir = Path("/run/netns")
        if netns_dir.is_dir():
            for ns in netns_dir.iterdir():
                if ns.name.startswith(NETNS_PREFIX):
                    sh("ip", "netns", "del", ns.name, check=False)
        for link in Path("/sys/class/net").iterdir():
            if link.name.startswith(VETH_PREFIX) or link.name == BRIDGE:
                sh("ip", "link", "del", link.name, check=False, quiet=True)
        if shutil.which("nft"):
            sh("nft", "delete", "table", "ip", NFT_TABLE, check=False, quiet=True)
        self.inventory_path.unlink(missing_ok=True)
        self.hosts = []

    def status(self) -> list[dict]:
        """One dict per known host: name, ip, firewall, running, ssh."""
        _loops, nspawns = self._lab_processes()
        running = set()
        for pid in nspawns:
            for arg in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                if arg.startswith(b"--machine="):
                    running.add(arg.decode()[len("--machine=") :].split("-l")[0])
        return [
            dict(h.inventory(), running=h.name in running, ssh=h.name in running and h.ssh_ok()) for h in self.hosts
        ]


def _wait_gone(pids: list[int]) -> bool:
    """Reap those of pids that are our children; True while any is still alive."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    return any(_alive(p) for p in pids)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.hosts", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="boot N fresh hosts (downs old ones first)")
    up.add_argument("n", type=int)
    up.add_argument("--ufw-hosts", type=int, default=0, help="the last K hosts use ufw")
    up.add_argument(
        "--bind",
        action="append",
        default=[],
        metavar="[rw:]SRC[:DST]",
        help="bind-mount into every host, read-only unless rw:",
    )
    sub.add_parser("down", help="stop all hosts and remove everything")
    sub.add_parser("status", help="show hosts")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("must run as root")
    lab = Lab()
    if args.cmd == "up":
        t0 = time.monotonic()
        hosts = lab.up(args.n, ufw_hosts=args.ufw_hosts, binds=args.bind)
        for h in hosts:
            print(f"{h.name}\t{h.ip}\t{h.firewall}")
        print(
            f"{len(hosts)} hosts up in {time.monotonic() - t0:.1f} s; "
            f"inventory {lab.inventory_path}; ssh key {lab.key_path}"
        )
    elif args.cmd == "down":
        lab.down()
        print("down")
    else:
        rows = lab.status()
        if not rows:
            print("no hosts")
        for row in rows:
            print(
                f"{row['name']}\t{row['ip']}\t{row['firewall']}\t"
                f"{'running' if row['running'] else 'stopped'}\t"
                f"{'ssh ok' if row['ssh'] else 'no ssh'}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""WSL: WSL1 refused; on WSL2 systemd on, the Windows driver's libraries visible, no Linux driver, and
the Windows side of the port mapping written as a PowerShell script.

What can be known from inside WSL2, and how (``WslFacts``): the Windows driver's ``libcuda.so*``
under /usr/lib/wsl/lib; /etc/wsl.conf; PID 1 (``host_facts.RuntimeFacts``); the networking mode from
``wslinfo --networking-mode`` (WSL 2.x prints nat, mirrored, ...; older WSL has no wslinfo, and
.wslconfig lives in the Windows user's profile, which the distribution cannot reliably name), so
the generated script asks Windows for the mode itself when it runs; the distribution's current
address (``hostname -I``), which changes at every WSL restart in NAT mode, so the script looks it
up itself each time (``wsl.exe hostname -I``) instead of carrying today's address.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from io import StringIO

from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import files

from deploy import platform_data as pd
from deploy.host_facts import JsonFact, Platform
from deploy.render import render
from deploy.settings import Settings
from deploy.stop import stop_host

# The first line of the /etc/wsl.conf we write: the other lines stay the user's own.
WSL_CONF_HEADER = "# [boot] systemd=true is kept by the gpt-oss vLLM deploy; every other line is yours."


@dataclass
class WslHost(JsonFact):
    libcuda: list[str] = field(default_factory=list)  # /usr/lib/wsl/lib/libcuda.so* present
    conf_lines: list[str] | None = None  # /etc/wsl.conf, None when absent
    networking_mode: str | None = None  # wslinfo --networking-mode, None when unavailable
    windows_public: bool = False  # /mnt/c/Users/Public is there (C: mounted)
    addresses: list[str] = field(default_factory=list)  # hostname -I
    distro: str = ""  # $WSL_DISTRO_NAME (empty over SSH)
    gateway: str | None = None  # default route: the Windows host in NAT mode


def parse_wsl_host(output: list[str]) -> WslHost:
    w = WslHost()
    for line in output:
        tag, _, rest = line.partition(": ")
        if tag == "LIBCUDA" and rest.strip():
            w.libcuda.append(rest.strip())
        elif tag == "CONF" or line == "CONF:":
            w.conf_lines = (w.conf_lines or []) + [rest]
        elif tag == "CONFFILE":
            w.conf_lines = w.conf_lines or []
        elif tag == "NETMODE" and rest.strip():
            w.networking_mode = rest.strip().lower()
        elif tag == "WINPUBLIC":
            w.windows_public = True
        elif tag == "ADDR":
            w.addresses = rest.split()
        elif tag == "DISTRO":
            w.distro = rest.strip()
        elif tag == "GATEWAY" and rest.strip():
            w.gateway = rest.strip()
    return w


class WslFacts(FactBase):
    """The Windows driver's libcuda, /etc/wsl.conf, networking mode, C: and the address of a WSL host.

    Asked only on WSL2 hosts; one round trip for seven small reads pyinfra has no facts for (seven
    facts would be seven round trips to a machine that is often a laptop on Wi-Fi)."""

    def command(self) -> str:
        return (
            f"ls -1 {pd.WSL_LIB_DIR}/libcuda.so* 2>/dev/null | sed 's/^/LIBCUDA: /'; "
            f"if [ -r {pd.WSL_CONF} ]; then echo 'CONFFILE: yes'; sed 's/^/CONF: /' {pd.WSL_CONF}; fi; "
            "m=$(wslinfo --networking-mode 2>/dev/null) && echo \"NETMODE: $m\"; "
            f"[ -d {pd.WINDOWS_PUBLIC_DIR} ] && echo 'WINPUBLIC: yes'; "
            "echo \"ADDR: $(hostname -I 2>/dev/null)\"; echo \"DISTRO: $WSL_DISTRO_NAME\"; "
            "ip -4 route show default 2>/dev/null | awk '{print \"GATEWAY: \" $3; exit}'; true"
        )

    def process(self, output) -> WslHost:
        return parse_wsl_host(list(output))


# --- planning (pure) ----------------------------------------------------------------------


def wsl_conf_text(lines: list[str] | None) -> str:
    """/etc/wsl.conf with ``[boot] systemd=true``; every other line kept as it was."""
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in lines or []:
        header = re.match(r"^\s*\[([^\]]+)\]\s*$", line)
        if header:
            sections.append((header.group(1).strip(), []))
        elif line.strip() != WSL_CONF_HEADER:
            sections[-1][1].append(line)
    boot = next((body for name, body in sections if name and name.lower() == "boot"), None)
    if boot is None:
        if sections[-1][1] and sections[-1][1][-1].strip():
            sections[-1][1].append("")
        sections.append(("boot", ["systemd=true"]))
    else:
        keys = [i for i, line in enumerate(boot) if re.match(r"^\s*systemd\s*=", line)]
        if keys:
            if boot[keys[0]].split("=", 1)[1].strip().lower() != "true":
                boot[keys[0]] = "systemd=true"
        else:
            end = len(boot)
            while end and not boot[end - 1].strip():
                end -= 1
            boot.insert(end, "systemd=true")
    return render("wsl.conf.j2", header=WSL_CONF_HEADER, sections=sections)


def systemd_enabled(lines: list[str] | None) -> bool:
    """Does this /etc/wsl.conf have ``systemd=true`` in its [boot] section?"""
    section = None
    for line in lines or []:
        header = re.match(r"^\s*\[([^\]]+)\]\s*$", line)
        if header:
            section = header.group(1).strip().lower()
        elif section == "boot" and re.match(r"^\s*systemd\s*=\s*true\s*$", line, re.IGNORECASE):
            return True
    return False


@dataclass
class WslPlan:
    conf_text: str | None = None  # the new /etc/wsl.conf, None when it is right already
    stop: str | None = None  # why this host cannot go on, and what to do


def plan_wsl(s: Settings, platform: Platform, w: WslHost, packages: dict) -> WslPlan:
    """What a WSL host needs before anything is installed (pure)."""
    if platform.kind == "wsl1":
        return WslPlan(stop="WSL1 cannot reach the GPU and has no systemd: convert this distribution to WSL2 in "
                       "Windows (`wsl --set-version <distro> 2`, see `wsl -l -v`) and run the deploy again")
    if platform.kind != "wsl2":
        return WslPlan()
    plan = WslPlan()
    if not systemd_enabled(w.conf_lines):
        plan.conf_text = wsl_conf_text(w.conf_lines)
    problems = []
    if s.backend == "cuda":
        linux_driver = sorted(p for p in packages if p.startswith(pd.WSL_FORBIDDEN_PACKAGE_PREFIXES)
                              and "pinning" not in p)
        if linux_driver:
            problems.append(
                f"a Linux NVIDIA driver is installed inside WSL2 ({', '.join(linux_driver)}): it hides the "
                f"Windows driver's libcuda and breaks GPU access; remove it (`sudo apt-get purge "
                f"{' '.join(linux_driver)}`), keep only the Windows driver, then `wsl --shutdown` in Windows")
        if not w.libcuda:
            problems.append(
                f"the Windows NVIDIA driver is not visible in WSL2 (no {pd.WSL_LIB_DIR}/libcuda.so*): install or "
                "update the NVIDIA driver on Windows (never a Linux driver inside WSL), run `wsl --shutdown` in "
                "Windows PowerShell and open the distribution again")
    if platform.pid1 != "systemd":
        problems.append(
            f"systemd is not PID 1 in this WSL2 distribution (PID 1 is {platform.pid1 or 'unknown'!r}), and the "
            f"vLLM server runs as a systemd unit; {pd.WSL_CONF} now has [boot] systemd=true, which WSL reads "
            "only at start: run `wsl --shutdown` in Windows PowerShell (or cmd), wait about 8 seconds, open the "
            "distribution again (and its SSH server, if the deploy reaches it over SSH), then run the deploy "
            "again")
    if problems:
        plan.stop = "; also ".join(problems)
    return plan


def networking_mode(w: WslHost) -> tuple[str, str]:
    """(mode, how it was found): nat, mirrored, ... or unknown (the script then asks Windows)."""
    if w.networking_mode in pd.WSL_NETWORKING_MODES:
        return w.networking_mode, "wslinfo --networking-mode"
    return "unknown", ("wslinfo is not available here (WSL before 2.x, or not reachable over SSH); the script "
                       "asks `wsl.exe wslinfo --networking-mode` when it runs and otherwise treats it as NAT")


def script_dir(s: Settings, w: WslHost) -> str:
    if s.windows_script_dir:
        return s.windows_script_dir.rstrip("/")
    if w.windows_public:
        return f"{pd.WINDOWS_PUBLIC_DIR}/{pd.WINDOWS_SCRIPT_SUBDIR}"
    return f"{s.install_dir}/windows"


def windows_path(linux_path: str, distro: str) -> str:
    """How Windows names a file of this distribution: C:\\... for /mnt/c/..., else \\\\wsl.localhost\\..."""
    m = re.match(r"^/mnt/([a-z])(/.*)?$", linux_path)
    if m:
        return f"{m.group(1).upper()}:" + (m.group(2) or "/").replace("/", "\\")
    return f"\\\\wsl.localhost\\{distro or '<distro>'}" + linux_path.replace("/", "\\")


def portproxy_script_text(s: Settings, w: WslHost, mode: str) -> str:
    return render("wsl-portproxy.ps1.j2", s=s, distro=w.distro, mode=mode, vm_creator_id=pd.WSL_VM_CREATOR_ID,
                  rule_name=f"vllm-wsl-{s.service_name}-{s.public_port}", sources=list(s.allowed_sources))


def nat_firewall_sources(w: WslHost, mode: str) -> list[str]:
    """In NAT mode the portproxy connects from the Windows host's address on WSL's switch (the
    default gateway inside WSL), so the Linux firewall must let that address reach the port."""
    if mode in ("nat", "unknown") and w.gateway:
        return [f"{w.gateway}/32"]
    return []


# --- operations ---------------------------------------------------------------------------


def wsl_host(s: Settings, platform: Platform) -> bool:
    """WSL1: stop. WSL2: keep ``[boot] systemd=true`` in /etc/wsl.conf, and stop when systemd is not
    PID 1 yet (with the Windows command), when the Windows driver is not visible or a Linux driver is
    installed. True when the deploy may go on."""
    if platform.kind not in ("wsl1", "wsl2"):
        return True
    w = host.get_fact(WslFacts) if platform.kind == "wsl2" else WslHost()
    packages = (host.get_fact(DebPackages) or {}) if platform.kind == "wsl2" else {}
    plan = plan_wsl(s, platform, w, packages)
    if plan.conf_text is not None:
        files.put(name=f"systemd on in {pd.WSL_CONF}", src=StringIO(plan.conf_text), dest=pd.WSL_CONF, mode="644")
    elif platform.kind == "wsl2":
        host.noop(f"{pd.WSL_CONF} already has [boot] systemd=true")
    if plan.stop:
        stop_host(f"host {s.host}: {plan.stop}")
        return False
    return True


def wsl_port_mapping(s: Settings, platform: Platform) -> str | None:
    """WSL2 serving beyond loopback: write the Windows side (a PowerShell script) where Windows can
    reach it; the operation's name says how to run it. Returns the script's path on the host."""
    if platform.kind != "wsl2":
        return None
    if s.bind_address in ("127.0.0.1", "::1"):
        host.noop("WSL2 bound to loopback: Windows reaches it on localhost, nothing to map")
        return None
    w = host.get_fact(WslFacts)
    mode, _how = networking_mode(w)
    path = f"{script_dir(s, w)}/vllm-wsl-{s.public_port}.ps1"  # the port clients reach: the front door's
    run = f'powershell.exe -ExecutionPolicy Bypass -File "{windows_path(path, w.distro)}"'
    on_windows_drive = path.startswith("/mnt/")
    seen = f"{mode} mode" if mode != "unknown" else "mode unknown here, the script asks Windows"
    files.put(name=f"Windows port mapping ({seen}): as Administrator run: {run}",
              src=StringIO(portproxy_script_text(s, w, mode)), dest=path,
              **({} if on_windows_drive else {"mode": "644"}))
    return path

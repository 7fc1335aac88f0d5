"""Firewall: the serving port open only to the allowed sources, SSH never touched.

ufw where ufw is the host's active firewall; otherwise a table of our own in nftables, loaded by a
small unit at boot that the server's unit requires. An active firewalld is refused with a clear
message (not yet supported). Each run reads the LIVE rules (``nft list table``, ufw's iptables
chain), not only the files, and loads them again when they were flushed. The rules are written to
``<config_dir>/firewall.nft`` or ``firewall.ufw`` too: they are part of what the last good state
keeps and brings back (deploy/endpoint_check.py).

With ufw, no SSH rule is ever added: ufw is already active there, so SSH is as reachable as the
host's admin made it, never wider. Every earlier rule that names the serving port (``ufw allow
8000``, ``ufw allow 8000/tcp``, ``... port 8000``) and is not one of ours is deleted, so nothing
outlives the allow-list.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass
from io import StringIO

from pyinfra import host
from pyinfra.api import FactBase, StringCommand, operation
from pyinfra.operations import files, server, systemd

from deploy.render import render
from deploy.settings import Settings
from deploy.stop import stop_host
from deploy.system import install_os_packages

NFT_TABLE = "vllm_guard"


@dataclass
class Firewalls:
    """Which firewall tools a host has and which one is active."""

    ufw: str = "absent"  # active, inactive or absent
    firewalld: str = "inactive"  # systemctl is-active firewalld
    nft: str = "absent"  # present or absent


class FirewallState(FactBase):
    """Which firewall is active: ufw's status, firewalld's unit, whether nft is there. One round trip
    for three reads (pyinfra has no fact for ufw's status or a unit's state by itself)."""

    json_type = Firewalls  # tests/harness.py builds it from a case's dict

    def command(self) -> str:
        return ("if command -v ufw >/dev/null 2>&1; then ufw status 2>/dev/null | head -1 | "
                "sed 's/^Status: /ufw=/'; else echo ufw=absent; fi; "
                "echo firewalld=$(systemctl is-active firewalld 2>/dev/null || true); "
                "if command -v nft >/dev/null 2>&1; then echo nft=present; else echo nft=absent; fi")

    def process(self, output) -> Firewalls:
        state = dict(line.split("=", 1) for line in output if "=" in line)
        return Firewalls(ufw=state.get("ufw", "absent"), firewalld=state.get("firewalld", "") or "inactive",
                         nft=state.get("nft", "absent"))


class UfwAddedRules(FactBase):
    """The rules added to ufw, as the ``ufw ...`` commands that added them."""

    def command(self) -> str:
        return "ufw show added"

    def process(self, output):
        return [line.strip() for line in output if line.strip().startswith("ufw ")]


def choose_firewall(s: Settings, state: Firewalls) -> tuple[str | None, str | None]:
    """(backend, None) or (None, why it cannot go on)."""
    if s.firewall == "none":
        return "none", None
    if state.firewalld == "active":
        return None, ("firewalld is active on this host and is not supported yet: stop and disable it "
                      "(`systemctl disable --now firewalld`) or set firewall: none and open port "
                      f"{s.public_port} to {', '.join(s.allowed_sources) or 'nobody'} yourself")
    if s.firewall == "ufw" or (s.firewall == "auto" and state.ufw == "active"):
        if state.ufw != "active":
            return None, ("firewall: ufw was asked for but ufw is not active here: enable it "
                          "(`ufw allow 22/tcp && ufw enable`) or use firewall: nftables")
        return "ufw", None
    return "nftables", None


def ufw_source(cidr: str) -> str:
    """A CIDR as ufw lists it: a single address without its /32 or /128."""
    net = ipaddress.ip_network(cidr, strict=False)
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def guarded_ports(s: Settings, monitor: bool = False, extra_sources: list[str] | None = None) -> dict[int, list[str]]:
    """{port: CIDRs that may connect} for every port this host's firewall filters (loopback always may).

    A server: the serving port for ``allowed_sources`` and ``monitor_sources`` (vLLM's ``/metrics``
    is on it) and, with ``monitor_sources``, the node exporter's port for them alone. Behind a front
    door, its port takes the serving port's place (also for ``extra_sources``: a gateway) and vLLM's
    own port is for nobody (vLLM listens on loopback). A host of the ``monitor`` group: Prometheus'
    port for ``allowed_sources``, its own node exporter local only."""
    if monitor:
        return {s.prometheus_port: list(s.allowed_sources), s.node_exporter_port: []}
    if s.front_door:
        sources = list(dict.fromkeys(s.allowed_sources + s.monitor_sources + list(extra_sources or [])))
        ports = {s.front_door_port: sources, s.port: []}
    else:
        ports = {s.port: list(dict.fromkeys(s.allowed_sources + s.monitor_sources))}
    if s.monitor_sources:
        ports[s.node_exporter_port] = list(s.monitor_sources)
    return ports


def ufw_wanted_rules(s: Settings, ports: dict[int, list[str]] | None = None) -> list[str]:
    """The ``ufw`` rules this host needs, in the form ``ufw show added`` lists them (no SSH rule:
    ufw is already active, SSH stays as its admin set it)."""
    ports = guarded_ports(s) if ports is None else ports
    rules: list[str] = []
    for port, sources in ports.items():
        rules += [f"ufw allow from {ufw_source(c)} to any port {port} proto tcp" for c in sources]
    return rules + [f"ufw deny {port}/tcp" for port in ports]


def _ports(spec: str) -> list[tuple[int, int]]:
    """``8000``, ``8000/tcp``, ``8000:8010/tcp``, ``80,8000`` as (low, high) ranges."""
    out = []
    for part in spec.split("/", 1)[0].split(","):
        low, _, high = part.partition(":")
        if low.isdigit() and (not high or high.isdigit()):
            out.append((int(low), int(high or low)))
    return out


def names_port(rule: str, port: int) -> bool:
    """Whether a ``ufw show added`` rule is about ``port``: ``... port 8000 ...`` or a bare
    ``ufw allow 8000[/tcp]`` (also in a list or a range)."""
    words = shlex.split(rule)
    specs = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "port"]
    action = next((i for i, w in enumerate(words) if w in ("allow", "deny", "reject", "limit")), None)
    if action is not None and action + 1 < len(words) and words[action + 1] not in ("from", "to", "in", "out",
                                                                                    "proto"):
        specs.append(words[action + 1])
    return any(low <= port <= high for spec in specs for low, high in _ports(spec))


@operation()
def ufw_rules(ports: list[int], wanted: list[str]):
    """
    Make ufw's rules for ``ports`` exactly ``wanted``, keeping every other rule.

    + ports: the ports whose rules this owns
    + wanted: rules as ``ufw show added`` prints them; allows come before the final denies
    """
    added = host.get_fact(UfwAddedRules)
    stale = [r for r in added if any(names_port(r, p) for p in ports) and r not in wanted]
    missing = [r for r in wanted if r not in added]
    if not stale and not missing:
        host.noop(f"ufw rules for port{'s' if len(ports) > 1 else ''} {', '.join(map(str, ports))} are up to date")
        return
    for rule in stale:
        yield StringCommand("ufw", "delete", *shlex.split(rule)[1:])
    # allows must precede the denies: (re)add the denies last
    denies = [r for r in wanted if r.startswith("ufw deny")]
    if any(r not in denies for r in missing):
        for rule in denies:
            if rule in added:
                yield StringCommand("ufw", "delete", *shlex.split(rule)[1:])
        missing = [r for r in missing if r not in denies] + denies
    for rule in missing:
        yield StringCommand(*shlex.split(rule))


def nft_rules_text(s: Settings, ports: dict[int, list[str]] | None = None) -> str:
    ports = guarded_ports(s) if ports is None else ports
    rules = []
    for port, sources in ports.items():
        nets = [ipaddress.ip_network(c, strict=False) for c in sources]
        rules.append({"port": port, "v4": [str(n) for n in nets if n.version == 4],
                      "v6": [str(n) for n in nets if n.version == 6]})
    return render("firewall.nft.j2", s=s, table=NFT_TABLE, rules=rules)


def _who(ports: dict[int, list[str]]) -> str:
    return "; ".join(f"port {p} only from {', '.join(c) or 'loopback'}" for p, c in ports.items())


class NftLive(FactBase):
    """Our nftables table as the kernel has it now (empty when it was flushed or never loaded)."""

    def command(self, table: str) -> str:
        return f"nft list table inet {shlex.quote(table)} 2>/dev/null || true"

    def process(self, output):
        return "\n".join(output)


class UfwLive(FactBase):
    """ufw's loaded iptables rules for the port (empty when the tables were flushed)."""

    def command(self, port: int) -> str:
        return ("command -v iptables >/dev/null 2>&1 || { echo NO_IPTABLES; exit 0; }; "
                f"(iptables -S ufw-user-input; ip6tables -S ufw-user-input) 2>/dev/null "
                f"| grep -- '--dport {int(port)}' || true")

    def process(self, output):
        lines = [line for line in output if line.strip()]
        return None if lines == ["NO_IPTABLES"] else lines


def nft_live_ok(s: Settings, live: str, ports: dict[int, list[str]] | None = None) -> bool:
    """The loaded table filters every guarded port: it drops it and accepts each of its sources."""
    ports = guarded_ports(s) if ports is None else ports
    for port, cidrs in ports.items():
        sources = [str(ipaddress.ip_network(c, strict=False)).removesuffix("/32").removesuffix("/128") for c in cidrs]
        if f"tcp dport {port} counter" not in live or not all(src in live for src in sources):
            return False
    return "drop" in live


def firewall(s: Settings, ports: dict[int, list[str]] | None = None) -> dict | None:
    """Apply the rules (``guarded_ports``) and check the live ones; return what the checks need to know
    about them (kind, rules file, the unit the server requires), or None when the host was stopped."""
    ports = guarded_ports(s) if ports is None else ports
    backend, why = choose_firewall(s, host.get_fact(FirewallState))
    if backend is None:
        stop_host(why)
        return None
    if backend == "none":
        host.noop("firewall: none (the port is filtered by something else)")
        return {"kind": "none"}
    if backend == "ufw":
        wanted = ufw_wanted_rules(s, ports)
        rules_file = f"{s.config_dir}/firewall.ufw"
        files.put(name=f"ufw rules kept for the last good state ({rules_file})",
                  src=StringIO("\n".join(wanted) + "\n"), dest=rules_file, mode="600")
        ufw_rules(name=f"ufw: {_who(ports)}", ports=list(ports), wanted=wanted)
        live = host.get_fact(UfwLive, port=next(iter(ports)))
        server.shell(name="ufw's rules were flushed: load them again (ufw reload)", commands=["ufw reload"],
                     _if=lambda: live == [])
        return {"kind": "ufw", "rules_file": rules_file, "unit": "ufw.service"}
    install_os_packages({"apt": ["nftables"], "dnf": ["nftables"]}, "nftables")
    rules_file = f"{s.config_dir}/firewall.nft"
    unit = f"{s.service_name}-firewall.service"
    rules = files.put(name=f"nftables rules: {_who(ports)}",
                      src=StringIO(nft_rules_text(s, ports)), dest=rules_file, mode="600")
    unit_op = files.put(name=f"Unit {unit}",
                        src=StringIO(render("firewall.service.j2", s=s, table=NFT_TABLE, rules_file=rules_file)),
                        dest=f"/etc/systemd/system/{unit}", mode="644")
    systemd.daemon_reload(name="Reload systemd units (firewall)", _if=unit_op.did_change)
    live_ok = nft_live_ok(s, host.get_fact(NftLive, table=NFT_TABLE) or "", ports)
    # nft -f replaces the table in one transaction: the port is never open in between
    server.shell(name="Load the nftables rules now" + ("" if live_ok else " (the live table was missing or flushed)"),
                 commands=[StringCommand("nft", "-f", shlex.quote(rules_file))],
                 _if=lambda: rules.did_change() or not live_ok)
    systemd.service(name=f"{unit} enabled at boot", service=unit, running=True, enabled=True)
    return {"kind": "nftables", "rules_file": rules_file, "unit": unit, "table": NFT_TABLE}

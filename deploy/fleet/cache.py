"""One download per fleet: the controller's caching mirrors, started for the length of a rollout.

- packages: proxpi (a caching PyPI mirror from PyPI) on ``ADDRESS:3141``; each file crosses the
  internet once, later requests (other hosts, later waves) are served from its cache folder. Hosts use
  it through the ``fleet_index_url`` setting (uv ``--index-url``, pip for uv itself).
- weights: the hub mirror of ``deploy/fleet/hub_mirror.py`` on ``ADDRESS:8090``; each hub model of
  the inventory is fetched once (at its pinned ``model_revision``) and hosts download it with
  ``HF_ENDPOINT`` pointing there (the ``fleet_hub_url`` setting).

The folder (``--fleet-cache-dir``, default ``/var/cache/vllm-fleet``) persists between rollouts, so a
later rollout of the same versions fetches nothing from outside at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from deploy.fleet import hub_mirror

DEFAULT_DIR = "/var/cache/vllm-fleet"
PACKAGES_PORT = 3141
HUB_PORT = 8090
UPSTREAM = "https://pypi.org/simple/"
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"  # Debian/Ubuntu's bundle (an inspecting proxy's CA lives there)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


class FleetCache:
    """proxpi and the hub mirror on the controller, reachable by the hosts at ``address``."""

    def __init__(self, address: str, folder: str | Path = DEFAULT_DIR, upstream: str = UPSTREAM,
                 packages_port: int = PACKAGES_PORT, hub_port: int = HUB_PORT):
        self.address, self.folder, self.upstream = address, Path(folder), upstream
        self.packages_port, self.hub_port = packages_port, hub_port
        self.proc: subprocess.Popen | None = None
        self.hub = None
        self.hub_state: hub_mirror.Mirror | None = None
        self.fetched_weights = 0
        self.start_package_bytes = 0

    @property
    def index_url(self) -> str:
        return f"http://{self.address}:{self.packages_port}/index/"

    @property
    def hub_url(self) -> str:
        return f"http://{self.address}:{self.hub_port}"

    @property
    def packages_dir(self) -> Path:
        return self.folder / "packages"

    @property
    def hub_dir(self) -> Path:
        return self.folder / "hub"

    def start(self) -> FleetCache:
        self.packages_dir.mkdir(parents=True, exist_ok=True)
        self.hub_dir.mkdir(parents=True, exist_ok=True)
        self.start_package_bytes = folder_bytes(self.packages_dir)
        env = dict(os.environ, PROXPI_CACHE_DIR=str(self.packages_dir), PROXPI_INDEX_URL=self.upstream,
                   # wait for a file being fetched rather than send a second host to the internet for it
                   PROXPI_DOWNLOAD_TIMEOUT="1800", PROXPI_CACHE_SIZE=str(200 * 2**30))
        if "REQUESTS_CA_BUNDLE" not in env and Path(SYSTEM_CA).is_file():
            env["REQUESTS_CA_BUNDLE"] = SYSTEM_CA
        log = open(self.folder / "proxpi.log", "ab")  # noqa: SIM115 - kept open for the server's life
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "proxpi.server", "run", "--host", self.address,
             "--port", str(self.packages_port), "--no-reload", "--with-threads"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        self.hub, self.hub_state = hub_mirror.serve(self.hub_dir, self.address, self.hub_port)
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"http://{self.address}:{self.packages_port}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the package mirror (proxpi) did not start on {self.address}:"
                                   f"{self.packages_port}; see {self.folder / 'proxpi.log'}")
            time.sleep(0.3)
        return self

    def fetch_model(self, repo_id: str, revision: str | None, upstream: str | None = None) -> str:
        """The model's commit in the hub mirror, fetched once from the hub (or ``upstream``) if missing."""
        if revision and hub_mirror.COMMIT.match(revision) and (self.hub_dir / repo_id / revision).is_dir():
            return revision
        commit, size = hub_mirror.fetch_from_hub(repo_id, revision or "main", self.hub_dir, endpoint=upstream)
        self.fetched_weights += size
        return commit

    def outside_bytes(self) -> dict:
        """Bytes this cache fetched from outside during this rollout: package files and weights."""
        return {"packages": folder_bytes(self.packages_dir) - self.start_package_bytes,
                "weights": self.fetched_weights,
                "weights_served": self.hub_state.bytes_served if self.hub_state else 0}

    def stop(self) -> None:
        if self.hub is not None:
            self.hub.shutdown()
            self.hub.server_close()
            self.hub = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    def __enter__(self) -> FleetCache:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

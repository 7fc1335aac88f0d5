"""A Hugging Face–compatible mirror of model snapshots, served from the controller.

The fleet's hosts download weights through ``huggingface_hub`` with ``HF_ENDPOINT`` pointing here
(the ``hf_endpoint`` setting), so a model crosses the internet once per fleet, not once per host.
``publish`` puts a folder in as one revision of a repository (the hub's commit id when it came from
the hub, else one made from the files' hashes); ``fetch_from_hub`` downloads a pinned revision once
from the real hub (or another mirror) and publishes it.

Served (what ``huggingface_hub``'s ``snapshot_download`` and ``hf_hub_download`` call):
``GET /api/models/{repo}/revision/{rev}``, ``GET /api/models/{repo}/tree/{rev}[/{path}]`` and
``HEAD``/``GET /{repo}/resolve/{rev}/{file}`` with ``X-Repo-Commit``, ``ETag`` and ``Content-Length``.

    python -m deploy.fleet.hub_mirror --root DIR [--bind 0.0.0.0] [--port 8090] [--publish REPO=FOLDER]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

COMMIT = re.compile(r"^[0-9a-f]{40}$")
REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
CHUNK = 1 << 20


def git_blob_id(path: Path) -> str:
    """The file's git blob id, as the hub gives it for files kept outside LFS."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and ".cache" not in p.relative_to(folder).parts)


def publish(folder: str | Path, root: str | Path, repo_id: str, commit: str | None = None) -> str:
    """Put ``folder`` in the mirror as a revision of ``repo_id`` and make it ``main``; return its commit id."""
    folder, root = Path(folder), Path(root)
    if not REPO.match(repo_id):
        raise ValueError(f"repository {repo_id!r} is not accepted: a name such as 'org/model'")
    files = _files(folder)
    if commit is None:
        h = hashlib.sha1()
        for p in files:
            h.update(f"{p.relative_to(folder).as_posix()} {git_blob_id(p)}\n".encode())
        commit = h.hexdigest()
    if not COMMIT.match(commit):
        raise ValueError(f"commit {commit!r} is not accepted: 40 hex digits")
    target = root / repo_id / commit
    if not target.is_dir():
        tmp = target.with_name(commit + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for p in files:
            dest = tmp / p.relative_to(folder)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dest)
        tmp.rename(target)
    (root / repo_id / "refs").mkdir(exist_ok=True)
    (root / repo_id / "refs" / "main").write_text(commit + "\n")
    return commit


def fetch_from_hub(repo_id: str, revision: str, root: str | Path, endpoint: str | None = None) -> tuple[str, int]:
    """Download ``repo_id`` at ``revision`` once (from the hub, or ``endpoint``) into the mirror.

    Returns (commit id, bytes downloaded); nothing is downloaded when that commit is already here."""
    from huggingface_hub import HfApi, snapshot_download

    api = HfApi(endpoint=endpoint)
    commit = api.repo_info(repo_id, revision=revision).sha
    if (Path(root) / repo_id / commit).is_dir():
        publish(Path(root) / repo_id / commit, root, repo_id, commit)
        return commit, 0
    staging = Path(root) / ".staging" / repo_id.replace("/", "--")
    snapshot_download(repo_id, revision=commit, local_dir=staging, endpoint=endpoint)
    size = sum(p.stat().st_size for p in _files(staging))
    publish(staging, root, repo_id, commit)
    shutil.rmtree(staging, ignore_errors=True)
    return commit, size


class Mirror:
    """The snapshots under ``root`` and how many bytes of files were served."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.bytes_served = 0
        self.lock = threading.Lock()

    def resolve(self, repo_id: str, rev: str) -> tuple[str, Path] | None:
        if not REPO.match(repo_id) or ".." in rev or "/" in rev:
            return None
        base = self.root / repo_id
        commit = rev if COMMIT.match(rev) else None
        if commit is None:
            ref = base / "refs" / rev
            commit = ref.read_text().strip() if ref.is_file() else None
        if commit is None or not (base / commit).is_dir():
            return None
        return commit, base / commit

    def tree(self, folder: Path, sub: str) -> list[dict]:
        out = []
        for p in _files(folder):
            rel = p.relative_to(folder).as_posix()
            if sub and not rel.startswith(sub.rstrip("/") + "/"):
                continue
            out.append({"type": "file", "oid": git_blob_id(p), "size": p.stat().st_size, "path": rel})
        return out


def handler_for(mirror: Mirror):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet: one line per request is noise for a fleet
            pass

        def _json(self, data, status: int = 200) -> None:
            body = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _missing(self, what: str) -> None:
            body = json.dumps({"error": what}).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Error-Code", "RepoNotFound" if "repository" in what else "EntryNotFound")
            self.send_header("X-Error-Message", what)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self):  # noqa: N802 - http.server's name
            path = unquote(urlsplit(self.path).path)
            api = re.match(r"^/api/models/(.+?)/(revision|tree)/([^/]+)(/.*)?$", path)
            if api:
                repo_id, kind, rev, sub = api.group(1), api.group(2), api.group(3), (api.group(4) or "").strip("/")
                found = mirror.resolve(repo_id, rev)
                if not found:
                    return self._missing(f"repository {repo_id} revision {rev} is not in this mirror")
                commit, folder = found
                if kind == "tree":
                    return self._json(mirror.tree(folder, sub))
                return self._json({"id": repo_id, "modelId": repo_id, "sha": commit, "private": False,
                                   "siblings": [{"rfilename": e["path"]} for e in mirror.tree(folder, "")]})
            res = re.match(r"^/(.+?)/resolve/([^/]+)/(.+)$", path)
            if not res:
                return self._missing(f"repository for {path} is not in this mirror")
            repo_id, rev, name = res.groups()
            found = mirror.resolve(repo_id, rev)
            if not found:
                return self._missing(f"repository {repo_id} revision {rev} is not in this mirror")
            commit, folder = found
            file = (folder / name).resolve()
            if not file.is_file() or folder.resolve() not in file.parents:
                return self._missing(f"file {name} is not in {repo_id}@{commit}")
            size = file.stat().st_size
            start, end = 0, size - 1
            ranged = re.match(r"^bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
            if ranged:
                start = int(ranged.group(1))
                end = int(ranged.group(2)) if ranged.group(2) else size - 1
            self.send_response(206 if ranged else 200)
            self.send_header("X-Repo-Commit", commit)
            self.send_header("ETag", f'"{git_blob_id(file)}"')
            self.send_header("Content-Length", str(end - start + 1))
            if ranged:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if self.command == "HEAD":
                return None
            with open(file, "rb") as f:
                f.seek(start)
                left = end - start + 1
                while left > 0:
                    chunk = f.read(min(CHUNK, left))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)
            with mirror.lock:
                mirror.bytes_served += end - start + 1
            return None

        do_HEAD = do_GET  # noqa: N815

    return Handler


def serve(root: str | Path, bind: str = "0.0.0.0", port: int = 8090) -> tuple[ThreadingHTTPServer, Mirror]:
    """Start the mirror in a thread of this process; return the server (``shutdown()`` stops it)."""
    mirror = Mirror(root)
    server = ThreadingHTTPServer((bind, port), handler_for(mirror))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, mirror


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.fleet.hub_mirror", description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="folder of the mirror's snapshots")
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--publish", action="append", default=[], metavar="REPO=FOLDER",
                   help="put a local model folder in first (e.g. tiny-chat=/var/tmp/vllm-lab/tiny-model)")
    args = p.parse_args(argv)
    for item in args.publish:
        repo, _, folder = item.partition("=")
        print(f"{repo}: revision {publish(folder, args.root, repo)}", flush=True)
    server = ThreadingHTTPServer((args.bind, args.port), handler_for(Mirror(args.root)))
    print(f"hub mirror on http://{args.bind}:{args.port} serving {args.root}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

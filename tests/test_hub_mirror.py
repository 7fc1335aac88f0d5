"""huggingface_hub (the real client) downloads the tiny model through the fleet's hub mirror on
loopback, at a pinned revision, the way a host does with ``HF_ENDPOINT``; no internet hub."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

from deploy.fleet.hub_mirror import fetch_from_hub, publish, serve
from lab.tiny_model import MODEL_FILES, make_tiny_model

REPO = "lab/tiny-chat"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def mirror(model, tmp_path_factory):
    root = tmp_path_factory.mktemp("mirror")
    commit = publish(model, root, REPO)
    server, state = serve(root, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.server_address[1]}", commit, state, root
    server.shutdown()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_snapshot_at_the_pinned_revision_is_byte_for_byte_the_model(mirror, model, tmp_path):
    endpoint, commit, state, _root = mirror
    before = state.bytes_served
    out = Path(snapshot_download(REPO, revision=commit, local_dir=tmp_path / "dl", endpoint=endpoint))
    for name in MODEL_FILES:
        assert _sha(out / name) == _sha(model / name), name
    assert state.bytes_served - before == sum((model / n).stat().st_size for n in MODEL_FILES)
    assert HfApi(endpoint=endpoint).repo_info(REPO, revision="main").sha == commit


def test_one_file_with_hf_hub_download_and_a_second_download_reads_the_cache(mirror, tmp_path):
    endpoint, commit, state, _root = mirror
    first = hf_hub_download(REPO, "config.json", revision=commit, cache_dir=tmp_path, endpoint=endpoint)
    served = state.bytes_served
    again = hf_hub_download(REPO, "config.json", revision=commit, cache_dir=tmp_path, endpoint=endpoint)
    assert first == again and state.bytes_served == served


def test_unknown_revision_and_repository_are_errors_the_client_names(mirror, tmp_path):
    endpoint, _commit, _state, _root = mirror
    with pytest.raises((RevisionNotFoundError, RepositoryNotFoundError)):
        snapshot_download(REPO, revision="0" * 40, local_dir=tmp_path / "x", endpoint=endpoint)
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("lab/nothing", revision="main", local_dir=tmp_path / "y", endpoint=endpoint)


def test_fetch_from_an_upstream_hub_once_into_a_second_mirror(mirror, tmp_path):
    endpoint, commit, _state, _root = mirror
    got, size = fetch_from_hub(REPO, commit, tmp_path / "second", endpoint=endpoint)
    assert got == commit and size > 0
    assert fetch_from_hub(REPO, commit, tmp_path / "second", endpoint=endpoint) == (commit, 0)
    assert (tmp_path / "second" / REPO / commit / "config.json").is_file()

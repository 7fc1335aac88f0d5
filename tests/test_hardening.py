"""Hardening checks that need no host: disk needs summed per filesystem, a repository key kept only
with its published fingerprint (the real gpg and shell commands, run here), the demo's usage, and no
citation of files users do not have."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy.settings import load_settings
from deploy.weights import GIB, short_on_disk
from tests.harness import run_ops

KEY = "sk-test-0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent


def settings(**data):
    return load_settings("lab1", data, environ={"VLLM_API_KEY": KEY})


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
    return key, fingerprint


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

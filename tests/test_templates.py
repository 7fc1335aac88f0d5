"""Rendered files: the unit passes `systemd-analyze verify`, the key stays out of the unit."""

import shutil
import subprocess
from pathlib import Path

import pytest

from deploy.firewall import nft_rules_text, ufw_source, ufw_wanted_rules
from deploy.service import env_text, unit_text
from deploy.serving import exec_line, serve_args
from deploy.settings import load_settings

KEY = "sk-test-" + "0123456789abcdef"


def host_settings(**data):
    return load_settings("gpu1", data, environ={"VLLM_API_KEY": KEY})


def test_unit_runs_the_pinned_venv_as_the_service_user_and_never_holds_the_key():
    s = host_settings(max_model_len=32768, gpu_memory_utilization=0.9)
    unit = unit_text(s)
    assert "User=vllm" in unit and "EnvironmentFile=/etc/vllm/vllm.env" in unit
    assert "ExecStart=/opt/vllm/current/bin/python -m vllm.entrypoints.openai.api_server" in unit
    assert "--max-model-len 32768 --gpu-memory-utilization 0.9" in unit
    assert "Restart=on-failure" in unit and "TimeoutStartSec=1800" in unit
    assert "WantedBy=multi-user.target" in unit
    assert KEY not in unit and "--api-key" not in unit


def test_env_file_holds_the_key_and_backend_variables():
    s = host_settings(backend="cpu", model="tiny", model_source="path", model_path="/srv/tiny",
                      cpu_threads_bind="1", extra_env={"OMP_NUM_THREADS": "1"})
    text = env_text(s, {"VLLM_MXFP4_USE_MARLIN": "1"})
    lines = text.splitlines()
    assert f"VLLM_API_KEY={KEY}" in lines
    assert "VLLM_CPU_OMP_THREADS_BIND=1" in lines and "VLLM_CPU_KVCACHE_SPACE=1" in lines
    assert "HF_HUB_OFFLINE=1" in lines and "OMP_NUM_THREADS=1" in lines
    assert "VLLM_MXFP4_USE_MARLIN=1" in lines


def test_exec_line_quotes_for_systemd():
    assert exec_line(["/a b/python", "-m", "x", "100%", "$HOME"]) == '"/a b/python" -m x "100%%" "$$HOME"'


def test_serve_args_take_the_settings_or_the_plan():
    s = host_settings(tensor_parallel_size=2, kv_cache_dtype="fp8", extra_args=["--async-scheduling"])
    args = serve_args(s)
    assert args[:8] == ["--model", s.model_dir, "--served-model-name", "openai/gpt-oss-20b",
                        "--host", "127.0.0.1", "--port", "8000"]
    assert "--tensor-parallel-size" in args and args[-1] == "--async-scheduling"
    assert serve_args(s, ["--max-model-len", "4096"])[8:] == ["--max-model-len", "4096", "--async-scheduling"]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    s = host_settings()
    root = tmp_path / "root"
    # the files the unit names must exist for verify: make them in an alternate root
    for path in ("/opt/vllm/current/bin/python", "/opt/vllm/bin/endpoint_check.py", "/bin/sh"):
        f = root / path.lstrip("/")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("#!/bin/sh\n")
        f.chmod(0o755)
    # and the distribution's own units (sysinit.target, network-online.target, ...)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/vllm").mkdir(parents=True)
    (root / "etc/vllm/vllm.env").write_text(env_text(s))
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    (unit_dir / "vllm.service").write_text(unit_text(s))
    out = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "vllm.service"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "vllm.service" not in out.stdout + out.stderr, out.stdout + out.stderr


def test_nft_rules_filter_only_the_serving_port():
    s = host_settings(bind_address="0.0.0.0", allowed_sources=["10.123.0.1/32", "fd00::/64", "192.168.1.7/24"],
                      front_door=False)
    rules = nft_rules_text(s)
    assert "ip saddr { 10.123.0.1/32, 192.168.1.0/24 } tcp dport 8000 accept" in rules
    assert "ip6 saddr { fd00::/64 } tcp dport 8000 accept" in rules
    assert "tcp dport 8000 counter drop" in rules
    assert " 22" not in rules.split("chain input")[1]  # SSH is never named, so never filtered


@pytest.mark.skipif(not shutil.which("nft"), reason="nft is not installed")
def test_nft_rules_parse(tmp_path):
    s = host_settings(bind_address="0.0.0.0", allowed_sources=["10.123.0.1/32"])
    f = tmp_path / "r.nft"
    f.write_text(nft_rules_text(s).replace("delete table inet vllm_guard\n", ""))
    out = subprocess.run(["nft", "-c", "-f", str(f)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_ufw_rules_never_open_ssh_wider_and_end_with_the_deny():
    """ufw is only used where it is already active: SSH stays as its admin set it, no rule for it."""
    s = host_settings(bind_address="0.0.0.0", allowed_sources=["10.0.0.5/32", "10.1.0.0/16"], ssh_port=2222,
                      front_door=False)  # vLLM's own port
    assert ufw_wanted_rules(s) == [
        "ufw allow from 10.0.0.5 to any port 8000 proto tcp",
        "ufw allow from 10.1.0.0/16 to any port 8000 proto tcp",
        "ufw deny 8000/tcp",
    ]
    assert ufw_source("fd00::1/128") == "fd00::1"


def test_template_folder_is_complete():
    names = {p.name for p in (Path(__file__).parent.parent / "templates").iterdir()}
    assert {"vllm.service.j2", "vllm.env.j2", "firewall.nft.j2", "firewall.service.j2"} <= names

"""Preflight verdicts from recorded facts: a host that cannot serve is stopped with why and what to do."""

from pathlib import Path

import pytest

from deploy.host_facts import Gpu, GpuReport, parse_gpu_csv
from deploy.preflight import judge, table
from deploy.settings import load_settings
from tests.harness import parse_platform

FIX = Path(__file__).parent / "fixtures" / "gpu" / "h100-80gb-hbm3"
UBUNTU = parse_platform(["ID=ubuntu", "VERSION_ID=24.04", "KERNEL=6.8.0-49-generic", "MemTotal=131072000",
                         "MemAvailable=120000000", "PID1=systemd"])
WSL2 = parse_platform(["ID=ubuntu", "VERSION_ID=24.04", "KERNEL=5.15.167.4-microsoft-standard-WSL2",
                       "MemTotal=32000000", "MemAvailable=30000000"])
WSL1 = parse_platform(["ID=ubuntu", "VERSION_ID=20.04", "KERNEL=4.4.0-19041-Microsoft"])


def h100() -> GpuReport:
    """The real H100's nvidia-smi query (tests/fixtures), as the GpuFacts fact reports it."""
    return GpuReport("ok", parse_gpu_csv((FIX / "query.csv").read_text().splitlines()[1:]), "13.0")


def card(name, cc, total_mib, free_mib=None, driver="580.159.04", mig="Disabled", count=1) -> GpuReport:
    gpus = [Gpu(i, name, f"GPU-{i}", cc, total_mib, total_mib - (free_mib or total_mib), free_mib or total_mib,
                driver, mig) for i in range(count)]
    return GpuReport("ok", gpus, "13.0")


def s(**data):
    return load_settings("gpu1", data, environ={"VLLM_API_KEY": "k" * 32})


def test_h100_with_the_default_vllm_is_ok_with_a_plan():
    v = judge(s(), UBUNTU, h100())
    assert v.ok, v.detail
    assert v.plan.kernel_supported and v.plan.fits
    assert "--max-model-len" in v.plan_args and "--gpu-memory-utilization" in v.plan_args
    assert (v.gpus, v.capability, v.driver) == ("1 x NVIDIA H100 80GB HBM3", "9.0", "580.159.04 (CUDA 13.0)")
    assert v.vram == "79.2/79.6 GiB"


def test_requested_flags_are_checked_not_replaced():
    v = judge(s(max_model_len=32768, max_num_seqs=64, gpu_memory_utilization=0.8), UBUNTU, h100())
    assert v.ok
    args = v.plan_args
    assert args[args.index("--max-model-len") + 1] == "32768" and args[args.index("--max-num-seqs") + 1] == "64"
    assert args[args.index("--gpu-memory-utilization") + 1] == "0.8"


@pytest.mark.parametrize("settings, platform, gpus, words", [
    ({}, UBUNTU, GpuReport("no-driver"), ["no NVIDIA driver", ">= 580.65.06", "backend: cpu"]),
    ({}, WSL2, GpuReport("no-driver"), ["on Windows", "never a Linux driver inside WSL2"]),
    ({}, WSL1, None, ["WSL1", "wsl --set-version"]),
    ({}, UBUNTU, GpuReport("error", error="NVIDIA-SMI has failed"), ["NVIDIA-SMI has failed", "Secure Boot"]),
    ({}, UBUNTU, card("Tesla T4", "7.5", 15360), ["Tesla T4", "7.5", "0.24.0"]),
    ({"vllm_spec": "vllm==0.10.1+gptoss"}, UBUNTU, card("NVIDIA A100-SXM4-80GB", "8.0", 81920),
     ["A100", "0.10.1+gptoss", "Sinks are only supported in FlashAttention 3", "0.10.1"]),
    ({}, UBUNTU, card("NVIDIA H100 80GB HBM3", "9.0", 81559, driver="570.133.20"), ["570.133.20", "580.65.06"]),
    ({}, UBUNTU, card("NVIDIA H100 80GB HBM3", "9.0", 81559, mig="Enabled"), ["MIG", "-mig 0"]),
    ({"model": "openai/gpt-oss-120b"}, UBUNTU, card("NVIDIA GeForce RTX 4090", "8.9", 24564),
     ["does not fit", "tensor-parallel-size"]),
    ({}, UBUNTU, card("NVIDIA GeForce RTX 4090", "8.9", 24564, free_mib=2000), ["does not fit"]),
])
def test_hosts_that_cannot_serve_are_stopped_with_the_reason_and_the_fix(settings, platform, gpus, words):
    v = judge(s(**settings), platform, gpus)
    assert not v.ok and v.plan_args is None
    for word in words:
        assert word in v.message, (word, v.message)
    assert v.message.startswith("host gpu1: ")


def test_ampere_is_served_by_pypi_vllm_with_marlin():
    v = judge(s(), UBUNTU, card("NVIDIA A100-SXM4-80GB", "8.0", 81920))
    assert v.ok and v.plan.kernel.moe_backend == "MARLIN"


def test_cpu_backend_needs_ram_not_a_gpu():
    cpu = dict(backend="cpu", model="tiny", model_source="path", model_path="/srv/tiny")
    assert judge(s(**cpu), UBUNTU, None).ok
    small = parse_platform(["ID=debian", "VERSION_ID=12", "MemTotal=4000000", "MemAvailable=2000000"])
    v = judge(s(**cpu), small, None)
    assert not v.ok and "cpu_kvcache_gib" in v.detail


def test_table_has_a_row_per_host_and_the_reasons():
    ok = judge(s(), UBUNTU, h100())
    bad = judge(s(), WSL1, None)
    bad.host = "laptop"
    text = table([ok, bad])
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["host", "platform", "GPUs"]
    assert "gpu1" in lines[2] and "OK" in lines[2] and "laptop" in lines[3] and "STOP" in lines[3]
    assert "host laptop: WSL1 cannot reach the GPU" in text


def test_a_card_that_cannot_load_20b_gets_the_numbers_and_the_options():
    # a 12 GB Ampere card (Marlin): the weights alone do not fit; offload is judged with the RAM
    v = judge(s(), UBUNTU, card("NVIDIA GeForce RTX 3060", "8.6", 12288))
    assert not v.ok and "loading needs" in v.detail and "final weights 13.80 GiB" in v.detail
    assert "--cpu-offload-gb" in v.detail and "another engine" in v.detail
    low_ram = parse_platform(["ID=ubuntu", "VERSION_ID=24.04", "KERNEL=6.8.0-49-generic",
                              "MemTotal=8000000", "MemAvailable=4000000", "PID1=systemd"])
    v = judge(s(), low_ram, card("NVIDIA GeForce RTX 3060", "8.6", 12288))
    assert "this host has 3.8 GiB free" in v.detail

"""`python -m deploy.plan` exactly as docs/contracts.md fixes it: flags, JSON keys, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.plan import PlanInputError, make_plan

ROOT = Path(__file__).resolve().parents[1]
H100 = ["--gpu", "NVIDIA H100 80GB HBM3", "--compute-capability", "9.0",
        "--gpu-memory-mib", "81559"]
CONTRACT_KEYS = {
    "kernel_supported": bool, "kernel_reason": str, "fits": bool, "weights_gib": float,
    "kv_cache_gib": float, "kv_cache_tokens": int, "max_concurrency": float,
    "max_model_len": int, "max_num_seqs": int, "gpu_memory_utilization": float,
    "tensor_parallel_size": int, "vllm_args": list, "reasons": list,
}


def plan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploy.plan", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def as_json(p: subprocess.CompletedProcess) -> dict:
    out = json.loads(p.stdout)  # exactly one JSON object, nothing else on stdout
    assert isinstance(out, dict)
    return out


def test_contract_example_fits_and_has_every_key():
    p = plan("--model", "openai/gpt-oss-20b", "--vllm", "0.10.1+gptoss", *H100,
             "--gpu-free-mib", "81079", "--json")
    assert p.returncode == 0, p.stderr
    out = as_json(p)
    for key, kind in CONTRACT_KEYS.items():
        assert isinstance(out[key], kind), key
    assert out["kernel_supported"] and out["fits"] and out["reasons"] is not None
    assert all(isinstance(a, str) for a in out["vllm_args"])
    assert "--max-model-len" in out["vllm_args"]


def test_given_flags_are_checked_as_given():
    p = plan("--model", "openai/gpt-oss-20b", "--vllm", "0.24.0", *H100, "--gpus", "1",
             "--gpu-memory-utilization", "0.9", "--max-model-len", "131072",
             "--max-num-seqs", "1024", "--max-num-batched-tokens", "8192",
             "--tensor-parallel-size", "1", "--kv-cache-dtype", "auto", "--enforce-eager",
             "--json")
    out = as_json(p)
    assert p.returncode == 0
    assert (out["max_model_len"], out["max_num_seqs"], out["gpu_memory_utilization"],
            out["tensor_parallel_size"]) == (131072, 1024, 0.9, 1)
    # H100 run e1 (vLLM 0.24.0): 54.6 GiB, 2,242,921 tokens, 17.11x
    assert out["kv_cache_gib"] == pytest.approx(54.6, abs=0.05)
    assert out["kv_cache_tokens"] == pytest.approx(2_242_921, rel=0.001)
    assert out["max_concurrency"] == pytest.approx(17.11, abs=0.02)
    assert "--enforce-eager" in out["vllm_args"]


def test_does_not_fit_exits_1_with_the_plan_and_fixes():
    p = plan("--model", "openai/gpt-oss-120b", "--vllm", "0.24.0", *H100,
             "--gpu-memory-utilization", "0.9", "--max-num-seqs", "1024",
             "--max-model-len", "131072", "--kv-cache-dtype", "auto", "--json")
    assert p.returncode == 1
    out = as_json(p)
    assert out["kernel_supported"] and not out["fits"]
    text = " ".join(out["reasons"])
    assert "--max-model-len" in text and "--kv-cache-dtype fp8" in text


def test_too_small_gpu_exits_1():
    p = plan("--model", "openai/gpt-oss-120b", "--vllm", "0.24.0",
             "--gpu", "NVIDIA GeForce RTX 4090", "--compute-capability", "8.9",
             "--gpu-memory-mib", "24564", "--json")
    assert p.returncode == 1
    out = as_json(p)
    assert not out["fits"]
    assert any("--tensor-parallel-size" in r for r in out["reasons"])


def test_missing_kernels_exit_1():
    p = plan("--model", "openai/gpt-oss-20b", "--vllm", "0.24.0", "--gpu", "Tesla T4",
             "--compute-capability", "7.5", "--gpu-memory-mib", "15360", "--json")
    assert p.returncode == 1
    out = as_json(p)
    assert out["kernel_supported"] is False and out["kernel_reason"]


def test_busy_gpu_lowers_the_share():
    p = plan("--model", "openai/gpt-oss-20b", "--vllm", "0.24.0",
             "--gpu", "NVIDIA GeForce RTX 4090", "--compute-capability", "8.9",
             "--gpu-memory-mib", "24564", "--gpu-free-mib", "20000", "--json")
    out = as_json(p)
    assert p.returncode == 0, out["reasons"]
    assert out["gpu_memory_utilization"] < 0.9
    assert any("gpu_memory_utilization" in r for r in out["reasons"])


def test_multi_gpu_host_picks_the_smallest_tensor_parallel_size():
    p = plan("--model", "openai/gpt-oss-120b", "--vllm", "0.24.0", *H100, "--gpus", "8",
             "--gpu-memory-utilization", "0.9", "--json")
    out = as_json(p)
    assert p.returncode == 0
    assert out["tensor_parallel_size"] == 2
    assert out["vllm_args"][:2] == ["--tensor-parallel-size", "2"]


def test_human_output_without_json():
    p = plan("--model", "openai/gpt-oss-20b", "--vllm", "0.24.0", *H100)
    assert p.returncode == 0
    assert "fits:    yes" in p.stdout and "vllm serve openai/gpt-oss-20b" in p.stdout
    with pytest.raises(json.JSONDecodeError):
        json.loads(p.stdout)


@pytest.mark.parametrize("args,flag", [
    (["--model", "openai/gpt-oss-7b"], "--model"),
    (["--vllm", "latest"], "--vllm"),
    (["--compute-capability", "hopper"], "--compute-capability"),
    (["--gpu-memory-mib", "lots"], "--gpu-memory-mib"),
    (["--gpu-memory-mib", "0"], "--gpu-memory-mib"),
    (["--gpu-free-mib", "90000"], "--gpu-free-mib"),
    (["--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization"),
    (["--max-model-len", "262144"], "--max-model-len"),
    (["--max-num-seqs", "0"], "--max-num-seqs"),
    (["--tensor-parallel-size", "3"], "--tensor-parallel-size"),
    (["--tensor-parallel-size", "2"], "--tensor-parallel-size"),  # only 1 GPU
    (["--kv-cache-dtype", "int4"], "--kv-cache-dtype"),
    (["--no-such-flag"], "--no-such-flag"),
    (["--gpus", "0"], "--gpus"),
])
def test_bad_input_exits_2_naming_the_flag(args, flag):
    base = {"--model": "openai/gpt-oss-20b", "--vllm": "0.24.0",
            "--gpu": "NVIDIA H100 80GB HBM3", "--compute-capability": "9.0",
            "--gpu-memory-mib": "81559"}
    argv: list[str] = []
    for k, v in base.items():
        if k not in args:
            argv += [k, v]
    p = plan(*argv, *args, "--json")
    assert p.returncode == 2
    assert flag in p.stderr
    assert p.stdout == ""


def test_missing_required_flag_exits_2():
    p = plan("--model", "openai/gpt-oss-20b", "--json")
    assert p.returncode == 2 and "--vllm" in p.stderr


def test_make_plan_is_the_same_dict_the_json_prints():
    kwargs = dict(gpu_free_mib=81079, gpus=1, max_model_len=65536)
    direct = make_plan("openai/gpt-oss-20b", "0.11.0", "NVIDIA H100 80GB HBM3", "9.0", 81559,
                       **kwargs)
    p = plan("--model", "openai/gpt-oss-20b", "--vllm", "0.11.0", *H100,
             "--gpu-free-mib", "81079", "--gpus", "1", "--max-model-len", "65536", "--json")
    assert as_json(p) == direct.as_json()
    with pytest.raises(PlanInputError):
        make_plan("openai/gpt-oss-20b", "0.11.0", "x", "9.0", 81559, max_model_len=10**7)
    with pytest.raises(PlanInputError):
        make_plan("openai/gpt-oss-20b", "0.11.0", "x", "9.0", 81559, block_size=32)

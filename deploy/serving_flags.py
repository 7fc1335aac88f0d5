"""The serving flags a host setting and the plan command share: each range or choice written once.

``deploy.settings`` checks the inventory's values with ``refusal``; ``deploy.plan`` checks its
command-line flags with the same function, so both accept exactly the same values.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploy.model_specs import ModelSpec

KV_CACHE_DTYPES = ("auto", "fp8")
# At most 8 GPUs in one host; each size must also divide the model's attention heads.
MAX_TENSOR_PARALLEL = 8


@dataclass(frozen=True)
class Flag:
    """One ``vllm serve`` flag: its name as a setting and on the command line, and what it accepts."""

    name: str
    cli: str
    lower: float | None = None
    upper: float | None = None
    choices: tuple = ()
    why: str = ""


FLAGS = {f.name: f for f in (
    Flag("gpu_memory_utilization", "--gpu-memory-utilization", 0.0, 1.0,
         why="a fraction of the GPU's memory, greater than 0 and at most 1 (e.g. 0.9); vLLM cannot "
             "spill into host memory this way"),
    Flag("max_model_len", "--max-model-len", 1, None, why="tokens per request"),
    Flag("max_num_seqs", "--max-num-seqs", 1, 4096, why="concurrent sequences per server"),
    Flag("max_num_batched_tokens", "--max-num-batched-tokens", 1, 1_048_576, why="tokens per scheduler step"),
    Flag("tensor_parallel_size", "--tensor-parallel-size", 1, MAX_TENSOR_PARALLEL,
         why="GPUs per server"),
    Flag("kv_cache_dtype", "--kv-cache-dtype", choices=KV_CACHE_DTYPES, why="the KV cache's data type"),
)}


def tensor_parallel_sizes(spec: ModelSpec | None) -> tuple[int, ...]:
    """Sizes that split the model's attention heads evenly, up to 8 GPUs per host."""
    heads = spec.num_attention_heads if spec else 64
    return tuple(t for t in range(1, MAX_TENSOR_PARALLEL + 1) if heads % t == 0)


def accepted(name: str, spec: ModelSpec | None = None) -> str:
    """What flag ``name`` accepts, in words (for a message that says how to fix a bad value)."""
    flag = FLAGS[name]
    if name == "gpu_memory_utilization":
        return flag.why
    if name == "tensor_parallel_size":
        heads = spec.num_attention_heads if spec else 64
        return (f"one of {', '.join(map(str, tensor_parallel_sizes(spec)))} ({flag.why}; "
                f"the model's {heads} attention heads split evenly)")
    if flag.choices:
        return f"one of {', '.join(flag.choices)} ({flag.why})"
    if name == "max_model_len":
        upper = spec.max_position_embeddings if spec else 1_048_576
        return f"a whole number from 1 to {upper} (the model's maximum context is {upper})"
    return f"a whole number from {flag.lower:g} to {flag.upper:g} ({flag.why})"


def refusal(name: str, value, spec: ModelSpec | None = None) -> str | None:
    """None when ``value`` is accepted for flag ``name``; else what is accepted."""
    flag = FLAGS[name]
    if value is None:
        return None
    if name == "gpu_memory_utilization":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1
    elif flag.choices:
        ok = value in flag.choices
    elif name == "tensor_parallel_size":
        ok = isinstance(value, int) and not isinstance(value, bool) and value in tensor_parallel_sizes(spec)
    else:
        upper = (spec.max_position_embeddings if spec else 1_048_576) if name == "max_model_len" else flag.upper
        ok = isinstance(value, int) and not isinstance(value, bool) and flag.lower <= value <= upper
    return None if ok else accepted(name, spec)

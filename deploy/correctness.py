"""Kernels that exist but answer wrong: (GPU, vLLM, configuration) triples reported upstream.

deploy/kernel_support.py judges whether gpt-oss's MXFP4 MoE and attention-sink kernels exist
for an architecture in a release. Some pairs pass that test, start, serve, and answer garbage
(empty messages, noise, a GSM8K score of 0) under a given configuration. Each row here names the
reports it rests on, the versions and configuration they cover, and what to do instead. The
plan (deploy/plan.py) applies them to the configuration it chose: a match makes the plan's
`kernel_supported` false, and its reason and remedy go into `kernel_reason` and `reasons`.

Version ranges: where a report says "fixed on main" without a release, the range runs to the
next release this project read after the fix date, and says so. docs/known-wrong-output.md is
this table for people (`python -m deploy.correctness > docs/known-wrong-output.md`; a test keeps
it in step).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from packaging.specifiers import SpecifierSet
from packaging.version import Version


@dataclass(frozen=True)
class WrongOutput:
    key: str
    versions: str  # PEP 440 specifier on the release (base version)
    capabilities: tuple[str, ...]  # compute capability families: "10" matches 10.0, 10.3 ...
    symptom: str
    remedy: str
    source: str
    min_tensor_parallel: int = 1  # only at this tensor-parallel size or more
    kv_cache_dtype: str | None = None  # only with this KV cache dtype
    env: tuple[tuple[str, str], ...] = ()  # only with these variables set in the unit

    def matches(self, version: Version, capability: str, tensor_parallel_size: int,
                kv_cache_dtype: str, env: dict[str, str]) -> bool:
        release = Version(version.base_version)
        family = capability.split(".")[0]
        return (release in SpecifierSet(self.versions)
                and family in self.capabilities
                and tensor_parallel_size >= self.min_tensor_parallel
                and (self.kv_cache_dtype is None or kv_cache_dtype == self.kv_cache_dtype)
                and all(env.get(k) == v for k, v in self.env))


WRONG_OUTPUT: tuple[WrongOutput, ...] = (
    WrongOutput(
        key="blackwell-tensor-parallel",
        versions=">=0.11.1,<0.16.0",
        capabilities=("10", "12"),
        min_tensor_parallel=2,
        symptom=("with --tensor-parallel-size 2 or more the first answer is right and later ones "
                 "come back empty or as noise (GSM8K accuracy 0.000, 99.9 % invalid answers)"),
        remedy=("serve each model on one GPU (--tensor-parallel-size 1: several servers behind a "
                "balancer), or pin vLLM 0.16.0 or later"),
        source=("vllm-project/vllm#31422 (2x RTX PRO 6000 Blackwell SM120, gpt-oss-120b, reported "
                "on 0.11.1 in NGC 25.12 and on 0.13.0; a maintainer reproduced it on B200 with "
                "v0.14.0 and gpt-oss-20b -tp 2: GSM8K 0.000, and found main of 2026-02-12 correct: "
                "0.303). The first release with the fix was not read: 0.15.x is assumed affected"),
    ),
    WrongOutput(
        key="hopper-flashinfer-bf16-moe",
        versions=">=0.20.0",
        capabilities=("9",),
        env=(("VLLM_USE_FLASHINFER_MOE_MXFP4_BF16", "1"),),
        symptom=("the FLASHINFER_CUTLASS_MXFP4_BF16 MoE backend this variable selects on Hopper "
                 "returns punctuation and digits with no error (GPQA 0.0000 against >= 0.518)"),
        remedy=("leave VLLM_USE_FLASHINFER_MOE_MXFP4_BF16 unset: vLLM's default Triton MoE "
                "backend answers correctly on the same machine"),
        source=("flashinfer-ai/flashinfer#3334 (2x H200 and 2x H100, gpt-oss-20b, vLLM "
                "0.20.2rc1.dev353, flashinfer-python 0.6.11.post2, tp 2, eager); the issue is "
                "closed upstream, the release that fixed it was not read: every release from "
                "0.20.0 is treated as affected"),
    ),
    WrongOutput(
        key="hopper-fp8-kv",
        versions=">=0.10.1,<0.24.0",
        capabilities=("9",),
        kv_cache_dtype="fp8",
        symptom=("the server starts with --kv-cache-dtype fp8, then the engine fails in "
                 "flash_attn_varlen_func on the first request"),
        remedy="leave the KV cache in bf16 (no --kv-cache-dtype fp8), or pin vLLM 0.24.0 or later",
        source=("vllm-project/vllm#23832 (open; gpt-oss-120b, FlashAttention 3, --kv-cache-dtype "
                "fp8, reported 2025-08-28 when 0.10.1.1 was current). No later report says it was "
                "fixed; this project's H100 runs on 0.24.0 served with an fp8 KV cache (bench/h100/ "
                "e4, e12), so 0.10.1-0.23.x are treated as affected"),
    ),
)


def wrong_output(version: Version, capability: str, tensor_parallel_size: int,
                 kv_cache_dtype: str, env: dict[str, str]) -> list[WrongOutput]:
    """The rows whose version, GPU family and configuration all match."""
    return [r for r in WRONG_OUTPUT
            if r.matches(version, capability, tensor_parallel_size, kv_cache_dtype, env)]


def _when(row: WrongOutput) -> str:
    parts = []
    if row.min_tensor_parallel > 1:
        parts.append(f"`--tensor-parallel-size` >= {row.min_tensor_parallel}")
    if row.kv_cache_dtype:
        parts.append(f"`--kv-cache-dtype {row.kv_cache_dtype}`")
    parts += [f"`{k}={v}`" for k, v in row.env]
    return ", ".join(parts) or "always"


def page() -> str:
    """docs/known-wrong-output.md."""
    lines = [
        "# GPUs and vLLM releases where gpt-oss starts but answers wrong (generated)",
        "",
        "`docs/kernel-support.md` says whether gpt-oss's MXFP4 MoE and attention-sink kernels exist",
        "on a GPU in a vLLM release. Some pairs pass that test, start, and answer garbage in one",
        "configuration. The plan (`python -m deploy.plan`) and the preflight check these rows",
        "(`deploy/correctness.py`; `python -m deploy.correctness` writes this page) against the",
        "configuration they chose and the unit's environment: a match sets `kernel_supported: false`",
        "and says what to do. The fp8 KV cache row also keeps the planner from choosing or offering",
        "`--kv-cache-dtype fp8` where it fails.",
        "",
        "| key | compute capability | vLLM | when | what happens | what to do | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in WRONG_OUTPUT:
        caps = ", ".join(f"{c}.x" for c in r.capabilities)
        lines.append(f"| {r.key} | {caps} | `{r.versions}` | {_when(r)} | {r.symptom} | {r.remedy} "
                     f"| {r.source} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(page())

"""docs/cards.md: what the planner gives gpt-oss-20b and -120b on common cards, one GPU each.

`python -m deploy.cards > docs/cards.md` writes the page from the planner itself (vLLM 0.24.0,
an idle card, flags left to the planner, workload chat); tests/test_cards.py keeps the
committed page in step.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from deploy.plan import Plan, make_plan

VLLM = "0.24.0"


@dataclass(frozen=True)
class Card:
    gb: int  # as sold
    name: str  # as nvidia-smi prints it
    capability: str
    total_mib: int  # nvidia-smi memory.total
    source: str


CARDS: tuple[Card, ...] = (
    Card(8, "NVIDIA GeForce RTX 4060", "8.9", 8188, "typical nvidia-smi total, not measured here"),
    Card(12, "NVIDIA GeForce RTX 3060", "8.6", 12288, "typical nvidia-smi total, not measured here"),
    Card(16, "NVIDIA GeForce RTX 4080", "8.9", 16376, "typical nvidia-smi total, not measured here"),
    Card(24, "NVIDIA GeForce RTX 4090", "8.9", 24564, "typical nvidia-smi total, not measured here"),
    Card(32, "NVIDIA GeForce RTX 5090", "12.0", 32607, "typical nvidia-smi total, not measured here"),
    Card(48, "NVIDIA L40S", "8.9", 46068, "typical nvidia-smi total, not measured here"),
    Card(80, "NVIDIA H100 80GB HBM3", "9.0", 81559, "the lent H100 (bench/h100/)"),
    Card(96, "NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "12.0", 97887,
         "NVIDIA/TensorRT-LLM#12030 (nvidia-smi: 97887MiB)"),
    Card(141, "NVIDIA H200", "9.0", 143771, "the lent H200 (bench/h200/run1/smi.txt)"),
)
MODELS = ("openai/gpt-oss-20b", "openai/gpt-oss-120b")


def cell(plan: Plan) -> str:
    """One model on one card, for a table cell."""
    if not plan.kernel_supported:
        return "no kernels: " + plan.kernel.reason
    cfg, est = plan.config, plan.estimate
    if not plan.fits:
        why = {"load_peak": f"cannot load: needs {est.load_peak_gib:.1f} GiB while converting "
                            f"the experts, {est.free_gib:.1f} GiB free",
               "no_kv_memory": "weights and activations take the whole budget",
               "kv_too_small": f"KV cache too small for a {cfg.max_model_len:,}-token request"
               }.get(est.failure.value, est.failure.value)
        options = [r for r in plan.reasons if r.startswith(("more GPUs", "CPU weight offload:"))]
        return "**no**: " + why + ("; " + "; ".join(o.split(" (")[0] for o in options)
                                   if options else "")
    flags = [f"util {cfg.gpu_memory_utilization:g}"]
    if cfg.enforce_eager:
        flags.append("eager")
    if cfg.kv_cache_dtype != "auto":
        flags.append(f"KV {cfg.kv_cache_dtype}")
    flags.append(f"chunk {cfg.max_num_batched_tokens}")
    return (f"{cfg.max_model_len:,} tokens, {cfg.max_num_seqs} seqs, KV {est.kv_cache_tokens:,} "
            f"tokens ({', '.join(flags)})")


def page() -> str:
    lines = [
        "# What fits on common cards (generated)",
        "",
        f"`python -m deploy.cards > docs/cards.md` writes this page from the planner: vLLM {VLLM},",
        "one idle card (nothing else holding memory; a desktop on the same card leaves less),",
        "flags left to the planner, workload `chat`. Each cell: the longest context for one",
        "request, the sequences served at once (vLLM's own default unless memory forces fewer),",
        "the KV cache in tokens and the flags chosen; or why not, and the options. The H100 and",
        "H200 rows are backed by real start-ups (bench/h100/, bench/h200/). The 16 GB verdict",
        "rests on Marlin runs on the H200 at that budget (bench/h200/run1 b20-marlin-*): Marlin",
        "loaded 20b with 15.24 GiB free after vLLM's context (a 16 GB card has 15.0; less was not",
        "tried, so the planner refuses), and even if it loads, the share such a card can give",
        "(at most ~14.4 GiB with the KV allocation's slack) is what left vLLM no KV memory at",
        "14.15 GiB and 0.24 GiB (at most 8,288 tokens) at 14.52 GiB. The other cards are the same",
        "model of vLLM's accounting, not measured on those cards.",
        "",
        "| card | GB | capability | gpt-oss-20b | gpt-oss-120b |",
        "|---|---|---|---|---|",
    ]
    for c in CARDS:
        cells = [cell(make_plan(m, VLLM, c.name, c.capability, c.total_mib)) for m in MODELS]
        lines.append(f"| {c.name.removeprefix('NVIDIA ')} | {c.gb} | {c.capability} | "
                     f"{cells[0]} | {cells[1]} |")
    lines += ["", "Total memory per card (nvidia-smi, MiB) and where it comes from:", ""]
    lines += [f"- {c.name.removeprefix('NVIDIA ')}: {c.total_mib} ({c.source})" for c in CARDS]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(page())

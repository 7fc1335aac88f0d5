"""How close the VRAM planner comes to what vLLM itself reported at start-up.

Runs `deploy.plan.make_plan` with every flag of each start-up log in
tests/data/startup_logs/ (so the planner checks, it does not choose) and compares:

- weights: "Model loading took X GiB"
- KV memory: "Available KV cache memory: X GiB"
- KV tokens: "GPU KV cache size: N tokens"  (the accuracy target: median <= 5 %, worst <= 10 %)
- concurrency: "Maximum concurrency for N tokens per request: Xx"
- one request's need and the longest length that fits, when vLLM refused
  ("X GiB KV cache is needed", "the estimated maximum model length is N")
- the outcome: does the plan say "fits" where vLLM started, and never where vLLM failed
  (ran out of memory, refused, or had no room for one request).

Each log file holds `# key: value` lines (source, GPU, settings, outcome; `moe_backend` where
the run forced one, e.g. Marlin on the H200) and, after `---`, the lines quoted from the real
start-up. Usage: python bench/planner_accuracy.py [--json]
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy.plan import make_plan  # noqa: E402

LOGS = ROOT / "tests" / "data" / "startup_logs"

PATTERNS = {
    "weights_gib": r"Model loading took:? ([\d.]+) ?GiB",
    "kv_cache_gib": r"Available KV cache memory: (-?[\d.]+) GiB",
    "kv_cache_tokens": r"GPU KV cache size: ([\d,]+) tokens",
    "max_concurrency": r"Maximum concurrency for [\d,]+ tokens per request: ([\d.]+)x",
    "kv_needed_gib": r"\(([\d.]+) GiB KV cache is needed",
    "longest_len": r"estimated maximum model length is (\d+)",
}
# The same figures as a boot record stores them (Apron's verification reports: vLLM's own
# accounting in bytes), read when the quoted text has no log line for them.
RECORD_FIELDS = {
    "weights_gib": r'"model_weight_memory":\s*(\d+)',
    "kv_cache_gib": r'"available_kv_cache_memory":\s*(\d+)',
    "kv_cache_tokens": r'"kv_cache_tokens":\s*(\d+)',
    "max_concurrency": r'"max_concurrency":\s*([\d.]+)',
}
INT_KEYS = {"gpu_memory_mib", "gpu_free_mib", "gpus", "tensor_parallel_size", "max_model_len",
            "max_num_seqs", "max_num_batched_tokens"}


def read_case(path: Path) -> dict:
    head, _, body = path.read_text().partition("\n---\n")
    case: dict = {"file": path.name}
    for line in head.splitlines():
        m = re.match(r"# (\w+): (.*)", line)
        if not m:
            continue
        key, value = m.groups()
        if key in INT_KEYS:
            case[key] = int(value)
        elif key == "gpu_memory_utilization":
            case[key] = float(value)
        elif key == "enforce_eager":
            case[key] = value.strip() == "True"
        else:
            case[key] = value.strip()
    logged = {}
    body = body.replace("**", "")  # log lines transcribed in Markdown bold
    for key, pat in PATTERNS.items():
        found = re.findall(pat, body)
        if found:
            v = found[-1].replace(",", "")
            logged[key] = float(v) if "." in v else int(v)
    for key, pat in RECORD_FIELDS.items():
        found = re.findall(pat, body)
        if found and key not in logged:
            v = found[-1]
            logged[key] = (round(int(v) / 2**30, 3) if key.endswith("_gib")
                           else float(v) if "." in v else int(v))
    case["logged"] = logged
    return case


def plan_for(case: dict) -> dict:
    """The plan's JSON for the case's own flags."""
    return make_plan(
        case["model"], case["vllm"], case["gpu"], case["compute_capability"],
        case["gpu_memory_mib"], gpu_free_mib=case.get("gpu_free_mib"),
        gpus=case.get("gpus", 1),
        gpu_memory_utilization=case["gpu_memory_utilization"],
        max_model_len=case["max_model_len"], max_num_seqs=case["max_num_seqs"],
        max_num_batched_tokens=case["max_num_batched_tokens"],
        tensor_parallel_size=case.get("tensor_parallel_size", 1),
        kv_cache_dtype=case.get("kv_cache_dtype", "auto"),
        enforce_eager=case.get("enforce_eager", False),
        moe_backend=case.get("moe_backend"),
    ).as_json()


def _rel(pred: float, real: float) -> float | None:
    return None if not real else (pred - real) / abs(real) * 100


def evaluate(case: dict) -> dict:
    plan = plan_for(case)
    mem = plan["memory"]
    got = case["logged"]
    vllm_started = case["outcome"] == "fits"
    row = {
        "case": case["file"].removesuffix(".log"),
        "outcome": case["outcome"],
        "plan_fits": plan["fits"],
        "agree": plan["fits"] == vllm_started,
        "fits_but_failed": plan["fits"] and not vllm_started,
        "weights": (plan["weights_gib"], got.get("weights_gib")),
        # the plan clips the KV memory at 0; compare the unclipped figure
        "kv_gib": (round(mem["kv_cache_gib_unclipped"], 2), got.get("kv_cache_gib")),
        "kv_tokens": (plan["kv_cache_tokens"], got.get("kv_cache_tokens")),
        "concurrency": (plan["max_concurrency"], got.get("max_concurrency")),
        "kv_needed_gib": (mem["kv_needed_for_one_request_gib"], got.get("kv_needed_gib")),
        "longest_len": (mem["longest_model_len_that_fits"], got.get("longest_len")),
    }
    row["kv_tokens_err_pct"] = (_rel(*row["kv_tokens"]) if got.get("kv_cache_tokens")
                                else None)
    row["kv_gib_err"] = (round(row["kv_gib"][0] - got["kv_cache_gib"], 2)
                         if "kv_cache_gib" in got else None)
    row["weights_err"] = (round(plan["weights_gib"] - got["weights_gib"], 2)
                          if "weights_gib" in got else None)
    return row


def summary(rows: list[dict]) -> dict:
    tok = [abs(r["kv_tokens_err_pct"]) for r in rows if r["kv_tokens_err_pct"] is not None]
    gib = [abs(r["kv_gib_err"]) for r in rows if r["kv_gib_err"] is not None]
    w = [abs(r["weights_err"]) for r in rows if r["weights_err"] is not None]
    return {
        "cases": len(rows),
        "kv_tokens_cases": len(tok),
        "kv_tokens_median_abs_err_pct": round(statistics.median(tok), 2) if tok else None,
        "kv_tokens_worst_abs_err_pct": round(max(tok), 2) if tok else None,
        "kv_gib_cases": len(gib),
        "kv_gib_median_abs_err": round(statistics.median(gib), 2) if gib else None,
        "kv_gib_worst_abs_err": round(max(gib), 2) if gib else None,
        "weights_worst_abs_err_gib": round(max(w), 2) if w else None,
        "outcome_agreement": f"{sum(r['agree'] for r in rows)}/{len(rows)}",
        "plan_fits_but_vllm_failed": [r["case"] for r in rows if r["fits_but_failed"]],
        "plan_refused_but_vllm_started": [r["case"] for r in rows
                                          if not r["plan_fits"] and r["outcome"] == "fits"],
    }


def _fmt(pair, spec="{:.2f}") -> str:
    pred, real = pair
    if real is None:
        return "-"
    return f"{spec.format(pred)}/{spec.format(real)}"


def main(argv: list[str]) -> int:
    rows = [evaluate(read_case(p)) for p in sorted(LOGS.glob("*.log"))]
    summ = summary(rows)
    if "--json" in argv:
        print(json.dumps({"rows": rows, "summary": summ}, indent=2))
        return 0
    print("planner vs vLLM start-up logs (planned/logged; errors planned - logged)")
    print(f"{'case':42} {'vLLM':18} {'plan':5} {'weights GiB':13} {'KV GiB':13} "
          f"{'KV tokens':21} {'err %':>7} {'concurrency':13}")
    for r in rows:
        err = r["kv_tokens_err_pct"]
        print(f"{r['case']:42} {r['outcome']:18} {'fits' if r['plan_fits'] else 'no':5} "
              f"{_fmt(r['weights']):13} {_fmt(r['kv_gib']):13} "
              f"{_fmt(r['kv_tokens'], '{:,}'):21} {'' if err is None else f'{err:+.2f}':>7} "
              f"{_fmt(r['concurrency']):13}")
        extra = []
        if r["kv_needed_gib"][1] is not None:
            extra.append("one request needs " + _fmt(r["kv_needed_gib"]) + " GiB")
        if r["longest_len"][1] is not None:
            extra.append("longest length " + _fmt(r["longest_len"], "{}"))
        if extra:
            print(f"{'':42}   " + "; ".join(extra))
    print()
    for k, v in summ.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

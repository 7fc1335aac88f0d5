"""Does the planner's plan serve at least what vLLM's defaults serve, and within 5 % of the best
measured point? (issue 11)

Reads the throughput runs kept in bench/ (bench/h200/run3/throughput.json: vLLM 0.24.0 on the
lent H200, dummy weights, all requests at once, generated tokens/s per workload; each entry is
one configuration: vLLM's defaults, the former plan, sweep points), asks the planner for its
plan on that GPU for each workload, finds the measured entry with the plan's configuration and
prints, per model and workload: the plan's tokens/s, the defaults', the best point's, and the
verdict. Usage: python bench/throughput_check.py [--json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy.plan import make_plan  # noqa: E402

RUNS = [ROOT / "bench" / "h200" / "run3" / "throughput.json"]
H200 = ("NVIDIA H200", "9.0", 143771)
FREE_MIB = 143156  # nvidia-smi on the idle H200 (bench/h200/run1/smi.txt)
KEYS = ("gpu_memory_utilization", "max_model_len", "max_num_seqs", "max_num_batched_tokens")


def _key(llm: dict) -> tuple:
    return tuple(llm.get(k) for k in KEYS)


def check(entries: list[dict]) -> list[dict]:
    rows = []
    models = sorted({e["model"] for e in entries})
    for model in models:
        mine = [e for e in entries if e["model"] == model]
        defaults = next((e for e in mine if e["id"].endswith("vllm-default")), None)
        workloads = sorted({w["workload"] for e in mine for w in e["workloads"]})
        for work in workloads:
            plan = make_plan(model, "0.24.0", *H200, gpu_free_mib=FREE_MIB,
                             workload=work if work in ("chat", "long", "batch") else "chat")
            cfg = plan.config
            want = (cfg.gpu_memory_utilization, cfg.max_model_len, cfg.max_num_seqs,
                    cfg.max_num_batched_tokens)
            points = {e["id"]: next((w["out_tok_s"] for w in e["workloads"]
                                     if w["workload"] == work), None) for e in mine}
            points = {k: v for k, v in points.items() if v is not None}
            match = next((e["id"] for e in mine if _key(e["llm"]) == want and e["id"] in points),
                         None)
            plan_tps = points.get(match) if match else None
            default_tps = points.get(defaults["id"]) if defaults else None
            best_id = max(points, key=points.get)
            row = {
                "model": model, "workload": work, "plan": want, "plan_point": match,
                "plan_tok_s": plan_tps, "defaults_tok_s": default_tps,
                "best_point": best_id, "best_tok_s": points[best_id],
                "points": len(points),
            }
            row["plan_ge_defaults"] = (plan_tps is not None and default_tps is not None
                                       and plan_tps >= default_tps)
            row["within_5pct_of_best"] = (plan_tps is not None
                                          and plan_tps >= 0.95 * points[best_id])
            rows.append(row)
    return rows


def main(argv: list[str]) -> int:
    entries = [e for path in RUNS for e in json.loads(path.read_text())]
    rows = check(entries)
    if "--json" in argv:
        print(json.dumps(rows, indent=2))
        return 0
    print("plan vs vLLM's defaults vs the best measured point (generated tokens/s, H200, 0.24.0)")
    for r in rows:
        plan = "not measured" if r["plan_tok_s"] is None else f"{r['plan_tok_s']:,.1f}"
        print(f"{r['model']:20} {r['workload']:6} plan {plan} ({r['plan_point']}) "
              f"defaults {r['defaults_tok_s']:,.1f} best {r['best_tok_s']:,.1f} "
              f"({r['best_point']}, {r['points']} points) ge_defaults={r['plan_ge_defaults']} "
              f"within_5pct={r['within_5pct_of_best']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""On the lent H200: generated tokens per second and time to first token of gpt-oss under vLLM 0.24.0 for
several scheduling configurations, each started once (LLM class, dummy weights, CUDA graphs as ``vllm serve``
uses them) and given three workloads in turn: short chat, long prompts, batch (token-id prompts); "repeat"
gives rounds of them, with fresh prompts each round.

Usage: PYTHONPATH=/tmp/site python3 bench/h200/throughput.py CONFIGS_JSON OUT_JSON
CONFIGS_JSON: {"workloads": {name: {"n", "in", "out"}}, "repeat": rounds (1), "configs": [{"id", "model", "llm": {...}}]}.
"""

import json
import os
import signal
import subprocess
import sys
import time

MODELS = os.environ.get("MODELS_DIR", ".gpu/tool/models")
CHILD = r'''
import json, os, sys, time, random
a = json.loads(sys.argv[1]); workloads = a.pop("workloads"); repeat = a.pop("repeat")
from vllm import LLM, SamplingParams
a.setdefault("disable_log_stats", False)  # per-request metrics (first_token_latency) are kept only with stats on
t = time.time(); llm = LLM(**a); print("STARTED", round(time.time() - t, 1), flush=True)
for rep, (name, w) in [(r, i) for r in range(repeat) for i in workloads.items()]:  # rounds, in turn
    # fresh prompts in each round and for the warm-up: prompts seen before would be served from vLLM's
    # prefix cache (on by default), skipping their prefill (run6 call c: round 1 "served" 19,284 chat tokens/s)
    random.seed(f"warm-{name}-{rep}")
    warm = [{"prompt_token_ids": [random.randint(1000, 150000) for _ in range(w["in"])]} for _ in range(4)]
    random.seed(f"{name}-{rep}")  # runs up to run6 used seed 0 for every workload
    prompts = [{"prompt_token_ids": [random.randint(1000, 150000) for _ in range(w["in"])]} for _ in range(w["n"])]
    sp = SamplingParams(max_tokens=w["out"], ignore_eos=True, temperature=1.0)
    llm.generate(warm, sp, use_tqdm=False)
    t = time.time(); res = llm.generate(prompts, sp, use_tqdm=False); dt = time.time() - t
    toks = sum(len(r.outputs[0].token_ids) for r in res)
    ttft = sorted(r.metrics.first_token_latency for r in res if getattr(r, "metrics", None)) or [0]
    print("TPUT", json.dumps({"workload": name, "round": rep, **w, "seconds": round(dt, 2), "out_tok_s": round(toks / dt, 1),
          "total_tok_s": round((toks + w["n"] * w["in"]) / dt, 1), "ttft_p50_s": round(ttft[len(ttft) // 2], 3),
          "ttft_p90_s": round(ttft[int(len(ttft) * 0.9)], 3), "load1": os.getloadavg()[0], "at": round(time.time(), 1)}), flush=True)
'''


def main():
    spec, out = json.load(open(sys.argv[1])), sys.argv[2]
    recs = []
    deadline = time.time() + float(os.environ.get("BUDGET_S", "560"))
    for c in spec["configs"]:
        if time.time() > deadline - 60:
            recs.append({"id": c["id"], "skipped": "time budget"})
            continue
        a = {"model": os.path.join(MODELS, c["model"].split("/")[-1]), "load_format": "dummy",
             "skip_tokenizer_init": True, **c["llm"], "workloads": spec["workloads"], "repeat": spec.get("repeat", 1)}
        t = time.time()
        p = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(a)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True,
                             env=dict(os.environ, VLLM_NO_USAGE_STATS="1", PYTHONUNBUFFERED="1"))
        try:
            text = p.communicate(timeout=max(30, deadline - time.time()))[0]
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            text = p.communicate()[0]
        try:  # the engine core process too: it must not hold the GPU for the next configuration
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        rows = [json.loads(l[5:]) for l in text.splitlines() if l.startswith("TPUT ")]
        started = [l for l in text.splitlines() if l.startswith("STARTED")]
        r = {"id": c["id"], "model": c["model"], "llm": c["llm"], "wall_s": round(time.time() - t, 1),
             "start_s": float(started[0].split()[1]) if started else None, "workloads": rows}
        if not rows:
            r["error"] = text[-1500:]
        print(json.dumps(r), flush=True)
        recs.append(r)
        json.dump(recs, open(out, "w"), indent=1)


if __name__ == "__main__":
    main()

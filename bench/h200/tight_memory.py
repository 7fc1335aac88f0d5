"""On the lent H200: the memory a gpt-oss start-up really needs, for issue "tight memory".

For each case, vLLM 0.24.0 starts in its own process (LLM class, dummy weights of the real shapes, no
tokenizer, one token-id request served) while this process samples the GPU's used memory through NVML
every 10 ms and time-stamps vLLM's log lines. From that: the load-time peak (most memory used before
"Model loading took"), the memory after loading, the peak during profiling and KV allocation, and
vLLM's own figures. A second process can hold memory first (``free_gib``: the free memory to leave, as
another program on the card would), which gives the bisection for the least free memory that serves.

Usage: PYTHONPATH=/tmp/site python3 bench/h200/tight_memory.py PLAN_JSON OUT_JSONL LOG_DIR
PLAN_JSON: a list of steps; a step is a case {"id", "model", "llm": {...}, "free_gib"?, "slack_gib"?} or a
bisection {"id", "bisect": {"model", "llm", "lo", "hi", "steps", "slack_gib"}}: free memory between lo
and hi GiB, utilization set so that utilization x total = free - vLLM's context - slack_gib.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pynvml as nv

MODELS = os.environ.get("MODELS_DIR", ".gpu/tool/models")
CHILD = r'''
import json, sys
from vllm import LLM, SamplingParams
llm = LLM(**json.loads(sys.argv[1]))
out = llm.generate([{"prompt_token_ids": list(range(1000, 1032))}], SamplingParams(max_tokens=8, ignore_eos=True))
print("SERVED_TOKENS", len(out[0].outputs[0].token_ids), flush=True)
'''
FIGURES = {
    "weights_gib": r"Model loading took ([\d.]+) ?GiB",
    "kv_cache_gib": r"Available KV cache memory: (-?[\d.]+) GiB",
    "kv_cache_tokens": r"GPU KV cache size: ([\d,]+) tokens",
    "served_tokens": r"SERVED_TOKENS (\d+)",
}
VLLM_CONTEXT_GIB = 0.55  # vLLM's own CUDA context and NCCL/cuBLAS handles before its free-memory check
GIB = 2**30


def used_gib(h) -> float:
    return nv.nvmlDeviceGetMemoryInfo(h).used / GIB


def free_gib(h) -> float:
    return nv.nvmlDeviceGetMemoryInfo(h).free / GIB


def hold(h, leave_gib: float):
    """A second process that holds memory until free is about leave_gib; returns (proc, free after)."""
    ctx = 0.52  # the holder's own CUDA context
    amount = max(0.0, free_gib(h) - leave_gib - ctx)
    proc = subprocess.Popen([sys.executable, "-c", (
        "import torch,sys,time;x=torch.empty(int(%f*2**30),dtype=torch.uint8,device='cuda');"
        "print('held',flush=True);sys.stdin.read()") % amount], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()
    # trim: one correction step for the context estimate
    return proc, free_gib(h)


def run(h, total_gib: float, case: dict, log_dir: str) -> dict:
    holder, free_start = (hold(h, case["free_gib"]) if case.get("free_gib") else (None, free_gib(h)))
    llm = dict(case["llm"])
    if case.get("slack_gib") is not None:  # budget = free - vLLM's context - slack
        llm["gpu_memory_utilization"] = round((free_start - VLLM_CONTEXT_GIB - case["slack_gib"]) / total_gib, 4)
    args = {"model": os.path.join(MODELS, case["model"].split("/")[-1]), "load_format": "dummy",
            "skip_tokenizer_init": True, **llm}
    base = used_gib(h)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((time.monotonic(), used_gib(h) - base))
            time.sleep(0.01)

    threading.Thread(target=sample, daemon=True).start()
    t0 = time.monotonic()
    env = dict(os.environ, VLLM_NO_USAGE_STATS="1", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", **case.get("env", {}))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    # a start-up that hangs (or an engine process left behind) must not hold the GPU for the next case
    watchdog = threading.Timer(case.get("timeout", 300), lambda: os.killpg(proc.pid, signal.SIGKILL))
    watchdog.start()
    lines: list[tuple[float, str]] = []
    for line in proc.stdout:
        lines.append((time.monotonic(), line.rstrip()))
    rc = proc.wait()
    watchdog.cancel()
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    stop.set()
    time.sleep(0.05)
    if holder:
        holder.kill()
        holder.wait()
    log = "\n".join(l for _, l in lines)
    with open(os.path.join(log_dir, f"log-{case['id']}.txt"), "w") as f:
        f.write("\n".join(f"{t - t0:8.2f} {l}" for t, l in lines))
    rec = {"id": case["id"], "model": case["model"], "llm": llm, "rc": rc, "seconds": round(time.monotonic() - t0, 1),
           "free_at_start_gib": round(free_start, 3), "total_gib": round(total_gib, 3),
           "budget_gib": round(llm.get("gpu_memory_utilization", 0.9) * total_gib, 3)}
    for k, pat in FIGURES.items():
        m = re.findall(pat, log)
        if m:
            v = m[-1].replace(",", "")
            rec[k] = float(v) if "." in v else int(v)
    rec["fits"] = rc == 0 and rec.get("served_tokens", 0) > 0

    def when(pattern):
        return next((t for t, l in lines if re.search(pattern, l)), None)

    loaded, kv = when(r"Model loading took"), when(r"Available KV cache memory")
    peak = lambda a, b: round(max((u for t, u in samples if (a is None or t >= a) and (b is None or t <= b)),
                                  default=0.0), 3)
    rec["peak_gib"] = peak(None, None)
    if loaded:
        rec["load_peak_gib"] = peak(None, loaded)
        rec["after_load_gib"] = round(next((u for t, u in samples if t >= loaded), 0.0), 3)
        rec["profile_peak_gib"] = peak(loaded, kv)
    rec["backend_lines"] = [l[-160:] for _, l in lines if re.search(r"Mxfp4 MoE backend|attention backend|Memory profiling takes", l)][:4]
    rec["error_lines"] = [l[-300:] for _, l in lines if re.search(r"Error|out of memory|less than desired|needed", l)][-4:]
    print(json.dumps({k: rec.get(k) for k in ("id", "rc", "fits", "free_at_start_gib", "budget_gib", "weights_gib",
                      "kv_cache_gib", "load_peak_gib", "after_load_gib", "profile_peak_gib", "peak_gib", "seconds",
                      "error_lines")}), flush=True)
    return rec


def main() -> None:
    plan, out, log_dir = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
    os.makedirs(log_dir, exist_ok=True)
    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    total = nv.nvmlDeviceGetMemoryInfo(h).total / GIB
    deadline = time.monotonic() + float(os.environ.get("BUDGET_S", "540"))
    for step in plan:
        if time.monotonic() > deadline:
            print(json.dumps({"skipped": step["id"], "why": "time budget"}), flush=True)
            continue
        if "bisect" not in step:
            recs = [run(h, total, step, log_dir)]
        else:
            b, recs = step["bisect"], []
            lo, hi = b["lo"], b["hi"]
            for i in range(b["steps"]):
                if time.monotonic() > deadline:
                    break
                mid = round((lo + hi) / 2, 3)
                case = {"id": f"{step['id']}-{i}", "model": b["model"], "llm": b["llm"], "free_gib": mid,
                        "slack_gib": b["slack_gib"]}
                r = run(h, total, case, log_dir)
                recs.append(r)
                lo, hi = (lo, mid) if r["fits"] else (mid, hi)
            print(json.dumps({"bisection": step["id"], "least_free_that_served_gib": hi, "most_that_failed_gib": lo}),
                  flush=True)
        with open(out, "a") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()

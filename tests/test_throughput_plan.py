"""Issue 11: on every measured workload the plan serves at least vLLM's defaults, and within 5 %
of the best measured point (bench/throughput_check.py over bench/h200/run3 and run5: real vLLM
0.24.0 runs on the lent H200, gpt-oss-20b and 120b, three workloads)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import throughput_check  # noqa: E402


def test_plan_serves_at_least_the_defaults_and_near_the_best():
    rows = throughput_check.check(throughput_check.load())
    want = {(run, m, w) for m in ("openai/gpt-oss-20b", "openai/gpt-oss-120b")
            for w in throughput_check.WORKLOADS for run in ("run5",)}
    assert {(r["run"], r["model"], r["workload"]) for r in rows} >= want
    for r in rows:
        assert r["plan_tok_s"] is not None, r  # the plan's configuration was measured
        if r["run"] == "run5":  # the sweep: beside at least two other configurations
            assert len(r["measured"]) >= 3, r
        assert r["plan_ge_defaults"] and r["within_5pct_of_best"], r


def test_a_plan_below_the_best_is_caught():
    """The check itself: a run where another configuration serves 10 % more fails the plan."""
    runs = throughput_check.load()
    entry = next(e for e in runs["run5"] if e["id"] == "20b-256-8k")
    faster = {**entry, "workloads": [{**w, "out_tok_s": 99_999.0} for w in entry["workloads"]]}
    rows = throughput_check.check({"run5": [*runs["run5"], faster]})
    r20 = [r for r in rows if r["model"] == "openai/gpt-oss-20b"]
    assert r20 and not any(r["within_5pct_of_best"] for r in r20)
    assert all(r["best_point"] == "20b-256-8k" for r in r20)

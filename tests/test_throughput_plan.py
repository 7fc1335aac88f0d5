"""Issue 11: on every measured workload the plan serves at least vLLM's defaults, and within 5 %
of the best measured point (bench/throughput_check.py over bench/h200/run3/throughput.json)."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import throughput_check  # noqa: E402


def test_plan_serves_at_least_the_defaults_and_near_the_best():
    entries = [e for p in throughput_check.RUNS for e in json.loads(p.read_text())]
    rows = throughput_check.check(entries)
    assert {(r["model"], r["workload"]) for r in rows} >= {("openai/gpt-oss-20b", "chat"),
                                                           ("openai/gpt-oss-20b", "long"),
                                                           ("openai/gpt-oss-20b", "batch")}
    for r in rows:
        assert r["plan_tok_s"] is not None, r  # the plan's configuration was measured
        assert r["plan_ge_defaults"] and r["within_5pct_of_best"], r

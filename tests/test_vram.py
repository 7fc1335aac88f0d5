"""The VRAM planner: model data, vLLM's arithmetic on worked examples, choices and refusals.

Worked examples are real start-ups: vLLM 0.24.0 on the lent H100 (bench/h100/, logs in
tests/data/startup_logs/) and the public logs quoted there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from deploy import vram, vram_choice, vram_tables
from deploy.model_specs import GIB, GPT_OSS_20B, GPT_OSS_120B, MODELS

ROOT = Path(__file__).resolve().parents[1]
H100 = vram.Gpu("NVIDIA H100 80GB HBM3", 81559, 81079)  # FACTS.md: nvidia-smi on the lent H100
SHARED_MODELS = Path(__file__).parent / "data" / "models"  # the published config.json files (README there)


def cfg(util=0.9, mml=131072, mns=1024, mnbt=8192, kv="auto", eager=True, tp=1):
    return vram.ServeConfig(tp, util, mml, mns, mnbt, kv, eager)


# --- data ----------------------------------------------------------------------------

@pytest.mark.parametrize("spec", list(MODELS.values()), ids=list(MODELS))
def test_checkpoint_bytes_follow_from_the_architecture(spec):
    assert spec.computed_checkpoint_bytes() == spec.checkpoint_bytes
    assert spec.full_layers + spec.sliding_layers == spec.num_hidden_layers
    assert spec.checkpoint_gib == pytest.approx(spec.checkpoint_bytes / GIB)


def test_checkpoint_sizes_are_the_published_ones():
    # gpt-oss-20b model.safetensors.index.json: "total_size": 13761264768
    assert GPT_OSS_20B.checkpoint_bytes == 13_761_264_768
    assert GPT_OSS_120B.checkpoint_bytes == 65_248_815_744
    assert GPT_OSS_20B.params_computed() == 20_914_757_184
    assert GPT_OSS_120B.params_computed() == pytest.approx(117e9, rel=0.01)


@pytest.mark.parametrize("name", ["gpt-oss-20b", "gpt-oss-120b"])
def test_specs_match_config_json(name):
    path = SHARED_MODELS / name / "config.json"
    c = json.loads(path.read_text())
    s = MODELS["openai/" + name]
    assert (s.num_hidden_layers, s.hidden_size, s.num_attention_heads, s.num_key_value_heads,
            s.head_dim, s.sliding_window, s.num_local_experts, s.experts_per_token,
            s.intermediate_size, s.vocab_size, s.max_position_embeddings) == (
        c["num_hidden_layers"], c["hidden_size"], c["num_attention_heads"],
        c["num_key_value_heads"], c["head_dim"], c["sliding_window"], c["num_local_experts"],
        c["num_experts_per_tok"], c["intermediate_size"], c["vocab_size"],
        c["max_position_embeddings"])
    assert s.sliding_layers == c["layer_types"].count("sliding_attention")
    assert s.full_layers == c["layer_types"].count("full_attention")


def test_every_constant_names_its_source():
    for name, fact in vram_tables.FACTS.items():
        assert fact.source and fact.unit, name
    for name, layout in vram_tables.WEIGHT_LAYOUTS.items():
        assert layout.source, name
    for row in vram_tables.KNOWN_START_UP_OOMS:
        assert row.source and row.versions, row
    for row in vram_tables.TRITON_LOADS:
        assert row.source and row.versions, row
    for row in vram_tables.ACCOUNTING:
        assert row.source and row.versions, row


@pytest.mark.parametrize("v", ["0.10.1+gptoss", "0.11.0", "0.14.1", "0.19.0", "0.24.0",
                               "0.25.1", "0.27.0", "0.29.0", "0.30.0", "0.33.0"])
def test_version_tables_cover_every_release(v):
    # each version falls in exactly one row of each table
    base = vram.release(v)
    for table in (vram_tables.TRITON_LOADS, vram_tables.ACCOUNTING):
        assert sum(base in SpecifierSet(r.versions) for r in table) == 1
    for key, (mib, src) in vram_tables.DRIVER_RESERVE_MIB.items():
        assert mib > 0 and src, key
    for key, (gib, src) in vram_tables.CUDAGRAPH_ESTIMATE_GPU_EXTRA_GIB.items():
        assert gib >= 0 and src, key
    for versions, gib, src in vram_tables.MARLIN_PEAK_EXTRA:
        assert versions and gib > 0 and src


def test_h200_budget_is_what_cuda_reports():
    # bench/h200/run1/smi.txt: torch.cuda.mem_get_info total 150109880320 B on the lent H200;
    # the planner's total may be a little lower, never higher (the budget would be over-stated)
    h200 = vram.Gpu("NVIDIA H200", 143771)
    assert 150109880320 - 1024**2 <= h200.cuda_total_bytes <= 150109880320


# --- weights ---------------------------------------------------------------------------

@pytest.mark.parametrize("spec,backend,vllm,logged", [
    (GPT_OSS_20B, "TRITON", "0.24.0", 13.58),   # H100 run e1
    (GPT_OSS_120B, "TRITON", "0.24.0", 64.67),  # H100 run e6
    (GPT_OSS_120B, "MARLIN", "0.10.1", 65.9651),  # vllm#23278
    (GPT_OSS_120B, "TRITON", "0.14.1", 64.38),  # vllm#33155
    (GPT_OSS_20B, "MARLIN", "0.19.0", 13.72),   # myoceane.fr, A100
    (GPT_OSS_120B, "MARLIN", "0.11.2", 65.9651),  # huikang, H100 without triton_kernels
    (GPT_OSS_120B, "TRITON", "0.25.1", 61.29),  # jaminjeong: checkpoint scales freed
    (GPT_OSS_120B, "TRITON", "0.29.0", 61.43),  # apron: scale groups padded to 4
    (GPT_OSS_20B, "MARLIN", "0.30.0", 13.80),   # apron, RTX 4090
    (GPT_OSS_20B, None, "0.10.1+gptoss", 12.8848),  # vllm#22331, RTX 3090 (strided)
])
def test_weights_as_model_loading_reports_them(spec, backend, vllm, logged):
    assert vram.weights_bytes(spec, 1, backend, vllm) / GIB == pytest.approx(logged, abs=0.05)


def test_triton_load_drops_the_checkpoint_scales_from_0_25():
    # 0.24.0 keeps the checkpoint's scales beside the swizzled copy; 0.25 frees them:
    # 1/17 of the 120b expert bytes (the scales) ~ 3.34 GiB
    old = vram.weights_bytes(GPT_OSS_120B, 1, "TRITON", "0.24.0")
    new = vram.weights_bytes(GPT_OSS_120B, 1, "TRITON", "0.25.1")
    assert (old - new) / GIB == pytest.approx(3.34, abs=0.02)


def test_tensor_parallel_splits_the_weights():
    one = vram.weights_bytes(GPT_OSS_120B, 1, "MARLIN", "0.11.0")
    two = vram.weights_bytes(GPT_OSS_120B, 2, "MARLIN", "0.11.0")
    assert 0.5 * one < two < 0.53 * one
    # KV heads: 8 over 2 ranks -> half the bytes per token per layer
    assert GPT_OSS_120B.kv_bytes_per_token_per_layer(2, 2) == 1024
    assert GPT_OSS_120B.kv_bytes_per_token_per_layer(16, 2) == 256  # replicated beyond 8


# --- vLLM's KV arithmetic ------------------------------------------------------------

def test_blocks_of_one_request():
    # full group: 131072 / 16 = 8192 blocks; sliding: cdiv(127 + 8192, 16) + 1 = 521
    assert vram.blocks_per_request(GPT_OSS_20B, 131072, 8192) == 8713
    assert vram.blocks_per_request(GPT_OSS_20B, 4096, 4096) == 256 + 257


def test_kv_tokens_and_concurrency_of_h100_run_e1():
    # vLLM 0.24.0: Available KV cache memory 54.6 GiB, GPU KV cache size 2,242,921 tokens,
    # Maximum concurrency for 131,072 tokens per request: 17.11x
    e = vram.estimate(GPT_OSS_20B, H100, cfg(), "0.24.0", "TRITON")
    assert e.fits
    assert e.kv_cache_gib == pytest.approx(54.6, abs=0.05)
    assert e.max_concurrency == pytest.approx(17.11, abs=0.02)
    assert e.kv_cache_tokens == pytest.approx(2_242_921, rel=0.001)
    # page: 16 tokens x K,V x 8 heads x 64 x bf16 = 32 KiB; 12 layers per group
    assert vram.kv_layout(GPT_OSS_20B, cfg()) == (32768, 12, 2)


def test_token_report_changed_between_releases():
    old = vram.estimate(GPT_OSS_20B, H100, cfg(), "0.11.0", "TRITON")
    new = vram.estimate(GPT_OSS_20B, H100, cfg(), "0.24.0", "TRITON")
    # old: num_blocks // 2 groups * 16; new: int(concurrency * max_model_len)
    assert old.kv_cache_tokens == old.num_blocks // 2 * 16
    assert new.kv_cache_tokens == int(new.max_concurrency * 131072)


def test_one_request_needs_what_vllm_says():
    # H100 run e6 (0.24.0): "4.79 GiB KV cache is needed", estimated maximum length 93984
    e = vram.estimate(GPT_OSS_120B, H100, cfg(), "0.24.0", "TRITON")
    assert not e.fits and e.failure == "kv_too_small"
    assert e.kv_needed_gib == pytest.approx(4.79, abs=0.01)
    assert e.estimated_max_model_len == pytest.approx(93984, rel=0.02)
    # vllm#27508 (0.11.0, --max-num-batched-tokens 1024): "4.54 GiB KV cache is needed"
    e = vram.estimate(GPT_OSS_120B, H100, cfg(util=0.95, mnbt=1024, eager=False),
                      "0.11.0", "MARLIN")
    assert e.kv_needed_gib == pytest.approx(4.54, abs=0.01)
    assert e.kv_cache_gib == pytest.approx(1.71, abs=0.15)


def test_fp8_halves_the_page():
    page_auto = vram.kv_layout(GPT_OSS_20B, cfg())[0]
    page_fp8 = vram.kv_layout(GPT_OSS_20B, cfg(kv="fp8"))[0]
    assert page_fp8 * 2 == page_auto


def test_activation_peak_grows_with_tokens_and_sequences():
    t = vram.version_traits("0.24.0")
    small = vram.activation_peak_bytes(GPT_OSS_20B, cfg(mns=16, mnbt=4096), t)
    many_seqs = vram.activation_peak_bytes(GPT_OSS_20B, cfg(mns=1024, mnbt=4096), t)
    many_tokens = vram.activation_peak_bytes(GPT_OSS_20B, cfg(mns=16, mnbt=16384), t)
    assert small / GIB == pytest.approx(0.28, abs=0.03)  # H100 run e10
    assert many_seqs / GIB == pytest.approx(2.84, abs=0.05)
    assert many_tokens / GIB == pytest.approx(1.07, abs=0.03)  # H100 run e3
    # the sort-based sampler of 0.10-0.16 costs ~2.6x as much
    old = vram.activation_peak_bytes(GPT_OSS_20B, cfg(), vram.version_traits("0.11.0"))
    assert old > 2.4 * many_seqs


@pytest.mark.parametrize("v,tokens,graphs,sampler", [
    ("0.10.1+gptoss", "blocks", False, "sort"),
    ("0.11.0", "blocks", False, "sort"),
    ("0.19.0", "blocks", False, "kernel"),
    ("0.20.0", "blocks", True, "kernel"),
    ("0.24.0", "concurrency", True, "kernel"),
    ("0.28.0", "concurrency", True, "kernel"),
    ("0.29.0", "concurrency", True, "light"),  # the V2 model runner's profiling sampler
    ("0.33.0", "concurrency", True, "light"),
])
def test_version_traits(v, tokens, graphs, sampler):
    t = vram.version_traits(v)
    assert (t.token_report, t.cudagraph_in_budget, t.sampler) == (tokens, graphs, sampler)


def test_serve_defaults():
    assert vram.serve_defaults("0.24.0", 79.18, "NVIDIA H100 80GB HBM3") == (8192, 1024)
    assert vram.serve_defaults("0.24.0", 79.2, "NVIDIA A100-SXM4-80GB") == (2048, 256)
    assert vram.serve_defaults("0.24.0", 23.5, "NVIDIA GeForce RTX 4090") == (2048, 256)
    assert vram.serve_defaults("0.33.0", 178.0, "NVIDIA B200") == (16384, 1024)
    assert vram.serve_defaults("0.24.0", 178.0, "NVIDIA B200") == (8192, 1024)


def test_cuda_graphs_count_only_from_0_20():
    old = vram.estimate(GPT_OSS_20B, H100, cfg(eager=False), "0.19.0", "TRITON")
    new = vram.estimate(GPT_OSS_20B, H100, cfg(eager=False), "0.24.0", "TRITON")
    assert old.cudagraph_estimate_gib == 0 < new.cudagraph_estimate_gib
    # H100 run g1: 0.9 -> "equivalent to 0.8927 without CUDA graph memory profiling"
    assert new.cudagraph_estimate_gib == pytest.approx((0.9 - 0.8927) * 79.18, abs=0.05)


# --- refusals ------------------------------------------------------------------------

def test_requested_share_must_be_free_now():
    # H100 run e5: 12 GiB held by another process; vLLM saw 66.15/79.18 GiB free
    busy = vram.Gpu(H100.name, 81559, 81079 - 12 * 1024 - 515)
    e = vram.estimate(GPT_OSS_20B, busy, cfg(), "0.24.0", "TRITON")
    assert e.failure is vram.Failure.FREE_MEMORY and e.failure == "free_memory"
    assert e.free_gib == pytest.approx(66.15, abs=0.05)
    fixes = vram_choice.fixes(GPT_OSS_20B, busy, 1, "0.24.0", "TRITON", cfg(), e)
    assert any("--gpu-memory-utilization 0.8" in f for f in fixes)


def test_refusal_says_what_would_fit():
    c = cfg(util=0.9)  # H100 run e6: 3.51 GiB left, 4.79 GiB needed
    e = vram.estimate(GPT_OSS_120B, H100, c, "0.24.0", "TRITON")
    assert not e.fits
    text = " ".join(vram_choice.fixes(GPT_OSS_120B, H100, 2, "0.24.0", "TRITON", c, e))
    for hint in ("--max-model-len", "--kv-cache-dtype fp8", "--gpu-memory-utilization",
                 "--tensor-parallel-size 2", "--max-num-seqs"):
        assert hint in text


def test_no_memory_left_for_the_kv_cache():
    # vllm#23278: 0.10.1, Marlin, defaults -> "Available KV cache memory: -2.14 GiB"
    e = vram.estimate(GPT_OSS_120B, H100, cfg(eager=False), "0.10.1", "MARLIN")
    assert e.failure == "no_kv_memory"
    assert e.kv_cache_gib == pytest.approx(-2.14, abs=0.15)


def test_known_regression_is_refused():
    # vllm#33155: 0.14.1 ran out of memory at 0.97 on one H100
    c = cfg(util=0.97, mml=5120, mns=1, eager=False)
    assert vram.estimate(GPT_OSS_120B, H100, c, "0.14.1", "TRITON").failure == "known_oom"
    assert vram.estimate(GPT_OSS_120B, H100, c, "0.11.2", "MARLIN").fits


# --- choices -------------------------------------------------------------------------

def test_choose_raises_the_share_for_120b_on_one_h100():
    ch = vram_choice.choose(GPT_OSS_120B, H100, 1, "0.24.0", "TRITON", {})
    assert ch.estimate.fits
    assert ch.config.max_model_len == 131072
    # the least share (in steps of 0.01) that holds a full-length request with vLLM's default
    # 1024 sequences (issue 11: fewer sequences halved throughput)
    assert ch.config.gpu_memory_utilization == 0.94
    assert ch.config.max_num_seqs == 1024
    assert ch.estimate.kv_cache_gib - ch.estimate.kv_needed_gib >= 0.5
    assert [c.action for c in ch.changes] == [vram_choice.Action.UTILIZATION_RAISED]


def test_choose_takes_the_smallest_tensor_parallel_size_that_fits():
    ch = vram_choice.choose(GPT_OSS_120B, H100, 4, "0.24.0", "TRITON",
                     {"gpu_memory_utilization": 0.9})
    assert ch.config.tensor_parallel_size == 2 and ch.estimate.fits


def test_tight_card_gives_up_graphs_then_kv_precision_then_chunks_for_the_context():
    # 20b (Triton) on an 18,000 MiB card: with CUDA graphs the context would be short; the
    # planner gives up graphs, then bf16 KV, then prefill chunk size, for the longest context
    card = vram.Gpu("NVIDIA X", 18000)
    ch = vram_choice.choose(GPT_OSS_20B, card, 1, "0.24.0", "TRITON", vram_choice.Request(),
                            fp8_kv_ok=True)
    assert ch.estimate.fits and ch.config.enforce_eager and ch.config.kv_cache_dtype == "fp8"
    assert ch.config.max_model_len >= 65536
    actions = [c.action for c in ch.changes]
    assert actions[:3] == [vram_choice.Action.EAGER_SMALL_CHUNKS, vram_choice.Action.FP8_KV_CACHE,
                           vram_choice.Action.SMALLEST_CHUNKS]
    # without fp8 (an Ampere card, or a release where it answers wrong) it is not chosen
    ch = vram_choice.choose(GPT_OSS_20B, card, 1, "0.24.0", "TRITON", vram_choice.Request())
    assert ch.config.kv_cache_dtype == "auto"


def test_context_never_below_the_floor():
    # a 16,500 MiB card holds 20b's weights but not a useful context: refused, never 1 token
    for mib in (16600, 17000, 17500):
        ch = vram_choice.choose(GPT_OSS_20B, vram.Gpu("NVIDIA X", mib), 1, "0.24.0", "TRITON", {})
        assert ch.config.max_model_len >= vram_choice.PLANNING.min_context or not ch.estimate.fits


def test_choose_shortens_the_context_when_nothing_else_helps():
    l40 = vram.Gpu("NVIDIA L4", 23034)
    ch = vram_choice.choose(GPT_OSS_20B, l40, 1, "0.24.0", "MARLIN", {"max_num_seqs": 64})
    assert ch.estimate.fits
    small = vram.Gpu("NVIDIA GeForce RTX 4080", 16376)
    ch = vram_choice.choose(GPT_OSS_20B, small, 1, "0.24.0", "MARLIN", {})
    assert ch.config.max_model_len < 131072 or not ch.estimate.fits


def test_choose_follows_free_memory():
    desktop = vram.Gpu("NVIDIA GeForce RTX 4090", 24564, 21000)  # a desktop holds ~3 GB
    ch = vram_choice.choose(GPT_OSS_20B, desktop, 1, "0.24.0", "MARLIN", {})
    assert ch.config.gpu_memory_utilization < 0.9
    assert ch.estimate.fits
    assert ch.estimate.failure == ""


def test_choose_keeps_what_was_given():
    given = {"max_model_len": 32768, "max_num_seqs": 64, "gpu_memory_utilization": 0.8,
             "tensor_parallel_size": 1, "max_num_batched_tokens": 4096,
             "kv_cache_dtype": "fp8", "enforce_eager": True}
    ch = vram_choice.choose(GPT_OSS_20B, H100, 1, "0.24.0", "TRITON", given)
    c = ch.config
    assert (c.max_model_len, c.max_num_seqs, c.gpu_memory_utilization,
            c.tensor_parallel_size, c.max_num_batched_tokens, c.kv_cache_dtype,
            c.enforce_eager) == (32768, 64, 0.8, 1, 4096, "fp8", True)
    assert ch.changed == []


# --- the accuracy benchmark ------------------------------------------------------------

def test_benchmark_meets_its_targets():
    sys.path.insert(0, str(ROOT))
    from bench import planner_accuracy as bench

    rows = [bench.evaluate(bench.read_case(p))
            for p in sorted(bench.LOGS.glob("*.log"))]
    s = bench.summary(rows)
    assert s["cases"] >= 12
    assert s["kv_tokens_median_abs_err_pct"] <= 5
    assert s["kv_tokens_worst_abs_err_pct"] <= 10
    assert s["plan_fits_but_vllm_failed"] == []
    # never plan more KV memory than vLLM found (0.02 GiB: its two-decimal rounding)
    over = [(r["case"], r["kv_gib"]) for r in rows
            if r["kv_gib"][1] is not None and r["kv_gib"][0] > r["kv_gib"][1] + 0.02]
    assert over == []


def test_later_releases_count_more_outside_the_kv_cache():
    # same flags, same GPU: 0.25+ and the V2 runner of 0.29+ leave less for the KV cache
    c = cfg(util=0.9, mml=8192, mns=256, mnbt=2048, eager=False)
    kv = {v: vram.estimate(GPT_OSS_20B, H100, c, v, "TRITON").kv_cache_gib
          for v in ("0.24.0", "0.25.1", "0.29.0")}
    # weights drop by the freed scales (~0.56 GiB for 20b), the accounting adds ~1 GiB
    assert kv["0.25.1"] < kv["0.24.0"] + 0.56 - 0.9
    assert kv["0.29.0"] < kv["0.25.1"]


# --- tight memory: the load peak and the KV allocation's slack (issue 10) ---------------------

def test_tight_h200_runs_are_judged_as_vllm_did():
    # bench/h200/run1: 20b, eager, 16k context, 4 sequences, another process holding the rest
    def est(free_gib, util, backend="TRITON"):
        gpu = vram.Gpu("NVIDIA H200", 143771, round(free_gib * 1024))
        return vram.estimate(GPT_OSS_20B, gpu, cfg(util=util, mml=16384, mns=4, mnbt=2048),
                             "0.24.0", backend)

    assert est(16.505, 0.1065).failure is vram.Failure.LOAD_PEAK  # out of memory in _swizzle_mxfp4
    assert est(16.880, 0.1092).fits and est(17.255, 0.1119).fits
    assert est(16.505, 0.1065, "MARLIN").fits  # Marlin's repack needs less
    # run4 s20-triton-015: vLLM printed 5.27 GiB of KV cache, then could not allocate it
    assert est(20.005, 0.1375).failure is vram.Failure.NO_SLACK


def test_plan_says_what_it_will_serve():
    from deploy.plan import make_plan

    p = make_plan("openai/gpt-oss-20b", "0.24.0", "NVIDIA H200", "9.0", 143771)
    assert p.config.max_num_seqs == 1024  # vLLM's default: memory does not force fewer
    assert "up to 1024 requests at once" in p.serves() and "131,072 tokens" in p.serves()
    assert p.as_json()["serves"] == p.serves() and p.as_json()["workload"] == "chat"


def test_a_batch_host_with_a_small_model_gets_bigger_prefill_chunks():
    # vLLM's tuning guide: max_num_batched_tokens > 8192 for throughput, "especially for smaller
    # models on large GPUs"; on the H200 20b batches served more with 16384 (bench/h200/run5 to run7)
    from deploy.plan import make_plan

    h200 = ("NVIDIA H200", "9.0", 143771)
    batch20 = make_plan("openai/gpt-oss-20b", "0.24.0", *h200, workload="batch")
    assert batch20.config.max_num_batched_tokens == 16384 and batch20.config.max_num_seqs == 1024
    assert any("max_num_batched_tokens 16384, above vLLM's default 8192" in r for r in batch20.reasons)
    assert [c.action.value for c in batch20.changes] == ["batch_chunks"]
    for model, work in (("openai/gpt-oss-20b", "chat"), ("openai/gpt-oss-20b", "long"),
                        ("openai/gpt-oss-120b", "batch")):  # 120b takes 46 % of the H200
        assert make_plan(model, "0.24.0", *h200, workload=work).config.max_num_batched_tokens == 8192
    # a 24 GB card: 20b is not small there, and the chunk stays what memory allows
    small = make_plan("openai/gpt-oss-20b", "0.24.0", "NVIDIA GeForce RTX 4090", "8.9", 24564,
                      workload="batch")
    assert small.config.max_num_batched_tokens <= 2048
    given = make_plan("openai/gpt-oss-20b", "0.24.0", *h200, workload="batch",
                      max_num_batched_tokens=4096)
    assert given.config.max_num_batched_tokens == 4096

"""Known wrong answers (deploy/correctness.py): the plan and the preflight refuse them, with the fix."""

import pytest
from packaging.version import Version

from deploy.correctness import WRONG_OUTPUT, wrong_output
from deploy.plan import make_plan
from deploy.preflight import judge
from tests.test_preflight import UBUNTU, card, s

B200 = ("NVIDIA B200", "10.0", 183359)


def test_every_row_names_its_source_and_what_to_do():
    for row in WRONG_OUTPUT:
        assert row.source and row.remedy and row.symptom and row.capabilities, row.key


@pytest.mark.parametrize("vllm, tp, wrong", [
    ("0.14.0", 2, True),  # vllm#31422: reproduced on B200 with v0.14.0, -tp 2
    ("0.14.0", 1, False),  # one GPU per server answers right
    ("0.16.0", 2, False),  # after the fix on main
    ("0.11.0", 2, False),  # before the first report's version
])
def test_blackwell_tensor_parallel(vllm, tp, wrong):
    plan = make_plan("openai/gpt-oss-120b", vllm, *B200, gpus=2, tensor_parallel_size=tp)
    assert plan.kernel_supported is (not wrong)
    if wrong:
        assert "31422" in plan.kernel_reason
        assert any("--tensor-parallel-size 1" in r for r in plan.reasons)
        assert plan.as_json()["kernel_supported"] is False


def test_the_variable_that_selects_a_wrong_backend_on_hopper():
    env = {"VLLM_USE_FLASHINFER_MOE_MXFP4_BF16": "1"}
    assert [r.key for r in wrong_output(Version("0.24.0"), "9.0", 1, "auto", env)] == [
        "hopper-flashinfer-bf16-moe"]
    assert wrong_output(Version("0.24.0"), "9.0", 1, "auto", {}) == []


def test_fp8_kv_is_neither_accepted_nor_offered_where_it_fails():
    h100 = ("NVIDIA H100 80GB HBM3", "9.0", 81559)
    given = make_plan("openai/gpt-oss-120b", "0.19.0", *h100, kv_cache_dtype="fp8")
    assert not given.kernel_supported and "23832" in given.kernel_reason
    # 120b at 0.88 with the full context does not fit in bf16 (H100 runs e6, e8): on 0.24 the
    # planner chooses an fp8 KV cache, on 0.19 it neither chooses nor offers one
    flags = dict(gpu_memory_utilization=0.88, max_model_len=131072, max_num_seqs=256,
                 enforce_eager=True)
    new = make_plan("openai/gpt-oss-120b", "0.24.0", *h100, **flags)
    assert new.fits and new.config.kv_cache_dtype == "fp8"
    old = make_plan("openai/gpt-oss-120b", "0.19.0", *h100, **flags)
    assert old.config.kv_cache_dtype == "auto" and not any("fp8" in r for r in old.reasons)
    # an Ampere card has no FP8 for the KV cache at all
    a100 = make_plan("openai/gpt-oss-120b", "0.24.0", "NVIDIA A100-SXM4-80GB", "8.0", 81920, **flags)
    assert a100.config.kv_cache_dtype == "auto"


def test_preflight_stops_a_host_that_would_answer_wrong():
    v = judge(s(vllm_spec="vllm==0.14.0", model="openai/gpt-oss-120b", tensor_parallel_size=2), UBUNTU,
              card("NVIDIA B200", "10.0", 183359, count=2))
    assert not v.ok and v.summary == "known wrong answers"
    assert "--tensor-parallel-size 1" in v.detail


def test_the_docs_page_is_the_table():
    from pathlib import Path

    from deploy import correctness

    page = (Path(__file__).resolve().parents[1] / "docs" / "known-wrong-output.md").read_text()
    assert page == correctness.page(), \
        "docs/known-wrong-output.md is stale: run python -m deploy.correctness > docs/known-wrong-output.md"

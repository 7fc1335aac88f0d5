"""Turn the H200 runs kept here into start-up log cases for bench/planner_accuracy.py.

Each run folder (bench/h200/<run>/) holds what the lead's GPU session wrote (README.md says
which run is what): either `*.jsonl` (one JSON object per start-up: the `llm` settings, the
free memory before the start, vLLM's logged figures) with the vLLM logs in `*-logs.tgz`, or a
served unit's `*-serve.json` (its ExecStart) with `*-server.log`. This writes one
tests/data/startup_logs/h200-0.24.0-<run>-<id>.log per start-up: the `# key: value` header the
benchmark reads and the log lines that carry vLLM's figures. Usage, from the repository root:

    python bench/h200/to_startup_logs.py bench/h200/run1 [bench/h200/run2 ...]
"""

from __future__ import annotations

import json
import re
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "startup_logs"
GPU = {"gpu": "NVIDIA H200", "compute_capability": "9.0", "gpu_memory_mib": 143771}
KEEP = re.compile(r"non-default args|Mxfp4 MoE backend|attention backend|Model loading took|"
                  r"Available KV cache memory|GPU KV cache size|Maximum concurrency|"
                  r"Estimated CUDA graph memory|equivalent to --gpu-memory-utilization|"
                  r"CUDA out of memory|No available memory for the cache blocks|"
                  r"To serve at least one request|Free memory on device")
# vLLM's own defaults where a run left a flag out (0.24.0 `vllm serve` on a >= 70 GiB GPU)
DEFAULTS = {"gpu_memory_utilization": 0.9, "max_model_len": 131072, "max_num_seqs": 1024,
            "max_num_batched_tokens": 8192, "kv_cache_dtype": "auto", "enforce_eager": False,
            "tensor_parallel_size": 1}


def outcome(text: str) -> str:
    if "CUDA out of memory" in text:
        return "oom"
    if "No available memory for the cache blocks" in text:
        return "no_kv_memory"
    if "To serve at least one request" in text:
        return "kv_too_small"
    if "Free memory on device" in text and "less than desired" in text:
        return "refused_free_memory"
    return "fits" if "Available KV cache memory" in text else "unknown"


def write_case(name: str, source: str, model: str, settings: dict, free_mib: int | None,
               log_text: str, note: str = "") -> Path:
    flags = {**DEFAULTS, **{k: v for k, v in settings.items() if k in DEFAULTS}}
    lines = [f"# source: {source}", f"# model: {model}", "# vllm: 0.24.0"]
    lines += [f"# {k}: {v}" for k, v in GPU.items()]
    if free_mib is not None:
        lines.append(f"# gpu_free_mib: {free_mib}")
    lines.append("# gpus: 1")
    lines += [f"# {k}: {v}" for k, v in flags.items()]
    if settings.get("moe_backend"):
        lines.append(f"# moe_backend: {settings['moe_backend'].upper()}")
    lines.append(f"# outcome: {outcome(log_text)}")
    if note:
        lines.append(f"# note: {note}")
    kept = [ln.strip() for ln in log_text.splitlines() if KEEP.search(ln)]
    # a traceback repeats the error: keep each line once
    kept = list(dict.fromkeys(kept))
    path = OUT / f"h200-0.24.0-{name}.log"
    path.write_text("\n".join(lines) + "\n---\n" + "\n".join(kept) + "\n")
    return path


def from_jsonl(run: Path) -> list[Path]:
    out = []
    logs: dict[str, str] = {}
    for tgz in run.glob("*-logs.tgz"):
        with tarfile.open(tgz) as tar:
            for m in tar.getmembers():
                if m.isfile():
                    logs[Path(m.name).name] = tar.extractfile(m).read().decode(errors="replace")
    for plain in run.glob("log-*.txt*"):
        raw = plain.read_bytes()
        if plain.suffix == ".gz":
            import gzip

            raw = gzip.decompress(raw)
        logs.setdefault(plain.name.removesuffix(".gz"), raw.decode(errors="replace"))
    for jl in run.glob("*.jsonl"):
        for line in jl.read_text().splitlines():
            r = json.loads(line)
            text = logs.get(f"log-{r['id']}.txt", "")
            if not text:
                continue
            free = round(r["free_at_start_gib"] * 1024) if "free_at_start_gib" in r else None
            src = (f"real vLLM 0.24.0 start-up on the lent H200 (device tool, 2026-12-02), "
                   f"bench/h200/{run.name}/{jl.name} id {r['id']}, log log-{r['id']}.txt in "
                   f"bench/h200/{run.name}/ (dummy weights of the real shapes, LLM class)")
            note = ("another process held the rest of the GPU: gpu_free_mib is nvidia-smi's free "
                    "memory before the start") if free and free < 140000 else ""
            out.append(write_case(f"{run.name}-{r['id']}", src, r["model"], r["llm"], free, text,
                                  note))
    return out


def from_serve(run: Path) -> list[Path]:
    out = []
    for sj in run.glob("*-serve.json"):
        r = json.loads(sj.read_text())
        argv = r["exec_start"]
        settings = {}
        for flag, key, kind in (("--gpu-memory-utilization", "gpu_memory_utilization", float),
                                ("--max-model-len", "max_model_len", int),
                                ("--max-num-seqs", "max_num_seqs", int),
                                ("--max-num-batched-tokens", "max_num_batched_tokens", int),
                                ("--tensor-parallel-size", "tensor_parallel_size", int),
                                ("--kv-cache-dtype", "kv_cache_dtype", str)):
            if flag in argv:
                settings[key] = kind(argv[argv.index(flag) + 1])
        settings["enforce_eager"] = "--enforce-eager" in argv
        model = argv[argv.index("--served-model-name") + 1]
        log = run / sj.name.replace("-serve.json", "-server.log")
        src = (f"the deploy's own unit run on the lent H200 (2026-12-02): bench/h200/{run.name}/"
               f"{sj.name} (ExecStart, --load-format dummy added) and {log.name}")
        out.append(write_case(f"{run.name}-{sj.name.removesuffix('-serve.json')}", src, model,
                              settings, 143156, log.read_text(errors="replace"),
                              "nothing else on the GPU: nvidia-smi showed 143156 MiB free"))
    return out


def main(argv: list[str]) -> int:
    for arg in argv:
        run = Path(arg)
        for p in from_jsonl(run) + from_serve(run):
            print(p.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

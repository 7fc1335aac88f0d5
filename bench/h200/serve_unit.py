"""On the lent H200: run a rendered unit's ExecStart as a process (no systemd there), with the variables
of its environment file, then its ExecStartPost readiness check, the deploy's endpoint checks and the NVML
read-back, and stop it. Prints one JSON record: the plan beside vLLM's own start-up figures.

Usage: MODEL_CONFIG=config.json python3 bench/h200/serve_unit.py UNIT_FILE ENV_FILE LOG_FILE [--tokenizer DIR]

Added to the unit's command line, and said so in the record: ``--load-format dummy`` (weights of the real
shapes, random values: the machine cannot download gpt-oss), and either the offline o200k_harmony
tokenizer (DIR: tokenizer files copied into the model folder, TIKTOKEN_ENCODINGS_BASE=DIR) or
``--skip-tokenizer-init`` with token-id completions in place of the chat check.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import requests

from deploy import endpoint_check

FIGURES = {
    "weights_gib": r"Model loading took ([\d.]+) ?GiB",
    "kv_cache_gib": r"Available KV cache memory: (-?[\d.]+) GiB",
    "kv_cache_tokens": r"GPU KV cache size: ([\d,]+) tokens",
    "max_concurrency": r"Maximum concurrency for [\d,]+ tokens per request: ([\d.]+)x",
    "cuda_graph_gib": r"Graph capturing finished in .*? took (-?[\d.]+) GiB",
    "moe_backend": r"Using '?(\w+)'? Mxfp4 MoE backend",
    "attention_backend": r"Using (\w+) attention backend",
}


def unit_lines(path: str, key: str) -> list[str]:
    """The argv of a unit's KEY= line, unquoted by systemd's rules as deploy.serving writes them."""
    line = next(l for l in open(path).read().splitlines() if l.startswith(key + "="))
    return [a if a == "$MAINPID" else a.replace("$$", "$").replace("%%", "%") for a in shlex.split(line[len(key) + 1:])]


def token_checks(url: str, model: str, key: str) -> dict:
    """Without a tokenizer: a token-id completion with the key (200, tokens back), without it 401."""
    body = {"model": model, "prompt": list(range(1000, 1032)), "max_tokens": 16, "ignore_eos": True}
    auth = {"Authorization": f"Bearer {key}"}
    t = time.monotonic()
    r = requests.post(f"{url}/v1/completions", headers=auth, json=body, timeout=300)
    assert r.status_code == 200, f"token-id completion gave {r.status_code}: {r.text[:300]}"
    usage = r.json().get("usage") or {}
    assert usage.get("completion_tokens") == 16, r.text[:300]
    anon = requests.post(f"{url}/v1/completions", json=body, timeout=60)
    assert anon.status_code == 401, f"without the key: {anon.status_code}"
    models = requests.get(f"{url}/v1/models", headers=auth, timeout=30).json()
    assert model in [m["id"] for m in models["data"]], models
    return {"completion_s": round(time.monotonic() - t, 2), "completion_tokens": 16,
            "gpu_free_mib": endpoint_check.gpu_headroom_mib()}


def main() -> int:
    unit, env_file, log_path = sys.argv[1:4]
    tok = sys.argv[5] if len(sys.argv) > 5 and sys.argv[4] == "--tokenizer" else None
    argv = unit_lines(unit, "ExecStart")
    env = dict(os.environ, **endpoint_check.read_env_file(env_file))
    model_dir = argv[argv.index("--model") + 1]
    served = argv[argv.index("--served-model-name") + 1]
    url = "http://127.0.0.1:" + argv[argv.index("--port") + 1]
    os.makedirs(model_dir, exist_ok=True)  # the published config.json only: the weights are dummy
    shutil.copy(os.environ["MODEL_CONFIG"], os.path.join(model_dir, "config.json"))
    added = ["--load-format", "dummy"]
    if tok:
        for name in os.listdir(tok):
            if name.endswith(".json"):
                shutil.copy(os.path.join(tok, name), model_dir)
        env["TIKTOKEN_ENCODINGS_BASE"] = tok
    else:
        added.append("--skip-tokenizer-init")
    argv[0] = sys.executable  # the unit's venv Python: here the image's python3 with vLLM in PYTHONPATH
    rec = {"exec_start": argv, "added": added, "tokenizer": "o200k_harmony offline" if tok else "none (token ids)",
           "env_names": sorted(k for k in endpoint_check.read_env_file(env_file))}
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv + added, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ready = [str(proc.pid) if a == "$MAINPID" else a for a in unit_lines(unit, "ExecStartPost")]
        ready[0] = sys.executable
        rc = subprocess.run(ready, env=env).returncode
        rec["exec_start_post_rc"] = rc
        rec["ready_s"] = round(time.monotonic() - t0, 1)
        if rc == 0:
            key = endpoint_check.read_env_file(env_file)["VLLM_API_KEY"]
            try:
                if tok:
                    rec["checks"] = endpoint_check.verify(url, served, key, 60, lambda: proc.poll() is None)
                else:
                    rec["checks"] = token_checks(url, served, key)
                rec["checks_passed"] = True
            except (AssertionError, requests.RequestException) as exc:
                rec["checks_passed"], rec["check_error"] = False, str(exc)[:500]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = open(log_path, errors="replace").read()
    for k, pat in FIGURES.items():
        found = re.findall(pat, text)
        if found:
            v = found[-1].replace(",", "")
            rec[k] = v if k.endswith("backend") else (float(v) if "." in v else int(v))
    rec["error_lines"] = [l[-300:] for l in text.splitlines() if re.search(r"Error|out of memory", l)][-5:]
    print(json.dumps(rec), flush=True)
    return 0 if rec.get("checks_passed") else 1


if __name__ == "__main__":
    sys.exit(main())

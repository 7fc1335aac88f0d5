"""Read the GPUs through NVML (``nvidia-ml-py``): real free memory and per-process memory.

Runs where the driver and a Python with ``nvidia-ml-py`` are present (vLLM's venv has it), e.g.
``/opt/vllm/current/bin/python -m deploy.nvml_probe`` or the fact ``NvmlFacts``. Prints one JSON
object. NVML's "used" includes memory the driver reserves, which nvidia-smi shows as 0 MiB used
(tests/fixtures/gpu/h100-80gb-hbm3/: nvidia-smi.txt and nvml.json of the H100 read on 2026-11-22).
"""

from __future__ import annotations

import json
import sys

MIB = 1024**2


def probe() -> dict:
    import pynvml as nv

    nv.nvmlInit()
    try:
        out = {"driver_version": _text(nv.nvmlSystemGetDriverVersion()),
               "cuda_driver_version": nv.nvmlSystemGetCudaDriverVersion_v2(), "gpus": []}
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            major, minor = nv.nvmlDeviceGetCudaComputeCapability(h)
            procs = []
            for p in nv.nvmlDeviceGetComputeRunningProcesses(h):
                procs.append({"pid": p.pid, "used_bytes": p.usedGpuMemory})
            out["gpus"].append({"index": i, "name": _text(nv.nvmlDeviceGetName(h)),
                                "uuid": _text(nv.nvmlDeviceGetUUID(h)), "compute_capability": f"{major}.{minor}",
                                "total_bytes": mem.total, "free_bytes": mem.free, "used_bytes": mem.used,
                                "total_mib": mem.total // MIB, "free_mib": mem.free // MIB, "processes": procs})
        return out
    finally:
        nv.nvmlShutdown()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


if __name__ == "__main__":
    try:
        print(json.dumps(probe()))
    except Exception as exc:  # noqa: BLE001 - a host without a driver is a fact, not a crash
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        sys.exit(1)

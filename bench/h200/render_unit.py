"""Run by pyinfra on the lent H200 (``pyinfra -y INVENTORY bench/h200/render_unit.py``, @local): the
deploy's own preflight (GpuFacts, NvmlFacts, the kernel table, the VRAM plan) for this machine, then the
unit and environment file rendered exactly as ``deploy.service`` writes them, into $RENDER_OUT.

Nothing is installed: the machine has no systemd and no network; ``serve_unit.py`` then runs the
unit's ExecStart as a process.
"""

import json
import os
from pathlib import Path

from pyinfra import host

from deploy.run import inventory_settings, preflight_this_host
from deploy.service import env_text, unit_text

s = inventory_settings()[host.name]
verdict = preflight_this_host(s)
out = Path(os.environ["RENDER_OUT"])
out.mkdir(parents=True, exist_ok=True)
(out / "verdict.json").write_text(json.dumps({
    "ok": verdict.ok, "summary": verdict.summary, "detail": verdict.detail, "gpus": verdict.gpus,
    "vram": verdict.vram, "driver": verdict.driver, "plan": verdict.plan, "kernel_env": verdict.kernel_env,
}, indent=1, default=str) + "\n")
if verdict.ok:
    (out / f"{s.service_name}.service").write_text(unit_text(s, verdict.plan_args, None))
    fd = os.open(out / f"{s.service_name}.env", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(env_text(s, verdict.kernel_env))
print(f"rendered for {host.name}: {verdict.summary} {verdict.detail}", flush=True)

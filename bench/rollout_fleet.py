"""Wall time of a first rollout and of a converged re-run for 1, 2 and 4 disposable hosts, and the
bytes fetched from outside this machine for each host count, with and without the fleet cache.

Each case boots fresh lab hosts with empty uv caches (as separate machines would be), runs
``python -m deploy.rollout inventories/lab.py --canary 1`` (hub model source: the tiny model from
the fleet's hub mirror), then the same command again (converged: every host verified, nothing
changed). Bytes from outside = what the hosts pulled through the lab's NAT (apt lists and packages,
PyPI without the cache) + what the fleet cache pulled from PyPI (its proxpi folder's growth; a
fresh folder per case). Needs root (lab hosts; ``VLLM_LAB_ID`` picks the lab, as for the tests):

    .venv/bin/python bench/rollout_fleet.py [--counts 1,2,4] [--without-cache 4] [--json]

Output of real runs: bench/rollout-run/.

8 hosts do not fit: each cpu vLLM server holds ~2.3 GB of the machine's 24 GB next to the other labs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy.fleet.hub_mirror import publish  # noqa: E402
from lab import demo  # noqa: E402
from lab.hosts import CONTROLLER_IP  # noqa: E402

MIB = 2**20


def rollout(lab, report_dir: Path, commit: str, *extra: str) -> tuple[float, dict]:
    env = dict(os.environ, VLLM_LAB_DIR=str(lab.state_dir), COLUMNS="200")
    cmd = [sys.executable, "-m", "deploy.rollout", "inventories/lab.py", "--canary", "1", "--report-dir",
           str(report_dir), "--data", "model_source=hub", "--data", f"model_revision={commit}",
           # the figures kept in bench/rollout-run/ were taken before the front door became the default
           "--data", "front_door=false", *extra]
    t = time.monotonic()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - t
    report = json.loads((report_dir / "latest.json").read_text())
    if out.returncode != 0:
        print(out.stdout[-4000:], out.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"rollout failed (exit {out.returncode})")
    return seconds, report


def case(n: int, fleet_cache: bool) -> dict:
    lab = demo.prepare(n, ufw_hosts=0, shared_uv_cache=False)
    work = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    try:
        commit = publish(lab.state_dir / "tiny-model", work / "fleet" / "hub", "tiny-chat")
        extra = ["--fleet-cache", CONTROLLER_IP, "--fleet-cache-dir", str(work / "fleet")] if fleet_cache else []
        if not fleet_cache:  # without the package cache the hosts still fetch the model from the hub mirror
            extra += ["--data", f"fleet_hub_url=http://{CONTROLLER_IP}:8090"]
        mirror = None
        if not fleet_cache:
            from deploy.fleet.hub_mirror import serve
            mirror, _ = serve(work / "fleet" / "hub", CONTROLLER_IP, 8090)
        nat0 = lab.outside_bytes()
        first_s, report = rollout(lab, work / "r1", commit, *extra)
        nat = lab.outside_bytes() - nat0
        cache = (report.get("outside_bytes") or {}).get("packages", 0)
        again_s, again = rollout(lab, work / "r2", commit, *extra)
        changes = sum(h["changes"] or 0 for h in again["hosts"])
        if mirror:
            mirror.shutdown()
        return {"hosts": n, "fleet_cache": fleet_cache, "first_rollout_s": round(first_s, 1),
                "converged_rerun_s": round(again_s, 1), "rerun_changes": changes,
                "outside_bytes": nat + cache, "host_nat_bytes": nat, "cache_fetched_bytes": cache,
                "states": sorted({h["state"] for h in report["hosts"]})}
    finally:
        lab.down()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--counts", default="1,2,4")
    p.add_argument("--without-cache", default="4", help="host counts also measured without the fleet cache")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = []
    for n in [int(x) for x in args.counts.split(",")]:
        rows.append(case(n, fleet_cache=n > 1))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    for n in [int(x) for x in args.without_cache.split(",") if x]:
        rows.append(case(n, fleet_cache=False))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'hosts':>5} {'cache':>5} {'first s':>8} {'re-run s':>8} {'changes':>7} {'outside MiB':>11} "
          f"{'host NAT MiB':>12} {'cache MiB':>9}")
    for r in rows:
        print(f"{r['hosts']:>5} {'on' if r['fleet_cache'] else 'off':>5} {r['first_rollout_s']:>8} "
              f"{r['converged_rerun_s']:>8} {r['rerun_changes']:>7} {r['outside_bytes'] / MIB:>11.1f} "
              f"{r['host_nat_bytes'] / MIB:>12.1f} {r['cache_fetched_bytes'] / MIB:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

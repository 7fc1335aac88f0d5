"""How often one host lost mid-deploy stops pyinfra for the others, with and without
``deploy/lost_connections.py``.

Two disposable lab hosts run ``bench/lost_host_deploy.py`` (180 short operations: a fact and a
command, a command, an SFTP upload, 60 times); at a random moment (2 to 10 s in) lab2's power is
cut (``Lab.kill``). Only trials where lab2 was lost while pyinfra ran count; of those, "stopped" ones
are where lab1 never ran the last operation, with the error pyinfra stopped on. lab2 boots again
from its disk for the next trial. Needs root (lab hosts; ``VLLM_LAB_ID`` picks the lab):

    .venv/bin/python bench/lost_host.py [--trials 12]

Output of a real run: bench/lost-host-run/.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy.rollout import internal_error  # noqa: E402
from lab.hosts import Lab  # noqa: E402

DEPLOY = ROOT / "bench" / "lost_host_deploy.py"
INVENTORY = ROOT / "inventories" / "lab.py"


def trial(lab: Lab, fix: bool) -> tuple[bool, bool, str]:
    """(lab2 was killed during the run, lab1 reached the last operation, what stopped pyinfra if anything)."""
    killed = threading.Event()

    def kill():
        lab.kill("lab2")
        killed.set()

    timer = threading.Timer(random.uniform(2, 10), kill)
    env = dict(os.environ, VLLM_LAB_DIR=str(lab.state_dir), LOST_HOST_FIX="1" if fix else "0")
    timer.start()
    proc = subprocess.run([str(Path(sys.executable).parent / "pyinfra"), "-y", "--limit", "lab1", "--limit", "lab2",
                           str(INVENTORY), str(DEPLOY)], capture_output=True, text=True, cwd=ROOT, env=env)
    during = killed.is_set()  # the power went while pyinfra ran
    timer.cancel()
    timer.join()  # a kill already under way ends before lab2 is booted again
    lines = (proc.stdout + proc.stderr).splitlines()
    end = next((i for i, ln in enumerate(lines) if ln.startswith("--> Starting operation: last")), None)
    reached = end is not None and any("[lab1]" in ln and "Success" in ln for ln in lines[end:end + 4])
    if killed.is_set():
        lab.start_again("lab2")
    return during, reached, internal_error(lines) or ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    lab = Lab()
    lab.up(2)
    try:
        for fix in (False, True):
            results = [r for r in (trial(lab, fix) for _ in range(args.trials)) if r[0]]  # killed mid-run
            stopped = [why for _during, reached, why in results if not reached]
            print(f"{'with' if fix else 'without'} lost_connections: lab1 stopped by lab2's loss in "
                  f"{len(stopped)} of {len(results)} trials where lab2 was lost mid-run "
                  f"({', '.join(sorted(set(stopped))) or '-'})", flush=True)
    finally:
        lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())

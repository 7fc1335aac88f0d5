"""How often one host lost mid-deploy stops pyinfra for the others, with and without
``deploy/lost_connections.py``.

Two disposable lab hosts run ``bench/lost_host_deploy.py`` (180 short operations: a fact and a
command, a command, an SFTP upload, 60 times); at a random moment (2 to 10 s in) lab2's power is
cut (``Lab.kill``); a trial counts as "others stopped" when lab1 never ran the last operation. lab2
boots again from its disk for the next trial. Needs root (lab hosts; ``VLLM_LAB_ID`` picks the lab):

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

from lab.hosts import Lab  # noqa: E402

DEPLOY = ROOT / "bench" / "lost_host_deploy.py"
INVENTORY = ROOT / "inventories" / "lab.py"


def trial(lab: Lab, fix: bool) -> tuple[bool, str]:
    """(lab1 reached the last operation, the exception pyinfra stopped on if it did)."""
    timer = threading.Timer(random.uniform(2, 10), lambda: lab.kill("lab2"))
    env = dict(os.environ, VLLM_LAB_DIR=str(lab.state_dir), LOST_HOST_FIX="1" if fix else "0")
    timer.start()
    proc = subprocess.run([str(Path(sys.executable).parent / "pyinfra"), "-y", "--limit", "lab1", "--limit", "lab2",
                           str(INVENTORY), str(DEPLOY)], capture_output=True, text=True, cwd=ROOT, env=env)
    timer.cancel()
    out = proc.stdout + proc.stderr
    lines = out.splitlines()
    end = next((i for i, ln in enumerate(lines) if ln.startswith("--> Starting operation: last")), None)
    reached = end is not None and any("[lab1]" in ln and "Success" in ln for ln in lines[end:end + 4])
    crash = [ln.split(" failed with ")[-1] for ln in lines if "> failed with " in ln]
    lab.start_again("lab2")
    return reached, (crash[0] if crash else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    lab = Lab()
    lab.up(2)
    try:
        for fix in (False, True):
            results = [trial(lab, fix) for _ in range(args.trials)]
            stopped = [why for reached, why in results if not reached]
            print(f"{'with' if fix else 'without'} lost_connections: lab1 stopped by lab2's loss in "
                  f"{len(stopped)} of {args.trials} trials ({', '.join(sorted(set(stopped))) or '-'})", flush=True)
    finally:
        lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""run7: where the GPU ran no kernel during each measurement. Reads bench/h200/run7/throughput.json
and the nvidia-smi samples taken every 2 s beside it (clocks-<call>.csv: SM clock, power,
utilization, clock event reasons) and prints, per measurement, its tokens/s, how many samples
inside it read 0 % utilization (no kernel ran in that sample's period, up to 1 s: nvidia-smi's
utilization.gpu), the SM clock range and any clock event reason other than none or idle.

Usage: python bench/h200/idle_gaps.py
"""

import csv
import datetime
import json
from pathlib import Path

RUN = Path(__file__).resolve().parent / "run7"


def _samples(call: str) -> list[tuple[float, int, int, str]]:
    """(time, SM MHz, utilization %, event reasons) of each nvidia-smi sample of one call."""
    with open(RUN / f"clocks-{call}.csv") as f:
        rows = list(csv.reader(f))
    out = []
    for r in rows[1:]:
        if len(r) != len(rows[0]):
            continue
        # nvidia-smi stamps local time; the lent machine runs on UTC (its memory frees 2-4 s
        # after each call's last workload ends, by the records' epoch `at`)
        t = datetime.datetime.strptime(r[0].strip(), "%Y/%m/%d %H:%M:%S.%f")
        out.append((t.replace(tzinfo=datetime.UTC).timestamp(), int(r[1].split()[0]),
                    int(r[5].split()[0]), r[7].strip()))
    return out


def main() -> None:
    for e in json.loads((RUN / "throughput.json").read_text()):
        samples = _samples(e["call"])
        for w in e["workloads"]:
            inside = [s for s in samples if w["at"] - w["seconds"] <= s[0] <= w["at"]]
            if not inside:
                print(f"{e['call']} {e['id']:18} {w['workload']:5} round {w['round']} no sample")
                continue
            idle = sum(1 for s in inside if s[2] == 0)
            reasons = {s[3] for s in inside} - {"0x0000000000000000", "0x0000000000000001"}
            print(f"{e['call']} {e['id']:18} {w['workload']:5} round {w['round']} "
                  f"{w['out_tok_s']:>9,.1f} tok/s  samples at 0 % {idle} of {len(inside)}  "
                  f"SM {min(s[1] for s in inside)}-{max(s[1] for s in inside)} MHz"
                  + (f"  reasons {sorted(reasons)}" if reasons else ""))


if __name__ == "__main__":
    main()

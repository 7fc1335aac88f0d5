"""Runs ON the host (``python3 -c``, standard library only): GET /health, then /metrics twice.

Prints one JSON line: the health status (None when nothing answers), and each read's time and text.
Called by ``deploy.status_facts.ServingFacts`` with the base URL and the seconds between the reads.
"""

import json
import sys
import time
import urllib.error
import urllib.request

# the server is on this host: never through a proxy from the environment
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url):
    try:
        with OPENER.open(url, timeout=3) as answer:
            return answer.status, answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (OSError, ValueError) as exc:
        return None, str(exc)


def main(base, sample_s):
    health, _ = get(base + "/health")
    reads, error = [], None
    for i in range(2):
        if i:
            time.sleep(sample_s)
        status, text = get(base + "/metrics")
        if status != 200:
            error = f"GET /metrics: {status or text}"
            break
        reads.append({"t": time.time(), "text": text})
    print("PROBE=" + json.dumps({"health": health, "reads": reads, "error": error}))


main(sys.argv[1].rstrip("/"), float(sys.argv[2]))

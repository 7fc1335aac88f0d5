"""Runs ON the host (``python3 -c``, standard library only): GET /health, then /metrics twice.

Prints one JSON line: the health status (None when nothing answers), and each read's time and text.
Called by ``deploy.status_facts.ServingFacts`` with the base URL and the seconds between the reads,
and, where the host has a front door, its base URL: then ``/health`` is also read through it, the
way clients come in (status in ``front_door``; None when nginx does not answer).
"""

import json
import ssl
import sys
import time
import urllib.error
import urllib.request

# the server is on this host: never through a proxy from the environment
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# the front door over loopback on the host itself: the question is whether nginx passes requests on,
# not who answers (the CA stays on the controller; clients check the certificate against it)
UNCHECKED_TLS = ssl.create_default_context()
UNCHECKED_TLS.check_hostname = False
UNCHECKED_TLS.verify_mode = ssl.CERT_NONE
FRONT_DOOR_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                urllib.request.HTTPSHandler(context=UNCHECKED_TLS))


def get(url, opener=OPENER):
    try:
        with opener.open(url, timeout=3) as answer:
            return answer.status, answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (OSError, ValueError) as exc:
        return None, str(exc)


def main(base, sample_s, front_door=""):
    health, _ = get(base + "/health")
    out = {}
    if front_door:
        out["front_door"] = get(front_door + "/health", FRONT_DOOR_OPENER)[0]
    reads, error = [], None
    for i in range(2):
        if i:
            time.sleep(sample_s)
        status, text = get(base + "/metrics")
        if status != 200:
            error = f"GET /metrics: {status or text}"
            break
        reads.append({"t": time.time(), "text": text})
    print("PROBE=" + json.dumps({"health": health, "reads": reads, "error": error, **out}))


main(sys.argv[1].rstrip("/"), float(sys.argv[2]), sys.argv[3].rstrip("/") if len(sys.argv) > 3 else "")

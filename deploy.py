"""What pyinfra runs: ``pyinfra inventories/lab.py deploy.py``.

Every host's settings are checked first (nothing runs anywhere if one is bad); then each host is
judged (preflight), given uv and the pinned vLLM, the model weights, a firewall that opens the
serving port only to the allowed sources, a systemd unit, and a verified endpoint.
"""

from deploy.lost_connections import lost_host_stops_here, tolerate_lost_connections
from deploy.run import deploy_this_host

tolerate_lost_connections()  # a host lost mid-run fails alone, not every host (pyinfra issue #1220)
with lost_host_stops_here():
    deploy_this_host()

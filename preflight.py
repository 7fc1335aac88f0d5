"""A preflight-only run: ``pyinfra inventories/lab.py preflight.py``.

Checks every host's settings, reads each host's facts (platform, GPUs, driver, what is installed)
and prints one table for the whole inventory: host, platform, GPUs, compute capability, VRAM
free/total, driver and the verdict with its VRAM plan; a host that cannot serve gets the reason and
what to do. It changes nothing on any host.
"""

from deploy.lost_connections import lost_host_stops_here, tolerate_lost_connections
from deploy.run import preflight_only

tolerate_lost_connections()  # a host lost mid-run fails alone, not every host (pyinfra issue #1220)
with lost_host_stops_here():
    preflight_only()

"""bench/lost_host.py's deploy: many short operations, so that a lost host is lost as one starts."""

import os
import tempfile

from pyinfra.operations import files, server

if os.environ.get("LOST_HOST_FIX") == "1":
    from deploy.lost_connections import tolerate_lost_connections

    tolerate_lost_connections()

BLOB = os.path.join(tempfile.gettempdir(), "lost-host-blob.bin")
if not os.path.exists(BLOB):
    with open(BLOB, "wb") as f:
        f.write(os.urandom(3_000_000))
for i in range(60):
    files.directory(name=f"folder {i}", path=f"/tmp/lost-host/{i}")
    server.shell(name=f"command {i}", commands=["true"])
    files.put(name=f"upload {i}", src=BLOB, dest=f"/tmp/lost-host/blob{i % 3}.bin")
server.shell(name="last", commands=["true"])

"""This machine as its own server: ``sudo -E .venv/bin/pyinfra -y inventories/workstation.py deploy.py``.

The fresh workstation: pyinfra runs the deploy on the machine it runs on (``@local``, no SSH).
Settings go in the dict below (every setting, its default and meaning: the table at the top of
``deploy/settings.py``), or on the command line with pyinfra's ``--data``, which overrides them:
``pyinfra @local deploy.py --data model=openai/gpt-oss-120b``. The API key is read from
``$VLLM_API_KEY`` or the file named by ``api_key_file``. Served on 127.0.0.1 by default: only
this machine reaches it, and no firewall rule is needed.
"""

workstation = [
    ("@local", {
        # "model": "openai/gpt-oss-20b",
        # "vllm_spec": "vllm==0.24.0",
        # "max_model_len": 32768,
        # "bind_address": "0.0.0.0", "allowed_sources": ["192.168.1.0/24"],   # serve the LAN too
    }),
]

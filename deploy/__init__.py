"""Provision hosts to serve gpt-oss with vLLM: one module per concern, run by ``deploy.py``."""

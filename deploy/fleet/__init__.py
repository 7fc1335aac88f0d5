"""Controller-side fleet orchestration: waves, per-host results, the report, the fleet's caches.

Code here runs on the controller only (never on a host); ``deploy.rollout`` is its command.
"""

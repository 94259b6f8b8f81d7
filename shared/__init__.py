"""Fine-tune Autopilot: what ships to the Function App (config, events, ledger, services, the platform port and
the Azure ML adapter). The local twin is `local/`, the `autopilot` CLI `autopilot/`; neither is imported here.

Nothing imported here may pull in azure.ai.ml, mlflow, torch or transformers: ``function_app`` imports
this package at start-up and those load on first use only.
"""

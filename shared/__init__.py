"""Fine-tune Autopilot: the app's code (config, events, ledger, services, platforms, local host, CLI).

Nothing imported here may pull in azure.ai.ml, mlflow, torch or transformers: ``function_app`` imports
this package at start-up and those load on first use only.
"""

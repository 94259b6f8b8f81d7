"""A valid training config for the control-plane tests, as a dict and as the bytes a user drops."""

from __future__ import annotations

import yaml

from shared.config.loader import load_config
from shared.config.model import TrainingConfig

CONFIG = {
    "model": {"name": "Phi-3-mini-4k-instruct"},
    "data": {
        "train": "azureml://datastores/workspaceblobstore/paths/ultrachat/train_sft.jsonl",
        "test": "azureml://datastores/workspaceblobstore/paths/ultrachat/test_sft.jsonl",
    },
    "compute": {"cluster": "gpu-cluster"},
    "training": {"num_train_epochs": 3, "learning_rate": 5e-6, "lr_scheduler_type": "cosine"},
    "optimization": {"lora": {"enabled": True}, "deepspeed": {"enabled": True, "stage": 2}},
    "deployment": {
        "instance_type": "Standard_NC24ads_A100_v4",
        "smoke_test": {"messages": [{"role": "user", "content": "Pack for a hike?"}]},
    },
    "cleanup": {"idle_after_minutes": 30},
}


def config_bytes(**overrides: object) -> bytes:
    data = {**CONFIG, **overrides}
    return yaml.safe_dump(data).encode()


def training_config(**overrides: object) -> TrainingConfig:
    """The config validated, as a run keeps it (``RunRecord.config``)."""
    return load_config(config_bytes(**overrides))

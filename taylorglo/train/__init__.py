"""taylorglo.train: one candidate evaluation (train a timm model with a loss, report validation accuracy).

    from taylorglo.train import TrainConfig, train
    result = train(TrainConfig(dataset="digits", epochs=10), "params:0,-1.2,0.5,2,0,0,0.5,0.5")
    result.status, result.val_accuracy

Layout: ``config`` (TrainConfig), ``data`` (in-memory datasets and splits), ``models`` (the timm
registry entries), ``losses`` (LossSpec, build_loss: the only place that knows about losses),
``loop`` (train, TrainResult), ``cli`` (``python -m taylorglo.train``).
"""

from taylorglo.train.config import TrainConfig
from taylorglo.train.data import DatasetUnavailableError, list_datasets, load_dataset
from taylorglo.train.loop import STATUSES, TrainResult, resolve_device, train
from taylorglo.train.losses import LossSpec, build_loss
from taylorglo.train.models import create_model, list_registered_models

__all__ = [
    "STATUSES",
    "DatasetUnavailableError",
    "LossSpec",
    "TrainConfig",
    "TrainResult",
    "build_loss",
    "create_model",
    "list_datasets",
    "list_registered_models",
    "load_dataset",
    "resolve_device",
    "train",
]

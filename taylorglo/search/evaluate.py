"""The default evaluator: one partial training of a candidate loss with ``taylorglo.train``.

Fitness is computed by the search from ``val_accuracy`` (``1 - val_accuracy``, minimized); the
test split is never looked at during a search.
"""

from __future__ import annotations

__all__ = ["train_candidate", "trainer_config"]


def trainer_config(job: dict):
    """The ``TrainConfig`` of one job: the task with the generation's seed."""
    from taylorglo.train import TrainConfig

    config = TrainConfig.from_dict(dict(job["task"]))
    return config.replace(seed=int(job["seed"]))


def train_candidate(job: dict) -> dict:
    """Train with the job's Taylor loss (or ``job["loss"]``, a LossSpec string) and report."""
    from taylorglo.train import LossSpec, train

    config = trainer_config(job)
    if job.get("loss"):
        loss = LossSpec.parse(job["loss"])
    else:
        loss = LossSpec.taylor(list(job["vector"]), order=job.get("order"), variables=tuple(job["variables"]))
    result = train(config, loss, evaluate_test=bool(job.get("evaluate_test", False)), show_progress=False)
    out = result.to_dict()
    record = {
        "status": out.get("status", "failed"),
        "val_accuracy": out.get("val_accuracy"),
        "val_loss": out.get("val_loss"),
        "test_accuracy": out.get("test_accuracy"),
        "steps": out.get("steps"),
        "train_time": out.get("wall_time"),
        "error": out.get("error"),
    }
    if out.get("label_noise"):  # what was flipped: kind, rate, realized rate, digest of the labels
        record["label_noise"] = out["label_noise"]
    if out.get("best_epoch") is not None:  # task.restore_best: the epoch the numbers come from
        record["best_epoch"] = out["best_epoch"]
    return record

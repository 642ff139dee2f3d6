"""Cheap deterministic evaluators for testing and benchmarking the search machinery.

``evaluate`` scores a candidate by how close its training-relevant shape is to a target loss:
with g = df/dy, the curves d(p) = g(1, p) - g(0, p) and g(0, p) minus its mean (both blind to the
inert coefficient, like training) are compared on a grid of p in [0.05, 0.95] with those of the
target (the order-k cross-entropy expansion, scaled by 1/2). ``val_accuracy = 0.1 + 0.9 exp(-err)``,
so fitness ``1 - val_accuracy`` is in (0, 0.9], minimal at the target.

Like real training, the learning rate multiplies the loss's scale: when the job's task has an
``lr``, the candidate's curves are multiplied by ``lr / lr_ref`` (option ``lr_ref``, default 0.1)
before the comparison. A job with a trainer loss spec instead of a vector (``cross-entropy``,
``cross-entropy;label_smoothing=eps``) is scored as the full-scale order-k cross-entropy expansion (shrunk by
``1 - eps``), so baselines are tuned against the same target.

Options (``execution.evaluator_options``), for exercising failure paths:
    sleep: seconds to sleep per evaluation (or a list per candidate index);
    noise: add seed-dependent noise of this size to the accuracy;
    raise_on: candidate indices whose evaluation raises (every attempt);
    crash_on: candidate indices whose worker process dies (os._exit) on attempt 0 only;
    crash_always: candidate indices whose worker dies on every attempt;
    diverge_on: candidate indices reported as "diverged" (val_accuracy 0.1);
    marker_dir: a directory where each evaluation creates a file ``g{gen}-c{index}-a{attempt}-{n}``
        (to count trainings across processes in the crash/resume tests).
"""

from __future__ import annotations

import math
import os
import random
import time

from taylorglo.polynomial import TaylorPolynomial

__all__ = ["evaluate", "shape_error"]

_GRID = [0.05 + 0.9 * i / 15 for i in range(16)]


def _curves(poly: TaylorPolynomial) -> list[float]:
    t = {"t": 1.0} if poly.has_progress else {}
    d = [poly.derivative_y(1.0, p, **t) - poly.derivative_y(0.0, p, **t) for p in _GRID]
    g0 = [poly.derivative_y(0.0, p, **t) for p in _GRID]
    m = sum(g0) / len(g0)
    return d + [v - m for v in g0]


def shape_error(vector, order: int, variables=("x", "y"), gain: float = 1.0) -> float:
    """Mean squared distance of the candidate's gradient curves (times ``gain``) from the target's."""
    poly = TaylorPolynomial(vector, order, variables)
    target = TaylorPolynomial.cross_entropy(order, variables=variables)
    target = TaylorPolynomial([0.5 * c for c in target.coefficients] + list(target.centers), order, variables)
    a, b = _curves(poly), _curves(target)
    return sum((gain * u - v) ** 2 for u, v in zip(a, b)) / len(a)


def _spec_vector(spec: str, order: int, variables) -> list[float]:
    """The vector a trainer loss spec stands for here (cross-entropy, optionally label-smoothed)."""
    head, *options = str(spec).split(";")
    if head.strip() not in ("cross-entropy", "ce"):
        raise ValueError(f"the synthetic evaluator scores cross-entropy specs only, not {spec!r}")
    ce = TaylorPolynomial.cross_entropy(order, variables=variables)
    shrink = 1.0
    for opt in options:
        key, _, value = opt.partition("=")
        if key.strip() == "label_smoothing":
            shrink = 1.0 - float(value)
    return [shrink * c for c in ce.coefficients] + list(ce.centers)


def _mark(options: dict, job: dict) -> None:
    mdir = options.get("marker_dir")
    if not mdir:
        return
    os.makedirs(mdir, exist_ok=True)
    gen = {-1: "final", -2: "baseline"}.get(int(job["generation"]), f"g{job['generation']}")
    base = f"{gen}-c{job['index']}-r{job.get('replica', 0)}-a{job.get('attempt', 0)}"
    n = 0
    while True:
        try:
            fd = os.open(os.path.join(mdir, f"{base}-{n}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
            return
        except FileExistsError:
            n += 1


def evaluate(job: dict) -> dict:
    options = dict(job.get("options") or {})
    index, attempt = int(job["index"]), int(job.get("attempt", 0))
    sleep = options.get("sleep", 0.0)
    if isinstance(sleep, list):
        sleep = sleep[index % len(sleep)]
    if sleep:
        time.sleep(float(sleep))
    if index in options.get("crash_always", []) or (index in options.get("crash_on", []) and attempt == 0):
        os._exit(17)
    if index in options.get("raise_on", []):
        raise RuntimeError(f"synthetic failure of candidate {index}")
    order, variables = int(job["order"]), tuple(job["variables"])
    vector = job.get("vector") or _spec_vector(job["loss"], order, variables)
    lr = (job.get("task") or {}).get("lr")
    gain = 1.0 if lr is None else float(lr) / float(options.get("lr_ref", 0.1))
    err = shape_error(vector, order, variables, gain)
    acc = 0.1 + 0.9 * math.exp(-min(err, 700.0))
    if options.get("noise"):
        acc += float(options["noise"]) * random.Random(int(job["seed"]) * 1000 + index).uniform(-1, 1)
    _mark(options, job)
    if index in options.get("diverge_on", []):
        return {"status": "diverged", "val_accuracy": 0.1, "val_loss": None, "steps": 3}
    print(f"synthetic candidate {index}: shape error {err:.6g}")
    return {"status": "ok", "val_accuracy": acc, "val_loss": err, "steps": 1}

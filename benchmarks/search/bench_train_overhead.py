"""Per-step overhead of taylorglo.train's loop over a bare forward + backward + optimizer step.

    python benchmarks/search/bench_train_overhead.py [--dataset digits] [--threads 1] [--repeats 3]

Runs ``train()`` (validation only at the end) and a bare loop on the same model, batch size and
optimizer with pre-built random batches, and reports milliseconds per step for both. The difference
is what the trainer adds per step: batch gathering and normalization from the in-memory tensors,
the scheduler update, the non-finite check (one host sync) and the running loss.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2

from taylorglo.train import TrainConfig, create_model, train
from taylorglo.train.data import dataset_info


def bare_ms_per_step(cfg: TrainConfig, steps: int) -> float:
    info = dataset_info(cfg.dataset)
    torch.manual_seed(0)
    model = create_model(cfg.model, info.num_classes, info.in_chans)
    opt = create_optimizer_v2(model, opt="momentum", lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=0.9)
    x = torch.randn(cfg.batch_size, info.in_chans, *info.image_size)
    y = torch.randint(0, info.num_classes, (cfg.batch_size,))
    model.train()
    for _ in range(3):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="digits")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(dataset=args.dataset, epochs=args.epochs, eval_every=10**6, min_accuracy=None)
    train(cfg.replace(max_steps=2))  # load the dataset into the process cache
    totals, steps = [], 0
    for seed in range(args.repeats):
        r = train(cfg.replace(seed=seed))
        totals.append(r.wall_time)
        steps = r.steps
    bare = min(bare_ms_per_step(cfg, steps) for _ in range(args.repeats))
    full = min(totals) / steps * 1e3
    print(
        f"{args.dataset}: {steps} steps, whole train() {min(totals):.2f} s (best of {args.repeats}, "
        f"includes model creation and the final validation) = {full:.2f} ms/step; "
        f"bare forward+backward+step {bare:.2f} ms/step; overhead {full - bare:.2f} ms/step "
        f"({(full - bare) / bare * 100:.0f}%), threads={args.threads}"
    )


if __name__ == "__main__":
    main()

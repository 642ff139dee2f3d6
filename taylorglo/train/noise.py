"""Synthetic label noise: flip a fixed random subset of labels, as a pure function of its seeds.

The two kinds used to study robust losses (e.g. Han et al., *Co-teaching*, NeurIPS 2018; Zhang &
Sabuncu, NeurIPS 2018):

- ``symmetric``: a flipped label ``c`` becomes one of the other ``C - 1`` classes, uniformly (never
  ``c`` itself);
- ``pairflip``: a flipped label ``c`` becomes ``(c + 1) mod C``.

Exactly ``round(rate * n)`` labels of ``n`` are flipped (halves round up), chosen uniformly without
replacement, so the realized rate is the requested one up to rounding rather than a binomial draw.
Every flipped label differs from its original, so the realized rate (the fraction of labels that
differ) is ``round(rate * n) / n``.

The flips depend only on the labels given, the noise kind, rate and seed, and the ``stream``
(``"train"`` or ``"validation"``: the two splits get independent draws from one noise seed). They
never depend on the run's training seed, so every candidate and seed of a search sees the same
noisy labels. The trainer applies the noise to the training split, to the validation split unless
``TrainConfig.clean_validation``, and never to the test split.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch

__all__ = ["NOISE_KINDS", "NOISE_STREAMS", "LabelNoise", "flip_labels", "noisy_splits"]

NOISE_KINDS: tuple[str, ...] = ("symmetric", "pairflip")
NOISE_STREAMS: tuple[str, ...] = ("train", "validation")
_KEYS = ("kind", "rate", "seed")
_STREAM_TAG = 0x7A6C_6E6F  # keeps the noise streams apart from any other use of the same seed


@dataclass(frozen=True)
class LabelNoise:
    """A label-noise setting: ``kind`` (``symmetric`` | ``pairflip``), ``rate`` in [0, 1], ``seed`` >= 0.

    Written ``{"kind": "symmetric", "rate": 0.4, "seed": 0}`` in a TrainConfig and
    ``symmetric:0.4`` or ``symmetric:0.4:SEED`` on the command line (:meth:`parse`); the seed
    defaults to 0.
    """

    kind: str
    rate: float
    seed: int = 0

    def __post_init__(self) -> None:
        kind = self.kind.strip().lower() if isinstance(self.kind, str) else self.kind
        if kind not in NOISE_KINDS:
            raise ValueError(f"label_noise.kind must be one of {list(NOISE_KINDS)}, got {self.kind!r}")
        rate = self.rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"label_noise.rate must be a number in [0, 1], got {rate!r}")
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"label_noise.seed must be an integer >= 0, got {seed!r}")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "rate", float(rate))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LabelNoise:
        """From ``{"kind", "rate"[, "seed"]}``; unknown or missing keys raise ValueError naming them."""
        if not isinstance(d, Mapping):
            raise ValueError(
                f"label_noise must be a dict like {{'kind': 'symmetric', 'rate': 0.4}}, got {d!r}"
            )
        unknown = [k for k in d if k not in _KEYS]
        if unknown:
            raise ValueError(f"label_noise has unknown key(s) {unknown}; known keys: {', '.join(_KEYS)}")
        missing = [k for k in ("kind", "rate") if k not in d]
        if missing:
            raise ValueError(f"label_noise needs {' and '.join(missing)}, got {dict(d)!r}")
        return cls(d["kind"], d["rate"], d.get("seed", 0))

    @classmethod
    def parse(cls, text: str) -> LabelNoise:
        """Read ``KIND:RATE`` or ``KIND:RATE:SEED`` (e.g. ``symmetric:0.4``, ``pairflip:0.2:3``)."""
        parts = [p.strip() for p in str(text).split(":")]
        if len(parts) not in (2, 3):
            raise ValueError(
                f"label_noise {text!r} cannot be read: expected KIND:RATE or KIND:RATE:SEED with KIND in "
                f"{list(NOISE_KINDS)}, e.g. 'symmetric:0.4'"
            )
        try:
            rate = float(parts[1])
        except ValueError:
            raise ValueError(f"label_noise.rate {parts[1]!r} is not a number (in {text!r})") from None
        seed: Any = 0
        if len(parts) == 3:
            try:
                seed = int(parts[2])
            except ValueError:
                raise ValueError(f"label_noise.seed {parts[2]!r} is not an integer (in {text!r})") from None
        return cls(parts[0], rate, seed)

    @classmethod
    def coerce(cls, value: Union[LabelNoise, str, Mapping[str, Any]]) -> LabelNoise:
        """A LabelNoise from itself, a ``KIND:RATE[:SEED]`` string or a dict."""
        if isinstance(value, LabelNoise):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        return cls.from_dict(value)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rate": self.rate, "seed": self.seed}

    def __str__(self) -> str:
        return f"{self.kind}:{self.rate!r}:{self.seed}"

    def apply(self, labels: torch.Tensor, num_classes: int, stream: str = "train") -> torch.Tensor:
        """The noisy copy of ``labels``; see :func:`flip_labels`."""
        return flip_labels(labels, num_classes, self.kind, self.rate, self.seed, stream=stream)


def flip_labels(
    labels: torch.Tensor,
    num_classes: int,
    kind: str,
    rate: float,
    seed: int,
    *,
    stream: str = "train",
) -> torch.Tensor:
    """Return a copy of ``labels`` (int64, shape ``(n,)``) with exactly ``round(rate * n)`` flipped.

    The flipped positions are a uniform random subset; a flipped ``c`` becomes ``(c + r) mod C``
    with ``r`` uniform in ``1 .. C-1`` (``symmetric``) or ``r = 1`` (``pairflip``), so it always
    differs from ``c``. Deterministic: the same arguments give the same result on every machine
    (draws from a CPU ``torch.Generator`` seeded from ``(seed, stream)``). ``labels`` is not modified.

    Raises:
        ValueError: an unknown kind or stream, a rate outside [0, 1], ``num_classes < 2``, or
            labels outside ``[0, num_classes)``.
    """
    noise = LabelNoise(kind, rate, seed)  # validates
    if stream not in NOISE_STREAMS:
        raise ValueError(f"stream must be one of {list(NOISE_STREAMS)}, got {stream!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if labels.dim() != 1:
        raise ValueError(f"labels must be a 1-D tensor of class indices, got shape {tuple(labels.shape)}")
    labels = labels.detach().to("cpu", torch.int64)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels must be in [0, {num_classes}), got values in [{int(labels.min())}, {int(labels.max())}]"
        )
    n = labels.numel()
    count = min(n, math.floor(noise.rate * n + 0.5))
    out = labels.clone()
    if count == 0:
        return out
    gen = torch.Generator().manual_seed(_stream_seed(noise.seed, stream))
    idx = torch.randperm(n, generator=gen)[:count]
    if noise.kind == "symmetric":
        shift = torch.randint(1, num_classes, (count,), generator=gen)
    else:
        shift = torch.ones(count, dtype=torch.int64)
    out[idx] = (labels[idx] + shift) % num_classes
    return out


def _stream_seed(seed: int, stream: str) -> int:
    """A 63-bit torch seed for (seed, stream), via numpy's SeedSequence (stable across versions)."""
    state = np.random.SeedSequence([_STREAM_TAG, seed, NOISE_STREAMS.index(stream)]).generate_state(2)
    return (int(state[0]) << 31 | int(state[1]) >> 1) & (2**63 - 1)


def noisy_splits(
    noise: LabelNoise,
    train_labels: torch.Tensor,
    val_labels: torch.Tensor,
    num_classes: int,
    *,
    clean_validation: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """The training and validation labels under ``noise``, and what a result records of it.

    The training labels get the ``train`` stream; the validation labels the ``validation`` stream,
    or stay clean with ``clean_validation``. The record holds the setting (``kind``, ``rate``,
    ``seed``), ``clean_validation``, ``realized_rate`` (the fraction of training labels that
    differ from the clean ones) with ``train_flipped``, the same for validation
    (``val_realized_rate``, ``val_flipped``), and ``labels_sha256``: a digest of the noisy training
    and validation labels, equal across runs exactly when they saw the same labels.
    """
    noisy_train = noise.apply(train_labels, num_classes, "train")
    noisy_val = val_labels.clone() if clean_validation else noise.apply(val_labels, num_classes, "validation")
    train_flipped = int((noisy_train != train_labels.cpu()).sum())
    val_flipped = int((noisy_val != val_labels.cpu()).sum())
    digest = hashlib.sha256()
    for t in (noisy_train, noisy_val):
        digest.update(t.to("cpu", torch.int64).numpy().tobytes())
        digest.update(b"|")
    record = {
        **noise.to_dict(),
        "clean_validation": bool(clean_validation),
        "realized_rate": train_flipped / max(len(train_labels), 1),
        "train_flipped": train_flipped,
        "val_realized_rate": val_flipped / max(len(val_labels), 1),
        "val_flipped": val_flipped,
        "labels_sha256": digest.hexdigest()[:16],
    }
    return noisy_train, noisy_val, record


def noisy_accuracy_floor(clean_floor: float, val_rate: float, num_classes: int) -> float:
    """The accuracy on a validation split with ``val_rate`` of its labels wrong that a model of clean
    accuracy ``clean_floor`` scores when its mistakes spread evenly over the other classes.

    A prediction scores on a noisy label when it is right and the label was kept, or wrong and the
    label was flipped to that same class: ``(1 - r) a + r (1 - a) / (C - 1)``. The trainer compares
    validation accuracy with this, so ``min_accuracy`` keeps meaning a clean accuracy whatever the
    noise (at 60% symmetric noise and C = 10, a model of clean accuracy 0.15 scores about 0.117).
    """
    if num_classes < 2:
        return clean_floor
    return (1.0 - val_rate) * clean_floor + val_rate * (1.0 - clean_floor) / (num_classes - 1)

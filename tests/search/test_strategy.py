"""CMA-ES behind ask/tell (``strategy``): its own RNG, a pickled state that resumes the same stream,
and refusals of misuse."""

from __future__ import annotations

import math

import numpy as np
import pytest

from taylorglo.search.strategy import CMAStrategy


def _sphere(points) -> list[float]:
    return [sum((v - 0.5) ** 2 for v in p) for p in points]


def test_the_same_seed_asks_the_same_points_whatever_the_global_rng_does():
    a = CMAStrategy([0.0] * 4, 0.3, 6, seed=3)
    np.random.seed(123)  # the global stream must not matter
    b = CMAStrategy([0.0] * 4, 0.3, 6, seed=3)
    for _ in range(3):
        pa, pb = a.ask(), b.ask()
        np.random.rand(10)
        assert pa == pb and len(pa) == 6 and all(len(p) == 4 for p in pa)
        a.tell(_sphere(pa))
        b.tell(_sphere(pb))
    assert a.mean == b.mean and a.sigma == b.sigma and a.generation == 3
    assert CMAStrategy([0.0] * 4, 0.3, 6, seed=4).ask() != CMAStrategy([0.0] * 4, 0.3, 6, seed=3).ask()


def test_a_pickled_strategy_continues_the_same_stream_pending_population_included():
    live = CMAStrategy([0.0] * 3, 0.5, 5, seed=9)
    live.tell(_sphere(live.ask()))
    asked = live.ask()
    resumed = CMAStrategy.loads(live.dumps())  # stored between ask and tell, as population.json is
    assert resumed.pending and resumed.generation == 1
    live.tell(_sphere(asked))
    resumed.tell(_sphere(asked))
    assert resumed.ask() == live.ask()


def test_it_minimizes_a_sphere():
    es = CMAStrategy([2.0, -2.0, 1.0], 0.5, 8, seed=0)
    start = _sphere([es.mean])[0]
    for _ in range(40):
        es.tell(_sphere(es.ask()))
    assert _sphere([es.mean])[0] < start / 100


def test_misuse_is_refused():
    es = CMAStrategy([0.0, 0.0], 0.3, 4, seed=1)
    with pytest.raises(RuntimeError, match="without a pending ask"):
        es.tell([0.0] * 4)
    es.ask()
    with pytest.raises(RuntimeError, match="twice without tell"):
        es.ask()
    with pytest.raises(ValueError, match="needs 4 fitness values"):
        es.tell([0.0] * 3)
    with pytest.raises(ValueError, match="finite penalty"):
        es.tell([0.0, 0.0, math.nan, 0.0])
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        CMAStrategy([0.0], 0.3, 4, seed=1)
    with pytest.raises(ValueError, match="not a pickled CMAStrategy"):
        CMAStrategy.loads(__import__("pickle").dumps({"a": 1}))

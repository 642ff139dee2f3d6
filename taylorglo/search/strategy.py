"""CMA-ES behind a small ask/tell interface, with its random-number state kept inside.

pycma draws its samples from the *global* numpy RNG by default. ``CMAStrategy`` gives it a private
``RandomState`` (option ``randn``) and, for any other global draw, swaps a private global state in
around every call into pycma (restoring the caller's afterwards), so that the pickled strategy is
the whole truth: unpickling it and asking again yields exactly the same population, whatever else
ran in the process. Fitness is minimized; non-finite values are refused
(map failures to an explicit penalty first: pycma would silently replace NaN by the median).
pycma's own termination criteria that would end a search after one flat (e.g. all-failed)
generation are disabled; the search loop enforces its generation limit and budget itself.
"""

from __future__ import annotations

import math
import pickle
import warnings
from collections.abc import Sequence

import numpy as np

__all__ = ["CMAStrategy", "import_cma"]


def import_cma():
    """``import cma`` without its warning about a missing matplotlib (plots are not used here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*matplotlib.*")
        import cma
    return cma


class CMAStrategy:
    """An ask/tell CMA-ES over R^n (pycma's ``CMAEvolutionStrategy``).

    Args:
        x0: the start point (length n >= 1).
        sigma: the initial step size.
        population_size: candidates per ``ask``.
        seed: seeds the private RNG (and hence every sample).

    pycma's own ``bounds`` option is deliberately not offered: with it, ``tell`` needs each asked
    point's genotype from a dict keyed by Python's per-process string hash, so a strategy unpickled
    in another process (a resumed search) would update differently from the live one. Bounded
    coordinates are clipped by the caller instead (see ``taylorglo.search.space``).
    """

    def __init__(
        self,
        x0: Sequence[float],
        sigma: float,
        population_size: int,
        seed: int,
    ):
        cma = import_cma()

        x0 = [float(v) for v in x0]
        if not x0:
            raise ValueError("CMA-ES needs a start point of length >= 1")
        self.dimension = len(x0)
        self.population_size = int(population_size)
        self.seed = int(seed)
        self.generation = 0  # number of completed tells
        self._asked: list[list[float]] | None = None
        # pycma samples through options["randn"]; the default is the global np.random.randn, which
        # pickles as a *copy* of the global RandomState and so would fork the stream on unpickling.
        # Our own RandomState, pickled together with the pycma object, keeps one stream.
        self._rng = np.random.RandomState(self.seed % 2**32)
        self._rng_state = np.random.RandomState((self.seed + 1) % 2**32).get_state()
        options = {
            "popsize": self.population_size,
            "randn": self._rng.randn,
            "seed": math.nan,  # "do nothing": our private RNG is swapped in around each call
            "verbose": -9,
            "verb_log": 0,
            "verb_disp": 0,
            # never stop on flat or stagnating fitness: the search loop owns termination
            "tolflatfitness": 10**9,
            "tolfun": 0,
            "tolfunhist": 0,
            "tolfunrel": 0,
            "tolx": 0,
            "tolstagnation": 10**9,
            "maxiter": 10**9,
            "tolfacupx": math.inf,
            "tolupsigma": math.inf,
        }
        if self.dimension == 1:
            raise ValueError("pycma needs at least 2 dimensions; use a higher order")
        with self._private_rng(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._es = cma.CMAEvolutionStrategy(x0, float(sigma), options)

    # ------------------------------------------------------------------------------------------
    class _Swap:
        def __init__(self, owner: CMAStrategy):
            self.owner = owner

        def __enter__(self):
            self.saved = np.random.get_state()
            np.random.set_state(self.owner._rng_state)

        def __exit__(self, *exc):
            self.owner._rng_state = np.random.get_state()
            np.random.set_state(self.saved)
            return False

    def _private_rng(self) -> CMAStrategy._Swap:
        return CMAStrategy._Swap(self)

    # ------------------------------------------------------------------------------------------
    def ask(self) -> list[list[float]]:
        """Sample a population (``population_size`` points, each a list of n floats)."""
        if self._asked is not None:
            raise RuntimeError("ask() called twice without tell(): a population is already out")
        with self._private_rng(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            solutions = self._es.ask()
        self._asked = [[float(v) for v in s] for s in solutions]
        return [list(s) for s in self._asked]

    def tell(self, fitness: Sequence[float]) -> None:
        """Update with the fitness (minimized) of the asked population, in the asked order."""
        if self._asked is None:
            raise RuntimeError("tell() without a pending ask()")
        values = [float(f) for f in fitness]
        if len(values) != len(self._asked):
            raise ValueError(f"tell() needs {len(self._asked)} fitness values, got {len(values)}")
        for i, f in enumerate(values):
            if not math.isfinite(f):
                raise ValueError(f"fitness of candidate {i} is {f}: map failures to a finite penalty first")
        with self._private_rng(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # check_points=False: pycma recognizes its own asked points through a dict keyed by
            # Python's per-process string hash, so after unpickling in another process (a resumed
            # search) it would take them for injected points and clip them; the asked points are
            # exactly the sampled genotypes here, so no repair is ever needed.
            self._es.tell([np.asarray(s) for s in self._asked], values, check_points=False)
        self._asked = None
        self.generation += 1

    # ------------------------------------------------------------------------------------------
    @property
    def sigma(self) -> float:
        return float(self._es.sigma)

    @property
    def mean(self) -> list[float]:
        return [float(v) for v in self._es.mean]

    @property
    def pending(self) -> bool:
        """Whether a population was asked and not yet told."""
        return self._asked is not None

    def dumps(self) -> bytes:
        """The complete state (pycma object, private RNG, pending population) as bytes."""
        return pickle.dumps(self, protocol=4)

    @staticmethod
    def loads(data: bytes) -> CMAStrategy:
        import_cma()  # unpickling imports cma; first through import_cma, without its warning
        obj = pickle.loads(data)
        if not isinstance(obj, CMAStrategy):
            raise ValueError(f"not a pickled CMAStrategy: {type(obj).__name__}")
        return obj

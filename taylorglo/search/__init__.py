"""taylorglo.search: a resumable CMA-ES search for Taylor losses (``python -m taylorglo.search``).

Layout: ``config`` (the experiment file), ``space`` (canonical or original coordinates),
``strategy`` (pycma behind ask/tell with its own RNG), ``journal`` (the experiment directory, the
on-disk truth), ``backends`` (local worker processes, Ray), ``worker``/``evaluate`` (one job),
``runner`` (the loop), ``analysis`` (status, tables, plots, one-shot runs, t-tests), ``synthetic``
(cheap evaluators for tests and benchmarks).

    from taylorglo.search import run_search, ExperimentConfig
    result = run_search("runs/exp1", {"task": {"dataset": "digits"}, "search": {"generations": 5}})
"""

from taylorglo.search.backends import Backend, LocalBackend, RayBackend, make_backend
from taylorglo.search.config import ConfigError, ExecutionConfig, ExperimentConfig, SearchConfig, load_config
from taylorglo.search.journal import ExperimentDir, ExperimentLocked
from taylorglo.search.runner import SearchResult, generation_seed, init_experiment, run_search
from taylorglo.search.space import SearchSpace
from taylorglo.search.strategy import CMAStrategy

__all__ = [
    "Backend",
    "CMAStrategy",
    "ConfigError",
    "ExecutionConfig",
    "ExperimentConfig",
    "ExperimentDir",
    "ExperimentLocked",
    "LocalBackend",
    "RayBackend",
    "SearchConfig",
    "SearchResult",
    "SearchSpace",
    "generation_seed",
    "init_experiment",
    "load_config",
    "make_backend",
    "run_search",
]

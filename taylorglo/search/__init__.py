"""taylorglo.search: a resumable CMA-ES search for Taylor losses (``python -m taylorglo.search``).

Layout: ``config`` (the experiment file), ``space`` (canonical, normalized or original
coordinates, and a searched learning rate),
``strategy`` (pycma behind ask/tell with its own RNG), ``journal`` (the experiment directory, the
on-disk truth, and the only code that opens its files; the typed ``Job`` and ``EvaluationRecord``),
``backends`` (local worker processes, Ray), ``worker``/``evaluate`` (one job), ``runner`` (the loop,
seeds per candidate, the final selection), ``baselines`` (arms tuned on one learning-rate grid),
``analysis`` (status, tables, plots, one-shot runs: the work of the CLI's commands), ``export`` (a
found loss as a preset package), ``stats`` (Welch, Mann-Whitney, effect size), ``synthetic`` (cheap
evaluators for tests and benchmarks); ``__main__`` only parses arguments and prints.

    from taylorglo.search import run_search, ExperimentConfig
    result = run_search("runs/exp1", {"task": {"dataset": "digits"}, "search": {"generations": 5}})
"""

from taylorglo.search.backends import Backend, LocalBackend, RayBackend, make_backend
from taylorglo.search.baselines import run_baselines, tune_arms
from taylorglo.search.config import ConfigError, ExecutionConfig, ExperimentConfig, SearchConfig, load_config
from taylorglo.search.journal import MEASURED, EvaluationRecord, ExperimentDir, ExperimentLocked, Job
from taylorglo.search.runner import (
    SearchResult,
    aggregate_candidates,
    chosen_candidate,
    fresh_seeds,
    generation_seed,
    init_experiment,
    run_search,
)
from taylorglo.search.space import SearchSpace
from taylorglo.search.stats import compare_arms, welch_ttest
from taylorglo.search.strategy import CMAStrategy

__all__ = [
    "Backend",
    "CMAStrategy",
    "MEASURED",
    "ConfigError",
    "EvaluationRecord",
    "ExecutionConfig",
    "ExperimentConfig",
    "ExperimentDir",
    "ExperimentLocked",
    "Job",
    "LocalBackend",
    "RayBackend",
    "SearchConfig",
    "SearchResult",
    "SearchSpace",
    "aggregate_candidates",
    "chosen_candidate",
    "compare_arms",
    "fresh_seeds",
    "generation_seed",
    "init_experiment",
    "load_config",
    "make_backend",
    "run_baselines",
    "run_search",
    "tune_arms",
    "welch_ttest",
]

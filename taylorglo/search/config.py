"""The experiment config: one file (TOML or JSON) with the sections ``task``, ``search``, ``execution``.

``task`` is everything the trainer takes (``taylorglo.train.TrainConfig``), passed through unchanged
except that ``seed`` is replaced per generation (common random numbers, see ``generation_seed``).
``search`` and ``execution`` are validated here; every error names the field, the offending value and
what would be right, and is raised as ``ConfigError`` (the CLI exits with code 2 on it).

Example (TOML)::

    [task]
    dataset = "digits"
    epochs = 5

    [search]
    order = 3
    population_size = 8
    generations = 6

    [execution]
    backend = "local"
    workers = 2
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = [
    "ConfigError",
    "ExecutionConfig",
    "ExperimentConfig",
    "SearchConfig",
    "apply_overrides",
    "default_experiment",
    "load_config",
    "parse_override",
]

DEFAULT_EVALUATOR = "taylorglo.search.evaluate:train_candidate"

# Class counts of the datasets the trainer knows (used by the invariant check).
NUM_CLASSES = {
    "digits": 10,
    "mnist": 10,
    "mnist-5k": 10,
    "fashion-mnist": 10,
    "fashionmnist": 10,
    "cifar10": 10,
    "cifar-10": 10,
    "svhn": 10,
    "cifar100": 100,
    "cifar-100": 100,
}


class ConfigError(ValueError):
    """An invalid experiment config; the message names the field (``section.key``)."""


@dataclass
class SearchConfig:
    """How CMA-ES searches.

    Attributes:
        order: polynomial order k (3 in the original system).
        variables: ``["x", "y"]`` or ``["x", "y", "t"]``.
        population_size: candidates per generation (lambda); at least 2.
        sigma: initial CMA-ES step size (1.2 in the original system).
        start: ``"zeros"`` (the original) or ``"cross-entropy"`` (the Taylor expansion of CE at (0.5, 0.5)).
        generations: the generation limit (enforced).
        max_evaluations: the evaluation budget (trainings, penalized ones included); 0 = no budget.
            A generation is only started when all its candidates fit in the budget.
        seed: seeds CMA-ES and, with the generation number, the per-generation training seed.
        space: ``"canonical"`` (CMA-ES moves only in the directions that change training) or
            ``"original"`` (the full parameter vector). Candidates are stored in the original layout.
        invariant_rule: ``"gradient"`` or ``"original"`` (see ``taylorglo.polynomial.check_invariant``).
        invariant_action: ``"enforce"`` (violators are not trained, get the penalty), ``"tag"``, ``"off"``.
        num_classes: class count for the invariant; inferred from ``task.dataset`` when omitted.
        max_missing: how many candidates of a generation may be left unevaluated (stragglers still
            running when all others are in) and given the penalty; 0 waits for every candidate.
        retries: extra attempts for a candidate whose training raised or whose worker died.
        penalty: the fitness (minimized, ``1 - val_accuracy``) of failed or rejected candidates.
    """

    order: int = 3
    variables: list = field(default_factory=lambda: ["x", "y"])
    population_size: int = 8
    sigma: float = 1.2
    start: str = "zeros"
    generations: int = 10
    max_evaluations: int = 0
    seed: int = 0
    space: str = "canonical"
    invariant_rule: str = "gradient"
    invariant_action: str = "enforce"
    num_classes: int = 0
    max_missing: int = 0
    retries: int = 1
    penalty: float = 1.0


@dataclass
class ExecutionConfig:
    """Where evaluations run.

    Attributes:
        backend: ``"local"`` (persistent spawn worker processes), ``"ray"``, or ``"inline"``
            (in the search process, one job at a time: for debugging and tests).
        workers: local worker processes; 0 = one per GPU when ``gpus_per_trial > 0`` and GPUs exist,
            else one per CPU core.
        threads_per_worker: torch threads per local worker; 0 = cores // workers (at least 1).
        gpus_per_trial: GPUs per training (ray: ``num_gpus``; local: > 0 pins one GPU per worker).
        ray_address: the cluster to join (``ray.init(address=...)``); empty = start a local Ray.
        evaluator: ``"module:function"`` scoring one job (a dict) and returning a result dict;
            the default trains with ``taylorglo.train``. Tests plug in cheap synthetic evaluators.
        evaluator_options: free-form options passed to the evaluator inside each job.
        trial_timeout: seconds after which a still-running evaluation counts as failed (0 = none).
    """

    backend: str = "local"
    workers: int = 0
    threads_per_worker: int = 0
    gpus_per_trial: float = 0.0
    ray_address: str = ""
    evaluator: str = DEFAULT_EVALUATOR
    evaluator_options: dict = field(default_factory=dict)
    trial_timeout: float = 0.0


@dataclass
class ExperimentConfig:
    """The whole experiment: ``task`` (trainer config dict), ``search``, ``execution``."""

    task: dict = field(default_factory=dict)
    search: SearchConfig = field(default_factory=SearchConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, validate_task: bool = True) -> ExperimentConfig:
        """Build and validate a config; ConfigError names the offending field."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"the config must be a table/object, got {type(data).__name__}")
        unknown = set(data) - {"task", "search", "execution"}
        if unknown:
            raise ConfigError(
                f"unknown section {sorted(unknown)[0]!r}: the sections are 'task', 'search', 'execution'"
            )
        task = data.get("task", {})
        if not isinstance(task, Mapping):
            raise ConfigError(f"task must be a table of trainer settings, got {task!r}")
        cfg = cls(
            task=copy.deepcopy(dict(task)),
            search=_build_section(SearchConfig, "search", data.get("search", {})),
            execution=_build_section(ExecutionConfig, "execution", data.get("execution", {})),
        )
        cfg.validate(validate_task=validate_task)
        return cfg

    def to_dict(self) -> dict:
        return {
            "task": copy.deepcopy(self.task),
            "search": dataclasses.asdict(self.search),
            "execution": dataclasses.asdict(self.execution),
        }

    # ------------------------------------------------------------------------------------------
    def validate(self, *, validate_task: bool = True) -> None:
        s, e = self.search, self.execution

        def bad(name: str, value: Any, expected: str) -> ConfigError:
            return ConfigError(f"{name} = {value!r} is invalid: expected {expected}")

        if not 1 <= s.order <= 9:
            raise bad("search.order", s.order, "an integer from 1 to 9")
        if tuple(s.variables) not in (("x", "y"), ("x", "y", "t")):
            raise bad("search.variables", s.variables, '["x", "y"] or ["x", "y", "t"]')
        s.variables = list(s.variables)
        if s.population_size < 2:
            raise bad("search.population_size", s.population_size, "at least 2 (CMA-ES needs two to rank)")
        if not (math.isfinite(s.sigma) and s.sigma > 0):
            raise bad("search.sigma", s.sigma, "a positive number (1.2 in the original system)")
        if s.start not in ("zeros", "cross-entropy"):
            raise bad("search.start", s.start, '"zeros" or "cross-entropy"')
        if s.generations < 1:
            raise bad("search.generations", s.generations, "at least 1")
        if s.max_evaluations < 0:
            raise bad("search.max_evaluations", s.max_evaluations, "0 (no budget) or a positive count")
        if 0 < s.max_evaluations < s.population_size:
            raise bad(
                "search.max_evaluations",
                s.max_evaluations,
                f"0 or at least one generation (population_size = {s.population_size})",
            )
        if s.space not in ("canonical", "original"):
            raise bad("search.space", s.space, '"canonical" or "original"')
        if s.invariant_rule not in ("gradient", "original"):
            raise bad("search.invariant_rule", s.invariant_rule, '"gradient" or "original"')
        if s.invariant_action not in ("enforce", "tag", "off"):
            raise bad("search.invariant_action", s.invariant_action, '"enforce", "tag" or "off"')
        if s.num_classes < 0 or s.num_classes == 1:
            raise bad("search.num_classes", s.num_classes, "0 (infer from task.dataset) or at least 2")
        if not 0 <= s.max_missing < s.population_size:
            raise bad(
                "search.max_missing",
                s.max_missing,
                f"from 0 to population_size - 1 = {s.population_size - 1}",
            )
        if s.retries < 0:
            raise bad("search.retries", s.retries, "0 or more")
        if not math.isfinite(s.penalty):
            raise bad(
                "search.penalty", s.penalty, "a finite number (fitness is 1 - accuracy; 1.0 is the worst)"
            )
        if e.backend not in ("local", "ray", "inline"):
            raise bad(
                "execution.backend", e.backend, '"local", "ray" or "inline" (in-process, for debugging)'
            )
        if e.workers < 0:
            raise bad("execution.workers", e.workers, "0 (automatic) or a positive count")
        if e.threads_per_worker < 0:
            raise bad(
                "execution.threads_per_worker", e.threads_per_worker, "0 (automatic) or a positive count"
            )
        if not (math.isfinite(e.gpus_per_trial) and e.gpus_per_trial >= 0):
            raise bad("execution.gpus_per_trial", e.gpus_per_trial, "0 or a positive number")
        if ":" not in e.evaluator:
            raise bad("execution.evaluator", e.evaluator, '"module.path:function"')
        if not (math.isfinite(e.trial_timeout) and e.trial_timeout >= 0):
            raise bad("execution.trial_timeout", e.trial_timeout, "0 (none) or seconds")
        if s.invariant_action != "off" and s.num_classes == 0 and self.inferred_num_classes() is None:
            raise ConfigError(
                f"search.num_classes is needed for the invariant check: task.dataset = "
                f"{self.task.get('dataset', 'digits')!r} has no known class count; set search.num_classes "
                f'or search.invariant_action = "off"'
            )
        if validate_task and e.evaluator == DEFAULT_EVALUATOR:
            self.validate_task()

    def validate_task(self) -> None:
        """Check ``task`` against ``taylorglo.train.TrainConfig`` (when the trainer is importable)."""
        try:
            from taylorglo.train import TrainConfig
        except ImportError:  # the trainer is not installed (e.g. a synthetic evaluator only)
            return
        try:
            TrainConfig.from_dict(self.task)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"task: {exc}") from None

    def inferred_num_classes(self) -> int | None:
        if self.search.num_classes:
            return self.search.num_classes
        return NUM_CLASSES.get(str(self.task.get("dataset", "digits")).lower())


def _build_section(cls: type, section: str, values: Any) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{section} must be a table, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"unknown key {section}.{key}: the keys of [{section}] are {', '.join(fields)}")
        default = (
            fields[key].default
            if fields[key].default is not dataclasses.MISSING
            else fields[key].default_factory()
        )
        kwargs[key] = _coerce(f"{section}.{key}", value, default)
    return cls(**kwargs)


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the type of ``default``; ints are accepted for floats."""
    kind = type(default)
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
    elif kind is list:
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        if ok:
            value = list(value)
    elif kind is dict:
        ok = isinstance(value, Mapping)
        if ok:
            value = dict(value)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ConfigError(f"{name} = {value!r} has the wrong type: expected {kind.__name__}")
    return value


# ----------------------------------------------------------------------------------------------
def read_config_file(path: str | os.PathLike) -> dict:
    """Parse a TOML (``.toml``) or JSON file into a dict; ConfigError on syntax errors."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    if path.endswith(".json"):
        try:
            return json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib
        except ImportError:
            raise ConfigError(f"reading TOML ({path}) on Python < 3.11 needs `pip install tomli`") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"search.population_size=16"`` -> (["search", "population_size"], 16).

    The value is parsed as JSON when it is valid JSON (numbers, true/false, lists, quoted strings),
    otherwise it is taken as a bare string (``task.dataset=digits``).
    """
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. search.population_size=16")
    key, _, raw = text.partition("=")
    path = [p for p in key.strip().split(".") if p]
    if len(path) < 2:
        raise ConfigError(f"--set {text!r}: the key must name a section, e.g. task.epochs=3 or search.seed=1")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return path, value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Return a copy of the raw config dict with ``--set`` overrides applied."""
    data = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: {part} is not a table")
        node[path[-1]] = value
    return data


def load_config(
    path: str | os.PathLike, overrides: list[str] = (), *, validate_task: bool = True
) -> ExperimentConfig:
    """Read, override and validate an experiment config file."""
    return ExperimentConfig.from_dict(
        apply_overrides(read_config_file(path), list(overrides)), validate_task=validate_task
    )


def default_experiment() -> dict:
    """The built-in experiment of ``python -m taylorglo.search`` with no arguments.

    Offline ``digits`` with 300 training images (limited data, where found losses help most: they
    regularize), the small CNN, a short training (6 epochs, 60 steps), 8 candidates x 10
    generations: a few minutes on a 2-core laptop CPU.
    """
    return {
        "task": {
            "dataset": "digits",
            "model": "taylorglo_smallcnn",
            "train_size": 300,
            "epochs": 6,
            "batch_size": 32,
            "lr": 0.02,
            "device": "cpu",
        },
        "search": {
            "order": 3,
            "population_size": 8,
            "generations": 10,
            "sigma": 1.2,
            "start": "zeros",
            "seed": 0,
        },
        "execution": {"backend": "local"},
    }

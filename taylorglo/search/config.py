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
import difflib
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
        start: ``"zeros"`` (the original), ``"cross-entropy"`` (the Taylor expansion of CE at (0.5, 0.5))
            or ``"loss:SPEC"``: the expansion of any trainer loss spec, e.g. ``"loss:gce:q=0.4"``, so
            that the search starts from the baseline it has to beat (``taylorglo.train.expansion``).
        start_lr: with a searched learning rate, the learning rate the start loss is trained at;
            the normalized space rescales it with the loss (``SearchSpace.to_coords``). 0 =
            ``task.lr``. A ``loss:SPEC`` start is the loss's expansion, not the loss: its best rate
            can differ from the loss's tuned one (GCE's order-3 expansion was unstable at GCE's).
        generations: the generation limit (enforced).
        max_evaluations: the evaluation budget (trainings, penalized ones included); 0 = no budget.
            A generation is only started when all its candidates fit in the budget.
        seed: seeds CMA-ES and, with the generation number, the per-generation training seed.
        space: ``"canonical"`` (CMA-ES moves only in the directions that change training),
            ``"normalized"`` (canonical with the loss's overall scale taken out, see
            ``taylorglo.search.space``) or ``"original"`` (the full parameter vector). Candidates
            are stored in the original layout.
        normalization: how the ``normalized`` space takes the scale out: ``"norm"`` (the push curve
            over p in [0, 1] has cross-entropy's norm; the default, measured to keep sigma bounded)
            or ``"push"`` (the push on the true logit at the uniform prediction equals
            cross-entropy's; the gradient invariant then holds by construction).
        seeds_per_candidate: S, the trainings per candidate. All candidates of a generation train
            on the same S seeds (common random numbers); the journal holds one record per
            (candidate, seed).
        fitness: how a candidate's S fitness values are aggregated: ``"mean"`` or ``"worst"``.
        learning_rate: ``"fixed"`` (``task.lr`` for every candidate) or ``"searched"`` (one more
            CMA-ES coordinate, ln(lr), within ``lr_bounds``; it starts at ``start_lr`` or ``task.lr``).
        lr_bounds: ``[lo, hi]`` of a searched learning rate.
        final_top_k: when the search ends, the K best candidates (by aggregated fitness) and the
            CMA-ES mean are trained again on ``final_seeds`` seeds that no generation used
            (validation only) and the best mean validation accuracy is chosen; 0 = no final
            selection (the chosen loss is then the best candidate of the search).
        final_seeds: F, the fresh seeds of the final selection (also used by ``baselines``).
        baseline_lrs: the learning-rate grid of ``baselines`` (every arm, the chosen loss too);
            empty = 6 points log-spaced over ``lr_bounds`` (searched) or ``task.lr`` x 1/4..4 (fixed).
        baseline_label_smoothing: the label-smoothing epsilons that ``baselines`` tunes.
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
    start_lr: float = 0.0
    generations: int = 10
    max_evaluations: int = 0
    seed: int = 0
    space: str = "canonical"
    normalization: str = "norm"
    seeds_per_candidate: int = 1
    fitness: str = "mean"
    learning_rate: str = "fixed"
    lr_bounds: list = field(default_factory=lambda: [0.01, 1.0])
    final_top_k: int = 3
    final_seeds: int = 5
    baseline_lrs: list = field(default_factory=list)
    baseline_label_smoothing: list = field(default_factory=lambda: [0.05, 0.1, 0.2])
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
            name = sorted(map(str, unknown))[0]
            close = difflib.get_close_matches(name, ["task", "search", "execution"], n=1)
            hint = f"did you mean [{close[0]}]? " if close else ""
            raise ConfigError(
                f"unknown section {name!r}: {hint}the sections are 'task', 'search', 'execution'"
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
        if not (math.isfinite(s.sigma) and 0 < s.sigma <= 1e6):
            raise bad("search.sigma", s.sigma, "a positive number up to 1e6 (1.2 in the original system)")
        from taylorglo.search.space import START_LOSS_PREFIX

        if not isinstance(s.start, str) or (
            s.start not in ("zeros", "cross-entropy") and not s.start.startswith(START_LOSS_PREFIX)
        ):
            raise bad(
                "search.start",
                s.start,
                '"zeros", "cross-entropy" or "loss:SPEC" (the expansion of a trainer loss, e.g. '
                '"loss:gce:q=0.4")',
            )
        if not (math.isfinite(s.start_lr) and s.start_lr >= 0):
            raise bad("search.start_lr", s.start_lr, "a positive learning rate, or 0 (task.lr)")
        if s.start_lr and s.learning_rate != "searched":
            raise bad(
                "search.start_lr",
                s.start_lr,
                '0 with search.learning_rate = "fixed" (every candidate trains at task.lr)',
            )
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
        if s.space not in ("canonical", "normalized", "original"):
            raise bad("search.space", s.space, '"canonical", "normalized" or "original"')
        if s.normalization not in ("push", "norm"):
            raise bad("search.normalization", s.normalization, '"push" or "norm"')
        if s.seeds_per_candidate < 1:
            raise bad("search.seeds_per_candidate", s.seeds_per_candidate, "at least 1")
        if s.fitness not in ("mean", "worst"):
            raise bad("search.fitness", s.fitness, '"mean" or "worst"')
        if s.learning_rate not in ("fixed", "searched"):
            raise bad("search.learning_rate", s.learning_rate, '"fixed" or "searched"')
        lo_hi = _numbers(s.lr_bounds)
        if lo_hi is None or len(lo_hi) != 2 or not 0 < lo_hi[0] < lo_hi[1] or lo_hi[1] > 1e6:
            raise bad("search.lr_bounds", s.lr_bounds, "[lo, hi] with 0 < lo < hi <= 1e6")
        s.lr_bounds = lo_hi
        if s.final_top_k < 0:
            raise bad("search.final_top_k", s.final_top_k, "0 (no final selection) or a positive count")
        if s.final_seeds < 1 or (s.final_top_k and s.final_seeds < 2):
            raise bad("search.final_seeds", s.final_seeds, "at least 2 (a mean over fresh seeds)")
        lrs = _numbers(s.baseline_lrs)
        if lrs is None or any(not 0 < v <= 1e6 for v in lrs):
            raise bad("search.baseline_lrs", s.baseline_lrs, "a list of positive learning rates (or [])")
        s.baseline_lrs = lrs
        eps = _numbers(s.baseline_label_smoothing)
        if eps is None or any(not 0 < v < 1 for v in eps):
            raise bad(
                "search.baseline_label_smoothing",
                s.baseline_label_smoothing,
                "a list of epsilons in (0, 1), e.g. [0.05, 0.1, 0.2]",
            )
        s.baseline_label_smoothing = eps
        if s.invariant_rule not in ("gradient", "original"):
            raise bad("search.invariant_rule", s.invariant_rule, '"gradient" or "original"')
        if s.invariant_rule == "original" and s.invariant_action != "off":
            if s.order != 3 or tuple(s.variables) != ("x", "y"):
                raise bad(
                    "search.invariant_rule",
                    s.invariant_rule,
                    f'"gradient": the original rule is defined for order 3 in (x, y) only, '
                    f"not order {s.order} in {tuple(s.variables)}",
                )
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
        if not (math.isfinite(s.penalty) and 0 <= s.penalty <= 1e6):
            raise bad(
                "search.penalty",
                s.penalty,
                "a number from 0 to 1e6 (fitness is 1 - accuracy; 1.0 is the worst)",
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
        for name, value in _leaves(self.to_dict()):
            if isinstance(value, float) and not math.isfinite(value):
                raise bad(name, value, "a finite number (config.json and the journal cannot store it)")
        if validate_task and e.evaluator == DEFAULT_EVALUATOR:
            self.validate_task()  # first: an unknown dataset is named as such, not as a class count
        if s.invariant_action != "off" and s.num_classes == 0 and self.inferred_num_classes() is None:
            raise ConfigError(
                f"search.num_classes is needed for the invariant check: task.dataset = "
                f"{self.task.get('dataset', 'digits')!r} has no known class count; set search.num_classes "
                f'or search.invariant_action = "off"'
            )
        if s.space == "normalized" and self.inferred_num_classes() is None:
            raise ConfigError(
                f'search.num_classes is needed by search.space = "normalized" (the uniform prediction '
                f"is 1/n): task.dataset = {self.task.get('dataset', 'digits')!r} has no known class count"
            )
        try:
            space = self.search_space()
        except ValueError as exc:
            raise ConfigError(f"search.space = {s.space!r} with search.order = {s.order}: {exc}") from None
        if s.start.startswith(START_LOSS_PREFIX):
            try:
                space.start_polynomial(s.start)
            except ValueError as exc:
                raise ConfigError(f"search.start = {s.start!r} is invalid: {exc}") from None

    def search_space(self):
        """The ``SearchSpace`` of this experiment (CMA-ES coordinates <-> vector and learning rate)."""
        from taylorglo.search.space import SearchSpace

        s = self.search
        return SearchSpace(
            s.order,
            tuple(s.variables),
            s.space,
            num_classes=self.inferred_num_classes() or 0,
            normalization=s.normalization,
            lr_bounds=s.lr_bounds if s.learning_rate == "searched" else None,
        )

    def base_lr(self) -> float:
        """The task's learning rate (the trainer's default when ``task.lr`` is not set)."""
        if "lr" in self.task:
            return float(self.task["lr"])
        from taylorglo.train import TrainConfig

        return float(TrainConfig().lr)

    def baseline_grid(self) -> list[float]:
        """The learning rates every arm is tuned over (``search.baseline_lrs`` or the derived grid)."""
        s = self.search
        if s.baseline_lrs:
            return sorted(float(v) for v in s.baseline_lrs)
        if s.learning_rate == "searched":
            lo, hi = s.lr_bounds
            return [float(lo * (hi / lo) ** (i / 5)) for i in range(6)]
        base = self.base_lr()
        return [base * f for f in (0.25, 0.5, 1.0, 2.0, 4.0)]

    def validate_task(self) -> None:
        """Check ``task`` against ``taylorglo.train.TrainConfig`` and the trainer's dataset names
        (when the trainer is importable); cheap, nothing is loaded or built (see ``check_task``)."""
        try:
            from taylorglo.train import TrainConfig
            from taylorglo.train.data import dataset_info
        except ImportError:  # the trainer is not installed (e.g. a synthetic evaluator only)
            return
        try:
            task = TrainConfig.from_dict(self.task)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"task: {exc}") from None
        try:
            dataset_info(task.dataset)
        except ValueError as exc:
            raise ConfigError(f"task.dataset: {exc}") from None

    def check_task(self) -> None:
        """Refuse a task the trainer cannot run, once, before any candidate is sampled.

        Only with the default evaluator (any other ``execution.evaluator`` scores jobs its own way
        and skips this). After ``validate_task``: reads the dataset's metadata, builds
        ``task.model`` for it and passes a batch of two zero inputs of the dataset's shape through
        it (in eval mode, without gradients, the caller's random state untouched); with the
        ``local`` and ``inline`` backends, which train on this machine, it also loads the dataset
        as the trainer does (from ``task.data_root``, downloading it when ``task.download``
        allows; the copy stays in this process's dataset cache). Raises ConfigError naming the
        field for an unknown dataset, a dataset that is not available, ``search.num_classes``
        other than the dataset's, an unknown model, ``task.model_kwargs`` the model does not take,
        and a model that does not take the dataset's input or does not give one output per class.
        """
        if self.execution.evaluator != DEFAULT_EVALUATOR:
            return
        self.validate_task()
        import torch

        from taylorglo.train import TrainConfig
        from taylorglo.train.data import DatasetUnavailableError, dataset_info, load_dataset
        from taylorglo.train.models import create_model

        task = TrainConfig.from_dict(self.task)
        info = dataset_info(task.dataset)
        n = self.search.num_classes
        if n and n != info.num_classes:
            raise ConfigError(
                f"search.num_classes = {n} is invalid: task.dataset = {task.dataset!r} has "
                f"{info.num_classes} classes (0 infers it)"
            )
        if self.execution.backend in ("local", "inline"):
            try:
                load_dataset(task.dataset, task.data_root, task.download)
            except DatasetUnavailableError as exc:
                raise ConfigError(
                    f"task.dataset = {task.dataset!r} is not available: {_first_line(exc)}"
                ) from None
        kwargs = f" with task.model_kwargs = {task.model_kwargs!r}" if task.model_kwargs else ""
        with torch.random.fork_rng(devices=[]):
            try:
                model = create_model(task.model, info.num_classes, info.in_chans, **task.model_kwargs)
            except Exception as exc:  # noqa: BLE001 - whatever timm raises, the model cannot be built
                raise ConfigError(
                    f"task.model = {task.model!r} cannot be built{kwargs}: {_first_line(exc)}"
                ) from None
            x = torch.zeros((2, info.in_chans, *info.image_size))
            model.eval()
            try:
                with torch.no_grad():
                    out = model(x)
            except Exception as exc:  # noqa: BLE001 - any error means the model does not fit the input
                raise ConfigError(
                    f"task.model = {task.model!r} does not take task.dataset = {task.dataset!r}'s input "
                    f"(a batch of shape {tuple(x.shape)}): {_first_line(exc)}"
                ) from None
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, info.num_classes):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ConfigError(
                f"task.model = {task.model!r} gives outputs of shape {shape} for a batch of 2 from "
                f"task.dataset = {task.dataset!r}, not (2, {info.num_classes}): one logit per class"
            )

    def inferred_num_classes(self) -> int | None:
        """``search.num_classes``, else the class count of ``task.dataset`` (None when unknown)."""
        if self.search.num_classes:
            return self.search.num_classes
        name = str(self.task.get("dataset", "digits"))
        try:
            from taylorglo.train.data import dataset_info

            return int(dataset_info(name).num_classes)
        except (ImportError, ValueError):
            return NUM_CLASSES.get(name.lower())


def _leaves(value: Any, name: str = "") -> list[tuple[str, Any]]:
    """(``section.key[.subkey|[i]]``, value) of every scalar inside a config dict."""
    if isinstance(value, Mapping):
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{name}.{k}" if name else str(k))]
    if isinstance(value, (list, tuple)):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, f"{name}[{i}]")]
    return [(name, value)]


def _first_line(exc: BaseException) -> str:
    """An exception as one line: its message's first line, with the type unless it is a ValueError."""
    text = (str(exc).strip().splitlines() or [""])[0]
    return text if type(exc) is ValueError else f"{type(exc).__name__}: {text}"


def _build_section(cls: type, section: str, values: Any) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{section} must be a table, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"did you mean {section}.{close[0]}? " if close else ""
            raise ConfigError(
                f"unknown key {section}.{key}: {hint}the keys of [{section}] are {', '.join(fields)}"
            )
        default = (
            fields[key].default
            if fields[key].default is not dataclasses.MISSING
            else fields[key].default_factory()
        )
        kwargs[key] = _coerce(f"{section}.{key}", value, default)
    return cls(**kwargs)


def _numbers(values: Any) -> list[float] | None:
    """``values`` as a list of finite floats, or None when it is not one."""
    if not isinstance(values, (list, tuple)):
        return None
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return None
        out.append(float(v))
    return out


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
        numeric = bool(default) and all(isinstance(v, (int, float)) for v in default)
        item_ok = (
            (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))
            if numeric or not default and name.endswith(("_lrs", "_bounds"))
            else (lambda v: isinstance(v, str))
        )
        ok = isinstance(value, (list, tuple)) and all(item_ok(v) for v in value)
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
    generations in the normalized space with a searched learning rate, the final selection of the
    top 2 and the CMA-ES mean on 3 fresh seeds; the CLI then tunes cross-entropy, label smoothing
    and the chosen loss on one small learning-rate grid before comparing them on the test split.
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
            "space": "normalized",
            "learning_rate": "searched",
            "lr_bounds": [0.01, 0.32],
            "final_top_k": 2,
            "final_seeds": 3,
            "baseline_lrs": [0.05, 0.1, 0.2, 0.4],
            "baseline_label_smoothing": [0.1],
        },
        "execution": {"backend": "local"},
    }

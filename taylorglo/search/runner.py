"""The search loop: sample, evaluate what is missing, tell, checkpoint; resumable at any point.

One generation g, with its commit points (see ``journal``):

1. If ``generations/g/population.json`` exists, reuse it and the strategy stored with it (a resumed
   run never re-samples). Otherwise check the generation limit and the evaluation budget, ask
   CMA-ES, and store the strategy and then the population atomically, before any training starts.
2. Every candidate without a journal record is evaluated (in parallel on the backend); each
   finished evaluation is appended to the journal (fsynced) before anything else happens. Invariant
   violators under ``enforce`` are recorded with the penalty without training. A raised training
   or a dead worker is retried ``search.retries`` times, then recorded as ``failed``.
3. CMA-ES is told the fitness (``1 - val_accuracy``; the penalty for failed, diverged, rejected or
   missing candidates), and the state is stored atomically as ``state.pkl``.

All candidates of a generation train with the same seed (common random numbers, so they are
ranked on the loss and not on the draw), ``generation_seed(search.seed, g)``.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path

from taylorglo.search.backends import Backend, make_backend
from taylorglo.search.config import ConfigError, ExperimentConfig
from taylorglo.search.journal import ExperimentDir, fault_point
from taylorglo.search.space import SearchSpace, check_invariant
from taylorglo.search.strategy import CMAStrategy

__all__ = [
    "SearchResult",
    "TIMING_FIELDS",
    "fitness_of",
    "generation_seed",
    "init_experiment",
    "run_search",
]

# Statuses whose val_accuracy is a real measurement; all others get the penalty.
MEASURED = ("ok", "below_threshold")
# Journal fields that differ between otherwise identical runs.
TIMING_FIELDS = ("wall_time", "train_time", "worker", "finished_at")
# A straggler may be dropped (with max_missing > 0) after this many times the median duration.
STRAGGLER_FACTOR = 3.0


def generation_seed(seed: int, generation: int) -> int:
    """The training seed shared by all candidates of a generation (a hash of seed and generation)."""
    import numpy as np

    return int(np.random.SeedSequence([int(seed) % 2**32, int(generation)]).generate_state(1)[0] % 2**31)


def fitness_of(result: dict, penalty: float) -> float:
    """Minimized fitness: ``1 - val_accuracy`` for measured trainings, else ``penalty``; never NaN."""
    acc = result.get("val_accuracy")
    if result.get("status") in MEASURED and isinstance(acc, (int, float)) and math.isfinite(acc):
        return 1.0 - float(acc)
    return float(penalty)


@dataclasses.dataclass
class SearchResult:
    """Where a search stands after ``run_search`` returns."""

    directory: Path
    generations: int  # completed (told) generations
    evaluations: int  # journal records
    complete: bool
    stop_reason: str
    best: dict | None  # the journal record with the lowest fitness


def init_experiment(directory, config: ExperimentConfig | dict) -> ExperimentDir:
    """Create an experiment directory with ``config``; an existing one must hold the same config.

    ``search.generations``, ``search.max_evaluations`` and the whole ``execution`` section may
    differ from the stored config (extend a search, move it to other hardware); they are updated.
    """
    if isinstance(config, dict):
        config = ExperimentConfig.from_dict(config)
    exp = ExperimentDir(directory)
    new = config.to_dict()
    if exp.exists():
        old = exp.read_config()
        mutable = {("search", "generations"), ("search", "max_evaluations")}
        for section in ("task", "search"):
            keys = set(old.get(section, {})) | set(new[section])
            for key in sorted(keys):
                if (section, key) in mutable:
                    continue
                if old.get(section, {}).get(key) != new[section].get(key):
                    raise ConfigError(
                        f"{exp.path} holds an experiment with {section}.{key} = "
                        f"{old.get(section, {}).get(key)!r}, not {new[section].get(key)!r}; "
                        "use another --dir for a different experiment"
                    )
        if old != new:
            exp.write_config(new)
    else:
        exp.write_config(new)
    return exp


def _is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except Exception:
        return False


def run_search(
    directory,
    config: ExperimentConfig | dict | None = None,
    *,
    backend: Backend | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = print,
    max_generations: int | None = None,
) -> SearchResult:
    """Start or resume the search in ``directory``; returns when the generation limit or budget is reached.

    Args:
        directory: the experiment directory (created with ``config`` when new).
        config: the experiment config; None = the one stored in ``directory``.
        backend: an evaluation backend to use (not shut down here); None = build the configured one.
        progress: show a tqdm bar per generation (default: when stderr is a terminal).
        log: called with one summary line per generation (None = silent).
        max_generations: stop after completing this many generations in this call (tests, stepping).
    """
    exp = init_experiment(directory, config) if config is not None else ExperimentDir(directory)
    if not exp.exists():
        raise FileNotFoundError(f"{exp.path} is not an experiment directory (no config.json); give a config")
    cfg = ExperimentConfig.from_dict(exp.read_config(), validate_task=False)
    s = cfg.search
    exp.acquire_lock()
    own_backend = backend is None
    scalars = None
    try:
        exp.repair_journal()
        space = SearchSpace(s.order, s.variables, s.space)
        state = exp.read_state()
        if state is None:
            strategy = CMAStrategy(space.start(s.start), s.sigma, s.population_size, s.seed)
        else:
            strategy = CMAStrategy.loads(state)
        num_classes = cfg.inferred_num_classes() or 0
        show = _is_tty() if progress is None else progress
        scalars = _scalar_writer(exp.path)
        done_here = 0
        stop_reason = ""
        while True:
            g = strategy.generation
            stored = exp.read_population(g)
            if stored is None:
                if g >= s.generations:
                    stop_reason = f"generation limit ({s.generations}) reached"
                    break
                if s.max_evaluations and (g + 1) * s.population_size > s.max_evaluations:
                    stop_reason = f"evaluation budget ({s.max_evaluations}) reached"
                    break
                if max_generations is not None and done_here >= max_generations:
                    stop_reason = "stopped after max_generations"
                    break
                population = _sample(strategy, space, cfg, g, num_classes)
                exp.write_population(g, population, strategy.dumps())
                asked = strategy
            else:
                if max_generations is not None and done_here >= max_generations:
                    stop_reason = "stopped after max_generations"
                    break
                population, blob = stored
                asked = CMAStrategy.loads(blob)
            t0 = time.perf_counter()
            records = exp.evaluations_of(g)
            missing = [c for c in population["candidates"] if c["index"] not in records]
            if missing:
                if backend is None:
                    backend = make_backend(cfg.execution, retries=s.retries)
                _evaluate(exp, cfg, population, missing, records, backend, show)
            fault_point(f"before-tell:{g}")
            fitness = [records[i]["fitness"] for i in range(s.population_size)]
            asked.tell(fitness)
            exp.write_state(asked.dumps())
            strategy = asked
            summary = _summarize(g, records, strategy, time.perf_counter() - t0)
            exp.write_summary(g, summary)
            line = (
                f"generation {g}: best {summary['best_fitness']:.4f} median {summary['median_fitness']:.4f} "
                f"sigma {summary['sigma']:.3g} failures {summary['failures']} "
                f"time {summary['wall_time']:.1f}s"
            )
            exp.append_search_log(line)
            if scalars is not None:
                _write_scalars(scalars, summary, records)
            if log is not None:
                log(line)
            done_here += 1
        best = None
        count = 0
        for rec in exp.evaluations():
            count += 1
            if best is None or rec["fitness"] < best["fitness"]:
                best = rec
        complete = stop_reason.startswith(("generation limit", "evaluation budget"))
        return SearchResult(exp.path, strategy.generation, count, complete, stop_reason, best)
    finally:
        if scalars is not None:
            scalars.close()
        if own_backend and backend is not None:
            backend.shutdown()
        exp.release_lock()


def _sample(
    strategy: CMAStrategy, space: SearchSpace, cfg: ExperimentConfig, g: int, num_classes: int
) -> dict:
    s = cfg.search
    seed = generation_seed(s.seed, g)
    candidates = []
    for i, coords in enumerate(strategy.ask()):
        vector = space.to_vector(coords)
        violates = None
        if s.invariant_action != "off":
            violates = not check_invariant(vector, s.order, s.variables, num_classes, s.invariant_rule)
        candidates.append(
            {"index": i, "coords": coords, "vector": vector, "violates_invariant": violates, "seed": seed}
        )
    return {
        "generation": g,
        "seed": seed,
        "space": s.space,
        "order": s.order,
        "variables": list(s.variables),
        "sigma": strategy.sigma,
        "candidates": candidates,
    }


def _job(cfg: ExperimentConfig, population: dict, cand: dict, attempt: int) -> dict:
    return {
        "generation": population["generation"],
        "index": cand["index"],
        "attempt": attempt,
        "vector": cand["vector"],
        "order": cfg.search.order,
        "variables": list(cfg.search.variables),
        "seed": cand["seed"],
        "task": cfg.task,
        "evaluator": cfg.execution.evaluator,
        "options": cfg.execution.evaluator_options,
    }


def _record(cfg: ExperimentConfig, cand: dict, generation: int, result: dict, attempts: int) -> dict:
    rec = {
        "generation": generation,
        "index": cand["index"],
        "seed": cand["seed"],
        "vector": cand["vector"],
        "violates_invariant": cand["violates_invariant"],
        "attempts": attempts,
        "status": str(result.get("status", "failed")),
    }
    for key in (
        "val_accuracy",
        "val_loss",
        "test_accuracy",
        "steps",
        "wall_time",
        "train_time",
        "worker",
        "error",
    ):
        value = result.get(key)
        if isinstance(value, float) and not math.isfinite(value):
            value = None  # JSON has no NaN; the status says what happened
        rec[key] = value
    rec["fitness"] = fitness_of(result, cfg.search.penalty)
    rec["finished_at"] = time.time()
    return rec


def _evaluate(
    exp: ExperimentDir,
    cfg: ExperimentConfig,
    population: dict,
    missing: list[dict],
    records: dict[int, dict],
    backend: Backend,
    show: bool,
) -> None:
    s = cfg.search
    g = population["generation"]
    bar = None
    if show:
        try:
            from tqdm import tqdm

            bar = tqdm(
                total=s.population_size,
                initial=s.population_size - len(missing),
                desc=f"generation {g}",
                leave=False,
            )
        except ImportError:
            bar = None

    def finish(cand: dict, result: dict, attempts: int) -> None:
        rec = _record(cfg, cand, g, result, attempts)
        exp.append_evaluation(rec)  # the journal first: from here on the evaluation is never repeated
        fault_point(f"after-journal:{g}:{cand['index']}")
        records[cand["index"]] = rec
        if result.get("log"):
            exp.write_log(
                g,
                cand["index"],
                (result.get("log") or "") + (f"\n{result['error']}\n" if result.get("error") else ""),
            )
        if bar is not None:
            bar.update(1)

    # At most ``capacity`` jobs are out at once, the rest wait here in candidate order (retries
    # first): the journal then follows the trainings closely, and an in-process backend trains
    # exactly one candidate at a time.
    queue: collections.deque[tuple[dict, int]] = collections.deque()
    pending: dict[Future, tuple[dict, int]] = {}
    for cand in missing:
        if s.invariant_action == "enforce" and cand["violates_invariant"]:
            finish(
                cand,
                {"status": "invariant", "error": f"violates the {s.invariant_rule} invariant; not trained"},
                0,
            )
            continue
        queue.append((cand, 0))
    capacity = max(1, int(getattr(backend, "capacity", 1)))
    durations: list[float] = []
    started = time.monotonic()
    try:
        while pending or queue:
            while queue and len(pending) < capacity:
                cand, attempt = queue.popleft()
                pending[backend.submit(_job(cfg, population, cand, attempt))] = (cand, attempt)
            done, _ = wait(list(pending), timeout=1.0, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: pending[f][0]["index"]):
                cand, attempt = pending.pop(fut)
                try:
                    result = fut.result()
                except Exception as exc:  # the worker died or the trial timed out
                    result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
                if result.get("status") == "failed" and attempt < s.retries:
                    exp.write_log(
                        g,
                        cand["index"],
                        f"attempt {attempt} failed: {result.get('error')}\n{result.get('log') or ''}",
                    )
                    queue.appendleft((cand, attempt + 1))
                    continue
                if isinstance(result.get("wall_time"), (int, float)):
                    durations.append(float(result["wall_time"]))
                finish(cand, result, attempt + 1)
            if not queue and 0 < len(pending) <= s.max_missing and durations:
                grace = STRAGGLER_FACTOR * statistics.median(durations)
                if time.monotonic() - started > grace + sum(durations) / max(1, backend.capacity):
                    for fut, (cand, attempt) in list(pending.items()):
                        backend.cancel(fut)
                        del pending[fut]
                        finish(
                            cand,
                            {"status": "missing", "error": "dropped as a straggler (search.max_missing)"},
                            attempt + 1,
                        )
    finally:
        for fut in pending:
            backend.cancel(fut)
        if bar is not None:
            bar.close()


def _scalar_writer(directory: Path):
    """A TensorBoard writer for DIR/tensorboard when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(log_dir=str(Path(directory) / "tensorboard"))


def _write_scalars(writer, summary: dict, records: dict[int, dict]) -> None:
    """One point per generation: best/median/mean fitness, sigma, failures, best validation accuracy."""
    g = summary["generation"]
    for key in ("best_fitness", "median_fitness", "mean_fitness"):
        writer.add_scalar(f"fitness/{key.split('_')[0]}", summary[key], g)
    writer.add_scalar("search/sigma", summary["sigma"], g)
    writer.add_scalar("search/failures", summary["failures"], g)
    writer.add_scalar("search/wall_time_s", summary["wall_time"], g)
    accuracies = [r["val_accuracy"] for r in records.values() if r.get("val_accuracy") is not None]
    if accuracies:
        writer.add_scalar("accuracy/best_val", max(accuracies), g)
    writer.flush()


def _summarize(g: int, records: dict[int, dict], strategy: CMAStrategy, wall_time: float) -> dict:
    recs = [records[i] for i in sorted(records)]
    fit = [r["fitness"] for r in recs]
    best = min(recs, key=lambda r: r["fitness"])
    statuses: dict[str, int] = {}
    for r in recs:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    return {
        "generation": g,
        "best_fitness": min(fit),
        "mean_fitness": statistics.fmean(fit),
        "median_fitness": statistics.median(fit),
        "best_index": best["index"],
        "best_vector": best["vector"],
        "failures": sum(1 for r in recs if r["status"] not in MEASURED),
        "statuses": statuses,
        "sigma": strategy.sigma,
        "wall_time": wall_time,
    }

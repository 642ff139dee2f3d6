"""The search loop: sample, evaluate what is missing, tell, checkpoint; resumable at any point.

One generation g, with its commit points (see ``journal``):

1. If ``generations/g/population.json`` exists, reuse it and the strategy stored with it (a resumed
   run never re-samples). Otherwise check the generation limit and the evaluation budget, ask
   CMA-ES, and store the strategy and then the population atomically, before any training starts.
2. Every (candidate, seed) pair without a journal record is evaluated (in parallel on the
   backend, the seeds of one candidate spread over the workers like any other job); each finished
   evaluation is appended to the journal (fsynced) before anything else happens. Invariant
   violators under ``enforce`` are recorded with the penalty without training. A raised training
   or a dead worker is retried ``search.retries`` times, then recorded as ``failed``.
3. CMA-ES is told each candidate's fitness: ``1 - val_accuracy`` per seed (the penalty for failed,
   diverged, rejected or missing trainings), aggregated over the seeds by ``search.fitness``
   (mean or worst), and the state is stored atomically as ``state.pkl``.

All candidates of a generation train on the same ``search.seeds_per_candidate`` seeds (common
random numbers, so they are ranked on the loss and not on the draw), ``generation_seeds``.

Lost records: when ``run`` starts, torn and corrupt lines of the journal and ``final.jsonl`` are
quarantined (see ``journal``) and reported, and every generation CMA-ES was already told is checked
for a record of each (candidate, seed); what is missing is evaluated again, on the same seed, and
journaled. CMA-ES is not told again (its update used the lost record's fitness and stands): the
re-run fills the record for the record's sake, so that the journal, the analysis and the final
selection see every evaluation, and a search never ends "complete" with fewer records than its
generations need.

When the generation limit or the budget is reached, the final selection (``search.final_top_k``)
trains the best candidates and the CMA-ES mean again on fresh seeds that no generation used and
chooses the best mean validation accuracy (``final.jsonl``, ``selection.json``); it resumes like
a generation.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path

from taylorglo.search.backends import Backend, make_backend, require_backend
from taylorglo.search.config import ConfigError, ExperimentConfig
from taylorglo.search.journal import MEASURED, EvaluationRecord, ExperimentDir, Job, fault_point, fitness_of
from taylorglo.search.space import LR_BOUND_PENALTY, candidate_invariant, push_scale
from taylorglo.search.strategy import CMAStrategy
from taylorglo.train.noise import noisy_accuracy_floor

__all__ = [
    "MEASURED",
    "SearchResult",
    "TIMING_FIELDS",
    "aggregate_candidates",
    "chosen_candidate",
    "fitness_of",
    "fresh_seeds",
    "generation_seed",
    "generation_seeds",
    "init_experiment",
    "make_job",
    "missing_evaluations",
    "run_search",
    "used_seeds",
]

# Journal fields that differ between otherwise identical runs.
TIMING_FIELDS = ("wall_time", "train_time", "worker", "finished_at")
# A straggler may be dropped (with max_missing > 0) after this many times the median duration.
STRAGGLER_FACTOR = 3.0


# Seed streams of the fresh seeds (``fresh_seeds``): far above any generation number.
FINAL_STREAM = 2**32 - 1
TEST_STREAM = 2**32 - 2


def _hash_seed(*entropy: int) -> int:
    import numpy as np

    return int(np.random.SeedSequence([int(v) % 2**32 for v in entropy]).generate_state(1)[0] % 2**31)


def generation_seed(seed: int, generation: int) -> int:
    """The first training seed shared by all candidates of a generation (a hash of seed and generation)."""
    return _hash_seed(seed, generation)


def generation_seeds(seed: int, generation: int, count: int) -> list[int]:
    """The ``count`` training seeds of a generation; the first is ``generation_seed(seed, generation)``."""
    return [generation_seed(seed, generation)] + [_hash_seed(seed, generation, r) for r in range(1, count)]


def fresh_seeds(seed: int, count: int, stream: str = "final", *, avoid: set[int] | None = None) -> list[int]:
    """``count`` seeds from a stream that no generation draws from (``"final"`` or ``"test"``).

    ``avoid`` holds seeds already used (by the generations); a collision, however unlikely, is skipped.
    """
    tag = {"final": FINAL_STREAM, "test": TEST_STREAM}[stream]
    out: list[int] = []
    i = 0
    while len(out) < count:
        s = _hash_seed(seed, tag, i)
        if s not in out and (avoid is None or s not in avoid):
            out.append(s)
        i += 1
    return out


def aggregate(values: list[float], mode: str) -> float:
    """A candidate's fitness from its per-seed fitness values: their mean or the worst (largest)."""
    return statistics.fmean(values) if mode == "mean" else max(values)


def aggregate_candidates(records, mode: str = "mean") -> list[dict]:
    """Journal records grouped into candidates, in (generation, index) order.

    Each candidate: generation, index, vector, lr, seeds, the per-seed ``fitnesses``,
    ``val_accuracies`` (None where not measured) and statuses, ``fitness`` (aggregated with
    ``mode``), ``val_accuracy`` (mean over measured seeds, or None) and ``measured`` (every seed
    measured).
    """
    groups: dict[tuple[int, int], dict[int, dict]] = {}
    for rec in records:
        key = (int(rec["generation"]), int(rec["index"]))
        groups.setdefault(key, {}).setdefault(int(rec.get("replica", 0)), rec)
    out = []
    for (g, i), reps in sorted(groups.items()):
        recs = [reps[r] for r in sorted(reps)]
        accs = [r.get("val_accuracy") if r["status"] in MEASURED else None for r in recs]
        measured = [a for a in accs if isinstance(a, (int, float))]
        out.append(
            {
                "generation": g,
                "index": i,
                "vector": recs[0]["vector"],
                "lr": recs[0].get("lr"),
                "seeds": [r.get("seed") for r in recs],
                "fitnesses": [r["fitness"] for r in recs],
                "val_accuracies": accs,
                "statuses": [r["status"] for r in recs],
                "fitness": aggregate([r["fitness"] for r in recs], mode),
                "val_accuracy": statistics.fmean(measured) if measured else None,
                "measured": len(measured) == len(recs),
                "violates_invariant": recs[0].get("violates_invariant"),
            }
        )
    return out


def chosen_candidate(exp: ExperimentDir, mode: str = "mean") -> dict | None:
    """The loss a search settled on: the final selection's choice, else its best candidate."""
    selection = exp.read_selection()
    if selection is not None and selection.get("chosen"):
        return dict(selection["chosen"], selection="final")
    cands = aggregate_candidates(exp.evaluations(), mode)
    if not cands:
        return None
    return dict(min(cands, key=lambda c: c["fitness"]), selection="search")


@dataclasses.dataclass
class SearchResult:
    """Where a search stands after ``run_search`` returns."""

    directory: Path
    generations: int  # completed (told) generations
    evaluations: int  # journal records (one per candidate and seed)
    complete: bool
    stop_reason: str
    best: dict | None  # the candidate with the lowest aggregated fitness (see aggregate_candidates)
    chosen: dict | None = None  # the final selection's choice (None without one)


def init_experiment(directory, config: ExperimentConfig | dict) -> ExperimentDir:
    """Create an experiment directory with ``config``; an existing one must hold the same config.

    ``search.generations``, ``search.max_evaluations`` and the whole ``execution`` section may
    differ from the stored config (extend a search, move it to other hardware); they are updated.
    The config is validated and its task checked (``ExperimentConfig.check_task``: the trainer
    reads the dataset and builds the model) before anything is written: a refused config raises
    ConfigError and leaves the directory as it was.
    """
    if isinstance(config, dict):
        config = ExperimentConfig.from_dict(config)
    config.check_task()
    exp = ExperimentDir(directory)
    new = config.to_dict()
    if exp.exists():
        # fields added since the directory was written read as their defaults
        old = ExperimentConfig.from_dict(exp.read_config(), validate_task=False).to_dict()
        mutable = {
            ("search", "generations"),
            ("search", "max_evaluations"),
            ("search", "final_top_k"),
            ("search", "final_seeds"),
            ("search", "baseline_lrs"),
            ("search", "baseline_label_smoothing"),
        }
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
        if exp.read_config() != new:
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
    path = Path(directory)
    before = set(os.listdir(path)) if path.is_dir() else None  # to undo a new experiment's first steps
    new = not ExperimentDir(path).exists()
    if config is not None:
        exp = init_experiment(directory, config)
    else:
        exp = ExperimentDir(directory)
        if not exp.exists():
            raise FileNotFoundError(
                f"{exp.path} is not an experiment directory (no config.json); give a config"
            )
        ExperimentConfig.from_dict(exp.read_config(), validate_task=False).check_task()
    cfg = ExperimentConfig.from_dict(exp.read_config(), validate_task=False)
    s = cfg.search
    exp.acquire_lock()
    own_backend = backend is None
    scalars = None

    def note(line: str) -> None:
        exp.append_search_log(line)
        if log is not None:
            log(line)

    failed = True
    try:
        if backend is None:
            require_backend(cfg.execution.backend)  # before anything is sampled or written
        for path_ in (exp.journal_path, exp.final_path):
            for entry in exp.repair(path_):
                note(
                    f"{entry['file']} line {entry['line']}: {entry['reason']}; moved to "
                    f"{exp.quarantine_path(path_).name}, its evaluation runs again"
                )
        space = cfg.search_space()
        state = exp.read_state()
        if state is None:
            start_lr = (s.start_lr or cfg.base_lr()) if s.learning_rate == "searched" else None
            strategy = CMAStrategy(space.start(s.start, start_lr), s.sigma, s.population_size, s.seed)
        else:
            strategy = CMAStrategy.loads(state)
        num_classes = cfg.inferred_num_classes() or 0
        show = _is_tty() if progress is None else progress
        lost = missing_evaluations(exp, range(strategy.generation))
        if lost:
            note(
                f"{sum(len(m) for _, m in lost)} evaluations of generations CMA-ES was already told are "
                f"missing from the journal (generations {', '.join(str(p['generation']) for p, _ in lost)}): "
                "evaluating them again to complete the record (the CMA-ES update stands)"
            )
            if backend is None:
                backend = make_backend(cfg.execution, retries=s.retries)
            for population, missing in lost:
                records = exp.evaluations_of(population["generation"])
                _evaluate(exp, cfg, population, missing, records, backend, show)
        scalars = _scalar_writer(exp.tensorboard_dir)
        if scalars is None and log is not None:
            log("TensorBoard curves skipped: tensorboard is not installed (pip install tensorboard)")
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
            missing = _missing(population, records)
            if missing:
                if backend is None:
                    backend = make_backend(cfg.execution, retries=s.retries)
                _evaluate(exp, cfg, population, missing, records, backend, show)
            fault_point(f"before-tell:{g}")
            fitness = [
                aggregate([records[(c["index"], r)]["fitness"] for r in range(len(_seeds_of(c)))], s.fitness)
                + LR_BOUND_PENALTY * space.bound_excess(c["coords"]) ** 2
                for c in population["candidates"]
            ]
            asked.tell(fitness)
            exp.write_state(asked.dumps())
            strategy = asked
            summary = _summarize(g, records, strategy, time.perf_counter() - t0, cfg)
            exp.write_summary(g, summary)
            line = (
                f"generation {g}: best {summary['best_fitness']:.4f} median {summary['median_fitness']:.4f} "
                f"sigma {summary['sigma']:.3g} failures {summary['failures']} "
                + (f"lr {summary['lr']['median']:.3g} " if summary["lr"] else "")
                + (f"scale {summary['scale']['median']:.3g} " if summary["scale"] else "")
                + f"time {summary['wall_time']:.1f}s"
            )
            exp.append_search_log(line)
            if scalars is not None:
                _write_scalars(scalars, summary, records)
            if log is not None:
                log(line)
            done_here += 1
        complete = stop_reason.startswith(("generation limit", "evaluation budget"))
        records = list(exp.evaluations())
        cands = aggregate_candidates(records, s.fitness)
        best = min(cands, key=lambda c: c["fitness"]) if cands else None
        chosen = None
        if complete and s.final_top_k and cands:
            if backend is None and _final_jobs_left(exp, cfg):
                backend = make_backend(cfg.execution, retries=s.retries)
            chosen = final_selection(exp, cfg, strategy, space, cands, backend, log=log)
        failed = False
        return SearchResult(exp.path, strategy.generation, len(records), complete, stop_reason, best, chosen)
    finally:
        if scalars is not None:
            scalars.close()
        if own_backend and backend is not None:
            backend.shutdown()
        if failed and new and exp.read_population(0) is None:
            _undo_new_experiment(path, before)
        exp.release_lock()


def _undo_new_experiment(path: Path, before: set[str] | None) -> None:
    """Remove what a call that created an experiment wrote before its first generation was sampled.

    A run that fails (or is interrupted) before generation 0 is stored leaves the directory as it
    found it: the entries it created (config.json, lock, tensorboard/, an empty generations/) go,
    and the directory too when the call created it.
    """
    if before is None:
        shutil.rmtree(path, ignore_errors=True)
        return
    for name in set(os.listdir(path)) - before:
        target = path / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)


def missing_evaluations(exp: ExperimentDir, generations) -> list[tuple[dict, list[tuple[dict, int]]]]:
    """(population, its (candidate, replica) pairs without a journal record) of each of
    ``generations`` that has a stored population and lacks records (lost or quarantined lines)."""
    out = []
    for g in generations:
        stored = exp.read_population(g)
        if stored is None:
            continue
        missing = _missing(stored[0], exp.evaluations_of(g))
        if missing:
            out.append((stored[0], missing))
    return out


def _missing(population: dict, records: dict[tuple[int, int], dict]) -> list[tuple[dict, int]]:
    return [
        (c, r)
        for c in population["candidates"]
        for r in range(len(_seeds_of(c)))
        if (c["index"], r) not in records
    ]


def _sample(strategy: CMAStrategy, space, cfg: ExperimentConfig, g: int, num_classes: int) -> dict:
    s = cfg.search
    seeds = generation_seeds(s.seed, g, s.seeds_per_candidate)
    candidates = []
    for i, coords in enumerate(strategy.ask()):
        vector, lr = space.decode(coords)
        violates = None
        if s.invariant_action != "off":
            violates = not candidate_invariant(vector, s.order, s.variables, num_classes, s.invariant_rule)
        candidates.append(
            {
                "index": i,
                "coords": coords,
                "vector": vector,
                "lr": lr,
                "violates_invariant": violates,
                "seed": seeds[0],
                "seeds": seeds,
            }
        )
    return {
        "generation": g,
        "seed": seeds[0],
        "seeds": seeds,
        "space": s.space,
        "order": s.order,
        "variables": list(s.variables),
        "sigma": strategy.sigma,
        "candidates": candidates,
    }


def _seeds_of(cand: dict) -> list[int]:
    """A stored candidate's training seeds (populations written before seeds per candidate had one)."""
    return list(cand.get("seeds") or [cand["seed"]])


def make_job(
    cfg: ExperimentConfig,
    *,
    generation: int,
    index: int,
    seed: int,
    vector=None,
    lr: float | None = None,
    loss: str | None = None,
    attempt: int = 0,
    replica: int = 0,
    evaluate_test: bool = False,
    task: dict | None = None,
) -> Job:
    """The :class:`~taylorglo.search.journal.Job` of one training of one loss on one seed.

    ``lr`` replaces ``task.lr`` (a searched or tuned learning rate); ``loss`` (a trainer loss spec)
    replaces the Taylor ``vector``.
    """
    task = dict(cfg.task if task is None else task)
    if lr is not None:
        task["lr"] = float(lr)
    return Job(
        generation=generation,
        index=index,
        replica=replica,
        attempt=attempt,
        vector=None if vector is None else tuple(vector),
        loss=loss,
        order=cfg.search.order,
        variables=tuple(cfg.search.variables),
        seed=int(seed),
        task=task,
        evaluator=cfg.execution.evaluator,
        options=cfg.execution.evaluator_options,
        evaluate_test=evaluate_test,
    )


def _job(cfg: ExperimentConfig, population: dict, cand: dict, replica: int, attempt: int) -> Job:
    return make_job(
        cfg,
        generation=population["generation"],
        index=cand["index"],
        replica=replica,
        attempt=attempt,
        seed=_seeds_of(cand)[replica],
        vector=cand["vector"],
        lr=cand.get("lr"),
    )


def _record(
    cfg: ExperimentConfig, cand: dict, replica: int, generation: int, result: dict, attempts: int
) -> EvaluationRecord:
    return EvaluationRecord.from_result(
        result,
        generation=generation,
        index=cand["index"],
        replica=replica,
        seed=_seeds_of(cand)[replica],
        vector=cand["vector"],
        lr=cand.get("lr"),
        violates_invariant=cand["violates_invariant"],
        attempts=attempts,
        penalty=cfg.search.penalty,
        finished_at=time.time(),
    )


def _evaluate(
    exp: ExperimentDir,
    cfg: ExperimentConfig,
    population: dict,
    missing: list[tuple[dict, int]],
    records: dict[tuple[int, int], dict],
    backend: Backend,
    show: bool,
) -> None:
    s = cfg.search
    g = population["generation"]
    total = sum(len(_seeds_of(c)) for c in population["candidates"])
    bar = None
    if show:
        try:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=total - len(missing), desc=f"generation {g}", leave=False)
        except ImportError:
            bar = None

    def finish(cand: dict, replica: int, result: dict, attempts: int) -> None:
        rec = _record(cfg, cand, replica, g, result, attempts).to_dict()
        exp.append_evaluation(rec)  # the journal first: from here on the evaluation is never repeated
        fault_point(f"after-journal:{g}:{cand['index']}")
        records[(cand["index"], replica)] = rec
        if result.get("log"):
            exp.write_log(
                g,
                cand["index"],
                (result.get("log") or "") + (f"\n{result['error']}\n" if result.get("error") else ""),
                replica,
            )
        if bar is not None:
            bar.update(1)

    def retry_log(cand: dict, replica: int, attempt: int, result: dict) -> None:
        exp.write_log(
            g,
            cand["index"],
            f"attempt {attempt} failed: {result.get('error')}\n{result.get('log') or ''}",
            replica,
        )

    jobs = []
    for cand, replica in missing:
        if s.invariant_action == "enforce" and cand["violates_invariant"]:
            finish(
                cand,
                replica,
                {"status": "invariant", "error": f"violates the {s.invariant_rule} invariant; not trained"},
                0,
            )
            continue
        jobs.append(
            ((cand, replica), lambda attempt, c=cand, r=replica: _job(cfg, population, c, r, attempt))
        )
    if bar is not None:
        bar.refresh()
    try:
        run_jobs(
            backend,
            jobs,
            retries=s.retries,
            finish=lambda key, result, attempts: finish(key[0], key[1], result, attempts),
            on_retry=lambda key, attempt, result: retry_log(key[0], key[1], attempt, result),
            max_missing=s.max_missing * s.seeds_per_candidate,
        )
    finally:
        if bar is not None:
            bar.close()


def run_jobs(
    backend: Backend,
    jobs: list[tuple[object, Callable[[int], Job]]],
    *,
    retries: int,
    finish: Callable[[object, dict, int], None],
    on_retry: Callable[[object, int, dict], None] | None = None,
    max_missing: int = 0,
) -> None:
    """Run ``jobs`` (key, make_job(attempt)) on ``backend``; ``finish(key, result, attempts)`` each.

    At most ``backend.capacity`` jobs are out at once, the rest wait in order (retries first): the
    journal then follows the trainings closely, and an in-process backend trains exactly one job
    at a time. A failed job (raised, or its worker died) is retried ``retries`` times. With
    ``max_missing`` > 0, up to that many stragglers still running when all others are in are
    cancelled after ``STRAGGLER_FACTOR`` times the median duration and finished as ``missing``.
    """
    queue: collections.deque[tuple[int, int]] = collections.deque((pos, 0) for pos in range(len(jobs)))
    pending: dict[Future, tuple[int, int]] = {}  # future -> (position in jobs, attempt)
    capacity = max(1, int(getattr(backend, "capacity", 1)))
    durations: list[float] = []
    started = time.monotonic()
    try:
        while pending or queue:
            while queue and len(pending) < capacity:
                pos, attempt = queue.popleft()
                pending[backend.submit(jobs[pos][1](attempt))] = (pos, attempt)
            done, _ = wait(list(pending), timeout=1.0, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: pending[f][0]):
                pos, attempt = pending.pop(fut)
                key = jobs[pos][0]
                try:
                    result = fut.result()
                except Exception as exc:  # the worker died or the trial timed out
                    result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
                if result.get("status") == "failed" and attempt < retries:
                    if on_retry is not None:
                        on_retry(key, attempt, result)
                    queue.appendleft((pos, attempt + 1))
                    continue
                if isinstance(result.get("wall_time"), (int, float)):
                    durations.append(float(result["wall_time"]))
                finish(key, result, attempt + 1)
            if not queue and 0 < len(pending) <= max_missing and durations:
                grace = STRAGGLER_FACTOR * statistics.median(durations)
                if time.monotonic() - started > grace + sum(durations) / capacity:
                    for fut, (pos, attempt) in list(pending.items()):
                        backend.cancel(fut)
                        del pending[fut]
                        finish(
                            jobs[pos][0],
                            {"status": "missing", "error": "dropped as a straggler (search.max_missing)"},
                            attempt + 1,
                        )
    finally:
        for fut in pending:
            backend.cancel(fut)


def _scalar_writer(log_dir: Path):
    """A TensorBoard writer for ``log_dir`` (DIR/tensorboard) when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(log_dir=str(log_dir))


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


def is_collapsed(record: dict, num_classes: int) -> bool:
    """A training that ended at about chance accuracy (<= 1.5 / n) or was stopped below threshold.

    On noisy validation labels (the record's ``label_noise``) 1.5 / n is a clean accuracy, compared
    with what a model of that clean accuracy scores there (as the trainer's ``min_accuracy``): at
    60 % symmetric noise over 10 classes, 0.117 rather than 0.15, which good models score under.
    """
    if record.get("status") == "below_threshold":
        return True
    acc = record.get("val_accuracy")
    if not (record.get("status") in MEASURED and isinstance(acc, (int, float)) and num_classes >= 2):
        return False
    threshold = 1.5 / num_classes
    noise = record.get("label_noise") or {}
    if noise.get("val_flipped"):
        threshold = noisy_accuracy_floor(threshold, noise["val_realized_rate"], num_classes)
    return acc <= threshold


def _spread(values: list[float]) -> dict | None:
    values = sorted(v for v in values if isinstance(v, (int, float)) and math.isfinite(v))
    if not values:
        return None
    return {"min": values[0], "median": statistics.median(values), "max": values[-1]}


def _summarize(
    g: int,
    records: dict[tuple[int, int], dict],
    strategy: CMAStrategy,
    wall_time: float,
    cfg: ExperimentConfig,
) -> dict:
    """The generation's summary: fitness statistics over candidates, diagnostics of drift.

    ``sigma`` is the step size after this generation's update (what the run log prints);
    ``scale`` is the spread of the candidates' push relative to cross-entropy's (``push_scale``),
    ``lr`` that of their learning rates (searched), ``failed_share``/``collapsed_share`` the
    shares of trainings not measured / ended at chance accuracy.
    """
    s = cfg.search
    recs = [records[k] for k in sorted(records)]
    cands = aggregate_candidates(recs, s.fitness)
    fit = [c["fitness"] for c in cands]
    best = min(cands, key=lambda c: c["fitness"])
    statuses: dict[str, int] = {}
    for r in recs:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    n = cfg.inferred_num_classes() or 0
    scales = []
    if n >= 2:
        scales = [push_scale(c["vector"], s.order, s.variables, n) for c in cands]
    return {
        "generation": g,
        "best_fitness": min(fit),
        "mean_fitness": statistics.fmean(fit),
        "median_fitness": statistics.median(fit),
        "best_index": best["index"],
        "best_vector": best["vector"],
        "best_lr": best["lr"],
        "failures": sum(1 for r in recs if r["status"] not in MEASURED),
        "trainings": len(recs),
        "failed_share": sum(1 for r in recs if r["status"] not in MEASURED) / len(recs),
        "collapsed_share": sum(1 for r in recs if is_collapsed(r, n)) / len(recs),
        "statuses": statuses,
        "sigma": strategy.sigma,
        "scale": _spread(scales),
        "lr": _spread([c["lr"] for c in cands if c["lr"] is not None]),
        "candidates": [
            {"index": c["index"], "fitness": c["fitness"], "lr": c["lr"], "val_accuracy": c["val_accuracy"]}
            for c in cands
        ],
        "wall_time": wall_time,
    }


# ----------------------------------------------------------------------------------------------
# Final selection: the best candidates and the CMA-ES mean on fresh seeds


def used_seeds(exp: ExperimentDir) -> set[int]:
    """The training seeds the generations of ``exp`` used (fresh seeds must avoid them)."""
    return {int(r["seed"]) for r in exp.evaluations() if isinstance(r.get("seed"), int)}


def _final_contenders(
    exp: ExperimentDir, cfg: ExperimentConfig, strategy: CMAStrategy, space, cands: list[dict]
) -> tuple[list[dict], list[int]]:
    """(contenders, seeds) of the final selection: the top K measured candidates, the CMA-ES mean."""
    s = cfg.search
    stored = exp.read_selection()
    if stored is not None and stored.get("contenders"):  # fixed once chosen: a resume trains the same
        return stored["contenders"], stored["seeds"]
    pool = sorted((c for c in cands if c["val_accuracy"] is not None), key=lambda c: c["fitness"])
    contenders = []
    seen = set()
    for c in pool:
        key = (tuple(c["vector"]), c["lr"])
        if key in seen:
            continue
        seen.add(key)
        contenders.append(
            {
                "id": f"g{c['generation']:04d}-c{c['index']:02d}",
                "generation": c["generation"],
                "index": c["index"],
                "vector": c["vector"],
                "lr": c["lr"],
                "search_fitness": c["fitness"],
            }
        )
        if len(contenders) == s.final_top_k:
            break
    vector, lr = space.decode(strategy.mean)
    contenders.append(
        {
            "id": "mean",
            "generation": strategy.generation,
            "index": None,
            "vector": vector,
            "lr": lr,
            "search_fitness": None,
        }
    )
    seeds = fresh_seeds(s.seed, s.final_seeds, "final", avoid=used_seeds(exp))
    exp.write_selection({"contenders": contenders, "seeds": seeds, "chosen": None})
    return contenders, seeds


def _selection_done(exp: ExperimentDir) -> bool:
    selection = exp.read_selection()
    return selection is not None and bool(selection.get("chosen"))


def _final_jobs_left(exp: ExperimentDir, cfg: ExperimentConfig) -> bool:
    """Whether ``final_selection`` has trainings to run: it has not chosen, or records were lost."""
    selection = exp.read_selection()
    if selection is None or not selection.get("chosen"):
        return True
    have = {(r["id"], r["replica"]) for r in exp.final_records()}
    return any(
        (c["id"], r) not in have for c in selection["contenders"] for r in range(len(selection["seeds"]))
    )


def final_selection(
    exp: ExperimentDir,
    cfg: ExperimentConfig,
    strategy: CMAStrategy,
    space,
    cands: list[dict],
    backend: Backend | None,
    *,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Train the contenders on the fresh seeds (what ``final.jsonl`` lacks) and choose; resumable.

    The contenders and seeds are fixed in ``selection.json`` before any training; each finished
    training is appended to ``final.jsonl``; the choice (best mean validation accuracy, a failed
    training counting as ``1 - search.penalty``) is written to ``selection.json`` with every
    contender's per-seed numbers. Invariant violators under ``enforce`` are not trained. Once
    chosen, the choice stands: trainings whose records were lost from ``final.jsonl`` (quarantined
    lines) are run again on their seeds to complete the file, and the stored choice is returned.
    """
    s = cfg.search
    done = exp.read_selection() if _selection_done(exp) else None
    contenders, seeds = _final_contenders(exp, cfg, strategy, space, cands)
    n = cfg.inferred_num_classes() or 0
    have = {(r["id"], r["replica"]): r for r in exp.final_records()}

    def finish(key, result: dict, attempts: int) -> None:
        cand, r = key
        rec = {
            "id": cand["id"],
            "replica": r,
            "seed": seeds[r],
            "vector": cand["vector"],
            "lr": cand["lr"],
            "attempts": attempts,
            "status": str(result.get("status", "failed")),
            "val_accuracy": _finite_or_none(result.get("val_accuracy")),
            "error": result.get("error"),
        }
        rec["fitness"] = fitness_of(rec, s.penalty)
        rec["finished_at"] = time.time()
        exp.append_final(rec)
        fault_point("after-final")
        have[(cand["id"], r)] = rec

    jobs = []
    for cand in contenders:
        rejected = (
            s.invariant_action == "enforce"
            and n >= 2
            and not candidate_invariant(cand["vector"], s.order, s.variables, n, s.invariant_rule)
        )
        for r in range(len(seeds)):
            if (cand["id"], r) in have:
                continue
            if rejected:
                finish((cand, r), {"status": "invariant", "error": "violates the invariant; not trained"}, 0)
                continue
            jobs.append(
                (
                    (cand, r),
                    lambda attempt, c=cand, r=r: make_job(
                        cfg,
                        generation=-1,
                        index=0 if c["index"] is None else c["index"],
                        replica=r,
                        attempt=attempt,
                        seed=seeds[r],
                        vector=c["vector"],
                        lr=c["lr"],
                    ),
                )
            )
    if jobs:
        if log is not None and done is not None:
            log(f"final selection: {len(jobs)} trainings lost from final.jsonl run again (the choice stands)")
        elif log is not None:
            log(
                f"final selection: {len(contenders)} contenders x {len(seeds)} fresh seeds ({len(jobs)} trainings)"
            )
        run_jobs(backend, jobs, retries=s.retries, finish=finish)
    if done is not None:
        return done["chosen"]
    table = []
    for cand in contenders:
        recs = [have[(cand["id"], r)] for r in range(len(seeds))]
        accs = [r["val_accuracy"] if r["status"] in MEASURED else None for r in recs]
        fits = [r["fitness"] for r in recs]
        table.append(
            dict(
                cand,
                val_accuracies=accs,
                statuses=[r["status"] for r in recs],
                mean_val_accuracy=1.0 - statistics.fmean(fits),
                std_val_accuracy=statistics.stdev([1.0 - f for f in fits]) if len(fits) > 1 else 0.0,
                failures=sum(1 for r in recs if r["status"] not in MEASURED),
                collapses=sum(1 for r in recs if is_collapsed(r, n)),
            )
        )
    best = max(table, key=lambda c: c["mean_val_accuracy"])  # the first of ties: the search's best
    chosen = {k: best[k] for k in ("id", "generation", "index", "vector", "lr", "mean_val_accuracy")}
    exp.write_selection({"contenders": contenders, "seeds": seeds, "table": table, "chosen": chosen})
    if log is not None:
        for c in table:
            log(
                f"  {c['id']}: val {c['mean_val_accuracy']:.4f} ± {c['std_val_accuracy']:.4f}"
                + (f" lr {c['lr']:.4g}" if c["lr"] is not None else "")
                + (f" ({c['failures']} failed)" if c["failures"] else "")
            )
        log(
            f"chosen: {chosen['id']} (mean validation accuracy {chosen['mean_val_accuracy']:.4f} on {len(seeds)} fresh seeds)"
        )
    return chosen


def _finite_or_none(value):
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None

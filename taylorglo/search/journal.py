"""The experiment directory: the on-disk truth of a search.

Layout::

    DIR/config.json                      the validated experiment config (written once, by init)
    DIR/lock                             held with flock by the one process running the search
    DIR/state.pkl                        the CMA-ES state after the last completed generation
    DIR/generations/NNNN/population.json the sampled candidates (written before any training)
    DIR/generations/NNNN/strategy.pkl    the CMA-ES state right after sampling NNNN
    DIR/generations/NNNN/summary.json    written after the generation is told (derived data)
    DIR/journal.jsonl                    one line per finished evaluation of a (candidate, seed)
                                         (flushed and fsynced)
    DIR/final.jsonl                      the final selection's evaluations on fresh seeds (same rules)
    DIR/selection.json                   the final selection: per-seed numbers and the chosen loss
    DIR/baselines.jsonl                  the tuned baselines' evaluations (``search baselines``)
    DIR/baselines.json                   their summary: each arm's best learning rate
    DIR/logs/gNNNN-cNN[-sR].log          the end of each training's output (R: the seed's replica)
    DIR/search.log                       one line per generation
    DIR/tensorboard/                     per-generation curves (when tensorboard is installed)
    DIR/evaluations/NAME.jsonl           one-shot trainings of a named loss on given seeds
                                         (``evaluate``, ``analysis.evaluate_losses``)
    DIR/generations.csv, DIR/*.png       derived tables and plots (``analyze``)

Crash safety: every file except the JSONL files is written as tmp + fsync + ``os.replace`` (+ fsync
of the directory), so a reader sees either the old or the new version; the training logs' tails
skip the fsyncs (``os.replace`` alone keeps them whole when the process is killed; nothing resumes
from them). The commit points of a
generation g are, in order: ``population.json`` (after ``strategy.pkl``), one journal line per
(candidate, seed), then ``state.pkl`` with ``generation = g + 1``.

Integrity: ``journal.jsonl``, ``final.jsonl`` and ``baselines.jsonl`` are append-only, one JSON
object per line, each carrying ``crc32``: the CRC-32 of the record's canonical JSON (sorted keys,
no spaces) without that field (lines written before checksums existed have none and are read as
they are). A line that is torn (no newline: a kill during a write), not JSON, lacks the file's
key fields or fails its checksum is never read as a record. The process that writes a file moves
such lines to ``DIR/<name>.quarantine.jsonl`` (``{"file", "line", "reason", "raw"}``, ``line``
counted from 1 in the file as it was) and rewrites the file without them atomically, before its
first append (``run`` does it for the journal and ``final.jsonl`` as soon as it holds the lock);
readers only skip them, and ``integrity`` reports them. The record a quarantined line held is then
missing, and ``run`` evaluates it again (see ``taylorglo.search.runner``).

This module owns the formats: :class:`ExperimentDir` is the only code that opens an experiment's
files, :class:`Job` is what a backend's evaluator receives, :class:`EvaluationRecord` one line of
``journal.jsonl`` and :data:`MEASURED` the statuses whose ``val_accuracy`` is a measurement.
"""

from __future__ import annotations

import errno
import json
import math
import os
import socket
import sys
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

__all__ = [
    "CHECKSUM_FIELD",
    "MEASURED",
    "CorruptLine",
    "EvaluationRecord",
    "ExperimentDir",
    "ExperimentLocked",
    "Job",
    "atomic_write",
    "decode_line",
    "encode_line",
    "is_measured",
    "read_evaluation_file",
]

# Statuses whose val_accuracy is a real measurement; all others get the penalty.
MEASURED = ("ok", "below_threshold")


def is_measured(record: Mapping[str, Any]) -> bool:
    """Whether a record's (journal, final, baseline or one-shot) status is a measurement."""
    return record.get("status") in MEASURED


# --- the job and the journal record ---------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One training of one loss on one seed: what a backend's evaluator receives (as ``to_dict()``).

    The wire format is a plain dict (it crosses process and machine boundaries, and custom
    evaluators index it)::

        {"generation": 3, "index": 5, "replica": 0, "attempt": 0, "vector": [...] | None,
         "loss": "cross-entropy" | None, "order": 3, "variables": ["x", "y"], "seed": 123,
         "task": {...trainer config...}, "evaluator": "module:function", "options": {...},
         "evaluate_test": False}

    ``vector`` is a Taylor parameter vector of ``order``/``variables``; ``loss`` (a trainer loss
    spec) replaces it. ``generation`` is -1 for one-shot and final-selection trainings, -2 for
    baseline tuning.
    """

    generation: int
    index: int
    seed: int
    task: dict
    evaluator: str
    order: int = 3
    variables: tuple[str, ...] = ("x", "y")
    vector: Optional[tuple[float, ...]] = None
    loss: Optional[str] = None
    replica: int = 0
    attempt: int = 0
    options: dict = field(default_factory=dict)
    evaluate_test: bool = False

    def to_dict(self) -> dict:
        return {
            "generation": self.generation,
            "index": self.index,
            "replica": self.replica,
            "attempt": self.attempt,
            "vector": None if self.vector is None else list(self.vector),
            "loss": self.loss,
            "order": self.order,
            "variables": list(self.variables),
            "seed": int(self.seed),
            "task": dict(self.task),
            "evaluator": self.evaluator,
            "options": dict(self.options or {}),
            "evaluate_test": bool(self.evaluate_test),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Job:
        """A Job from its wire dict (older dicts without replica, loss or evaluate_test included)."""
        return cls(
            generation=int(d["generation"]),
            index=int(d["index"]),
            seed=int(d["seed"]),
            task=dict(d.get("task") or {}),
            evaluator=str(d["evaluator"]),
            order=int(d.get("order", 3)),
            variables=tuple(d.get("variables") or ("x", "y")),
            vector=None if d.get("vector") is None else tuple(float(v) for v in d["vector"]),
            loss=d.get("loss"),
            replica=int(d.get("replica", 0)),
            attempt=int(d.get("attempt", 0)),
            options=dict(d.get("options") or {}),
            evaluate_test=bool(d.get("evaluate_test", False)),
        )


def job_dict(job: Job | Mapping[str, Any]) -> dict:
    """The wire dict of a Job (a dict is passed through)."""
    return job.to_dict() if isinstance(job, Job) else dict(job)


# The result fields an evaluator reports that a journal record keeps (NaN stored as null).
RESULT_FIELDS = (
    "val_accuracy",
    "val_loss",
    "test_accuracy",
    "steps",
    "wall_time",
    "train_time",
    "worker",
    "error",
)


@dataclass(frozen=True)
class EvaluationRecord:
    """One line of ``journal.jsonl``: a finished training of a (candidate, seed replica).

    ``to_dict()`` is the stored JSON object (the checksum is added by ``encode_line``);
    ``from_dict`` reads a stored one (lines from before seeds per candidate have no ``replica``: 0).
    ``fitness`` is minimized: ``1 - val_accuracy`` for a measured status, else the penalty.
    """

    generation: int
    index: int
    seed: int
    vector: Sequence[float]
    status: str
    fitness: float
    replica: int = 0
    lr: Optional[float] = None
    violates_invariant: Optional[bool] = None
    attempts: int = 1
    val_accuracy: Optional[float] = None
    val_loss: Optional[float] = None
    test_accuracy: Optional[float] = None
    steps: Optional[int] = None
    wall_time: Optional[float] = None
    train_time: Optional[float] = None
    worker: Optional[str] = None
    error: Optional[str] = None
    finished_at: Optional[float] = None

    @property
    def measured(self) -> bool:
        return self.status in MEASURED

    def to_dict(self) -> dict:
        out = {
            "generation": self.generation,
            "index": self.index,
            "replica": self.replica,
            "seed": self.seed,
            "vector": self.vector,
            "lr": self.lr,
            "violates_invariant": self.violates_invariant,
            "attempts": self.attempts,
            "status": self.status,
        }
        for key in RESULT_FIELDS:
            out[key] = getattr(self, key)
        out["fitness"] = self.fitness
        out["finished_at"] = self.finished_at
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvaluationRecord:
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in d.items() if k in known}
        kwargs.setdefault("replica", 0)
        return cls(**kwargs)

    @classmethod
    def from_result(
        cls,
        result: Mapping[str, Any],
        *,
        generation: int,
        index: int,
        replica: int,
        seed: int,
        vector: Sequence[float],
        lr: Optional[float],
        violates_invariant: Optional[bool],
        attempts: int,
        penalty: float,
        finished_at: float,
    ) -> EvaluationRecord:
        """The record of an evaluator's result dict (non-finite numbers stored as null)."""
        values = {}
        for key in RESULT_FIELDS:
            value = result.get(key)
            if isinstance(value, float) and not math.isfinite(value):
                value = None  # JSON has no NaN; the status says what happened
            values[key] = value
        return cls(
            generation=generation,
            index=index,
            replica=replica,
            seed=seed,
            vector=vector,
            lr=lr,
            violates_invariant=violates_invariant,
            attempts=attempts,
            status=str(result.get("status", "failed")),
            fitness=fitness_of(result, penalty),
            finished_at=finished_at,
            **values,
        )


def fitness_of(result: Mapping[str, Any], penalty: float) -> float:
    """Minimized fitness: ``1 - val_accuracy`` for measured trainings, else ``penalty``; never NaN."""
    acc = result.get("val_accuracy")
    if result.get("status") in MEASURED and isinstance(acc, (int, float)) and math.isfinite(acc):
        return 1.0 - float(acc)
    return float(penalty)


class ExperimentLocked(RuntimeError):
    """Another live process holds the experiment directory."""


def fault_point(name: str) -> None:
    """Test hook: SIGKILL this process at the named point when ``TAYLORGLO_SEARCH_FAULT`` says so.

    ``TAYLORGLO_SEARCH_FAULT="replace:state.pkl"`` dies during a checkpoint write (after the tmp file
    is written, before it replaces the old one); the runner names its own points (see ``runner``).
    A ``@N`` suffix fires at the N-th time the point is reached (counting from 1).
    """
    want = os.environ.get("TAYLORGLO_SEARCH_FAULT")
    if not want:
        return
    point, _, nth = want.partition("@")
    if point != name:
        return
    _FAULT_COUNTS[name] = _FAULT_COUNTS.get(name, 0) + 1
    if _FAULT_COUNTS[name] == int(nth or 1):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


_FAULT_COUNTS: dict[str, int] = {}


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes | str, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically: tmp file, fsync, ``os.replace``, fsync the directory.

    ``durable=False`` skips both fsyncs: the file is still whole or absent when the process is
    killed at any moment (``os.replace`` is atomic), but an OS crash may lose it. For files nothing
    is resumed from (the per-training log tails).
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    fault_point(f"replace:{path.name}")
    os.replace(tmp, path)
    if durable:
        _fsync_dir(path.parent)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n"


# --- checksummed JSON lines ---------------------------------------------------------------------
CHECKSUM_FIELD = "crc32"

# The fields without which a line of each file is not a record (a JSON object that lacks them is
# as corrupt as one that is not JSON).
_KEY_FIELDS = {
    "journal.jsonl": ("generation", "index", "status", "fitness"),
    "final.jsonl": ("id", "replica", "status", "fitness"),
    "baselines.jsonl": ("arm", "lr", "seed", "status", "fitness"),
}


_TORN = "torn (no newline: a kill during a write?)"


class CorruptLine(ValueError):
    """A JSONL line that is not a record; the message says why (torn, not JSON, checksum, fields)."""


def _checksum(body: dict) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return f"{zlib.crc32(canonical.encode('utf-8')):08x}"


def encode_line(record: dict) -> bytes:
    """One JSONL line: ``record`` with ``crc32``, the CRC-32 (8 hex digits) of its canonical JSON.

    The canonical JSON is ``json.dumps(record, sort_keys=True, separators=(",", ":"))`` without
    the checksum field; non-finite numbers are refused (ValueError), as JSON cannot hold them.
    """
    body = {k: v for k, v in record.items() if k != CHECKSUM_FIELD}
    line = json.dumps({**body, CHECKSUM_FIELD: _checksum(body)}, sort_keys=True, allow_nan=False)
    return (line + "\n").encode("utf-8")


def decode_line(raw: bytes, key_fields: tuple[str, ...] = ()) -> dict:
    """The record of one line (without its checksum field); CorruptLine says why it is none.

    ``raw`` is the line with its newline; one without it is torn. A record without a checksum (an
    older line) is accepted as it is; one with a checksum must match it.
    """
    if not raw.endswith(b"\n"):
        raise CorruptLine(_TORN)
    if not raw.strip():
        raise CorruptLine("empty line")
    try:
        record = json.loads(raw)
    except ValueError:
        raise CorruptLine("not JSON") from None
    if not isinstance(record, dict):
        raise CorruptLine(f"not a JSON object but {type(record).__name__}")
    stored = record.pop(CHECKSUM_FIELD, None)
    if stored is not None:
        try:
            expected = _checksum(record)
        except ValueError:
            raise CorruptLine("not JSON (a non-finite number)") from None
        if stored != expected:
            raise CorruptLine(f"checksum mismatch (stored {stored!r}, content {expected!r})")
    lacking = [k for k in key_fields if k not in record]
    if lacking:
        raise CorruptLine(f"not a record of this file (no {', '.join(lacking)})")
    return record


def _scan(data: bytes, key_fields: tuple[str, ...]):
    """Decode the complete lines of ``data``: ([(line number, raw, record)], [bad entry]).

    Bytes after the last newline (a torn line, or an append still being written) are not looked
    at; the caller decides what they are.
    """
    good, bad = [], []
    end = data.rfind(b"\n") + 1
    lines = data[: end - 1].split(b"\n") if end else []  # newlines only: a stray \r stays inside
    for n, line in enumerate(lines, 1):
        raw = line + b"\n"
        try:
            good.append((n, raw, decode_line(raw, key_fields)))
        except CorruptLine as exc:
            bad.append({"line": n, "reason": str(exc), "raw": raw})
    return good, bad


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class ExperimentDir:
    """Paths and safe reads/writes of one experiment directory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock_fd: int | None = None
        # The journal indexed by generation as it is read and appended: each new byte is parsed
        # once, and the index keeps only where each record's line is ((offset, length) by
        # (index, replica)), so neither a generation's bookkeeping time nor the memory per record
        # grows with the length of the run; ``evaluations_of`` reads the generation's lines back.
        self._by_generation: dict[int, dict[tuple[int, int], tuple[int, int]]] = {}
        self._read_offset = 0
        self._read_inode: int | None = None
        self._repaired: set[str] = set()  # files this process has quarantined (before appending)

    # --- paths --------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def state_path(self) -> Path:
        return self.path / "state.pkl"

    @property
    def journal_path(self) -> Path:
        return self.path / "journal.jsonl"

    def generation_dir(self, generation: int) -> Path:
        return self.path / "generations" / f"{generation:04d}"

    def log_path(self, generation: int, index: int, replica: int = 0) -> Path:
        """The training log of a candidate's seed ``replica`` (``-sR`` in the name for R > 0)."""
        suffix = f"-s{replica}" if replica else ""
        return self.path / "logs" / f"g{generation:04d}-c{index:02d}{suffix}.log"

    @property
    def tensorboard_dir(self) -> Path:
        """Where the per-generation TensorBoard curves go (written by TensorBoard's own writer)."""
        return self.path / "tensorboard"

    def exists(self) -> bool:
        return self.config_path.is_file()

    # --- config -------------------------------------------------------------------------------
    def write_config(self, config: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.config_path, _dumps(config))

    def read_config(self) -> dict:
        with open(self.config_path, encoding="utf-8") as fh:
            return json.load(fh)

    # --- lock ---------------------------------------------------------------------------------
    def acquire_lock(self) -> None:
        """Take the directory's lock (``flock``, released by the kernel when the process dies).

        A stale lock file left by a killed process is therefore taken over silently; a live holder
        makes this raise ``ExperimentLocked`` naming its pid and host.
        """
        import fcntl

        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown process"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise ExperimentLocked(
                    f"{self.path} is in use by {holder}; wait for it to finish or stop it first"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        os.fsync(fd)
        self._lock_fd = fd

    def release_lock(self) -> None:
        if self._lock_fd is not None:
            import fcntl

            try:
                os.ftruncate(self._lock_fd, 0)
            except OSError:
                pass
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def lock_holder(self) -> str | None:
        """The holder's description when the directory is locked by a live process, else None."""
        import fcntl

        lock = self.path / "lock"
        if not lock.exists():
            return None
        fd = os.open(lock, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown process"
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    # --- strategy state -----------------------------------------------------------------------
    def write_state(self, data: bytes) -> None:
        atomic_write(self.state_path, data)

    def read_state(self) -> bytes | None:
        try:
            return self.state_path.read_bytes()
        except FileNotFoundError:
            return None

    # --- generations --------------------------------------------------------------------------
    def write_population(self, generation: int, population: dict, strategy: bytes) -> None:
        """Store a sampled generation: the strategy after ``ask`` first, then the population (the commit)."""
        gdir = self.generation_dir(generation)
        gdir.mkdir(parents=True, exist_ok=True)
        atomic_write(gdir / "strategy.pkl", strategy)
        atomic_write(gdir / "population.json", _dumps(population))

    def read_population(self, generation: int) -> tuple[dict, bytes] | None:
        gdir = self.generation_dir(generation)
        try:
            with open(gdir / "population.json", encoding="utf-8") as fh:
                population = json.load(fh)
            return population, (gdir / "strategy.pkl").read_bytes()
        except FileNotFoundError:
            return None

    def write_summary(self, generation: int, summary: dict) -> None:
        atomic_write(self.generation_dir(generation) / "summary.json", _dumps(summary))

    def read_summary(self, generation: int) -> dict | None:
        try:
            with open(self.generation_dir(generation) / "summary.json", encoding="utf-8") as fh:
                return json.load(fh)
        except FileNotFoundError:
            return None

    def generations(self) -> list[int]:
        """Numbers of the generations that have a stored population, ascending."""
        root = self.path / "generations"
        if not root.is_dir():
            return []
        out = []
        for p in root.iterdir():
            if p.name.isdigit() and (p / "population.json").is_file():
                out.append(int(p.name))
        return sorted(out)

    # --- journal ------------------------------------------------------------------------------
    def append_evaluation(self, record: EvaluationRecord | dict) -> None:
        """Append one evaluation record (with its checksum); flushed and fsynced before returning."""
        if isinstance(record, EvaluationRecord):
            record = record.to_dict()
        self._append_line(self.journal_path, record)

    def evaluations(self) -> Iterator[dict]:
        """Every record of the journal, in append order; torn and corrupt lines are skipped."""
        yield from self._read_lines(self.journal_path)

    def _reset_index(self) -> None:
        self._by_generation, self._read_offset, self._read_inode = {}, 0, None

    def _catch_up(self) -> None:
        """Parse the journal lines appended since the last call into the per-generation index."""
        try:
            st = self.journal_path.stat()
        except FileNotFoundError:
            self._reset_index()
            return
        if st.st_ino != self._read_inode or st.st_size < self._read_offset:  # rewritten: start over
            self._reset_index()
            self._read_inode = st.st_ino
        if st.st_size == self._read_offset:
            return
        with open(self.journal_path, "rb") as fh:
            fh.seek(self._read_offset)
            data = fh.read(st.st_size - self._read_offset)
        end = data.rfind(b"\n") + 1  # a torn last line is left for later
        start = 0
        while start < end:
            stop = data.index(b"\n", start) + 1
            try:
                rec = decode_line(data[start:stop], _KEY_FIELDS["journal.jsonl"])
            except CorruptLine:  # skipped here, quarantined by `repair`
                pass
            else:
                key = (int(rec["index"]), int(rec.get("replica", 0)))
                span = (self._read_offset + start, stop - start)
                self._by_generation.setdefault(int(rec["generation"]), {}).setdefault(key, span)
            start = stop
        self._read_offset += end

    def evaluations_of(self, generation: int) -> dict[tuple[int, int], dict]:
        """The records of one generation by (candidate index, replica); the first record of a key wins.

        ``replica`` r is the r-th of the generation's ``search.seeds_per_candidate`` training seeds
        (0 for journals written before seeds per candidate existed).
        """
        for _ in range(2):  # a second time from scratch when the journal was rewritten meanwhile
            self._catch_up()
            spans = self._by_generation.get(int(generation), {})
            if not spans:
                return {}
            try:
                with open(self.journal_path, "rb") as fh:
                    out = {}
                    for key, (offset, length) in spans.items():
                        fh.seek(offset)
                        out[key] = decode_line(fh.read(length))
                    return out
            except (FileNotFoundError, CorruptLine):
                self._reset_index()
        return {}

    # --- integrity of the JSONL files ---------------------------------------------------------
    def quarantine_path(self, path: Path) -> Path:
        """Where the corrupt lines of ``path`` go: ``DIR/<stem>.quarantine.jsonl``."""
        return path.with_name(f"{path.stem}.quarantine.jsonl")

    def repair(self, path: Path | None = None) -> list[dict]:
        """Move the torn and corrupt lines of ``path`` (default: the journal) to its quarantine file.

        Only the process that writes ``path`` may call this (``run`` holds the lock): the quarantine
        entries are appended and fsynced first, then ``path`` is rewritten without those lines
        (atomically), so a kill in between at worst quarantines a line twice. Returns the entries
        moved: ``{"file", "line", "reason", "raw"}`` (``line`` from 1, in the file as it was).
        """
        path = self.journal_path if path is None else Path(path)
        self._repaired.add(path.name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        good, bad = _scan(data, _KEY_FIELDS.get(path.name, ()))
        end = data.rfind(b"\n") + 1
        if end < len(data):
            bad.append({"line": data.count(b"\n") + 1, "reason": _TORN, "raw": data[end:]})
        if not bad:
            return []
        entries = [
            {
                "file": path.name,
                "line": b["line"],
                "reason": b["reason"],
                "raw": b["raw"].decode("utf-8", "backslashreplace"),
            }
            for b in bad
        ]
        self._append_raw(self.quarantine_path(path), b"".join(encode_line(e) for e in entries))
        atomic_write(path, b"".join(raw for _, raw, _ in good))
        if path == self.journal_path:
            self._reset_index()
        return entries

    def integrity(self) -> dict[str, dict]:
        """Per JSONL file (journal, final, baselines): what a reader finds in it.

        ``records``: readable records; ``unchecked``: of those, lines without a checksum (written
        before checksums existed); ``corrupt``: ``{"line", "reason"}`` of the lines that are not
        records and not yet quarantined (a torn last line included: while a search runs, it can be
        an append in progress); ``quarantined``: lines moved to the file's quarantine so far.
        """
        out = {}
        for path in (self.journal_path, self.final_path, self.baselines_path):
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                data = b""
            good, bad = _scan(data, _KEY_FIELDS[path.name])
            if data and not data.endswith(b"\n"):
                bad.append({"line": data.count(b"\n") + 1, "reason": _TORN})
            try:
                quarantined = self.quarantine_path(path).read_bytes().count(b"\n")
            except FileNotFoundError:
                quarantined = 0
            tag = f'"{CHECKSUM_FIELD}": '.encode()
            out[path.name] = {
                "records": len(good),
                "unchecked": sum(1 for _, raw, _ in good if tag not in raw),
                "corrupt": [{"line": b["line"], "reason": b["reason"]} for b in bad],
                "quarantined": quarantined,
            }
        return out

    # --- final selection and baselines ----------------------------------------------------------
    def _append_line(self, path: Path, record: dict) -> None:
        """Append ``record`` (with its checksum) to ``path``, flushed and fsynced.

        The first append of this process to ``path`` quarantines the file's torn and corrupt lines
        first (``repair``: a torn last line would otherwise swallow the new record) and reports
        each on stderr, unless the caller repaired the file already.
        """
        line = encode_line(record)  # a record JSON cannot hold fails here, before anything is written
        if path.name not in self._repaired:
            for entry in self.repair(path):
                _warn(
                    f"{entry['file']} line {entry['line']}: {entry['reason']}; moved to "
                    f"{self.quarantine_path(path).name}"
                )
        self._append_raw(path, line)

    def _append_raw(self, path: Path, data: bytes) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    @staticmethod
    def _read_lines(path: Path) -> list[dict]:
        """The records of a JSONL file in append order; torn and corrupt lines are skipped."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        return [rec for _, _, rec in _scan(data, _KEY_FIELDS.get(path.name, ()))[0]]

    @property
    def final_path(self) -> Path:
        return self.path / "final.jsonl"

    @property
    def baselines_path(self) -> Path:
        return self.path / "baselines.jsonl"

    def append_final(self, record: dict) -> None:
        """Append one final-selection evaluation (flushed and fsynced)."""
        self._append_line(self.final_path, record)

    def final_records(self) -> list[dict]:
        """The final selection's evaluations, in append order (a torn last line is skipped)."""
        return self._read_lines(self.final_path)

    def write_selection(self, selection: dict) -> None:
        atomic_write(self.path / "selection.json", _dumps(selection))

    def read_selection(self) -> dict | None:
        try:
            with open(self.path / "selection.json", encoding="utf-8") as fh:
                return json.load(fh)
        except FileNotFoundError:
            return None

    def append_baseline(self, record: dict) -> None:
        """Append one baseline evaluation (flushed and fsynced)."""
        self._append_line(self.baselines_path, record)

    def baseline_records(self) -> list[dict]:
        return self._read_lines(self.baselines_path)

    def write_baselines(self, summary: dict) -> None:
        atomic_write(self.path / "baselines.json", _dumps(summary))

    def read_baselines(self) -> dict | None:
        try:
            with open(self.path / "baselines.json", encoding="utf-8") as fh:
                return json.load(fh)
        except FileNotFoundError:
            return None

    # --- logs ---------------------------------------------------------------------------------
    def write_log(self, generation: int, index: int, text: str, replica: int = 0) -> None:
        path = self.log_path(generation, index, replica)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text, durable=False)  # diagnostics: the journal holds the result, fsynced

    def append_search_log(self, line: str) -> None:
        with open(self.path / "search.log", "a", encoding="utf-8") as fh:
            fh.write(line.rstrip("\n") + "\n")

    def log_tail(self, generation: int, index: int, replica: int = 0, lines: int = 5) -> list[str]:
        """The last ``lines`` lines of a training's log (empty when there is none)."""
        try:
            text = self.log_path(generation, index, replica).read_text(errors="replace")
        except FileNotFoundError:
            return []
        return text.splitlines()[-lines:] if lines else []

    # --- one-shot evaluations (DIR/evaluations/NAME.jsonl) ------------------------------------------
    @property
    def evaluations_dir(self) -> Path:
        return self.path / "evaluations"

    def evaluation_path(self, name: str) -> Path:
        """The file of the one-shot evaluations of the loss called ``name``."""
        return self.evaluations_dir / f"{name}.jsonl"

    def evaluation_names(self) -> list[str]:
        """Names of the losses with one-shot evaluations, sorted (``evaluations/*.jsonl``)."""
        if not self.evaluations_dir.is_dir():
            return []
        return sorted(p.stem for p in self.evaluations_dir.glob("*.jsonl"))

    def read_evaluation_set(self, name: str, spec: Mapping[str, Any] | None = None) -> list[dict]:
        """The one-shot evaluations of ``name`` in append order (those of ``spec`` only, when given).

        Each record is ``{"seed", "spec", **the evaluator's result}``; lines that are not JSON
        (a torn last line) are skipped.
        """
        recs = read_evaluation_file(self.evaluation_path(name))
        if spec is not None:
            recs = [r for r in recs if r.get("spec") == spec]
        return recs

    def append_evaluation_set(self, name: str, record: Mapping[str, Any]) -> None:
        """Append one one-shot evaluation of ``name`` (``{"seed", "spec", ...}``)."""
        self.evaluations_dir.mkdir(parents=True, exist_ok=True)
        with open(self.evaluation_path(name), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(dict(record), sort_keys=True, default=str) + "\n")

    # --- derived files (tables, plots) ------------------------------------------------------------
    def artifact_path(self, name: str) -> Path:
        """Where a derived file (``generations.csv``, ``fitness.png``, ...) of the directory goes."""
        return self.path / name

    def write_artifact(self, name: str, data: bytes | str) -> Path:
        """Write a derived file atomically; returns its path."""
        path = self.artifact_path(name)
        atomic_write(path, data)
        return path

    @classmethod
    def find(cls, folder: str | os.PathLike) -> list[ExperimentDir]:
        """``folder`` itself when it is an experiment directory, else the experiments directly in it."""
        exp = cls(folder)
        if exp.exists():
            return [exp]
        root = Path(folder)
        if not root.is_dir():
            return []
        return [cls(p) for p in sorted(root.iterdir()) if cls(p).exists()]


def read_evaluation_file(path: str | os.PathLike) -> list[dict]:
    """The records of a one-shot evaluations file (``DIR/evaluations/NAME.jsonl``); bad lines skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out

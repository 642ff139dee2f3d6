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

Crash safety: every file except the journal is written as tmp + fsync + ``os.replace`` (+ fsync of
the directory), so a reader sees either the old or the new version. The journal is append-only; a
torn last line (a kill during a write) is ignored and cut off before the next append. The commit
points of a generation g are, in order: ``population.json`` (after ``strategy.pkl``), one journal
line per candidate, then ``state.pkl`` with ``generation = g + 1``.
"""

from __future__ import annotations

import errno
import json
import os
import socket
from pathlib import Path
from typing import Any, Iterator

__all__ = [
    "ExperimentDir",
    "ExperimentLocked",
    "atomic_write",
]


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


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically: tmp file, fsync, ``os.replace``, fsync the directory."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    fault_point(f"replace:{path.name}")
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n"


class ExperimentDir:
    """Paths and safe reads/writes of one experiment directory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock_fd: int | None = None
        # The journal indexed by generation as it is read and appended: each byte is parsed once,
        # so the bookkeeping of a generation does not grow with the length of the run.
        self._by_generation: dict[int, dict[tuple[int, int], dict]] = {}
        self._read_offset = 0

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
    def append_evaluation(self, record: dict) -> None:
        """Append one evaluation record as a JSON line; flushed and fsynced before returning."""
        line = json.dumps(record, sort_keys=True, allow_nan=False) + "\n"
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.journal_path, "ab") as fh:
            fh.write(line.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())

    def repair_journal(self) -> int:
        """Cut a torn last line (no trailing newline or not JSON) left by a kill; returns bytes cut."""
        try:
            data = self.journal_path.read_bytes()
        except FileNotFoundError:
            return 0
        keep = len(data)
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
        else:
            # a complete last line that is not JSON (should not happen) is cut as well
            start = data.rfind(b"\n", 0, max(len(data) - 1, 0)) + 1
            if data[start:].strip():
                try:
                    json.loads(data[start:])
                except ValueError:
                    keep = start
        if keep != len(data):
            self._by_generation, self._read_offset = {}, 0
            with open(self.journal_path, "r+b") as fh:
                fh.truncate(keep)
                fh.flush()
                os.fsync(fh.fileno())
        return len(data) - keep

    def evaluations(self) -> Iterator[dict]:
        """Every complete record of the journal, in append order (a torn last line is skipped)."""
        try:
            fh = open(self.journal_path, encoding="utf-8")
        except FileNotFoundError:
            return
        with fh:
            for line in fh:
                if not line.endswith("\n"):
                    break
                try:
                    yield json.loads(line)
                except ValueError:
                    continue

    def _catch_up(self) -> None:
        """Parse the journal lines appended since the last call into the per-generation index."""
        try:
            size = self.journal_path.stat().st_size
        except FileNotFoundError:
            self._by_generation, self._read_offset = {}, 0
            return
        if size < self._read_offset:  # cut by repair_journal: start over
            self._by_generation, self._read_offset = {}, 0
        if size == self._read_offset:
            return
        with open(self.journal_path, "rb") as fh:
            fh.seek(self._read_offset)
            data = fh.read(size - self._read_offset)
        end = data.rfind(b"\n") + 1  # a torn last line is left for later
        for line in data[:end].splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            key = (int(rec["index"]), int(rec.get("replica", 0)))
            self._by_generation.setdefault(int(rec["generation"]), {}).setdefault(key, rec)
        self._read_offset += end

    def evaluations_of(self, generation: int) -> dict[tuple[int, int], dict]:
        """The records of one generation by (candidate index, replica); the first record of a key wins.

        ``replica`` r is the r-th of the generation's ``search.seeds_per_candidate`` training seeds
        (0 for journals written before seeds per candidate existed).
        """
        self._catch_up()
        return dict(self._by_generation.get(int(generation), {}))

    # --- final selection and baselines ----------------------------------------------------------
    def _append_line(self, path: Path, record: dict) -> None:
        line = json.dumps(record, sort_keys=True, allow_nan=False) + "\n"
        self.path.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as fh:
            fh.write(line.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())

    @staticmethod
    def _read_lines(path: Path) -> list[dict]:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for line in data[: data.rfind(b"\n") + 1].splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

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
        atomic_write(path, text)

    def append_search_log(self, line: str) -> None:
        with open(self.path / "search.log", "a", encoding="utf-8") as fh:
            fh.write(line.rstrip("\n") + "\n")

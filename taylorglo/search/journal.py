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

Crash safety: every file except the JSONL files is written as tmp + fsync + ``os.replace`` (+ fsync
of the directory), so a reader sees either the old or the new version. The commit points of a
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
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import zlib
from pathlib import Path
from typing import Any, Iterator

__all__ = [
    "CHECKSUM_FIELD",
    "CorruptLine",
    "ExperimentDir",
    "ExperimentLocked",
    "atomic_write",
    "decode_line",
    "encode_line",
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
        """Append one evaluation record (with its checksum); flushed and fsynced before returning."""
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
        atomic_write(path, text)

    def append_search_log(self, line: str) -> None:
        with open(self.path / "search.log", "a", encoding="utf-8") as fh:
            fh.write(line.rstrip("\n") + "\n")

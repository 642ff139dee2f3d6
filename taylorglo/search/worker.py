"""Running one evaluation job, in whatever process a backend puts it.

A job is a :class:`taylorglo.search.journal.Job`; the evaluator receives its plain dict
(``Job.to_dict()``, the format the journal module documents). ``run_job`` takes either, imports
the evaluator, calls it with the dict, and returns its result dict with the
captured output's tail under ``"log"``. Exceptions raised by the evaluator become
``{"status": "failed", "error": ...}`` (with the traceback in the log); only a dying process is
left to the backend to report.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import socket
import time
import traceback

from taylorglo.search.journal import Job, job_dict

__all__ = ["LOG_TAIL_CHARS", "load_evaluator", "run_job"]

LOG_TAIL_CHARS = 20_000


def load_evaluator(path: str):
    """``"package.module:function"`` -> the function."""
    module, _, name = path.partition(":")
    if not module or not name:
        raise ValueError(f"evaluator must be 'module:function', got {path!r}")
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


class _Tail(io.StringIO):
    """A text sink keeping only the last LOG_TAIL_CHARS characters."""

    def write(self, s: str) -> int:
        n = super().write(s)
        if self.tell() > 4 * LOG_TAIL_CHARS:
            keep = self.getvalue()[-LOG_TAIL_CHARS:]
            self.seek(0)
            self.truncate()
            super().write(keep)
        return n


def run_job(job: Job | dict) -> dict:
    """Evaluate one job; never raises (errors are returned as status "failed")."""
    job = job_dict(job)
    sink = _Tail()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            evaluator = load_evaluator(job["evaluator"])
            result = dict(evaluator(job))
    except Exception as exc:  # the candidate failed, not the worker: report it
        sink.write(traceback.format_exc())
        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    result.setdefault("wall_time", time.perf_counter() - start)
    result["log"] = sink.getvalue()[-LOG_TAIL_CHARS:]
    result["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    return result

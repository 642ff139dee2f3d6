"""The local process backend: persistent spawn workers, a dying worker fails only its own job and
is replaced, retries, and a whole search on real worker processes."""

from __future__ import annotations

import os

import pytest

from taylorglo.search.backends import LocalBackend, WorkerDied
from taylorglo.search.journal import Job
from taylorglo.search.runner import run_search

from .conftest import SYNTHETIC, journal_without_timing, synthetic_config


def _job(index: int, **options) -> Job:
    return Job(
        generation=0, index=index, seed=1, task={}, evaluator=SYNTHETIC, vector=(0.0,) * 8, options=options
    )


@pytest.fixture(scope="module")
def backend():
    b = LocalBackend(workers=2, threads_per_worker=1, preload_torch=False)
    yield b
    b.shutdown()


def test_jobs_run_in_persistent_worker_processes(backend):
    first = [backend.submit(_job(i)).result(timeout=60) for i in range(4)]
    workers = {r["worker"] for r in first}
    assert all(r["status"] == "ok" for r in first)
    assert all(not w.endswith(f":{os.getpid()}") for w in workers)
    assert workers <= {f"{os.uname().nodename}:{pid}" for pid in backend.worker_pids}
    again = {backend.submit(_job(i)).result(timeout=60)["worker"] for i in range(4)}
    assert again <= {f"{os.uname().nodename}:{pid}" for pid in backend.worker_pids}


def test_a_dying_worker_fails_only_its_job_and_is_replaced(backend):
    pids = set(backend.worker_pids)
    crash = backend.submit(_job(0, crash_always=[0], sleep=0.2))
    fine = [backend.submit(_job(i, sleep=0.2)) for i in (1, 2, 3)]
    with pytest.raises(WorkerDied, match="exit code 17"):
        crash.result(timeout=60)
    assert all(f.result(timeout=60)["status"] == "ok" for f in fine)
    assert len(set(backend.worker_pids) - pids) == 1
    assert backend.submit(_job(5)).result(timeout=60)["status"] == "ok"


def test_an_exception_in_the_evaluator_is_a_failed_result_not_a_dead_worker(backend):
    res = backend.submit(_job(1, raise_on=[1])).result(timeout=60)
    assert res["status"] == "failed" and "synthetic failure" in res["error"]
    assert "Traceback" in res["log"]


@pytest.mark.slow
def test_search_on_local_workers_retries_crashes_and_penalizes_repeated_deaths(tmp_path):
    options = {"crash_on": [1], "crash_always": [2]}
    local = synthetic_config(
        search={"generations": 1, "retries": 1, "invariant_action": "off"},
        execution={"backend": "local", "workers": 2, "evaluator_options": options},
    )
    result = run_search(tmp_path / "local", local, log=None)
    assert result.complete
    recs = journal_without_timing(tmp_path / "local")
    for r in recs:
        if r["index"] == 1:  # died on the first attempt, fine on the retry
            assert r["status"] == "ok" and r["attempts"] == 2
        elif r["index"] == 2:  # dies every time: failed after 1 + retries attempts, penalized
            assert r["status"] == "failed" and r["attempts"] == 2 and "WorkerDied" in r["error"]
            assert r["fitness"] == 1.0
        else:
            assert r["status"] == "ok" and r["attempts"] == 1


def test_a_ray_search_without_ray_fails_before_sampling_and_leaves_nothing(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    with pytest.raises(
        RuntimeError, match=r"execution.backend = 'ray' needs Ray: pip install 'taylorglo\[ray\]'"
    ):
        run_search(tmp_path / "e", synthetic_config(execution={"backend": "ray"}), log=None)
    assert not (tmp_path / "e").exists()  # no config, no generation 0 to resume from
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError, match="needs Ray"):
        run_search(tmp_path / "kept", synthetic_config(execution={"backend": "ray"}), log=None)
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["notes.txt"]

"""Evaluation backends behind one interface: ``submit(job) -> concurrent.futures.Future``.

``LocalBackend``: a pool of persistent worker processes started with ``spawn`` (starting a Python
process with torch costs seconds, so workers live for the whole search). Each worker runs one job
at a time with a fixed number of torch threads (measured: on 2 cores, 2 workers of
1 thread beat 1 worker of 2 threads) or one pinned GPU (``CUDA_VISIBLE_DEVICES``). The backend
knows which job each worker holds, so a worker that dies fails exactly its own job's future (with
``WorkerDied``) and is replaced; the other jobs are unaffected.

``RayBackend``: Ray core tasks (``num_gpus``/``num_cpus`` per trial, ``max_retries`` for dying
workers or nodes), joined to a cluster with ``ray.init(address=...)``; a poller thread waits with
``ray.wait(..., timeout=...)`` (never unbounded) and resolves the futures.

Both resolve a future with the result dict of ``taylorglo.search.worker.run_job``, or with an
exception when the job's process died or ran past ``trial_timeout``. Retrying is the caller's job.
"""

from __future__ import annotations

import collections
import concurrent.futures
import importlib.util
import os
import threading
import time
from typing import Any

from taylorglo.search.journal import Job, job_dict

__all__ = [
    "Backend",
    "InlineBackend",
    "LocalBackend",
    "RayBackend",
    "TrialTimeout",
    "WorkerDied",
    "make_backend",
]


MAX_CONSECUTIVE_DEATHS = 5


class WorkerDied(RuntimeError):
    """The process running a job died (crash, kill, out of memory)."""


class TrialTimeout(RuntimeError):
    """A job ran longer than ``trial_timeout``; its worker was stopped."""


class Backend:
    """The interface: ``submit``, ``cancel``, ``shutdown``, ``capacity`` (jobs that run at once)."""

    capacity: int = 1

    def submit(self, job: Job | dict) -> concurrent.futures.Future:
        """Run ``job`` (a :class:`~taylorglo.search.journal.Job` or its dict); the future holds the result."""
        raise NotImplementedError

    def cancel(self, future: concurrent.futures.Future) -> None:
        """Stop a job (queued or running); its future is cancelled."""
        future.cancel()

    def shutdown(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()
        return False


class InlineBackend(Backend):
    """Runs each job in the calling process, one at a time (``execution.backend = "inline"``).

    For debugging and for tests of the search machinery: no worker processes, so a crashing
    evaluator takes the search down with it. ``submit`` runs the job before returning its future.
    """

    capacity = 1

    def submit(self, job: Job | dict) -> concurrent.futures.Future:
        from taylorglo.search.worker import run_job

        fut: concurrent.futures.Future = concurrent.futures.Future()
        fut.set_running_or_notify_cancel()
        fut.set_result(run_job(job))
        return fut


# ----------------------------------------------------------------------------------------------
def _worker_main(conn, threads: int, cuda_devices: str | None, preload: bool) -> None:
    """The loop of one local worker process: receive a job, run it, send the result."""
    if cuda_devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = cuda_devices
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    parent = os.getppid()

    def watchdog() -> None:  # do not outlive a killed search host
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    if preload:
        import torch

        torch.set_num_threads(threads)
    from taylorglo.search.worker import run_job

    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        import sys

        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        result = run_job(job)
        try:
            conn.send(result)
        except (BrokenPipeError, OSError):
            return


class _Slot:
    def __init__(self, index: int, cuda_devices: str | None):
        self.index = index
        self.cuda_devices = cuda_devices
        self.process = None
        self.conn = None
        self.job: tuple[dict, concurrent.futures.Future] | None = None
        self.started_at = 0.0
        self.deaths = 0  # consecutive deaths without finishing a job


class LocalBackend(Backend):
    """Persistent spawn worker processes on this machine.

    Args:
        workers: number of worker processes.
        threads_per_worker: torch threads in each.
        gpu_ids: when given, one GPU id per worker (``CUDA_VISIBLE_DEVICES`` pinned); len == workers.
        trial_timeout: seconds before a running job is stopped (0 = never).
        preload_torch: import torch in each worker at start (so the first job does not pay it).
    """

    def __init__(
        self,
        workers: int,
        threads_per_worker: int = 1,
        gpu_ids: list[str] | None = None,
        trial_timeout: float = 0.0,
        preload_torch: bool = True,
    ):
        import multiprocessing

        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if gpu_ids is not None and len(gpu_ids) != workers:
            raise ValueError(f"gpu_ids needs one id per worker ({workers}), got {gpu_ids}")
        self._ctx = multiprocessing.get_context("spawn")
        self.capacity = workers
        self.threads = max(1, int(threads_per_worker))
        self.trial_timeout = float(trial_timeout)
        self.preload = preload_torch
        self._queue: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._closed = False
        self._broken: str | None = None
        self._slots = [_Slot(i, gpu_ids[i] if gpu_ids else None) for i in range(workers)]
        for slot in self._slots:
            self._start(slot)
        self._thread = threading.Thread(target=self._manage, name="taylorglo-local-backend", daemon=True)
        self._thread.start()

    def _start(self, slot: _Slot) -> None:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker_main,
            args=(child_conn, self.threads, slot.cuda_devices, self.preload),
            name=f"taylorglo-worker-{slot.index}",
            daemon=True,
        )
        proc.start()
        child_conn.close()
        slot.process, slot.conn, slot.job = proc, parent_conn, None

    def _kill(self, slot: _Slot) -> None:
        try:
            slot.process.kill()
            slot.process.join(5)
        except Exception:
            pass
        try:
            slot.conn.close()
        except Exception:
            pass

    @property
    def worker_pids(self) -> list[int]:
        return [s.process.pid for s in self._slots]

    # ------------------------------------------------------------------------------------------
    def submit(self, job: Job | dict) -> concurrent.futures.Future:
        job = job_dict(job)  # the worker process receives the plain dict
        if self._broken is not None:
            raise WorkerDied(self._broken)
        if self._closed:
            raise RuntimeError("submit() on a shut-down backend")
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            self._queue.append((job, fut))
        return fut

    def cancel(self, future: concurrent.futures.Future) -> None:
        with self._lock:
            for item in list(self._queue):
                if item[1] is future:
                    self._queue.remove(item)
            for slot in self._slots:
                if slot.job is not None and slot.job[1] is future:
                    self._kill(slot)
                    slot.job = None
                    if not self._closed:
                        self._start(slot)
        future.cancel()

    def _manage(self) -> None:
        from multiprocessing.connection import wait

        while not self._closed:
            with self._lock:
                for slot in self._slots:
                    if slot.job is None and self._queue:
                        job, fut = self._queue.popleft()
                        if not fut.set_running_or_notify_cancel():
                            continue
                        try:
                            slot.conn.send(job)
                        except (BrokenPipeError, OSError):
                            self._queue.appendleft((job, _Refuture(fut)))
                            continue
                        slot.job, slot.started_at = (job, fut), time.monotonic()
                waitables = {}
                for slot in self._slots:
                    waitables[slot.conn] = slot
                    waitables[slot.process.sentinel] = slot
            try:
                ready = wait(list(waitables), timeout=0.05)
            except OSError:
                ready = []
            with self._lock:
                if self._closed:
                    return
                handled = set()
                for obj in ready:
                    slot = waitables[obj]
                    if slot.index in handled or slot.conn is not obj and slot.process.sentinel is not obj:
                        continue  # the slot was restarted meanwhile
                    handled.add(slot.index)
                    result = None
                    if obj is slot.conn:
                        try:
                            result = slot.conn.recv()
                        except (EOFError, OSError):
                            result = None
                    if result is not None and slot.job is not None:
                        _, fut = slot.job
                        slot.job = None
                        slot.deaths = 0
                        fut.set_result(result)
                    elif result is None:  # the process died
                        slot.process.join(5)
                        code = slot.process.exitcode
                        self._kill(slot)
                        slot.deaths += 1
                        if slot.job is not None:
                            job, fut = slot.job
                            slot.job = None
                            fut.set_exception(
                                WorkerDied(f"worker process {slot.process.pid} died (exit code {code})")
                            )
                        if slot.deaths > MAX_CONSECUTIVE_DEATHS:
                            self._broken = (
                                f"worker processes keep dying (exit code {code}, {slot.deaths} times in a row); "
                                "is the evaluator importable, and is the main module guarded by "
                                "if __name__ == '__main__'?"
                            )
                            self._fail_all()
                            return
                        self._start(slot)
                if self.trial_timeout > 0:
                    now = time.monotonic()
                    for slot in self._slots:
                        if slot.job is not None and now - slot.started_at > self.trial_timeout:
                            _, fut = slot.job
                            self._kill(slot)
                            fut.set_exception(
                                TrialTimeout(f"ran longer than trial_timeout = {self.trial_timeout} s")
                            )
                            self._start(slot)

    def _fail_all(self) -> None:
        self._closed = True
        for _, fut in self._queue:
            if fut.set_running_or_notify_cancel():
                fut.set_exception(WorkerDied(self._broken))
        self._queue.clear()
        for slot in self._slots:
            if slot.job is not None:
                slot.job[1].set_exception(WorkerDied(self._broken))
                slot.job = None

    def shutdown(self) -> None:
        if self._closed and self._broken is None:
            return
        with self._lock:
            self._closed = True
            for _, fut in self._queue:
                fut.cancel()
            self._queue.clear()
        self._thread.join(5)
        for slot in self._slots:
            try:
                slot.conn.send(None)
            except Exception:
                pass
        deadline = time.monotonic() + 5
        for slot in self._slots:
            slot.process.join(max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                self._kill(slot)
            if slot.job is not None:
                slot.job[1].cancel()


class _Refuture:
    """Wraps a future already marked running so that it can be queued again."""

    def __init__(self, fut: concurrent.futures.Future):
        self._fut = fut

    def set_running_or_notify_cancel(self) -> bool:
        return not self._fut.cancelled()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fut, name)


# ----------------------------------------------------------------------------------------------
def _ray_run_job(job: dict, threads: int) -> dict:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    from taylorglo.search.worker import run_job

    return run_job(job)


class RayBackend(Backend):
    """Ray core tasks; joins ``address`` when given, else starts (or reuses) a local Ray.

    Args:
        address: the cluster address for ``ray.init`` ("" = local).
        gpus_per_trial: ``num_gpus`` of each task.
        cpus_per_trial: ``num_cpus`` of each task (also its torch thread count).
        max_retries: Ray's retries of a task whose worker or node died.
        trial_timeout: seconds before a task is cancelled (0 = never).
        wait_timeout: the timeout of each ``ray.wait`` of the poller.
    """

    def __init__(
        self,
        address: str = "",
        gpus_per_trial: float = 0.0,
        cpus_per_trial: int = 1,
        max_retries: int = 1,
        trial_timeout: float = 0.0,
        wait_timeout: float = 0.5,
    ):
        require_backend("ray")
        import ray

        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(
                address=address or None,
                ignore_reinit_error=True,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        self.trial_timeout = float(trial_timeout)
        self.wait_timeout = float(wait_timeout)
        self.threads = max(1, int(cpus_per_trial))
        self._remote = ray.remote(num_gpus=gpus_per_trial, num_cpus=cpus_per_trial, max_retries=max_retries)(
            _ray_run_job
        )
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.capacity = max(1, cpus // max(1, cpus_per_trial))
        self._pending: dict[Any, tuple[concurrent.futures.Future, float]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._poll, name="taylorglo-ray-backend", daemon=True)
        self._thread.start()

    def submit(self, job: Job | dict) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        fut.set_running_or_notify_cancel()
        ref = self._remote.remote(job_dict(job), self.threads)
        with self._lock:
            self._pending[ref] = (fut, time.monotonic())
        return fut

    def cancel(self, future: concurrent.futures.Future) -> None:
        with self._lock:
            for ref, (fut, _) in list(self._pending.items()):
                if fut is future:
                    del self._pending[ref]
                    try:
                        self._ray.cancel(ref, force=True)
                    except Exception:
                        pass
        if not future.done():
            future.set_exception(concurrent.futures.CancelledError())

    def _poll(self) -> None:
        ray = self._ray
        while not self._closed:
            with self._lock:
                refs = list(self._pending)
            if not refs:
                time.sleep(0.05)
                continue
            ready, _ = ray.wait(refs, num_returns=1, timeout=self.wait_timeout)
            for ref in ready:
                with self._lock:
                    item = self._pending.pop(ref, None)
                if item is None:
                    continue
                fut = item[0]
                try:
                    fut.set_result(ray.get(ref, timeout=60))
                except Exception as exc:  # worker/node died past max_retries, or the get timed out
                    fut.set_exception(WorkerDied(f"ray task failed: {type(exc).__name__}: {exc}"))
            if self.trial_timeout > 0:
                now = time.monotonic()
                with self._lock:
                    late = [(r, f) for r, (f, t0) in self._pending.items() if now - t0 > self.trial_timeout]
                    for ref, _ in late:
                        del self._pending[ref]
                for ref, fut in late:
                    try:
                        ray.cancel(ref, force=True)
                    except Exception:
                        pass
                    fut.set_exception(TrialTimeout(f"ran longer than trial_timeout = {self.trial_timeout} s"))

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._thread.join(5)
        with self._lock:
            for ref, (fut, _) in self._pending.items():
                try:
                    self._ray.cancel(ref, force=True)
                except Exception:
                    pass
                fut.cancel()
            self._pending.clear()
        if self._owns_ray:
            self._ray.shutdown()


# ----------------------------------------------------------------------------------------------
def _gpu_count() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([v for v in visible.split(",") if v.strip()])
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:
        return 0


def require_backend(kind: str) -> None:
    """Raise a RuntimeError naming the install command when backend ``kind`` cannot start here.

    The search calls this before it samples anything, so a missing Ray is reported at once rather
    than after the first generation has been written.
    """
    if kind == "ray" and importlib.util.find_spec("ray") is None:
        raise RuntimeError(
            "execution.backend = 'ray' needs Ray: pip install 'taylorglo[ray]' (or pip install 'ray[default]')"
        )


def make_backend(execution, retries: int = 1) -> Backend:
    """The backend an ``ExecutionConfig`` asks for."""
    preload = execution.evaluator.startswith("taylorglo.search.evaluate:")
    if execution.backend == "inline":
        return InlineBackend()
    if execution.backend == "ray":
        return RayBackend(
            address=execution.ray_address,
            gpus_per_trial=execution.gpus_per_trial,
            cpus_per_trial=max(1, execution.threads_per_worker),
            max_retries=retries,
            trial_timeout=execution.trial_timeout,
        )
    cores = os.cpu_count() or 1
    gpu_ids = None
    if execution.gpus_per_trial > 0:
        n = _gpu_count()
        if n == 0:
            raise RuntimeError(
                "execution.gpus_per_trial > 0 but no GPU is visible; set it to 0 to train on CPU"
            )
        workers = execution.workers or n
        gpu_ids = [str(i % n) for i in range(workers)]  # several workers may share a GPU
    else:
        workers = execution.workers or cores
    threads = execution.threads_per_worker or max(1, cores // workers)
    return LocalBackend(workers, threads, gpu_ids, execution.trial_timeout, preload_torch=preload)

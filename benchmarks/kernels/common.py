"""What the loss benchmarks share: the cases, the contenders, and how one forward+backward is run,
timed and its peak memory measured.

A *case* is (shape, dtype, target kind, order); the contenders are

- ``cross_entropy``: ``F.cross_entropy`` (the yardstick; every time is reported as a ratio to it),
- ``taylorloss``: ``taylorglo.TaylorLoss`` on the compiled kernel (``backend="kernel"``),
- ``reference``: ``taylorglo.taylor_loss_reference``, the eager pure-PyTorch specification,
- ``compiled``: ``torch.compile`` of that reference (default options).

The TaylorLoss polynomial is ``TaylorLoss.cross_entropy_approximation(order)``: every coefficient is
non-zero, so no contender can profit from zeros. Used by ``loss_table.py`` and ``test_bench_loss.py``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import taylorglo

SHAPES: tuple[tuple[int, ...], ...] = (
    (256, 10),
    (4096, 1000),
    (8192, 32000),
    (1024, 128256),
    (8, 21, 128, 128),
)
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
TARGETS: tuple[str, ...] = ("hard", "soft")
ORDERS: tuple[int, ...] = (3, 6)
CONTENDERS: tuple[str, ...] = ("cross_entropy", "taylorloss", "reference", "compiled")
ORDERLESS = ("cross_entropy",)  # contenders whose cost does not depend on the polynomial's order

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Case:
    """One benchmark case: logits of ``shape`` (N, C, d1, ...) in ``dtype``, hard or soft targets."""

    shape: tuple[int, ...]
    dtype: str
    target: str
    device: str = "cpu"

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def rows(self) -> int:
        return self.numel // self.shape[1]

    @property
    def element_size(self) -> int:
        return torch.empty((), dtype=DTYPES[self.dtype]).element_size()

    @property
    def buffer_bytes(self) -> int:
        """Bytes of one N x C buffer in the logits' dtype (the gradient's size)."""
        return self.numel * self.element_size

    @property
    def floor_bytes(self) -> int:
        """The bytes a fused forward+backward must move: read the logits (and soft targets), write the gradient."""
        return self.numel * self.element_size * (3 if self.target == "soft" else 2)

    def label(self) -> str:
        return "x".join(str(s) for s in self.shape)


def shape_id(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def quiet_compile(in_process: bool = False) -> None:
    """Raise dynamo's recompile limit (every case is a new guard set) and silence its cache warnings.

    ``in_process``: compile in this process instead of inductor's pool of worker processes, whose
    start-up (each imports torch) competes for the cores for seconds and stalls the OpenMP regions
    of whatever is being timed meanwhile (used on CPU).
    """
    import torch._dynamo
    import torch._inductor.config

    if in_process:
        torch._inductor.config.compile_threads = 1

    cfg = torch._dynamo.config
    for name in (
        "cache_size_limit",
        "recompile_limit",
        "accumulated_cache_size_limit",
        "accumulated_recompile_limit",
    ):
        if hasattr(cfg, name):
            setattr(cfg, name, max(getattr(cfg, name), 512))
    warnings.filterwarnings("ignore", message=".*lru_cache.*")
    warnings.filterwarnings("ignore", category=UserWarning, module="torch._dynamo")


def make_inputs(case: Case, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A logits leaf that requires grad and the target (class indices, or probabilities of the same shape)."""
    g = torch.Generator().manual_seed(seed)
    dtype = DTYPES[case.dtype]
    logits = (torch.randn(case.shape, generator=g) * 2).to(dtype=dtype).to(case.device)
    logits.requires_grad_(True)
    if case.target == "soft":
        target = torch.softmax(torch.randn(case.shape, generator=g), dim=1).to(dtype=dtype).to(case.device)
    else:
        target = torch.randint(0, case.shape[1], (case.shape[0], *case.shape[2:]), generator=g).to(
            case.device
        )
    return logits, target


_COMPILED: list = []


def compiled_reference():
    """One ``torch.compile`` of the reference for the whole process (default options)."""
    if not _COMPILED:
        quiet_compile()
        _COMPILED.append(torch.compile(taylorglo.taylor_loss_reference))
    return _COMPILED[0]


def make_contender(name: str, order: int, device: str) -> LossFn:
    """The loss function ``(logits, target) -> scalar`` of contender ``name`` (mean reduction)."""
    if name == "cross_entropy":
        return F.cross_entropy
    module = taylorglo.TaylorLoss.cross_entropy_approximation(order, backend="kernel").to(device)
    if name == "taylorloss":
        return module
    params = module.params.to(torch.float32)
    if name == "reference":
        ref = taylorglo.taylor_loss_reference
    elif name == "compiled":
        ref = compiled_reference()
    else:
        raise ValueError(f"unknown contender {name!r}; expected one of {CONTENDERS}")

    def call(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ref(logits, target, params, order=order)

    return call


def forward_backward(fn: LossFn, logits: torch.Tensor, target: torch.Tensor) -> None:
    """One training-style step of the loss: forward, backward into ``logits.grad`` (freed first)."""
    logits.grad = None
    fn(logits, target).backward()


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_calls(
    fn: LossFn,
    logits: torch.Tensor,
    target: torch.Tensor,
    reps: int,
    device: str,
    min_seconds: float = 0.0,
    cpu_share: list[float] | None = None,
) -> list[float]:
    """Seconds of forward+backward calls: ``reps`` of them, or more until ``min_seconds`` have passed.

    CPU: one entry per call, each call timed alone, so that the median over calls shrugs off the
    stalls of a shared machine (a stalled stretch yields few calls; a count of calls would be
    stretched by it). CUDA: one entry, the mean of ``reps`` calls between two CUDA events.

    ``cpu_share`` (CPU): receives, per call, the calling thread's CPU time over the wall time. It is
    about 1 for a call that ran freely, single- or multi-threaded (the calling thread works or spins
    at the barrier), and well below 1 for a call stalled while another process held a core that an
    OpenMP worker needed (the calling thread sleeps at the barrier).
    """
    if device == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            forward_backward(fn, logits, target)
        end.record()
        end.synchronize()
        return [start.elapsed_time(end) / 1e3 / reps]
    times: list[float] = []
    begin = time.perf_counter()
    while len(times) < reps or time.perf_counter() - begin < min_seconds:
        c0, t0 = time.thread_time(), time.perf_counter()
        forward_backward(fn, logits, target)
        wall = time.perf_counter() - t0
        times.append(wall)
        if cpu_share is not None:
            cpu_share.append((time.thread_time() - c0) / max(wall, 1e-9))
    return times


def calibrate(
    fn: LossFn, logits: torch.Tensor, target: torch.Tensor, min_sample: float, device: str
) -> tuple[int, float]:
    """(calls that fill ``min_sample`` seconds, seconds per call), timeit-autorange style.

    The per-call time is the fastest call seen, so that a stall during calibration does not shrink
    the number of calls per sample.
    """
    times = time_calls(fn, logits, target, 1, device, min_seconds=min_sample)
    best = min(times)
    return max(1, math.ceil(min_sample / best)), best


def peak_memory(fn: LossFn, logits: torch.Tensor, target: torch.Tensor, device: str) -> int:
    """Peak bytes allocated by one forward+backward above what was allocated before it.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the running sum of the allocation and free
    events that ``torch.profiler`` (``profile_memory=True``) records from PyTorch's CPU allocator,
    in time order; its maximum. The gradient counts; the inputs do not.
    """
    logits.grad = None
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        forward_backward(fn, logits, target)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        forward_backward(fn, logits, target)
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        if event.tag == _EventType.Allocation:
            events.append((event.start_time_ns, event.extra_fields.alloc_size))
        stack.extend(event.children)
    running = peak = 0
    for _, size in sorted(events):
        running += size
        peak = max(peak, running)
    return peak


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def format_seconds(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} us"

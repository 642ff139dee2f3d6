"""One markdown table: forward+backward time and peak extra memory of TaylorLoss against
F.cross_entropy, the eager pure-PyTorch reference and torch.compile of that reference.

    python benchmarks/kernels/loss_table.py --device cpu --threads 2 --out benchmarks/kernels/results-cpu.md
    python benchmarks/kernels/loss_table.py --device cuda --quick --out results-cuda.md --json results-cuda.json

Machines here are shared and noisy, so absolute times are not comparable across runs; ratios to
``F.cross_entropy`` measured in the same run are. All contenders of one (shape, dtype, target) group,
both polynomial orders included, are measured together: after a warm-up call each, they run in
rounds (A B C D ..., the starting contender rotating every round), so that a burst of noise hits
all of them alike. On CPU a round runs each contender back to back for a slot of
``--slot-fraction`` times the group's slowest call (at least ``--min-sample`` seconds and one
call), each call timed alone, and the time reported is the fastest call of all rounds (the
median is in the JSON). Not the median: on a loaded 2-core machine an OpenMP region whose second
thread has lost its core waits a whole scheduler slice (~24 ms here), and at load 7 that happens
to most calls of a parallel op for seconds on end, while a single-threaded call is untouched; the
median then compares the machine's load, not the code (we saw F.cross_entropy at 256x10 take a
median 36 ms against its unloaded 40 us). The fastest call is what the code costs when nothing
else takes its cores. On CUDA a round runs ``reps`` calls between two CUDA events, and the time
is the median over rounds of the mean call.

Peak extra memory is what one forward+backward allocates above what was allocated before it (the
gradient included), in bytes and in units of one N x C buffer of the logits' dtype (CPU: PyTorch's
allocator events recorded by torch.profiler; CUDA: torch.cuda.max_memory_allocated). On CUDA the
achieved bandwidth is N x C x (logit bytes + gradient bytes [+ soft-target bytes]) / time, the
traffic of a fused kernel that reads every input once and writes the gradient once, and its
fraction of the device's peak (blank for devices not in ``PEAK_GBPS``).

The eager reference and the compiled reference are skipped where a call would take longer than
``--max-call`` seconds or allocate more than ``--max-memory`` of the free memory, estimated by
scaling the same contender's last measurement by the element count (cases run smallest first;
times scaled 4x over for the eager reference and 2x for the compiled one, as large cases also pay
page faults that small ones do not).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import CONTENDERS, DTYPES, ORDERLESS, ORDERS, SHAPES, TARGETS, Case  # noqa: E402

# Peak memory bandwidth in GB/s by device-name substring, most specific first (vendor data sheets).
PEAK_GBPS: tuple[tuple[str, float], ...] = (
    ("H200", 4800.0),
    ("GH200", 4000.0),
    ("H100 NVL", 3900.0),
    ("H100 PCIe", 2000.0),
    ("H100", 3350.0),  # SXM5, HBM3 ("NVIDIA H100 80GB HBM3")
    ("H800", 3350.0),
    ("H20", 4000.0),
    ("B200", 8000.0),
    ("A100-SXM4-80GB", 2039.0),
    ("A100 80GB PCIe", 1935.0),
    ("A100-SXM4-40GB", 1555.0),
    ("A100-PCIE-40GB", 1555.0),
    ("L40S", 864.0),
    ("L40", 864.0),
    ("L4", 300.0),
    ("A10G", 600.0),
    ("A10", 600.0),
    ("V100", 900.0),
    ("T4", 320.0),
    ("RTX 4090", 1008.0),
    ("RTX 3090", 936.0),
)

STALLED_SHARE = 0.6  # a call whose calling thread ran less than this share of its wall time was stalled
STALLED_MAX_SECONDS = 0.2  # ... flagged only for calls shorter than this (longer ones cannot avoid the load)
QUICK_SHAPES = ((4096, 1000), (8192, 32000), (1024, 128256), (8, 21, 128, 128))
NAMES = {
    "cross_entropy": "F.cross_entropy",
    "taylorloss": "TaylorLoss",
    "reference": "eager reference",
    "compiled": "compiled reference",
}


def peak_bandwidth(device_name: str) -> float | None:
    for key, gbps in PEAK_GBPS:
        if key.lower() in device_name.lower():
            return gbps
    return None


def free_memory(device: str) -> int:
    if device == "cuda":
        return torch.cuda.mem_get_info()[0]
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 8 << 30


@dataclass
class Result:
    """One contender on one case: median seconds per forward+backward and peak extra bytes."""

    contender: str
    order: int | None
    seconds: float | None = None  # the reported time (CPU: fastest call; CUDA: median over rounds)
    median: float | None = None
    shares: list[float] = field(default_factory=list)  # CPU: calling thread's CPU time / wall, per call
    share: float | None = None  # CPU: the fastest call's share
    stalled: bool = False  # CPU: even the fastest call waited for a core (see common.time_calls)
    peak_bytes: int | None = None
    samples: list[float] = field(default_factory=list)
    reps: int = 1
    skipped: str | None = None  # the cell text when not measured


@dataclass
class Estimator:
    """Last measured (elements, median seconds, bytes) per contender kind, to foresee a larger case."""

    seen: dict = field(default_factory=dict)

    # Times scale worse than linearly: large cases also pay page faults and cache misses. The eager
    # reference, which allocates 14-41 N x C buffers, took 4x its linear extrapolation from
    # 4096x1000 to 1024x128256; the compiled reference (1-2 buffers) about 1.5x.
    time_factor: dict = field(default_factory=lambda: {"reference": 4.0})
    default_factor: float = 2.0
    min_numel: int = 1 << 20  # smaller cases are dominated by per-call overhead: no basis to scale

    def record(self, key, numel: int, seconds: float, peak: int | None) -> None:
        if numel >= self.min_numel:
            self.seen[key] = (numel, seconds, peak or 0)

    def estimate(self, key, numel: int) -> tuple[float, int] | None:
        if key not in self.seen:
            return None
        n0, s0, b0 = self.seen[key]
        factor = self.time_factor.get(key[0], self.default_factor)
        return factor * s0 * numel / n0, int(b0 * numel / n0)


def run_group(shape, dtype: str, target: str, args, estimator: Estimator, log) -> list[Result]:
    """Measure every contender (both orders) on one (shape, dtype, target) group, interleaved."""
    case = Case(shape, dtype, target, args.device)
    logits, tgt = common.make_inputs(case)
    entries: list[tuple[Result, common.LossFn]] = []
    for name in args.contenders:
        for order in [None] if name in ORDERLESS else args.orders:
            entries.append((Result(name, order), common.make_contender(name, order or 3, args.device)))

    budget = args.max_memory * free_memory(args.device)
    live: list[tuple[Result, common.LossFn]] = []
    for res, fn in entries:
        key = (res.contender, res.order, dtype, target)
        est = estimator.estimate(key, case.numel)
        if res.contender in ("reference", "compiled") and est is not None:
            est_s, est_b = est
            if est_s > args.max_call:
                res.skipped = f"skipped (too slow: ~{common.format_seconds(est_s)}/call)"
            elif est_b > budget:
                res.skipped = f"skipped (memory: ~{common.format_bytes(est_b)})"
            if res.skipped:
                log(f"  {res.contender} o{res.order}: {res.skipped}")
                continue
        try:
            t0 = time.perf_counter()
            if res.contender == "compiled" or args.device == "cuda":
                common.forward_backward(fn, logits, tgt)  # compiles; warms caches and the CUDA allocator
                common.synchronize(args.device)
            t1 = time.perf_counter()
            res.peak_bytes = common.peak_memory(fn, logits, tgt, args.device)  # also a warm-up call
            common.synchronize(args.device)
            first = time.perf_counter() - t1
            if first > 10 * args.min_sample:
                res.reps, per_call = 1, first
            else:
                res.reps, per_call = common.calibrate(fn, logits, tgt, args.min_sample, args.device)
            res.samples.append(per_call)  # provisional; replaced by the rounds below
            log(
                f"  {res.contender} o{res.order}: warm-up {time.perf_counter() - t0:.2f} s, "
                f"{common.format_seconds(per_call)}/call, peak {common.format_bytes(res.peak_bytes)}, reps {res.reps}"
            )
            live.append((res, fn))
        except (RuntimeError, torch.OutOfMemoryError) as exc:
            res.skipped = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
            log(f"  {res.contender} o{res.order}: {res.skipped}")
        finally:
            logits.grad = None

    # Cheap contenders fill a slot of a tenth of the slowest call per round: more calls, same rounds.
    slot = max([args.min_sample] + [args.slot_fraction * res.samples[0] for res, _ in live])
    round_seconds = sum(max(res.reps * res.samples[0], slot) for res, _ in live)
    log("  timing")
    rounds = int(max(args.min_rounds, min(args.max_rounds, args.round_budget // max(round_seconds, 1e-9))))
    for res, _ in live:
        res.samples.clear()

    def timed_rounds(count: int, entries) -> None:
        for r in range(count):
            for i in range(len(entries)):
                res, fn = entries[(i + r) % len(entries)]
                if args.device == "cuda":
                    res.samples += common.time_calls(fn, logits, tgt, res.reps, args.device)
                else:
                    res.samples += common.time_calls(
                        fn, logits, tgt, 1, args.device, min_seconds=slot, cpu_share=res.shares
                    )
            logits.grad = None

    def best_share(res: Result) -> float:
        return res.shares[min(range(len(res.samples)), key=res.samples.__getitem__)] if res.shares else 1.0

    timed_rounds(rounds, live)
    if args.device == "cpu" and any(
        best_share(res) < STALLED_SHARE and min(res.samples) < STALLED_MAX_SECONDS for res, _ in live
    ):
        log("  a contender's fastest call was stalled by the machine's load: one more set of rounds")
        timed_rounds(rounds, live)
    for res, _ in live:
        # CPU: the fastest call (what the code costs when no other process takes its cores); CUDA:
        # the median over rounds of the mean of many calls.
        res.median = statistics.median(res.samples)
        res.seconds = min(res.samples) if args.device == "cpu" else res.median
        res.share = best_share(res) if args.device == "cpu" else None
        # A call of a fraction of a second can find a window free of other processes; a longer one
        # shares the cores with them whatever we do (all contenders alike), so only short calls are
        # flagged. The share of every fastest call is in the JSON.
        res.stalled = (
            res.share is not None and res.share < STALLED_SHARE and res.seconds < STALLED_MAX_SECONDS
        )
        # The median, not the fastest call: a long call always pays what a short one may dodge.
        estimator.record((res.contender, res.order, dtype, target), case.numel, res.median, res.peak_bytes)
    log(f"  {rounds} rounds of ~{round_seconds:.2f} s, {sum(len(r.samples) for r, _ in live)} timed calls")
    return [res for res, _ in entries]


def time_cell(res: Result, ce: Result | None) -> str:
    if res.seconds is None:
        return res.skipped or ""
    cell = common.format_seconds(res.seconds)
    if res.contender != "cross_entropy" and ce is not None and ce.seconds:
        cell += f" ({res.seconds / ce.seconds:.2f}x)"
    if res.stalled:
        cell += " STALLED"
    return cell


def memory_cell(res: Result, case: Case) -> str:
    if res.peak_bytes is None:
        return "" if res.skipped is None else "-"
    return f"{common.format_bytes(res.peak_bytes)} ({res.peak_bytes / case.buffer_bytes:.2f})"


def build_rows(groups, args, device_name: str) -> tuple[list[str], list[list[str]], list[dict]]:
    peak = peak_bandwidth(device_name) if args.device == "cuda" else None
    header = ["shape", "dtype", "target", "order"]
    header += [NAMES[c] for c in args.contenders]
    if "taylorloss" in args.contenders and len(args.orders) > 1:
        header.append(f"TaylorLoss o{args.orders[-1]}/o{args.orders[0]}")
    header += [f"mem {NAMES[c]}" for c in args.contenders]
    if args.device == "cuda":
        header += ["TaylorLoss GB/s", "% of peak", "F.cross_entropy GB/s"]
    rows, records = [], []
    for case, results in groups:
        by_key = {(r.contender, r.order): r for r in results}
        ce = by_key.get(("cross_entropy", None))
        for order in args.orders:
            row = [case.label(), case.dtype, case.target, str(order)]
            cells = [by_key.get((c, None if c in ORDERLESS else order)) for c in args.contenders]
            row += [time_cell(r, ce) if r else "" for r in cells]
            if "taylorloss" in args.contenders and len(args.orders) > 1:
                lo, hi = by_key.get(("taylorloss", args.orders[0])), by_key.get(("taylorloss", order))
                ratio = hi.seconds / lo.seconds if hi and lo and hi.seconds and lo.seconds else None
                row.append(f"{ratio:.2f}" if ratio is not None and order != args.orders[0] else "")
            row += [memory_cell(r, case) if r else "" for r in cells]
            if args.device == "cuda":
                for r in (by_key.get(("taylorloss", order)), ce):
                    gbps = case.floor_bytes / r.seconds / 1e9 if r and r.seconds else None
                    row.append(f"{gbps:.0f}" if gbps else "")
                    if r is not None and r.contender == "taylorloss":
                        row.append(f"{100 * gbps / peak:.0f}%" if gbps and peak else "")
            rows.append(row)
        for r in results:
            records.append(
                {
                    "shape": list(case.shape),
                    "dtype": case.dtype,
                    "target": case.target,
                    "device": args.device,
                    "contender": r.contender,
                    "order": r.order,
                    "seconds": r.seconds,
                    "ratio_to_cross_entropy": r.seconds / ce.seconds
                    if r.seconds and ce and ce.seconds
                    else None,
                    "median_seconds": r.median,
                    "stalled": r.stalled,
                    "cpu_share_of_fastest_call": r.share,
                    "calls": len(r.samples),
                    "quantiles_10_50_90": statistics.quantiles(r.samples, n=10)[::4]
                    if len(r.samples) > 1
                    else r.samples,
                    "reps": r.reps,
                    "peak_bytes": r.peak_bytes,
                    "peak_buffers": r.peak_bytes / case.buffer_bytes if r.peak_bytes is not None else None,
                    "floor_bytes": case.floor_bytes,
                    "skipped": r.skipped,
                }
            )
    return header, rows, records


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def target_checks(records: list[dict], args) -> list[str]:
    """Issue 3's targets, read off this run's numbers."""

    def find(shape, dtype, target, contender, order):
        for r in records:
            if (tuple(r["shape"]), r["dtype"], r["target"], r["contender"]) == (
                shape,
                dtype,
                target,
                contender,
            ):
                if r["order"] == order or contender in ORDERLESS:
                    return r
        return None

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("holds" if ok else "MISSES")

    lines = []
    if args.device == "cpu":
        shapes = [s for s in ((4096, 1000), (8192, 32000)) if s in args.shapes]
        for shape in shapes:
            for target in args.targets:
                for order in args.orders:
                    tl = find(shape, "float32", target, "taylorloss", order)
                    ce = find(shape, "float32", target, "cross_entropy", None)
                    ref = find(shape, "float32", target, "reference", order)
                    comp = find(shape, "float32", target, "compiled", order)
                    if not tl or not tl["seconds"]:
                        continue
                    t = tl["seconds"]
                    head = f"- float32 {common.shape_id(shape)} {target} order {order}:"
                    parts = []
                    if ce and ce["seconds"]:
                        parts.append(
                            f"TaylorLoss/CE {t / ce['seconds']:.2f}x <= 1.0 {verdict(t <= ce['seconds'])}"
                        )
                    if ref and ref["seconds"]:
                        parts.append(
                            f"reference/TaylorLoss {ref['seconds'] / t:.1f}x >= 5 {verdict(ref['seconds'] >= 5 * t)}"
                        )
                    elif ref:
                        parts.append(f"reference/TaylorLoss not measured ({ref['skipped']})")
                    if comp and comp["seconds"]:
                        parts.append(
                            f"compiled/TaylorLoss {comp['seconds'] / t:.2f}x > 1 {verdict(comp['seconds'] > t)}"
                        )
                    if tl["peak_bytes"] is not None:
                        extra = tl["peak_bytes"] - tl["peak_bytes"] / tl["peak_buffers"]
                        rows = math.prod(shape) // shape[1]
                        ok = verdict(extra <= 0)
                        if extra > 0 and extra <= 64 * rows:
                            ok = f"holds up to O(N) row statistics ({extra / rows:.0f} B/row)"
                        parts.append(f"peak {tl['peak_buffers']:.3f} N x C <= 1 {ok}")
                    stalled = [r["contender"] for r in (tl, ce, ref, comp) if r and r.get("stalled")]
                    if stalled:
                        parts.append(f"STALLED ({', '.join(stalled)}): not trustworthy")
                    lines.append(head + " " + "; ".join(parts))
    else:
        for r in records:
            if r["contender"] != "taylorloss" or not r["seconds"]:
                continue
            ce = find(tuple(r["shape"]), r["dtype"], r["target"], "cross_entropy", None)
            if ce and ce["seconds"]:
                ok = r["seconds"] <= ce["seconds"]
                lines.append(
                    f"- {common.shape_id(tuple(r['shape']))} {r['dtype']} {r['target']} order {r['order']}: "
                    f"TaylorLoss/CE {r['seconds'] / ce['seconds']:.2f}x <= 1.0 {verdict(ok)}"
                )
    for r in records:
        if (
            r["contender"] == "taylorloss"
            and r["order"] == args.orders[-1]
            and r["seconds"]
            and len(args.orders) > 1
        ):
            lo = find(tuple(r["shape"]), r["dtype"], r["target"], "taylorloss", args.orders[0])
            if lo and lo["seconds"] and (args.device == "cuda" or r["dtype"] == "float32"):
                ratio = r["seconds"] / lo["seconds"]
                note = " (STALLED: not trustworthy)" if r.get("stalled") or lo.get("stalled") else ""
                lines.append(
                    f"- {common.shape_id(tuple(r['shape']))} {r['dtype']} {r['target']}: TaylorLoss order "
                    f"{args.orders[-1]}/order {args.orders[0]} {ratio:.2f}x <= 1.3 {verdict(ratio <= 1.3)}{note}"
                )
    return lines


def build_info() -> str:
    """The commit, whether the kernel sources differ from it, and when the loaded extension was built."""
    import subprocess

    import taylorglo

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parts = []
    try:
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--", "csrc", "taylorglo"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        if commit:
            parts.append(
                f"commit {commit}" + (" + uncommitted changes in csrc/ or taylorglo/" if dirty else "")
            )
    except (OSError, subprocess.SubprocessError):
        pass
    ext = getattr(getattr(taylorglo, "ops", None), "_C", None) or getattr(taylorglo, "_C", None)
    path = getattr(ext, "__file__", None)
    if path and os.path.exists(path):
        built = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc)
        parts.append(f"extension built {built:%Y-%m-%d %H:%M} UTC")
    return ", ".join(parts)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--quick", action="store_true", help="fewer shapes and rounds (a smoke run of a few minutes)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--out", help="also write the markdown to this file")
    p.add_argument("--json", help="write every measurement (samples included) to this JSON file")
    p.add_argument("--shapes", nargs="+", help="shapes like 4096x1000 (default: all, or the quick set)")
    p.add_argument("--dtypes", nargs="+", choices=tuple(DTYPES), default=list(DTYPES))
    p.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    p.add_argument("--orders", nargs="+", type=int, default=list(ORDERS))
    p.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    p.add_argument(
        "--max-call", type=float, default=10.0, help="skip reference contenders estimated slower (s)"
    )
    p.add_argument(
        "--max-memory", type=float, default=0.5, help="... or needing more than this fraction of free memory"
    )
    p.add_argument("--min-sample", type=float, default=None, help="seconds of back-to-back calls per sample")
    p.add_argument(
        "--slot-fraction",
        type=float,
        default=0.1,
        help="CPU: per-round time of a cheap contender, x slowest call",
    )
    p.add_argument("--min-rounds", type=int, default=None)
    p.add_argument("--max-rounds", type=int, default=None)
    p.add_argument("--round-budget", type=float, default=None, help="seconds of timed rounds per group")
    p.add_argument(
        "--budget", type=float, default=None, help="stop starting new groups after this many seconds"
    )
    args = p.parse_args(argv)
    if args.shapes:
        args.shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes]
    else:
        args.shapes = list(QUICK_SHAPES if args.quick else SHAPES)
    defaults = {  # (min_sample, min_rounds, max_rounds, round_budget): many short rounds spread noise bursts
        ("cpu", False): (0.01, 3, 60, 8.0),
        ("cpu", True): (0.01, 2, 10, 1.5),
        ("cuda", False): (0.005, 5, 30, 2.0),
        ("cuda", True): (0.005, 3, 10, 0.5),
    }[(args.device, args.quick)]
    for name, value in zip(("min_sample", "min_rounds", "max_rounds", "round_budget"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.orders = sorted(args.orders)
    if "cross_entropy" not in args.contenders:
        args.contenders.insert(0, "cross_entropy")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("loss_table.py: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore", category=UserWarning)
    common.set_threads(args.threads)
    common.quiet_compile(in_process=args.device == "cpu")
    device_name = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else (platform.processor() or platform.machine())
    )
    if args.device == "cpu":
        try:
            with open("/proc/cpuinfo") as f:
                device_name = next(
                    line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
                )
        except (OSError, StopIteration):
            pass

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    info = build_info()  # now: the extension loaded is the one on disk at the start
    start = time.perf_counter()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    estimator = Estimator()
    groups = []
    # Smallest first, so that every skip decision can extrapolate from a measured smaller case.
    order_of = {s: i for i, s in enumerate(args.shapes)}
    for shape in sorted(args.shapes, key=math.prod):
        for dtype in args.dtypes:
            for target in args.targets:
                case = Case(shape, dtype, target, args.device)
                if args.budget is not None and time.perf_counter() - start > args.budget:
                    log(f"{case.label()} {dtype} {target}: not run (--budget {args.budget:.0f} s spent)")
                    continue
                log(f"{case.label()} {dtype} {target} ({time.perf_counter() - start:.0f} s)")
                groups.append((case, run_group(shape, dtype, target, args, estimator, log)))
    groups.sort(
        key=lambda g: (order_of[g[0].shape], args.dtypes.index(g[0].dtype), args.targets.index(g[0].target))
    )
    elapsed = time.perf_counter() - start

    header, rows, records = build_rows(groups, args, device_name)
    capability = ""
    if args.device == "cpu":
        try:
            capability = f", kernel build {torch.ops.taylorglo.cpu_capability()}"
        except (AttributeError, RuntimeError):
            pass
    peak = peak_bandwidth(device_name) if args.device == "cuda" else None
    intro = (
        f"Forward+backward (mean reduction) on {args.device}: {device_name}"
        + (f", {torch.get_num_threads()} threads" if args.device == "cpu" else "")
        + (f", peak {peak:.0f} GB/s" if peak else "")
        + f"{capability}; torch {torch.__version__}, taylorglo {__import__('taylorglo').__version__} "
        + f"({info}); "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s"
        + (" (--quick)" if args.quick else "")
        + (
            f"; load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
            if load_start is not None
            else ""
        )
        + ".\n\nTimes: "
        + (
            "the fastest call over interleaved rounds (medians in --json)"
            if args.device == "cpu"
            else "medians over interleaved rounds"
        )
        + "; (N.NNx) is the ratio to F.cross_entropy in the "
        "same run. mem: peak extra bytes of one forward+backward (gradient included) and, in "
        "parentheses, in units of one N x C buffer of the logits' dtype. The order ratio compares "
        "TaylorLoss at both orders measured in the same rounds."
        + (
            " STALLED: even this contender's fastest call (under 0.2 s) ran less than 60% of its "
            "wall time on the calling thread, i.e. it waited for a core another process held (OpenMP "
            "barrier), after a second set of rounds too; that time and any ratio built on it measure "
            "the machine's load, not the code. Calls over 0.2 s always share the cores with the load, "
            "all contenders alike (their CPU share is in --json)."
            if args.device == "cpu"
            else ""
        )
        + (" GB/s: N x C x (logit + gradient [+ soft-target] bytes) / time." if args.device == "cuda" else "")
    )
    checks = target_checks(records, args)
    text = intro + "\n\n" + markdown_table(header, rows) + "\n"
    if checks:
        text += "\nTargets (issue 3), from this run:\n\n" + "\n".join(checks) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    if args.json:
        meta = {
            "device": args.device,
            "device_name": device_name,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "quick": args.quick,
            "elapsed_s": elapsed,
            "load_average_start": load_start,
        }
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": records}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

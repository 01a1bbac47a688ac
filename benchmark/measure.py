"""Timing and memory of artifacts through the same runners that passed parity.

Runs are interleaved across artifacts (each round times every artifact once, in a shuffled order) so that
machine drift hits all of them alike.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.stats import stability, summarize
from export import runners
from export.common import NotRunnable, Runner, artifact_size_mb


@dataclass
class Candidate:
    """One artifact to time."""

    model: str
    format: str
    precision: str
    path: Path
    parity: dict[str, Any] = field(default_factory=dict)
    runner: Runner | None = None
    load_ms: float = float("nan")
    first_ms: float = float("nan")
    times: list[float] = field(default_factory=list)
    skipped: str = ""
    factory: Callable[[int], Runner] | None = None  # builds the runner (threads -> Runner) instead of loading path


def set_threads(threads: int) -> None:
    """Thread count for the PyTorch-based runners (eager, TorchScript); others take it at load."""
    torch.set_num_threads(threads)


def load(candidate: Candidate, threads: int) -> None:
    """Create the runner, timing the load; a format that cannot run here is marked skipped."""
    start = time.perf_counter()
    try:
        if candidate.factory is not None:
            candidate.runner = candidate.factory(threads)
        elif candidate.format == runners.TorchCompiledRunner.format:
            candidate.runner = runners.TorchCompiledRunner(candidate.path, threads=threads)
        else:
            candidate.runner = runners.load(candidate.path, threads=threads)
    except NotRunnable as exc:
        candidate.skipped = str(exc)
        return
    candidate.load_ms = (time.perf_counter() - start) * 1000


def measure(
    candidates: list[Candidate], image: np.ndarray, meta: np.ndarray, runs: int, warmup: int, seed: int = 0
) -> None:
    """First inference, warm-up, then `runs` interleaved timed rounds (milliseconds per predict call)."""
    live = [c for c in candidates if c.runner is not None]
    for c in live:
        start = time.perf_counter()
        c.runner.predict(image, meta)
        c.first_ms = (time.perf_counter() - start) * 1000
        for _ in range(warmup):
            c.runner.predict(image, meta)
    rng = random.Random(seed)
    for _ in range(runs):
        order = live[:]
        rng.shuffle(order)
        for c in order:
            start = time.perf_counter()
            c.runner.predict(image, meta)
            c.times.append((time.perf_counter() - start) * 1000)


def row(c: Candidate, threads: int, batch: int, flops: int | None, peak_gflops: float | None) -> dict[str, Any]:
    """One report row: the timing statistics, their stability, size, FLOPs and share of the CPU's peak for
    the row's precision (None where that peak or the FLOPs are unknown)."""
    stats = summarize(c.times, batch)
    gflops_per_s = flops / 1e9 / (stats["p50_ms"] / 1000) if flops else None
    return {
        "model": c.model,
        "format": c.format,
        "precision": c.precision,
        "threads": threads,
        "batch": batch,
        **stats,
        **stability(c.times),
        "load_ms": c.load_ms,
        "first_ms": c.first_ms,
        "size_mb": round(artifact_size_mb(c.path), 3),
        "gflops": flops / 1e9 if flops else None,
        "gflops_per_s": gflops_per_s,
        "peak_share": gflops_per_s / peak_gflops if peak_gflops and gflops_per_s else None,
        "parity_status": c.parity.get("status"),
        "auroc_delta": c.parity.get("auroc_delta"),
        "flips": c.parity.get("flips"),
        "remedy": c.parity.get("remedy"),
        "float_modules": c.parity.get("float_modules"),
        "activation_bits": c.parity.get("activation_bits"),
        "path": str(c.path),
    }


def peak_memory_mb(path: Path, threads: int, batch: int, timeout: int = 300) -> float | None:
    """Peak resident memory (MB) that loading the artifact and running 5 predictions adds to a fresh process.

    The resident set after the imports is subtracted (and the kernel's high-water mark reset there through
    /proc/self/clear_refs), so the number is the artifact's own cost (weights, runtime arenas, activations),
    not the Python and library baseline. Linux only; None elsewhere or on failure.
    """
    code = (
        "import json, sys, numpy as np, torch\n"
        "from export import runners\n"
        "from export.common import sample_meta\n"
        "def status(key):\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith(key + ':'):\n"
        "            return int(line.split()[1]) / 1024\n"
        f"torch.set_num_threads({threads})\n"
        "base = status('VmRSS')\n"
        "open('/proc/self/clear_refs', 'w').write('5')  # reset the high-water mark to the current RSS\n"
        f"r = runners.load(sys.argv[1], threads={threads})\n"
        "s = r.spec.image.size\n"
        f"x = np.random.default_rng(0).random(({batch}, 3, s, s), dtype=np.float32)\n"
        f"m = sample_meta(r.spec, {batch})\n"
        "for _ in range(5): r.predict(x, m)\n"
        "print(json.dumps(status('VmHWM') - base))\n"
    )
    root = Path(__file__).resolve().parents[1]
    try:
        result = subprocess.run(
            [sys.executable, "-c", code, str(path)],
            capture_output=True,
            text=True,
            cwd=root,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    if result.returncode != 0:
        return None
    return float(json.loads(result.stdout.strip().splitlines()[-1]))


def count_flops(model: torch.nn.Module, image: torch.Tensor, meta: torch.Tensor) -> int:
    """FLOPs of one forward pass (torch.utils.flop_counter; a multiply-add counts as 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(image, meta)
    return int(counter.get_total_flops())

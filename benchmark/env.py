"""The environment fingerprint every benchmark carries, and this CPU's estimated peak GFLOP/s."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from typing import Any

from core.cpu import VNNI, cpuinfo

PACKAGES = ("torch", "onnxruntime", "ai-edge-litert", "litert-torch", "executorch", "coremltools", "numpy")


def fingerprint(threads: list[int] | None = None) -> dict[str, Any]:
    """CPU model and flags, cores, threads, OS, Python and library versions, git commit."""
    cpu = cpuinfo()
    flags = set(cpu.get("flags", "").split())
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": cpu.get("model name", platform.processor() or platform.machine()),
        "cpu_mhz": float(cpu["cpu MHz"]) if "cpu MHz" in cpu else None,
        "simd": sorted(
            flags & {"avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "neon", "asimd"}
        ),
        "logical_cores": os.cpu_count(),
        "threads": threads,
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "commit": commit,
    }


def peak_gflops(env: dict[str, Any], threads: int, precision: str = "fp32") -> float | None:
    """Estimated peak GOP/s for a precision: fp32 = threads x GHz x (2 FMA units x vector lanes x 2); int8 = 4x
    that where the CPU has VNNI (one VPDPBUSD does 4 8-bit multiply-adds per 32-bit lane), None without VNNI
    (int8 then runs through widening instructions with no fixed ratio). fp16 counts as fp32: these CPUs
    compute it in fp32. AMX, where present, is not counted. See PEAK_NOTE."""
    mhz = env.get("cpu_mhz")
    if not mhz:
        return None
    simd = set(env.get("simd", []))
    lanes = 16 if "avx512f" in simd else 8 if "avx2" in simd else 4
    flops_per_cycle = 2 * lanes * (2 if "fma" in simd or "avx512f" in simd else 1)
    fp32 = threads * mhz / 1000.0 * flops_per_cycle
    if precision.startswith("int8"):
        return 4 * fp32 if simd & VNNI else None
    return fp32


PEAK_NOTE = (
    "% of peak: achieved GFLOP/s (torch.utils.flop_counter's count of the fp32 model, a multiply-add = 2) over "
    "threads x base clock x FLOPs per cycle (2 FMA units x vector lanes x 2); int8 rows against 4x that where the "
    "CPU has VNNI, n/a without it; AMX is not counted."
)


def machine_load() -> str | None:
    """A warning when the 1-minute load average exceeds the logical cores (others compete for the CPU)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    cores = os.cpu_count() or 1
    if load > cores:
        return (
            f"load average {load:.1f} on {cores} logical cores: other processes were competing for the CPU, "
            "so these timings are not to be trusted; rerun on a quiet machine"
        )
    return None

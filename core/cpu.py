"""What this machine's CPU is: its /proc/cpuinfo fields (Linux) and whether it has VNNI.

if saturating_int8_dot(): ...    # x86 without VNNI: ONNX Runtime's uint8 x int8 kernels saturate
"""

from __future__ import annotations

import platform
from functools import cache

VNNI = frozenset({"avx512_vnni", "avx_vnni"})


@cache
def cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo ("model name", "flags", ...); empty where there is none."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if ":" in line:
                    key, value = (s.strip() for s in line.split(":", 1))
                    info.setdefault(key, value)
    except OSError:
        pass
    return info


def flags() -> set[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is not readable)."""
    return set(cpuinfo().get("flags", "").split())


def saturating_int8_dot() -> bool:
    """True on an x86 CPU without VNNI: its integer dot products of uint8 x int8 (VPMADDUBSW) add each pair of
    products in 16 bits and saturate, where VNNI's VPDPBUSD (and ARM's dot products) keep every sum exact."""
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    return x86 and not flags() & VNNI

"""Import real phone measurements from the official tools' logs; nothing here is ever estimated.

- LiteRT `benchmark_model` (run over adb) prints, e.g.:
  `Inference timings in us: Init: 41213, First inference: 20345, Warmup (avg): 9120.5, Inference (avg): 8713.2`
  and `Memory footprint delta from the start of the tool (MB): init=12.3 overall=20.1`.
- ExecuTorch's runners print per-iteration or average latency lines such as
  `Model executed successfully 50 time(s) in 431.2 ms.` (executor_runner) or
  `Average latency: 8.6 ms` (benchmark tools).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from core.errors import UserError

LITERT = re.compile(r"Init:\s*([\d.]+),\s*First inference:\s*([\d.]+),.*Inference \(avg\):\s*([\d.]+)")
LITERT_GRAPH = re.compile(r"Graph:\s*\[([^\]]+)\]")
LITERT_MEM = re.compile(r"overall\s*=\s*([\d.]+)")
ET_TOTAL = re.compile(r"executed successfully\s+(\d+)\s+time\(s\)\s+in\s+([\d.]+)\s*ms")
ET_AVG = re.compile(r"[Aa]verage latency:?\s*([\d.]+)\s*ms")


def parse_log(path: Path, device: str) -> dict[str, Any]:
    """One phone row from a benchmark log; UserError when the log holds no recognised timing line."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if m := LITERT.search(text):
        graph = LITERT_GRAPH.search(text)
        mem = LITERT_MEM.search(text)
        return {
            "device": device,
            "tool": "LiteRT benchmark_model",
            "artifact": Path(graph.group(1)).name if graph else "?",
            "init_ms": float(m.group(1)) / 1000,
            "first_ms": float(m.group(2)) / 1000,
            "avg_ms": float(m.group(3)) / 1000,
            "peak_mb": float(mem.group(1)) if mem else None,
            "source": str(path),
        }
    if m := ET_TOTAL.search(text):
        return {
            "device": device,
            "tool": "ExecuTorch executor_runner",
            "artifact": "?",
            "avg_ms": float(m.group(2)) / int(m.group(1)),
            "source": str(path),
        }
    if m := ET_AVG.search(text):
        return {
            "device": device,
            "tool": "ExecuTorch benchmark",
            "artifact": "?",
            "avg_ms": float(m.group(1)),
            "source": str(path),
        }
    raise UserError(f"{path} has no LiteRT benchmark_model or ExecuTorch timing line: attach the tool's full output")


WEB_FORMATS = ("litert-web", "onnxruntime-web")


def parse_web(path: Path) -> list[dict[str, Any]]:
    """Headless-browser rows written by web_demo/bench.py; UserError when the file is not such a list."""
    import json

    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        rows = rows["rows"] if isinstance(rows, dict) else rows
        ok = all(r["format"] in WEB_FORMATS and r["p50_ms"] > 0 for r in rows)
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise UserError(f"{path} is not a web benchmark from web_demo/bench.py (rows with format and p50_ms)")
    return rows

"""Quiet, readable command output: our own progress on the terminal, everyone else's in a log file.

Converters and runtimes print a great deal (TorchScript warnings, litert-torch stage timers, quantizer progress
bars, ExecuTorch's cpuinfo lines, coremltools' version warnings), much of it from C++ straight to file
descriptors 1 and 2. Inside `console.captured()` both descriptors (and Python's sys.stdout / sys.stderr, so
warnings and third-party progress bars follow) point at the log file, while `say`, `bar` and `result` write
to a duplicate of the original terminal. With `verbose` nothing is redirected. The log's text stream lives as
long as the Console: a logging handler that a library creates inside the block (it binds sys.stderr then)
keeps writing to the log afterwards instead of failing on a closed stream.

    with Console(out / "export.log", verbose=args.verbose) as console:
        for item in console.bar(items, "exporting"):
            with console.captured():
                ...                                   # noisy converter
            console.result("[onnx fp32] pass")
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO


class Console:
    """See the module docstring. Usable as a context manager (closes the log)."""

    def __init__(self, log: Path | None = None, verbose: bool = False):
        self.log, self.verbose = log, verbose
        sys.stderr.flush()
        self.terminal: TextIO = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
        self._bar: Any = None
        self._logs: dict[Path, _LogStream] = {}

    def __enter__(self) -> Console:
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminal.close()
        for text in self._logs.values():
            text.close_log()

    def say(self, message: str) -> None:
        """One line of our own on the terminal (above a running progress bar)."""
        if self._bar is not None:
            self._bar.write(message, file=self.terminal)
        else:
            print(message, file=self.terminal, flush=True)

    result = say

    def bar(self, items: Iterable[Any], description: str, total: int | None = None) -> Iterator[Any]:
        """Iterate `items` with a progress bar on the terminal."""
        from tqdm import tqdm

        quiet = not self.terminal.isatty()  # a log file or CI gets the result lines, not bar redraws
        with tqdm(
            items, desc=description, total=total, file=self.terminal, leave=False, dynamic_ncols=True, disable=quiet
        ) as bar:
            self._bar = bar
            try:
                yield from bar
            finally:
                self._bar = None

    @contextmanager
    def captured(self, log: Path | None = None) -> Iterator[None]:
        """Send everything written to fds 1 and 2 (and sys.stdout / sys.stderr) to the log for the block
        (to `log` instead, when given)."""
        log = log or self.log
        if self.verbose or log is None:
            yield
            return
        sys.stdout.flush()
        sys.stderr.flush()
        saved = (os.dup(1), os.dup(2))
        streams = (sys.stdout, sys.stderr)
        if log not in self._logs:
            self._logs[log] = _LogStream(log)
        text = self._logs[log]
        os.dup2(text.fileno(), 1)
        os.dup2(text.fileno(), 2)
        sys.stdout = sys.stderr = text
        try:
            yield
        finally:
            text.flush()
            sys.stdout, sys.stderr = streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)

    def tail(self, lines: int = 6) -> list[str]:
        """The last lines of the log (what a failing converter said last)."""
        if self.verbose or self.log is None or not self.log.is_file():
            return []
        text = self.log.read_text(encoding="utf-8", errors="replace").rstrip().splitlines()
        return [line for line in text[-lines:] if line.strip()]


class _LogStream(io.TextIOBase):
    """A log file as sys.stdout / sys.stderr, unbuffered (so that it interleaves in order with what C++
    writes to the same file). Once the Console closes the log, it writes to the process's stderr."""

    def __init__(self, log: Path):
        log.parent.mkdir(parents=True, exist_ok=True)
        raw = open(log, "ab", buffering=0)  # noqa: SIM115 - closed by close_log
        self._file = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", write_through=True)

    def _target(self) -> TextIO:
        return sys.__stderr__ if self._file.closed else self._file

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def fileno(self) -> int:
        return self._target().fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:
        return "utf-8"

    def close_log(self) -> None:
        self._file.close()

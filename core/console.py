"""Quiet, readable command output: our own progress on the terminal, everyone else's in a log file.

Converters and runtimes print a great deal (TorchScript warnings, litert-torch stage timers, quantizer progress
bars, ExecuTorch's cpuinfo lines, coremltools' version warnings), much of it from C++ straight to file
descriptors 1 and 2. Inside `console.captured()` both descriptors (and Python's sys.stdout / sys.stderr, so
warnings and third-party progress bars follow) point at the log file, while `say`, `bar` and `result` write
to a duplicate of the original terminal. With `verbose` nothing is redirected. sys.stdout / sys.stderr are
one stream for the Console's life that writes to the log of the block running now (the process's stderr
between blocks): a logging handler that a library creates inside a block binds that stream, so its later
records go to the log of whichever block is running, never to a closed file.

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
        self._stream = _LogStream()

    def __enter__(self) -> Console:
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminal.close()

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
        text = self._stream
        outer = text.enter(log)
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
            text.leave(outer)

    def tail(self, lines: int = 6) -> list[str]:
        """The last lines of the log (what a failing converter said last)."""
        if self.verbose or self.log is None or not self.log.is_file():
            return []
        text = self.log.read_text(encoding="utf-8", errors="replace").rstrip().splitlines()
        return [line for line in text[-lines:] if line.strip()]


class _LogStream(io.TextIOBase):
    """sys.stdout / sys.stderr inside `Console.captured`: the log file of the block running now, unbuffered (so
    that it interleaves in order with what C++ writes to the same file), or the process's stderr when no block
    runs. Blocks nest: closing one returns to the log of the block around it."""

    def __init__(self) -> None:
        self._file: io.TextIOWrapper | None = None

    def enter(self, log: Path) -> io.TextIOWrapper | None:
        """Write to `log` from now on; returns the file written to before (for `leave`)."""
        outer = self._file
        log.parent.mkdir(parents=True, exist_ok=True)
        raw = open(log, "ab", buffering=0)  # noqa: SIM115 - closed by leave()
        self._file = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", write_through=True)
        return outer

    def leave(self, outer: io.TextIOWrapper | None = None) -> None:
        """Close the current log and go back to `outer` (None: the process's stderr)."""
        if self._file is not None:
            self._file.close()
        self._file = outer

    def _target(self) -> TextIO:
        return self._file if self._file is not None else sys.__stderr__

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def fileno(self) -> int:
        return self._target().fileno()

    def writable(self) -> bool:
        return True

    @property
    def buffer(self) -> io.BufferedIOBase:
        return self._target().buffer

    @property
    def encoding(self) -> str:
        return "utf-8"

"""User-facing errors and the wrapper that turns them into one sentence and a non-zero exit.

A `UserError` is something the person running a command can fix (a bad path, an unknown model name, a
malformed CSV). Command-line entry points wrap their `main` in `run_cli`, which prints the message
without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """An error caused by the input; its message says what is wrong and how to fix it."""


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a command-line `main`, mapping user errors and Ctrl-C to clean exits.

    Returns the process exit status (0 on success). SIGTERM is treated like Ctrl-C, so that the cleanup a
    command does on interruption (removing a staging folder, releasing a lock) also runs when a scheduler
    or `kill` stops it.
    """
    import contextlib
    import signal

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread (e.g. called from a test's worker thread)
        signal.signal(signal.SIGTERM, terminate)
    try:
        status = main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return int(status or 0)

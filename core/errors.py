"""User-facing errors and the wrapper that turns them into one sentence and a non-zero exit.

A `UserError` is something the person running a command can fix (a bad path, an unknown model name, a
malformed CSV). Command-line entry points wrap their `main` in `run_cli`, which prints the message
without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
# Failures of the file system the person can fix: a full or read-only disk, a folder they may not write.
FIXABLE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST}


class UserError(Exception):
    """An error caused by the input; its message says what is wrong and how to fix it."""


def free_space_mb(path: str | os.PathLike[str]) -> float | None:
    """Free space (MB) on the disk that holds `path`, or would hold it: measured at its nearest existing
    ancestor; None when even that cannot be measured."""
    probe = Path(path).expanduser().absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free / 1e6
    except OSError:
        return None


def describe_os_error(exc: OSError) -> str | None:
    """One sentence for a file-system failure the person can fix (see FIXABLE_ERRNOS), else None."""
    if exc.errno not in FIXABLE_ERRNOS:
        return None
    where = Path(exc.filename) if exc.filename else None
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        mb = free_space_mb(where) if where is not None else None
        free = f" ({mb:.0f} MB free)" if mb is not None else ""
        return (
            f"the disk is full{free} while writing {where or 'the output'}: free some space or write elsewhere (--out)"
        )
    target = where or Path(os.getcwd())
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return f"cannot create {target}: a file stands where a folder is needed; give another path"
    return f"cannot write {target} ({os.strerror(exc.errno)}): give a folder you may write to (--out)"


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
    except OSError as exc:
        sentence = describe_os_error(exc)
        if sentence is None:
            raise
        print(f"error: {sentence}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return int(status or 0)

"""Writing without ever leaving a half-written or stale result, and refusing a second writer.

- `atomic_path(path)`: write a file or a folder under a temporary name, renamed over `path` on success.
- `staged_folder(out)`: build a whole output folder beside it, swapped into place only when the block ends.
- `exclusive(folder, what)`: a lock that refuses a second process writing to the same folder.
- `refuse_existing(out, ...)`: the one-sentence refusal of an `--out` that is a file or holds earlier results.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.errors import UserError


def replace(source: Path, target: Path) -> None:
    """Move `source` (file or folder) over `target`; a folder is swapped whole, never merged."""
    if target.is_dir() and not target.is_symlink():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(source, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, target)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path with `path`'s name, in a hidden folder beside it; when the block ends normally,
    whatever was written there (a file, or a folder such as an .mlpackage) replaces `path`. On error the
    temporary is removed and an older `path` survives.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    tmp = tmp_dir / path.name
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"nothing was written for {path.name}")
        replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically write `text` (UTF-8) to `path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Atomically write `data` as indented JSON (NaN is refused: it is not JSON)."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_with(path: str | os.PathLike[str], writer: Callable[[Path], Any]) -> Path:
    """Atomically produce `path` by calling `writer(tmp_path)`."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, or of every file in a folder (relative names and contents, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@contextmanager
def exclusive(folder: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Hold a lock on `folder` (a hidden lock file beside it) for the block; a second holder is refused.

    The lock is an flock, so a process that dies releases it.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = folder.parent / f".{folder.name}.lock"
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(
            f"another {what} is writing to {folder} right now: wait for it to finish, or give another --out"
        ) from None
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextmanager
def staged_folder(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty hidden folder beside `out` to build a whole result set in; when the block ends normally
    it replaces `out` (swapped whole, so nothing stale survives); if the block raises (an error, Ctrl-C,
    SIGTERM) it is removed and an earlier `out` stays exactly as it was. Call it under `exclusive(out)`:
    staging folders a killed process left behind (SIGKILL, out of memory) are removed first."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for leftover in out.parent.glob(f".{out.name}.staging-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; the result is an ordinary folder
    try:
        yield staging
        replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def refuse_existing(out: Path, markers: tuple[str, ...], what: str, flag: str = "--overwrite") -> None:
    """One sentence when `out` is a file, or a folder holding any of `markers` (earlier results)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder: give a folder path")
    found = [m for m in markers if (out / m).exists()]
    if found:
        raise UserError(f"{out} already holds {what} ({found[0]}): pass {flag} to replace it, or give another --out")


def load_tensors(path: str | os.PathLike[str], missing: str, unreadable: str) -> Any:
    """`torch.load(path, weights_only=True)` on the CPU, with the caller's fix-it sentences as UserErrors.

    Args:
        path: the file.
        missing: what to say when it does not exist.
        unreadable: what to say when it is damaged or not a torch file (the exception's class name is
            appended). A file that holds Python objects other than tensors and plain containers (a pickle
            that could run code) gets its own sentence: it is never loaded.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(missing)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if _imports_objects(path, str(exc)):
            raise UserError(
                f"{path} holds Python objects other than tensors (loading it could run code), so it was not "
                "loaded: give a file written by this toolkit, or re-save the weights with torch.save(state_dict)"
            ) from None
        raise UserError(f"{unreadable} (UnpicklingError)") from None
    except Exception as exc:  # noqa: BLE001 - any other failure means a damaged or foreign file
        raise UserError(f"{unreadable} ({exc.__class__.__name__})") from None


def _imports_objects(path: Path, refusal: str) -> bool:
    """Whether a file torch's weights-only loader refused is a pickle that imports classes or functions (what
    makes a pickle run code), rather than a damaged or foreign file. Read with pickletools: nothing runs."""
    import pickletools

    if "GLOBAL" in refusal:  # torch met an import it does not allow, inside its own zip format
        return True
    raw = path.read_bytes()
    if not raw.startswith(b"\x80"):  # a binary pickle starts with its PROTO opcode
        return False
    try:
        names = {op.name for op, _, _ in pickletools.genops(raw)}
    except (ValueError, EOFError):
        return False
    return bool(names & {"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX"})


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

"""Writing without ever leaving a half-written or stale result, and refusing a second writer.

- `atomic_path(path)`: write a file or a folder under a temporary name, renamed over `path` on success.
- `staged_folder(out)`: build a whole output folder beside it, swapped into place only when the block ends.
- `exclusive(folder, what)`: a lock that refuses a second process writing to the same folder.
- `claim_output_folder(out, ...)`: the rule for an `--out` built whole: new, empty or an earlier result, nothing else.
- `append_jsonl` / `read_jsonl`: history files that survive a torn last line.
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

from core.errors import UserError, free_space_mb


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
def exclusive(folder: str | os.PathLike[str], what: str, shared: bool = False) -> Iterator[None]:
    """Hold a lock on `folder` (a hidden lock file beside it) for the block; a second writer is refused.

    Writers (an export, a benchmark writing its reports) hold it alone; readers (`shared`: a benchmark timing
    an export's artifacts) hold it together and refuse only a writer, and skip the lock where the folder's
    parent cannot be written (a read-only export). The lock is an flock, so a process that dies releases it;
    the refusal names the holder.
    """
    folder = Path(folder)
    if shared and not os.access(folder.parent, os.W_OK):
        yield
        return
    check_folder_path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = folder.parent / f".{folder.name}.lock"
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise UserError(f"{holder} is using {folder} right now: wait for it to finish") from None
    if not shared:
        os.ftruncate(fd, 0)
        os.write(fd, f"a{'n' if what[:1] in 'aeiou' else ''} {what} (process {os.getpid()})".encode())
    try:
        yield
    finally:
        if not shared:  # readers may still hold it; a writer is alone
            lock.unlink(missing_ok=True)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextmanager
def staged_folder(
    out: str | os.PathLike[str],
    keep: Callable[[Path], bool] | None = None,
    before_swap: Callable[[Path], Any] | None = None,
) -> Iterator[Path]:
    """Yield an empty folder named like `out` inside a hidden one beside it, to build a whole result set in;
    when the block ends normally it replaces `out` (swapped whole, so nothing stale survives); if the block
    raises (an error, Ctrl-C, SIGTERM) it is removed and an earlier `out` stays exactly as it was. Call it
    under `exclusive(out)`: staging folders a killed process left behind (SIGKILL, out of memory) are removed
    first.

    Args:
        out: the folder to build.
        keep: entries of the earlier `out` to carry into the new one at the swap (when the new one has no
            entry of that name): a history file, or anything that appeared in the folder while it was being
            rebuilt and is not the command's own, which the swap would otherwise delete.
        before_swap: called with the finished folder (carried entries in it) just before the swap: the export
            signs it there, so that a failed signature leaves the earlier `out` in place.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for leftover in out.parent.glob(f".{out.name}.staging-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    holder = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    staging = holder / out.name  # the folder's own name while it is built (a signature records it)
    staging.mkdir(mode=0o777 & ~_umask())
    carried: list[str] = []
    try:
        yield staging
        if keep is not None and out.is_dir():
            for entry in out.iterdir():
                if keep(entry) and not (staging / entry.name).exists():
                    os.replace(entry, staging / entry.name)
                    carried.append(entry.name)
        if before_swap is not None:
            before_swap(staging)
        replace(staging, out)
        carried.clear()
    finally:
        for name in carried:  # the swap did not happen: what was carried goes back where it was
            if out.is_dir() and not (out / name).exists():
                os.replace(staging / name, out / name)
        shutil.rmtree(holder, ignore_errors=True)


def check_folder_path(folder: str | os.PathLike[str], option: str = "--out") -> None:
    """One sentence when `folder` is a file or lies under one (mkdir would fail with a bare OSError)."""
    folder = Path(folder).expanduser()
    for parent in [folder, *folder.parents]:
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == folder else f"lies under {parent}, which is a file"
            raise UserError(f"{option} {folder} {where}, not a folder: give a folder path")


def claim_output_folder(
    out: str | os.PathLike[str],
    ours: Callable[[Path], bool],
    what: str,
    overwrite: bool,
    needed_mb: float = 0.0,
    flag: str = "--overwrite",
) -> Path:
    """The rule for every folder a command builds whole and swaps into place (`staged_folder`): it may be new,
    empty, or hold an earlier result of the same command, nothing else. Returns `out` resolved.

    Refused, each in one sentence and before any work: a path that is a file or lies under one; the current
    folder or one that holds it (the swap would pull the ground from under the shell); a folder holding
    anything `ours` does not recognise (a user's own files, a training run), which the swap would delete;
    an earlier result without `flag`; a parent that cannot be written; less free space than `needed_mb`
    beside it (the new result is built while the earlier one still stands).

    Args:
        out: the --out folder.
        ours: whether an entry of an existing `out` is something this command writes.
        what: what the command writes, for the sentences ("an export").
        overwrite: whether `flag` was given.
        needed_mb: the space the new result needs (an estimate; 0 skips the check).
    """
    given = Path(out)
    check_folder_path(given)
    out = given.expanduser().resolve()
    cwd = Path.cwd().resolve()
    if out == cwd or out in cwd.parents:
        raise UserError(f"--out {given} is the current folder or holds it: give a new or empty sub-folder")
    if out.is_dir():
        entries = sorted(out.iterdir())
        foreign = [e.name for e in entries if not ours(e)]
        if foreign:
            listed = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise UserError(
                f"{out} holds files that are not {what} ({listed}), which replacing it would delete: give a new "
                "or empty folder as --out"
            )
        if entries and not overwrite:
            raise UserError(f"{out} already holds {what}: pass {flag} to replace it, or give another --out")
    existing = next(p for p in out.parents if p.exists())  # where the staging folder, the lock and the swap go
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to {existing}: give a folder you may write to as --out")
    free_mb = free_space_mb(existing) or 0.0
    if needed_mb and free_mb < needed_mb:
        raise UserError(
            f"{what} needs about {needed_mb:.0f} MB beside {out} but only {free_mb:.0f} MB is free there: free some "
            "space or give another --out (an earlier result stays until the new one is complete)"
        )
    return out


def append_jsonl(path: str | os.PathLike[str], record: Any) -> Path:
    """Append one JSON line to `path`. A torn last line (a write cut short by a crash or a full disk) is
    dropped first, so the new record never joins it; the file is rewritten atomically when that happens."""
    path = Path(path)
    line = json.dumps(record, allow_nan=False) + "\n"
    if path.is_file():
        text = path.read_text(encoding="utf-8", errors="replace")
        if text and not text.endswith("\n"):
            kept = text[: text.rfind("\n") + 1]
            write_text(path, kept + line)
            return path
    with path.open("a", encoding="utf-8") as f:
        f.write(line)
    return path


def read_jsonl(path: str | os.PathLike[str]) -> list[Any]:
    """The records of a JSON-lines file; lines that are not JSON (torn, edited) are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            records.append(json.loads(raw))
        except ValueError:
            continue
    return records


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

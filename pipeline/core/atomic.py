"""Atomic writes: every output goes to a temporary path beside its target and is renamed.

A reader never sees a half-written file, and a stage that fails part-way leaves the previous
outputs intact, because `os.replace` is atomic on POSIX within one filesystem. A stage with
several outputs writes them all first and renames them together at the end (`atomic_outputs`),
so a stage killed while writing leaves its old outputs, not a mix of old and new.

Temporary paths are named `.<target>.<pid>.<random>.tmp`. A process killed outright (SIGKILL, a
power cut) cannot remove its own; the next write to the same target removes those of processes
that are no longer alive, so a killed run does not leave hundreds of megabytes behind for good.

A write that fails for want of space or permission raises `WriteError`, naming the path, the
space needed and free, and saying that the earlier output is unchanged.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from pipeline.core.errors import PipelineError

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


class WriteError(PipelineError):
    """An output could not be written: no space, a read-only or forbidden location."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Remove `.<target>.<pid>.*.tmp` and `.<target>.old.<pid>` left beside `target` by dead processes."""
    removed = []
    if not target.parent.is_dir():
        return removed
    for p in target.parent.glob(f".{target.name}.*"):
        parts = p.name[len(target.name) + 2:].split(".")
        pid = parts[1] if parts[0] == "old" and len(parts) > 1 else parts[0]
        if not (p.name.endswith(".tmp") or parts[0] == "old") or not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def _free(directory: Path) -> int:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return -1


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n:,d} bytes"


def _write_error(target: Path, tmp: Path | None, e: OSError, needed: int | None) -> WriteError:
    """A WriteError for `e`, raised while writing `target` (through `tmp`)."""
    written = _size(tmp) if tmp is not None else 0
    free = _free(target.parent if target.parent.exists() else Path("."))
    if e.errno in _DISK_FULL:
        need = f"it needs {_mib(needed)}" if needed else f"{_mib(written)} were written before the disk filled"
        what = f"no space left ({need}; {_mib(free)} free there)" if free >= 0 else f"no space left ({need})"
    elif e.errno in _NOT_WRITABLE:
        what = f"not writable ({e.strerror}); make {target.parent} writable or run from a writable copy"
    else:
        what = f"{e.strerror or e}"
    return WriteError(f"{target}: cannot write: {what}; nothing earlier was lost: the previous "
                      f"{'contents of ' if tmp is not None and tmp.is_dir() else ''}{target} "
                      f"{'are' if tmp is not None and tmp.is_dir() else 'is'} unchanged")


class AtomicOutputs:
    """Temporary paths for several targets, renamed over them together when all are written."""

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path, bool]] = []   # (tmp, target, is a directory)

    def path(self, target: str | Path, *, directory: bool = False) -> Path:
        """A fresh temporary file (or, with `directory=True`, directory) that will replace `target`."""
        target = Path(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(target)
            prefix, suffix = f".{target.name}.{os.getpid()}.", ".tmp"
            if directory:
                tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=target.parent))
            else:
                fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
                os.close(fd)
                tmp = Path(name)
        except OSError as e:
            raise _write_error(target, None, e, None) from None
        self._pending.append((tmp, target, directory))
        return tmp

    def commit(self) -> None:
        """Rename every temporary path over its target (directories: old one moved aside, then removed)."""
        old_dirs = []
        for tmp, target, directory in self._pending:
            if directory:
                if target.exists():
                    old = target.with_name(f".{target.name}.old.{os.getpid()}")
                    os.replace(target, old)
                    old_dirs.append(old)
            else:
                os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        self._pending.clear()
        for old in old_dirs:
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        """Remove every temporary path; the targets stay as they were."""
        for tmp, _, _ in self._pending:
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        self._pending.clear()


@contextlib.contextmanager
def atomic_outputs() -> Iterator[AtomicOutputs]:
    """Write several outputs and replace them together: all of them on success, none on an error.

        with atomic_outputs() as out:
            write_a(out.path("reports/metrics.json"))
            write_b(out.path("reports/per_fold.csv"))
    """
    out = AtomicOutputs()
    try:
        yield out
        out.commit()
    except OSError as e:
        # the newest temporary path is the one being written when the error came
        tmp, target, _ = out._pending[-1] if out._pending else (None, Path("."), False)
        error = _write_error(target, tmp, e, None)
        out.discard()
        raise error from None
    except BaseException:
        out.discard()
        raise


@contextlib.contextmanager
def atomic_path(target: str | Path, *, directory: bool = False, needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it over `target`.

    With `directory=True` the temporary path is a fresh directory and replaces a whole
    directory target (the old one is removed only after the new one is complete).
    On an exception the temporary path is removed and `target` is untouched; a full disk or a
    read-only location is a WriteError (`needed`: the bytes it takes, when known).
    """
    out = AtomicOutputs()
    tmp = out.path(target, directory=directory)
    try:
        yield tmp
        out.commit()
    except OSError as e:
        error = _write_error(Path(target), tmp, e, needed)
        out.discard()
        raise error from None
    except BaseException:
        out.discard()
        raise


def ensure_writable(directory: str | Path) -> None:
    """Refuse at once (WriteError) a directory where outputs cannot be created, before hours of work.

    Probes the directory, or its nearest existing ancestor, with a temporary file; creates nothing.
    """
    directory = Path(directory)
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{existing} is not a directory")
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-probe.", delete=True):
            pass
    except OSError as e:
        raise WriteError(f"{directory}: outputs cannot be written there ({e.strerror or e} in {existing}); make it "
                         f"writable (or run from a writable copy of the project) and run again; nothing was "
                         f"computed or lost") from None


def write_bytes_to(path: Path, data: bytes) -> None:
    """Write `data` to `path`, flushed to disk."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    """Write `data` to `target` atomically, flushed to disk before the rename."""
    with atomic_path(target, needed=len(data)) as tmp:
        write_bytes_to(tmp, data)


def atomic_write_text(target: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `target` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))


def json_text(obj: Any) -> str:
    """Indented, key-sorted JSON without NaN (stable bytes for identical content)."""
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def atomic_write_json(target: str | Path, obj: Any) -> None:
    """Write `obj` as indented, key-sorted JSON (stable bytes for identical content)."""
    atomic_write_text(target, json_text(obj))


def csv_text(frame: Any, **kwargs: Any) -> str:
    """A pandas DataFrame as CSV text (index off unless asked for)."""
    kwargs.setdefault("index", False)
    return frame.to_csv(**kwargs)


def torch_bytes(obj: Any) -> bytes:
    """torch.save of `obj`, in memory: its size is known before a byte reaches the disk."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def atomic_torch_save(target: str | Path, obj: Any) -> None:
    """torch.save atomically (checkpoints and weights)."""
    atomic_write_bytes(target, torch_bytes(obj))

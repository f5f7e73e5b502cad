"""Output files: checking an output path before long work starts, and writing a file atomically.

``check_output_path`` is what ``fcgpu train --save`` and ``fcgpu bench --json/--plot`` (and
``model.save``) run first, so a folder that does not exist or cannot be written is found before
an hour of training, not after it. ``atomic_write`` writes through a symbolic link to its target,
into a temporary file in the target's folder that is flushed to disk, given the mode the umask
allows (``0o666 & ~umask``, as ``open`` would) and renamed over the target: a crash mid-write
leaves the previous file as it was, and every error names the caller's path, never the
temporary file.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from typing import BinaryIO, Iterator

__all__ = ["atomic_write", "check_output_path", "current_umask"]

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where the OS tells it (Linux's
    /proc/self/status); elsewhere set and restored at once under a lock."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8) & 0o777
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask & 0o777


def _text(path: str | os.PathLike, argument: str) -> str:
    try:
        text = os.fspath(path)
    except TypeError:
        raise TypeError(f"{argument}: expected a file name (str or os.PathLike), got {type(path).__name__}") from None
    if not isinstance(text, str):
        text = os.fsdecode(text)
    if not text or "\0" in text:
        raise ValueError(f"{argument}: expected a file name, got {text!r}")
    return text


def check_output_path(path: str | os.PathLike, argument: str = "path", probe: bool = True) -> str:
    """The file that writing ``path`` will create or replace (symbolic links followed), after
    checking that it can be written: not a folder or a device, in a folder that exists and in
    which files can be created (with ``probe``, by creating and removing an empty file there).

    Raises IsADirectoryError, FileNotFoundError, NotADirectoryError or PermissionError, each
    naming ``argument`` and the path as given.
    """
    text = _text(path, argument)
    target = os.path.realpath(text)
    shown = repr(text) if target == os.path.abspath(text) else f"{text!r} (a link to {target!r})"
    if os.path.isdir(target):
        raise IsADirectoryError(f"{argument}: expected a file name, but {shown} is a folder")
    if os.path.lexists(target) and not os.path.isfile(target):
        raise PermissionError(f"{argument}: expected a regular file, but {shown} is a device, socket or pipe")
    folder = os.path.dirname(target)
    if not os.path.exists(folder):
        raise FileNotFoundError(f"{argument}: the folder {folder!r} of {shown} does not exist")
    if not os.path.isdir(folder):
        raise NotADirectoryError(f"{argument}: {folder!r}, the folder of {shown}, is not a folder")
    if probe:
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".check", dir=folder)
        except OSError as e:
            raise PermissionError(f"{argument}: cannot create files in {folder!r}, the folder of {shown}: "
                                  f"{e.strerror or e}") from None
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return target


def _naming(error: OSError, text: str, argument: str) -> OSError:
    """``error`` again, of the same type and errno, its message naming the caller's path."""
    reason = error.strerror or str(error)
    try:
        renamed = type(error)(f"{argument}: cannot write {text!r}: {reason}")
    except Exception:
        renamed = OSError(f"{argument}: cannot write {text!r}: {reason}")
    renamed.errno = error.errno
    return renamed


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, argument: str = "path") -> Iterator[BinaryIO]:
    """A binary file to write whose content replaces ``path`` (through links: their target) at
    once when the block ends without error; on error the temporary file is removed, the old file
    is untouched, and an OSError names ``path`` as given."""
    text = _text(path, argument)
    target = check_output_path(text, argument, probe=False)
    folder, name = os.path.split(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise _naming(e, text, argument) from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp's 0600, widened as far as the umask allows
        os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _naming(e, text, argument) from None
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

"""Atomic file writes, used for every file the project writes (checkpoints, JSON, CSV, Markdown, PNG).

The content goes to a temporary file in the target folder, is flushed and fsynced, and is then renamed
over the target: readers never see half a file, and a crash leaves the previous version intact. The file
gets the permissions a plain `open(path, "w")` would give (0644 under a 022 umask), not mkstemp's 0600.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import IO, Callable

from .errors import UserError

TEMP_SUFFIX = ".googlenet-tmp"
# `.<name>.<mkstemp's 8 random characters>.googlenet-tmp[<suffix>]`: a pattern nothing but our writers makes, so
# the clean-up after a killed writer never touches a user's own dotfiles (`.env.tmpl`, `.notes.tmp.txt`).
OUR_TEMP_FILE = re.compile(r"\..+\.[A-Za-z0-9_]{8}" + re.escape(TEMP_SUFFIX) + r"(\.[A-Za-z0-9]+)?")


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_prefix(path: Path) -> str:
    """Temporary files of `path` are named `.<name>.<random>.googlenet-tmp` (see `OUR_TEMP_FILE`)."""
    return f".{path.name}."


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None] | bytes | str,
                 also: tuple[str | Path, ...] = ()) -> Path:
    """Write `path` atomically; `write` is the content or a function that writes to a binary file object.
    The same content is written once and appears under each of `also` (files in the same folder) before
    `path`, in that order, each name atomically: as hard links of the one file (a later write of one name
    replaces that name only), or as copies where the file system has no hard links."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}; choose a writable location") from None
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            if callable(write):
                write(f)
            else:
                f.write(write.encode() if isinstance(write, str) else write)
            f.flush()
            os.fsync(f.fileno())
        for other in also:
            _publish_copy(Path(tmp), path.parent / Path(other).name)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if _raised_for(e, (errno.ENOSPC, errno.EDQUOT)):
            raise UserError(f"no space left on the device holding {path.parent}; free space and run again "
                            "(the previous file, if any, is intact)") from None
        raise
    return path


def _publish_copy(source: Path, path: Path) -> None:
    """`source`'s content under `path`, atomically: a hard link to it, or a copy (write_atomic) where the file
    system has no hard links."""
    tmp = path.parent / f"{temp_prefix(path)}{secrets.token_hex(4)}{TEMP_SUFFIX}"  # OUR_TEMP_FILE's pattern
    try:
        os.link(source, tmp)
    except OSError:  # EPERM, EXDEV, EMLINK, ENOTSUP, ...
        with open(source, "rb") as src:
            write_atomic(path, lambda f: shutil.copyfileobj(src, f))
        return
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _raised_for(error: BaseException | None, codes: tuple[int, ...]) -> bool:
    """Whether `error` is, or was raised while handling, an OSError with one of these errnos (torch.save turns
    a failed write into a RuntimeError about stream positions; the OSError is its context)."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in codes:
            return True
        error = error.__cause__ or error.__context__
    return False


def shown(path) -> str:
    """A file name as printed: control characters (a newline, an escape sequence) and undecodable bytes as
    escapes, so that one name is one line and cannot rewrite the terminal."""
    text = str(path)
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Remove temporary files that a killed writer left in `folder`; returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if OUR_TEMP_FILE.fullmatch(p.name) and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def probe_writable_dir(folder: str | Path, key: str, value) -> Path:
    """`folder` can be created and written to: a file is created (and removed) in the deepest part of it that
    exists (permission bits do not tell for root or odd file systems). Nothing else is created: the ranks of
    one run check the same folder at once, and a folder one of them made and removed again could vanish under
    another that is creating it. A one-line error names `key=value` otherwise. Returns that deepest part."""
    folder = Path(folder).expanduser().absolute()
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{key}={value} lies under the file {existing}; choose another {key}")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-test-"):
            pass
    except OSError as e:
        raise UserError(f"{key}={value} cannot be written ({e.strerror or e}); choose another {key}") from None
    return existing


def check_writable_file(path: str | Path, key: str, inputs=(), beside: tuple[str, ...] = ()) -> Path:
    """`path` can be written as a file: checked before a long job starts, so that its results are never lost
    at the end, and so that writing it loses nothing: it is not one of the command's `inputs`, not a device or
    other special file, and not one of the files written `beside` it (those suffixes replace its own)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{key}={path} is a directory; pass a file name, e.g. {key}={path / 'results.json'}")
    if path.exists() and not path.is_file():
        raise UserError(f"{key}={path} is not a regular file (a device, pipe or socket); pass a file name")
    written = [path, *(path.with_suffix(suffix) for suffix in beside)]
    if len({p.absolute() for p in written}) < len(written):
        raise UserError(f"{key}={path} is also the name of a file written beside it ({', '.join(beside)}); "
                        f"pass a name ending in another suffix, e.g. {key}={path.with_suffix('.json')}")
    for target in written:
        for source in inputs:
            if _same_path(target, Path(source).expanduser()):
                raise UserError(f"{key}={path} would overwrite {source}, an input of this command; "
                                f"choose another {key}")
    probe_writable_dir(path.parent, key, path)
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """A temporary path beside `path` for writers that want a file name (exporters); renamed over `path` when
    the block succeeds, removed when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the temporary name keeps the suffix: some writers (torch.export.save) insist on it
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)

"""Atomic file and folder writes, tolerant JSON reads and checksums: a crash never leaves a half-written file or folder."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """The process umask (read by setting and restoring it: there is no other portable way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error means the file system (or the user's quota) has no room left."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full_message(path: str | os.PathLike, fix: str) -> str:
    """One line naming the full file system, what is free on it and the fix (instead of a traceback)."""
    where = Path(path)
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        st = os.statvfs(where)
        free = f" ({st.f_bavail * st.f_frsize / 1e9:.2f} GB free of {st.f_blocks * st.f_frsize / 1e9:.2f} GB)"
    except OSError:
        free = ""
    return f"no space left on {where}{free}: {fix}"


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int = 0o666, durable: bool = True) -> Path:
    """Write `data` to `path` through a temporary file and a rename.

    The file gets `mode` less the umask, as `open()` would give it (mkstemp alone makes every file 0600,
    which stops a research group from sharing a sweep folder). Pass `mode=0o600` for a private file.
    `durable=False` skips the fsync: the rename stays atomic (readers see the old or the new file), but a node
    crash may lose the last write; for frequent progress records on shared filesystems, where each fsync costs.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode & ~current_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, mode: int = 0o666, durable: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), mode, durable)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2, mode: int = 0o666,
                      durable: bool = True) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=str) + "\n", mode, durable)


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """The parsed JSON file, or `default` when it is missing, unreadable or not valid JSON."""
    try:
        return json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return default


class StagingBusy(RuntimeError):
    """Another process is filling the same resumable staging folder."""


RESUME_KEY = ".resume.json"


@contextmanager
def resumable_dir(final: str | os.PathLike, label: str, key: dict) -> Iterator[Path]:
    """Like `staged_dir`, but a failed or killed run leaves its staging folder for the next run to finish.

    The folder `.<label>.partial` beside `final` is reused only when `key` (what the content depends on:
    input files, code version) equals the one recorded in it; otherwise it is emptied first. One process
    at a time (an advisory lock beside it). Helpers that fill it skip files already complete (`copy_file`).
    `final` is never half-filled: it is the old folder, or briefly none, or the complete new one.
    """
    import fcntl

    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f".{label}.partial")
    with open(final.with_name(f".{label}.lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StagingBusy(f"{staging}: another process is preparing it now. Fix: wait for it to end.") from None
        recorded = staging / RESUME_KEY
        try:
            same = json.loads(recorded.read_text()) == key
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(exist_ok=True)
        for leftover in staging.glob(".*"):  # scratch folders of a killed run
            if leftover.name != RESUME_KEY:
                shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()
        atomic_write_json(recorded, key)
        yield staging
        recorded.unlink()
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> bool:
    """Copy `src` to `dst` unless `dst` is already a complete copy (same size); False when skipped.

    The copy is written beside `dst` and renamed, so a `dst` that exists is whole: a resumed preparation
    of hundreds of GB copies only what the killed run had not.
    """
    src, dst = Path(src), Path(dst)
    try:
        if dst.stat().st_size == src.stat().st_size:
            return False
    except FileNotFoundError:
        pass
    part = dst.with_name(f".{dst.name}.part")
    shutil.copyfile(src, part)
    os.replace(part, dst)
    return True


def md5sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def tree_checksums(root: str | os.PathLike) -> dict[str, str]:
    """MD5 of every file below `root`, keyed by its relative POSIX path, sorted."""
    root = Path(root)
    return {
        p.relative_to(root).as_posix(): md5sum(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


# ---------------------------------------------------------------- files in folders an agent could write
#
# An agent can put anything where a file should be: a symbolic link to the private answers or to another
# attempt, a hard link, a FIFO that blocks a reader forever, a device, a folder, a sparse file of a terabyte.
# The harness never follows such a path: it walks from a folder it trusts with one O_NOFOLLOW open per
# component, checks what it opened with fstat, and reads at most a cap of bytes from that descriptor.

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LEAF_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
          (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))


class UnsafeFile(Exception):
    """A file the harness refuses to read: the message says what it is instead of a regular file, or how big."""


def human_size(n: float) -> str:
    """1073741824 -> '1.0 GiB', 104857600 -> '100 MiB' (for reasons that a person reads)."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) and unit != "GiB" else f"{value:.1f} {unit}"
    return f"{int(n)} bytes"


def _relative_parts(rel: str | os.PathLike) -> list[str]:
    parts = [p for p in Path(rel).parts if p not in ("", ".")]
    if not parts or Path(rel).is_absolute() or ".." in parts:
        raise ValueError(f"{rel!r} must be a relative path inside its base folder, without '..'")
    return parts


def _open_dir_nofollow(name: str, dir_fd: int | None, label: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeFile(f"{label}: {name} is a symbolic link or not a folder") from None
        raise


def open_dir_under(base: str | os.PathLike, parts: list[str] | tuple[str, ...], label: str = "") -> int:
    """A descriptor of base/parts..., each component opened with O_NOFOLLOW (base itself is trusted)."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            child = _open_dir_nofollow(part, fd, label or part)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _describe(mode: int) -> str | None:
    """What a non-regular file is, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


def check_regular(st: os.stat_result, label: str, max_bytes: int) -> None:
    """Raise UnsafeFile unless `st` is a regular file with one link and at most `max_bytes`."""
    kind = _describe(st.st_mode)
    if kind is not None:
        raise UnsafeFile(f"{label} is {kind}, not a regular file")
    if st.st_nlink != 1:
        raise UnsafeFile(f"{label} is a hard link to another file ({st.st_nlink} names for one file)")
    if st.st_size > max_bytes:
        raise UnsafeFile(f"{label} is {human_size(st.st_size)}, over the {human_size(max_bytes)} limit")


def open_untrusted(base: str | os.PathLike, rel: str | os.PathLike, max_bytes: int) -> int:
    """A read-only descriptor of the regular file base/rel, never following a link on the way.

    `base` is a folder the harness trusts; every component below it may be the agent's. Raises
    FileNotFoundError when nothing is there, UnsafeFile (with the reason) for a link, hard link, FIFO,
    device, socket, folder or a file over `max_bytes`. The entry is checked before it is opened, so a
    device or FIFO is never opened at all.
    """
    parts = _relative_parts(rel)
    label = parts[-1]
    dfd = open_dir_under(base, parts[:-1], label)
    try:
        check_regular(os.stat(label, dir_fd=dfd, follow_symlinks=False), label, max_bytes)
        try:
            fd = os.open(label, _LEAF_FLAGS, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeFile(f"{label} is a symbolic link, not a regular file") from None
            raise
    finally:
        os.close(dfd)
    try:
        check_regular(os.fstat(fd), label, max_bytes)  # what was opened, whatever was swapped in meanwhile
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


class CappedReader(io.RawIOBase):
    """A file object over a descriptor that reads at most `max_bytes`, then fails (the file grew meanwhile)."""

    def __init__(self, fd: int, max_bytes: int, label: str) -> None:
        super().__init__()
        self.fd, self.left, self.max_bytes, self.label = fd, max_bytes, max_bytes, label

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        if self.left <= 0:
            if os.read(self.fd, 1):
                raise UnsafeFile(f"{self.label} grew past the {human_size(self.max_bytes)} limit while being read")
            return 0
        data = os.read(self.fd, min(len(view), self.left))
        view[:len(data)] = data
        self.left -= len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


@contextmanager
def open_untrusted_file(base: str | os.PathLike, rel: str | os.PathLike, max_bytes: int) -> Iterator[io.BufferedReader]:
    """`open_untrusted` as a buffered binary file object that never reads more than `max_bytes`."""
    fd = open_untrusted(base, rel, max_bytes)
    with io.BufferedReader(CappedReader(fd, max_bytes, Path(rel).name), buffer_size=1 << 16) as fh:
        yield fh


def read_untrusted(base: str | os.PathLike, rel: str | os.PathLike, max_bytes: int) -> bytes:
    with open_untrusted_file(base, rel, max_bytes) as fh:
        return fh.read()


def tail_untrusted(base: str | os.PathLike, rel: str | os.PathLike, limit: int) -> str:
    """The last `limit` bytes of a regular file as text; '' when it is missing or not a regular file."""
    try:
        fd = open_untrusted(base, rel, 1 << 62)
    except (OSError, UnsafeFile, ValueError):
        return ""
    with os.fdopen(fd, "rb") as fh:
        fh.seek(max(0, os.fstat(fd).st_size - limit))
        return fh.read(limit).decode("utf-8", errors="replace")


def copy_untrusted(base: str | os.PathLike, rel: str | os.PathLike, dst: str | os.PathLike, max_bytes: int) -> Path:
    """Copy a regular file of at most `max_bytes` from an agent's folder to `dst` (harness-owned), atomically.

    Reads only from the checked descriptor, at most `max_bytes`, so a link, FIFO, device or a sparse
    giant is refused (UnsafeFile) before anything is written.
    """
    dst = Path(dst)
    with open_untrusted_file(base, rel, max_bytes) as src:
        fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~current_umask())
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            os.replace(tmp, dst)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return dst


def is_regular_untrusted(base: str | os.PathLike, rel: str | os.PathLike) -> bool:
    """Whether base/rel is a regular file with one link, reached without following any link."""
    try:
        os.close(open_untrusted(base, rel, 1 << 62))
        return True
    except (OSError, UnsafeFile, ValueError):
        return False


# ---------------------------------------------------------------- putting harness files into agent folders


def remove_entry_at(dir_fd: int, name: str) -> None:
    """Remove whatever `name` is in the folder `dir_fd` (a link is removed, never followed)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)  # fd-based: it does not follow links inside the tree
    else:
        os.unlink(name, dir_fd=dir_fd)


def _copy_new_at(src: Path, dir_fd: int, name: str) -> None:
    """Create `name` in `dir_fd` afresh (O_EXCL|O_NOFOLLOW) with the content of the trusted `src`."""
    if src.is_dir():
        os.mkdir(name, 0o755, dir_fd=dir_fd)
        child = _open_dir_nofollow(name, dir_fd, name)
        try:
            for item in sorted(src.iterdir()):
                _copy_new_at(item, child, item.name)
        finally:
            os.close(child)
        return
    mode = stat.S_IMODE(src.stat().st_mode) | 0o644
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    with os.fdopen(fd, "wb") as out, open(src, "rb") as fh:
        shutil.copyfileobj(fh, out, 1 << 20)


def recreate_in(folder: str | os.PathLike, src: str | os.PathLike, name: str | None = None) -> None:
    """Put a fresh copy of the trusted file or folder `src` into the agent-writable `folder`.

    Whatever the agent left under that name (a link to a host file, a folder, a FIFO) is removed
    first without being followed, then the copy is created with O_EXCL|O_NOFOLLOW, so the harness
    never writes through anything the agent planted.
    """
    src = Path(src)
    name = name or src.name
    dfd = open_dir_under(Path(folder).parent, [Path(folder).name])
    try:
        remove_entry_at(dfd, name)
        _copy_new_at(src, dfd, name)
    finally:
        os.close(dfd)


# ---------------------------------------------------------------- disk use of agent-writable folders


class DiskUsage:
    """Real bytes used (st_blocks * 512, so a sparse file counts what it holds) under some folders.

    Walked with os.scandir on descriptors opened O_NOFOLLOW from each folder's parent, never following
    a link, at most `per_pass` entries per `step()`, so a tree of millions of files costs many short
    steps rather than one long stall. A file with several links is counted once.
    """

    def __init__(self, roots: list[Path], per_pass: int = 20000) -> None:
        self.roots, self.per_pass = [Path(r) for r in roots], per_pass
        self.total: int | None = None  # the last complete walk
        self.total_entries = 0  # files and folders seen by the last complete walk
        self._restart()

    @property
    def entries(self) -> int:
        """Files and folders: the last complete walk's count, or the running one when it is already larger."""
        return max(self.total_entries, self._entries)

    def _restart(self) -> None:
        self._pending: list[tuple[Path, tuple[str, ...]]] = [(r, ()) for r in self.roots]
        self._sum = 0
        self._entries = 0
        self._linked: set[tuple[int, int]] = set()

    def step(self) -> int:
        """Walk on for up to `per_pass` entries; return the larger of the last total and the running sum."""
        budget = self.per_pass
        while self._pending and budget > 0:
            root, parts = self._pending.pop()
            budget -= self._scan(root, parts)
        if not self._pending:
            self.total, self.total_entries = self._sum, self._entries
            self._restart()
        return max(self.total or 0, self._sum)

    def _scan(self, root: Path, parts: tuple[str, ...]) -> int:
        try:
            fd = open_dir_under(root.parent, [root.name, *parts])
        except (OSError, UnsafeFile):
            return 1  # gone or swapped for a link meanwhile: nothing to count
        seen = 0
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    seen += 1
                    self._count(entry, root, parts)
        except OSError:
            pass
        finally:
            os.close(fd)
        return max(seen, 1)

    def _count(self, entry: os.DirEntry, root: Path, parts: tuple[str, ...]) -> None:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            return
        self._entries += 1
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
            if (st.st_dev, st.st_ino) in self._linked:
                return
            self._linked.add((st.st_dev, st.st_ino))
        self._sum += st.st_blocks * 512
        if stat.S_ISDIR(st.st_mode):
            self._pending.append((root, (*parts, entry.name)))

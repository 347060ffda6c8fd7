"""Files a root process can write and trust without being steered by others.

mfd runs as root.  A path it is given may be a symlink that another user
planted (``/tmp/r.csv -> /etc/passwd``), and a cache it reads may sit in a
directory others can write.  So, the way OpenSSH treats its key files and
coreutils ``install`` its targets:

* outputs are written to a new file beside the target and renamed onto it
  (:class:`AtomicOutput`): the name is replaced, nothing is written through
  it; a symlink target is refused unless the user says to follow it;
* files and directories mfd creates get their mode explicitly (0644, 0755),
  whatever the umask (:func:`make_dirs`);
* what mfd reads back from its own caches must be owned by root (or by the
  user running mfd) and writable by no one else, all the way up
  (:func:`untrusted_reason`, :func:`open_trusted`), and must be a regular
  file, opened without following a symlink and without blocking on a FIFO.
"""
from __future__ import annotations

import errno
import os
import stat
from typing import IO, Optional, Tuple

from .errors import MfdError

FOLLOW_FLAG = "--follow-symlinks"


class UnsafePath(MfdError):
    """A path mfd will not write through or trust (one line, exit 1)."""


def file_id(st: os.stat_result) -> Tuple[int, int]:
    return st.st_dev, st.st_ino


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def output_target(path: str, follow_symlinks: bool = False) -> str:
    """The file an output to ``path`` replaces: ``path`` itself, or with
    ``follow_symlinks`` the file a symlink there points to.  UnsafePath for a
    symlink (unless followed) and for anything but a regular file or nothing."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    except OSError as e:
        raise UnsafePath(f"cannot write {path}: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        if not follow_symlinks:
            raise UnsafePath(f"{path} is a symbolic link: mfd does not write through one "
                             f"(give the file it points to, or add {FOLLOW_FLAG})")
        target = os.path.realpath(path)
        return output_target(target) if target != path else path
    if not stat.S_ISREG(st.st_mode):
        what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise UnsafePath(f"cannot write {path}: it is {what} (give a file name, or - for "
                         f"standard output where the option allows it)")
    return path


class AtomicOutput:
    """An output file written under a temporary name in its target's
    directory and renamed onto the target by :meth:`commit`.

    The temporary file is created O_EXCL (a name another user planted
    cannot be it); readers of the target see the old file or the whole new
    one; a failed or interrupted write leaves the target as it was.  The
    new file keeps the mode of the file it replaces, else 0666 less the
    umask, as a shell redirection would create it.
    """

    def __init__(self, path: str, binary: bool = False, follow_symlinks: bool = False):
        self.path = path
        self.target = output_target(path, follow_symlinks)
        folder = os.path.dirname(os.path.abspath(self.target))
        try:
            mode = stat.S_IMODE(os.stat(self.target).st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        base = os.path.basename(self.target)
        self.tmp = None
        for attempt in range(100):
            name = os.path.join(folder, f".{base}.mfd-{os.getpid()}-{attempt}.tmp")
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            except OSError as e:
                raise UnsafePath(f"cannot write {path}: {e.strerror}") from None
            self.tmp = name
            break
        else:
            raise UnsafePath(f"cannot write {path}: no free temporary name in {folder}")
        os.fchmod(fd, mode)
        self.file: IO = os.fdopen(fd, "wb") if binary else \
            os.fdopen(fd, "w", encoding="utf-8", newline="")

    def commit(self) -> None:
        """Flush the new file to disk and rename it onto the target."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.target)
        except OSError as e:
            self.abort()
            raise UnsafePath(f"cannot write {self.path}: {e.strerror}") from None
        self.tmp = None

    def abort(self) -> None:
        """Drop the new file; the target stays as it was."""
        try:
            self.file.close()
        except OSError:
            pass
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            self.tmp = None

    def __enter__(self) -> IO:
        return self.file

    def __exit__(self, kind, value, tb) -> bool:
        if kind is None:
            self.commit()
        else:
            self.abort()
        return False


def make_dirs(path: str, mode: int = 0o755) -> None:
    """``os.makedirs`` with every directory it creates given ``mode`` exactly
    (makedirs applies the umask, and gives intermediate directories 0777 less
    the umask: 0777 under umask 000)."""
    parent = os.path.dirname(os.path.abspath(path))
    if parent != path and not os.path.isdir(parent):
        make_dirs(parent, mode)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return
    os.chmod(path, mode)


def _owner_ok(st: os.stat_result) -> bool:
    return st.st_uid in (0, os.geteuid())


def untrusted_reason(path: str, leaf_is_dir: bool = False) -> Optional[str]:
    """Why ``path`` (and every directory above it) cannot be trusted, or None.

    Trusted: owned by root or by the user running mfd, and not writable by
    group or other; the leaf is a regular file (or a directory) and not a
    symlink.  Directories above may be symlinks (their targets are checked),
    and may be sticky directories of root's such as /tmp: others can add
    names there but cannot rename or remove ours.
    """
    try:
        st = os.lstat(path)
    except OSError as e:
        return f"{path}: {e.strerror}"
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link"
    if leaf_is_dir and not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if not leaf_is_dir and not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    reason = _unsafe_stat(path, st)
    if reason:
        return reason
    folder = os.path.dirname(os.path.realpath(path))
    while True:
        try:
            st = os.stat(folder)
        except OSError as e:
            return f"{folder}: {e.strerror}"
        sticky = st.st_mode & stat.S_ISVTX and st.st_uid == 0
        reason = None if sticky else _unsafe_stat(folder, st)
        if reason:
            return reason
        up = os.path.dirname(folder)
        if up == folder:
            return None
        folder = up


def _unsafe_stat(path: str, st: os.stat_result) -> Optional[str]:
    if not _owner_ok(st):
        return f"{path} is owned by uid {st.st_uid}, not root"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def open_trusted(path: str, max_bytes: int) -> bytes:
    """The contents of a file mfd wrote earlier, read only if it is still
    trustworthy.  UnsafePath says why not; FileNotFoundError when absent.

    Opened with O_NOFOLLOW (no symlink) and O_NONBLOCK (a FIFO planted in its
    place must not hang mfd); the checks are made on the open file, so the
    name cannot be swapped between check and read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except NotADirectoryError:      # a file where a directory above should be: no cache
        raise FileNotFoundError(errno.ENOENT, "not found", path) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafePath(f"{path} is a symbolic link") from None
        raise UnsafePath(f"{path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"{path} is not a regular file")
        reason = _unsafe_stat(path, st) or untrusted_reason(os.path.dirname(path) or ".",
                                                            leaf_is_dir=True)
        if reason:
            raise UnsafePath(reason)
        if st.st_size > max_bytes:
            raise UnsafePath(f"{path} is larger than {max_bytes} bytes")
        chunks, left = [], max_bytes + 1
        while left > 0:
            data = os.read(fd, min(left, 1 << 16))
            if not data:
                break
            chunks.append(data)
            left -= len(data)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_private(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write a cache file: directories 0755 and the file ``mode`` whatever the
    umask, through a new file renamed into place (readers never see half)."""
    make_dirs(os.path.dirname(os.path.abspath(path)))
    out = AtomicOutput(path, binary=True)
    os.fchmod(out.file.fileno(), mode)
    with out as f:
        f.write(data)


def prepare_database(path: str, follow_symlinks: bool = False) -> Tuple[str, Tuple[int, int], bool]:
    """Check, and create if need be, the file a recording goes to, before
    SQLite opens it (SQLite follows symlinks and opens devices without a word).

    Returns (the path to give SQLite, the identity of the file checked,
    whether mfd created it).  UnsafePath for a symlink (unless followed), a
    directory, a device, a FIFO or a socket."""
    target = output_target(path, follow_symlinks)
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    created = False
    try:
        try:
            # 0644 less the umask: SQLite's own default for a new database
            fd = os.open(target, flags | os.O_CREAT | os.O_EXCL, 0o644)
            created = True
        except FileExistsError:
            fd = os.open(target, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:     # swapped for a symlink since output_target()
            raise UnsafePath(f"{path} is a symbolic link: mfd does not write through one "
                             f"(give the file it points to, or add {FOLLOW_FLAG})") from None
        raise UnsafePath(f"cannot record to {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(f"cannot record to {path}: it is not a regular file")
    return target, file_id(st), created


def open_files() -> dict:
    """This process's open regular files: {fd: (st_dev, st_ino)}."""
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            st = os.stat(int(name))
        except (OSError, ValueError):
            continue
        if stat.S_ISREG(st.st_mode):
            out[int(name)] = file_id(st)
    return out


def check_opened(before: dict, expected: Tuple[int, int], path: str) -> None:
    """After SQLite opened ``path``: every regular file it opened since
    ``before`` is the one checked (fstat identity), so a name swapped between
    the check and SQLite's open() is caught.  UnsafePath when not."""
    now = open_files()
    for fd, ident in now.items():
        if before.get(fd) != ident and ident != expected:
            try:
                name = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                name = "?"
            if name.endswith(("-wal", "-shm", "-journal")):
                continue
            raise UnsafePath(f"cannot record to {path}: the file changed while it was "
                             f"opened (now {name}); is someone replacing it?")


def remove_new(path: str, created: bool, before: Tuple[bool, bool, bool]) -> None:
    """After a failed open: remove the database mfd created and the -wal,
    -shm and -journal files that were not there ``before``."""
    names = [path + s for s in ("-wal", "-shm", "-journal")]
    for name, existed in zip(names, before):
        if not existed:
            try:
                os.unlink(name)
            except OSError:
                pass
    if created:
        try:
            os.unlink(path)
        except OSError:
            pass


def side_files(path: str) -> Tuple[bool, bool, bool]:
    """Which of PATH-wal, PATH-shm, PATH-journal exist."""
    return tuple(os.path.lexists(path + s) for s in ("-wal", "-shm", "-journal"))

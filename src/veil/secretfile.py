"""Writing and reading secret files (keys, tokens, a client's noise encoder, the gallery) without leaking them.

Why a module of its own: a secret written through a fixed temporary name (``key.tmp``) follows a
symlink an attacker planted there, and a key left readable by group or others has already leaked.
So every secret is written through a *unique* temporary file in the destination's folder, opened
with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and mode 0600 from the first byte, fsynced and renamed over
the destination (atomic: a crash leaves the old file or the new one, never half of either). A
secret is read only when its mode grants nothing to group or others, and the refusal says how to
fix it, as ssh does for private keys.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from veil.errors import VeilError

PRIVATE_MODE = 0o600


def write_private(path: str | os.PathLike[str], data: bytes, *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` with mode 0600 through a unique, exclusive, no-follow temporary file.

    With ``overwrite=False`` an existing ``path`` is an error (checked again at the rename by
    ``os.link``, so a file created meanwhile is not clobbered either).
    """
    path = Path(path)
    if path.is_symlink():
        raise VeilError(f"{path} is a symbolic link; refusing to write a secret through it")
    if not overwrite and path.exists():
        raise VeilError(f"{path} already exists; refusing to overwrite it (pass --force to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(16):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, flags, PRIVATE_MODE)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 16 collisions of 64 random bits
        raise VeilError(f"cannot create a temporary file beside {path}")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), PRIVATE_MODE)  # the umask may have narrowed it further, never widened
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if path appeared since the check above
            except FileExistsError:
                raise VeilError(f"{path} already exists; refusing to overwrite it") from None
            os.unlink(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _refuse_if_shared(path: Path, st: os.stat_result, what: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise VeilError(f"{what} {path} is not a regular file")
    if st.st_mode & 0o077:
        raise VeilError(f"{what} {path} has mode {stat.S_IMODE(st.st_mode):04o}: it is accessible by group or "
                        f"others and may have leaked; fix it with `chmod 600 {path}` (and replace the secret if "
                        "others could have read it)")


def check_private(path: str | os.PathLike[str], what: str = "secret file") -> Path:
    """Refuse ``path`` when group or others may read or write it (as ssh refuses such a private key)."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise VeilError(f"{what} not found: {path}") from None
    _refuse_if_shared(path, st, what)
    return path


def read_private(path: str | os.PathLike[str], what: str = "secret file") -> bytes:
    """The bytes of a secret file; the mode is checked on the opened descriptor (no swap between check and read)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise VeilError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise VeilError(f"cannot open {what} {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        _refuse_if_shared(path, os.fstat(fh.fileno()), what)
        return fh.read()

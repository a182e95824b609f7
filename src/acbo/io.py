"""Versioned files: atomic writes and validated reads of plain-dict states (torch.save format)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import stat
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TypeVar

T = TypeVar("T")


ENVELOPE = "acbo-checksummed-1"
"""Marks a state file whose payload (the torch-serialised state) travels with its SHA-256."""


def atomic_save(state: dict, path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` with its checksum, through :func:`atomic_write` (a temporary
    file in the same folder: write, fsync, rename, fsync the folder). A crash at any point leaves
    the old file or the new one, never half of one; a damaged or tampered file is refused by
    :func:`load_state`."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    wrapped = {"envelope": ENVELOPE, "sha256": hashlib.sha256(payload).hexdigest(),
               "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8)}
    atomic_write(path, lambda fh: torch.save(wrapped, fh))


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], crash_at: str | None = None) -> None:
    """Write ``path`` atomically and durably: ``write(fh)`` fills a temporary file in the same
    folder (``.<name>.<random>.tmp``, binary), which is flushed, fsynced, renamed over ``path``,
    and the folder fsynced. A crash at any point leaves the old file or the new one, never half of
    one; on an error the temporary file is removed. The new file keeps the permissions of the one
    it replaces (a new file gets the usual ones, 0o666 less the umask). The folder must exist.
    ``crash_at`` (``"fsync"``, ``"rename"``) raises an OSError just before that step (to test crash
    safety)."""
    path = Path(path)
    mode = stat.S_IMODE(os.stat(path).st_mode) if path.exists() else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            if crash_at == "fsync":
                raise OSError("simulated crash before fsync")
            os.fsync(fh.fileno())
        if crash_at == "rename":
            raise OSError("simulated crash before rename")
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        fsync_folder(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (not every filesystem lets a folder be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _unwrap(state, path) -> dict:
    """The state inside a checksummed envelope (ValueError if the checksum fails); a file written
    before envelopes (no checksum) is returned as it is."""
    import torch

    if not (isinstance(state, dict) and state.get("envelope") == ENVELOPE):
        return state
    payload = state["payload"].numpy().tobytes()
    if hashlib.sha256(payload).hexdigest() != state.get("sha256"):
        raise ValueError(f"{path} is damaged: its checksum does not match its contents (changed after it was written)")
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as e:  # a payload that passed its checksum but was not written by acbo
        raise ValueError(f"{path} is not readable: {_why(e, len(payload), payload[:16])}") from None


def read_raw_state(path: str | os.PathLike) -> dict:
    """The dict saved at ``path`` (its checksum verified), without the kind and version checks of
    :func:`load_state`: for tools that inspect or rewrite state files."""
    import torch

    return _unwrap(torch.load(path, map_location="cpu", weights_only=True), path)


def _unreadable(path: str | os.PathLike, error: Exception) -> str:
    """Why torch could not read ``path``, in our words (never its advice to unpickle arbitrary objects)."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    return _why(error, os.path.getsize(path), head)


def _why(error: Exception, size: int, head: bytes) -> str:
    """Why torch could not read ``size`` bytes starting ``head``, in our words."""
    if size == 0:
        return "the file is empty"
    if not head.startswith(b"PK"):  # torch files are zip archives
        return f"not a torch file ({size} bytes, starting {head!r})"
    if "Weights only load failed" in str(error):
        return "it holds Python objects other than tensors, numbers and strings (acbo never writes those; not unpickled)"
    return f"a damaged or truncated torch file ({size} bytes: {type(error).__name__})"


def load_state(path: str | os.PathLike, kind: str, version: int, what: str, kind_what: str | None = None,
               old: dict[int, str] | None = None) -> dict:
    """Read a state written by :func:`atomic_save`; ValueError naming the problem when the file
    is unreadable ("not a readable <what>"), of another kind ("not an <kind_what>") or of another
    format version (``old``: why a known older version can no longer be read, added to the message)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise ValueError(f"{path} is not a readable {what}: {_unreadable(path, e)}") from None
    state = _unwrap(state, path)
    if not isinstance(state, dict) or state.get("kind") != kind:
        raise ValueError(f"{path} is not an {kind_what or what}")
    if state.get("format_version") != version:
        why = (old or {}).get(state.get("format_version"))
        raise ValueError(f"{path} has format version {state.get('format_version')}; this acbo reads {version}"
                         + (f" ({why})" if why else ""))
    return state


@contextmanager
def packaged_path(name: str, what: str):
    """The path of a file shipped in ``acbo/checkpoints`` (no network access), valid inside the
    ``with`` block; ValueError naming ``what`` if this installation does not ship it."""
    from importlib import resources

    ref = resources.files("acbo.checkpoints").joinpath(name)
    with resources.as_file(ref) as p:
        if not Path(p).exists():
            raise ValueError(f"no pretrained {what} shipped in this installation ({p})")
        yield Path(p)


def load_packaged(name: str, loader, what: str):
    """``loader(path)`` on a file shipped in ``acbo/checkpoints``."""
    with packaged_path(name, what) as p:
        return loader(p)


def cached_loader(load: Callable[[str | None], T]) -> Callable[[str | None], T]:
    """``load(checkpoint)`` (a path as a string, or None for the shipped file) read once per
    process and shared by every caller that names the same checkpoint (the last few kept): methods
    only read the models they are handed, so building a method again costs no second load."""
    return functools.lru_cache(maxsize=4)(load)

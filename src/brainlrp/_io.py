"""Atomic file output: every file is written to a temporary name, then renamed.

A killed process therefore leaves either the old file or the new one, never half of
one. Temporary names are ``.tmp-<final name>-<random>``: readers and resumption skip
them, and :func:`remove_temporaries` clears what a killed writer left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

TMP_PREFIX = ".tmp-"
#: A work folder holds this file, locked while its owner lives (see :func:`work_folder`).
LOCK_NAME = ".lock"
#: A work folder without a lock file (made by an older version, or caught in the moment
#: between its creation and its lock) is stale only once it is this old.
UNLOCKED_STALE_SECONDS = 3600.0


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    Parameters
    ----------
    path : path-like
        The final file name.
    suffix : str, optional
        Suffix for the temporary file (some writers choose the format from it);
        defaults to the full suffix of ``path`` (e.g. ``.nii.gz``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}-",
                               suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes files private (0600); outputs get the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def remove_temporaries(folder: str | os.PathLike) -> int:
    """Delete the temporary files a killed writer left in ``folder``; return how many.

    Call it only where no live process can be writing into ``folder``.
    """
    n = 0
    for stale in Path(folder).glob(TMP_PREFIX + "*"):
        with contextlib.suppress(OSError):
            stale.unlink()
            n += 1
    return n


@contextlib.contextmanager
def work_folder(parent: str | os.PathLike, name: str) -> Iterator[Path]:
    """Yield a private folder ``parent/.tmp-<name>-<random>`` for a multi-file output.

    The folder holds an exclusive ``flock`` on its ``.lock`` file while the ``with`` block
    runs, so :func:`remove_stale_work_folders` can tell a live writer's folder from one a
    killed process left behind (the operating system drops the lock when a process dies,
    even on SIGKILL). Whatever is still in the folder at the end is deleted; move the
    finished files out (e.g. with :func:`publish_files`) or rename the folder (after
    :func:`release_lock_file`) before leaving the block.
    """
    import fcntl

    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{name}-", dir=parent))
    fd = os.open(path / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def release_lock_file(folder: str | os.PathLike) -> None:
    """Remove a work folder's lock file before the folder is renamed into place (the
    lock itself is held until the ``with`` block of :func:`work_folder` ends)."""
    with contextlib.suppress(FileNotFoundError):
        (Path(folder) / LOCK_NAME).unlink()


def remove_stale_work_folders(parent: str | os.PathLike, name: str = "") -> int:
    """Delete the work folders (``.tmp-<name>-*``) of killed processes in ``parent``.

    A folder whose lock can be taken now has no living owner; a folder without a lock
    file counts as stale after :data:`UNLOCKED_STALE_SECONDS`. Returns how many were
    removed. Safe while other processes work: a live owner's folder is never touched.
    """
    import fcntl

    removed = 0
    pattern = f"{TMP_PREFIX}{name}-*" if name else f"{TMP_PREFIX}*"
    for folder in Path(parent).glob(pattern):
        if not folder.is_dir():
            continue
        try:
            fd = os.open(folder / LOCK_NAME, os.O_RDWR)
        except FileNotFoundError:
            with contextlib.suppress(FileNotFoundError):
                if time.time() - folder.stat().st_mtime > UNLOCKED_STALE_SECONDS:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed += 1
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a living process holds it
            os.close(fd)
            continue
        try:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
        finally:
            os.close(fd)
    return removed


def publish_files(folder: str | os.PathLike, target: str | os.PathLike,
                  last: str | None = None) -> list[Path]:
    """Move every file of a work folder into ``target`` (sub-folders kept), each by an
    atomic rename, ``last`` (a relative name) after all others; return the new paths.

    ``target`` may hold other files already; same-named ones are replaced.
    """
    folder, target = Path(folder), Path(target)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != LOCK_NAME)
    files.sort(key=lambda p: p.relative_to(folder).as_posix() == last)
    out = []
    for path in files:
        dest = target / path.relative_to(folder)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        out.append(dest)
    return out


def _unchanged(path: str | os.PathLike, data: bytes) -> bool:
    """Whether ``path`` already holds exactly ``data`` (then it is not rewritten, so a
    re-run that produces the same output leaves the file, and its time, alone)."""
    try:
        p = Path(path)
        return p.stat().st_size == len(data) and p.read_bytes() == data
    except OSError:
        return False


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write text atomically (a file with the same contents is left alone)."""
    if _unchanged(path, text.encode()):
        return
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically (indented, NaN written as null)."""
    write_text(path, json.dumps(_jsonable(data), indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


def write_table(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame as TSV atomically (``.csv`` suffix gives CSV)."""
    sep = "," if str(path).endswith(".csv") else "\t"
    write_text(path, frame.to_csv(sep=sep, index=False, float_format="%.6g"))


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save an array as ``.npy`` atomically."""
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def save_nifti(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray,
               description: str | None = None) -> None:
    """Save a 3D float32 array as NIfTI with ``affine`` (sform and qform), atomically."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(array, dtype=np.float32), np.asarray(affine, float))
    img.header.set_xyzt_units("mm")
    img.set_sform(img.affine, code=4)  # 4 = MNI152
    img.set_qform(img.affine, code=4)
    if description:
        img.header["descrip"] = description[:79].encode()
    with atomic_path(path) as tmp:
        nib.save(img, tmp)


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and paths to plain JSON values; NaN -> None."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, os.PathLike):
        return str(obj)
    return obj

"""The run directory: paths of the contract and the shared ``run.json`` record."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from brainlrp._io import read_json, write_json
from brainlrp.errors import BrainLRPError


class RunDir:
    """Named paths inside a run directory (the contract in docs/architecture.md).

    Parameters
    ----------
    root : path-like
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __fspath__(self) -> str:
        return str(self.root)

    def is_dir(self) -> bool:
        """Whether the run directory exists."""
        return self.root.is_dir()

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    @classmethod
    def existing(cls, root: str | os.PathLike) -> RunDir:
        """The run directory ``root``, which must exist (a clear error otherwise)."""
        path = Path(root)
        if not path.is_dir():
            what = "is not a directory" if path.exists() else "does not exist"
            raise BrainLRPError(f"run directory {path} {what}",
                                "check the path; a run is made by `brainlrp train COHORT "
                                "--out RUN` (or `brainlrp demo`)")
        return cls(path)

    run_json = property(lambda self: self.root / "run.json")
    splits = property(lambda self: self.root / "splits.tsv")
    model_dir = property(lambda self: self.root / "model")
    checkpoint = property(lambda self: self.root / "model" / "best.ckpt")
    card = property(lambda self: self.root / "model" / "card.json")
    predictions = property(lambda self: self.root / "predictions.tsv")
    metrics = property(lambda self: self.root / "metrics.json")
    heatmaps = property(lambda self: self.root / "heatmaps")
    regions = property(lambda self: self.root / "regions")
    means = property(lambda self: self.root / "means")
    analysis = property(lambda self: self.root / "analysis")
    report = property(lambda self: self.root / "report")

    def heatmap(self, method: str, scan_id: str) -> Path:
        """``heatmaps/<method>/<scan_id>.nii.gz``."""
        return self.heatmaps / method / f"{scan_id}.nii.gz"

    def region_table(self, method: str, level: str = "subjects") -> Path:
        """``regions/<method>/<level>.tsv`` (``level``: ``subjects`` or ``groups``)."""
        return self.regions / method / f"{level}.tsv"

    def group_mean(self, method: str, group: str) -> Path:
        """``means/<method>/<group>.nii.gz``."""
        return self.means / method / f"{group}.nii.gz"

    def read_run(self) -> dict:
        """Contents of run.json (empty when absent)."""
        return read_json(self.run_json) if self.run_json.is_file() else {}

    def _update(self, change) -> None:
        """Apply ``change(data)`` to run.json under an exclusive lock (concurrent
        processes, e.g. two ``explain`` job-array tasks, never lose each other's
        updates) and write it atomically."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".run.json.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = self.read_run()
            change(data)
            write_json(self.run_json, data)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def record(self, stage: str, info: dict, merge: bool = False) -> None:
        """Store ``info`` under ``stages[stage]`` in run.json; ``merge`` updates the
        stage's existing entry instead."""
        from brainlrp import __version__

        def change(data: dict) -> None:
            data.setdefault("brainlrp_version", __version__)
            data.setdefault("created", _now())
            data["updated"] = _now()
            data.setdefault("host", {"python": platform.python_version(),
                                     "platform": platform.platform()})
            stages = data.setdefault("stages", {})
            stages[stage] = (stages.get(stage, {}) | info) if merge else info

        self._update(change)

    def set_cohort(self, summary: dict) -> None:
        """Record the cohort this run was made from (``run.json["cohort"]``).

        ``summary["source"]`` is stored as an absolute path, and beside it as
        ``source_relative`` the path relative to the run directory, so the run works
        from any working directory and still finds its cohort after the project
        folder that holds both was moved.
        """
        summary = dict(summary)
        if summary.get("source"):
            source = Path(summary["source"]).expanduser().absolute()
            summary["source"] = str(source)
            summary["source_relative"] = os.path.relpath(source, self.root.absolute())

        self._update(lambda data: data.__setitem__("cohort", summary))

    def cohort_source(self) -> Path | None:
        """The cohort folder or table recorded in run.json, if any.

        The absolute path when it exists, else the one relative to the run
        directory when that exists (a moved project folder), else the absolute one
        (whose absence the reader reports).
        """
        cohort = self.read_run().get("cohort", {}) or {}
        source = cohort.get("source")
        if not source:
            return None
        path = Path(source)
        if not path.is_absolute():  # written by an older brainlrp: relative to where it ran
            path = path.absolute()
        relative = cohort.get("source_relative")
        if not path.exists() and relative and (self.root / relative).exists():
            return (self.root / relative).absolute()
        return path

    def stage_record(self, stage: str) -> dict:
        """``run.json["stages"][stage]`` (empty when the stage never ran)."""
        return (self.read_run().get("stages") or {}).get(stage) or {}

    def require(self, path: Path, what: str, fix: str) -> Path:
        """``path`` if it exists, else a clear error."""
        if not path.exists():
            raise BrainLRPError(f"{what} not found: {path}", fix)
        return path


def inputs_key(files: Iterable[str | os.PathLike], options: Any = None) -> str:
    """A short key of a stage's inputs: each file's path, size and modification time
    (``None`` for a missing one) and the JSON of ``options``.

    A stage stores it in its run.json record; when the key of a new call equals the
    stored one and the outputs exist, the stage is up to date and skips its work. Paths
    count as their real absolute path, so ``run``, ``./run`` and ``/abs/run`` (or a link
    to it) give one key.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(options, sort_keys=True, default=str).encode())
    for file in files:
        try:
            st = os.stat(file)
            stamp = (st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            stamp = None
        digest.update(json.dumps([os.path.realpath(file), stamp]).encode())
    return digest.hexdigest()[:24]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def library_versions() -> dict[str, str]:
    """Versions of the libraries a result depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("brainlrp", "torch", "lightning", "monai", "torchio", "nibabel", "nilearn",
                 "captum", "numpy", "scipy", "pandas", "scikit-learn"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out

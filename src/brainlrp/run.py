"""The run directory: paths of the contract and the shared ``run.json`` record."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path

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
        """Record the cohort this run was made from (``run.json["cohort"]``)."""
        self._update(lambda data: data.__setitem__("cohort", summary))

    def cohort_source(self) -> Path | None:
        """The cohort folder or table recorded in run.json, if any."""
        source = self.read_run().get("cohort", {}).get("source")
        return Path(source) if source else None

    def require(self, path: Path, what: str, fix: str) -> Path:
        """``path`` if it exists, else a clear error."""
        if not path.exists():
            raise BrainLRPError(f"{what} not found: {path}", fix)
        return path


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def library_versions() -> dict[str, str]:
    """Versions of the libraries a result depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("brainlrp", "torch", "lightning", "torchio", "nibabel", "nilearn", "captum",
                 "numpy", "scipy", "pandas", "scikit-learn"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out

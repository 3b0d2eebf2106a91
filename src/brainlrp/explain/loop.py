"""The prediction loop of ``brainlrp explain``: a Lightning module that explains each
batch and writes its heatmaps, and the per-scan claims that let several processes (or
DDP ranks) share one run's work."""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch

from brainlrp._io import save_nifti
from brainlrp.run import RunDir


def written(path: Path, since: int | None) -> bool:
    """Whether a heatmap exists (and, for ``--overwrite``, was written at ``since`` or
    later: older maps stay on disk until their replacement is written)."""
    try:
        return path.stat().st_mtime_ns >= (since or 0)
    except FileNotFoundError:
        return False


class ScanClaims:
    """Advisory per-scan locks, so concurrent ``explain`` processes share the work.

    A process explains a scan only while it holds an exclusive ``flock`` on
    ``heatmaps/.claims/<scan_id>``; the operating system drops the lock when the process
    dies (even on SIGKILL), so a crashed process never blocks a later resume. After the
    lock is taken the outputs are checked again: what another process finished in the
    meantime is skipped.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.held: dict[str, int] = {}

    def acquire(self, scan_id: str) -> bool:
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / scan_id, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self.held[scan_id] = fd
        return True

    def release(self, scan_id: str) -> None:
        import fcntl

        fd = self.held.pop(scan_id, None)
        if fd is None:
            return
        try:
            (self.folder / scan_id).unlink(missing_ok=True)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class HeatmapWriter(pl.LightningModule):
    """Prediction step: explain a batch with every method and write its heatmaps.

    Parameters
    ----------
    model : torch.nn.Module
    methods : list of str
    run : RunDir
        Where the heatmaps go (``run.heatmap(method, scan_id)``).
    affine : numpy.ndarray
        The model grid's affine, written into every heatmap.
    calls : brainlrp.explain.call.MethodCalls
        How each method is called on the run's scans.
    advance : callable, optional
        Called with the number of scans of each finished batch (a progress bar).
    since : int, optional
        With ``--overwrite``: a heatmap counts as done only if written at this time (ns)
        or later.
    """

    def __init__(self, model, methods: list[str], run: RunDir, affine: np.ndarray, calls,
                 advance=None, since: int | None = None):
        super().__init__()
        self.model, self.methods, self.run = model, list(methods), run
        self.affine, self.calls, self.advance, self.since = affine, calls, advance, since
        self.written = 0
        self.claims = ScanClaims(run.heatmaps / ".claims")
        #: method -> [seconds, scans] spent explaining (the benchmark's cost).
        self.timing = {m: [0.0, 0] for m in methods}

    def predict_step(self, batch, batch_idx):
        x, ids = batch
        mine = [i for i, s in enumerate(ids) if self.claims.acquire(s)]
        try:
            with torch.enable_grad():
                for method in self.methods:
                    todo = [i for i in mine
                            if not written(self.run.heatmap(method, ids[i]), self.since)]
                    if todo:
                        self._explain(x, ids, method, todo)
        finally:
            for i in mine:
                self.claims.release(ids[i])
        if self.advance is not None:
            self.advance(len(ids))
        return None

    def _explain(self, x, ids, method: str, todo: list[int]) -> None:
        tick = time.perf_counter()
        heat = self.calls(self.model, x[todo], method, [ids[i] for i in todo])
        heat = heat.detach().float().cpu().numpy()
        self.timing[method][0] += time.perf_counter() - tick
        self.timing[method][1] += len(todo)
        for j, i in enumerate(todo):
            save_nifti(self.run.heatmap(method, ids[i]), heat[j, 0], self.affine,
                       description=f"brainlrp {method} AD relevance")
            self.written += 1


class ArrayDataset(torch.utils.data.Dataset):
    """Preprocessed scans (``.npy`` files) and their ids, read one at a time."""

    def __init__(self, arrays, ids):
        self.arrays, self.ids = [str(a) for a in arrays], list(ids)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        x = np.array(np.load(self.arrays[i], mmap_mode="r"), dtype=np.float32)[None]
        return torch.from_numpy(x), self.ids[i]

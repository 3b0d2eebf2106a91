"""Datasets and augmentation for training: cached arrays in, TorchIO transforms on top.

The paper's augmentation is a random left-right (sagittal) flip and a random
translation of -2..+3 voxels along the left-right axis. The flip is TorchIO's
``RandomFlip``; the integer translation is a TorchIO transform defined here, with a
deterministic core (:class:`Shift`) and a random wrapper (:class:`RandomShift`) so
every random step can be replayed from its record.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torchio as tio
from torch.utils.data import Dataset
from torchio.transforms.augmentation import RandomTransform


class Shift(tio.SpatialTransform):
    """Translate by whole voxels along one axis, filling with zeros (deterministic).

    Parameters
    ----------
    shift : int
        Voxels to move along ``axis`` (positive: towards higher indices).
    axis : int
        Spatial axis (0 = left-right in RAS+ arrays).
    """

    def __init__(self, shift: int, axis: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.shift = int(shift)
        self.axis = int(axis)
        self.args_names = ["shift", "axis"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        for image in self.get_images(subject):
            image.set_data(shift_tensor(image.data, self.shift, self.axis + 1))
        return subject


def shift_tensor(data: torch.Tensor, shift: int, dim: int) -> torch.Tensor:
    """Move ``data`` by ``shift`` entries along ``dim``, zero-filled (not wrapped)."""
    if shift == 0:
        return data
    out = torch.zeros_like(data)
    n = data.shape[dim]
    if abs(shift) >= n:
        return out
    src = [slice(None)] * data.dim()
    dst = [slice(None)] * data.dim()
    if shift > 0:
        src[dim], dst[dim] = slice(0, n - shift), slice(shift, n)
    else:
        src[dim], dst[dim] = slice(-shift, n), slice(0, n + shift)
    out[tuple(dst)] = data[tuple(src)]
    return out


class RandomShift(RandomTransform, tio.SpatialTransform):
    """Random whole-voxel translation drawn uniformly from ``shifts`` (inclusive range).

    Parameters
    ----------
    shifts : tuple of int
        ``(low, high)``, e.g. the paper's ``(-2, 3)``.
    axis : int
        Spatial axis (0 = left-right).
    """

    def __init__(self, shifts: tuple[int, int] = (-2, 3), axis: int = 0, **kwargs):
        super().__init__(**kwargs)
        low, high = (int(s) for s in shifts)
        if low > high:
            raise ValueError(f"shifts must be (low, high) with low <= high, got {shifts}")
        self.shifts = (low, high)
        self.axis = int(axis)

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        shift = int(torch.randint(self.shifts[0], self.shifts[1] + 1, (1,)).item())
        transform = Shift(shift, self.axis, **self._get_base_args())
        return transform(subject)


def paper_augmentation(flip: bool = True, shifts: tuple[int, int] | None = (-2, 3)
                       ) -> tio.Compose | None:
    """The paper's augmentation: random left-right flip and left-right translation."""
    transforms: list[tio.Transform] = []
    if flip:
        transforms.append(tio.RandomFlip(axes=("LR",), flip_probability=0.5))
    if shifts is not None:
        transforms.append(RandomShift(shifts, axis=0))
    return tio.Compose(transforms) if transforms else None


class EpochSampler(torch.utils.data.Sampler):
    """Shuffle from (seed, epoch) alone, sharded over DDP ranks; yields ``(epoch, index)``.

    The order and the per-sample augmentation key depend only on the seed and the epoch
    Lightning sets through :meth:`set_epoch`, never on the global random state, so a run
    resumed from a checkpoint draws what an uninterrupted run draws, on any number of
    processes.

    Parameters
    ----------
    n : int
        Dataset length.
    seed : int
    shuffle : bool
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        self.n, self.seed, self.shuffle = int(n), int(seed), shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _shard(self) -> tuple[int, int]:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def __iter__(self):
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=gen).tolist()
        else:
            order = list(range(self.n))
        rank, world = self._shard()
        if world > 1:
            order += order[: (-len(order)) % world]  # pad so every rank gets as many
            order = order[rank::world]
        return iter([(self.epoch, i) for i in order])

    def __len__(self) -> int:
        rank, world = self._shard()
        return -(-self.n // world)


class ScanDataset(Dataset):
    """Preprocessed scans (cached ``.npy`` arrays) with labels.

    Parameters
    ----------
    arrays : sequence of path-like
        Cached arrays (see :mod:`brainlrp.data.preprocess`).
    labels : sequence of int
    affine : numpy.ndarray
        The grid's affine, so TorchIO knows which axis is left-right.
    transform : callable, optional
        A TorchIO transform applied to each sample.
    seed : int
        With ``(epoch, index)`` keys (see :class:`EpochSampler`), the transform's random
        draws are seeded from ``(seed, epoch, index)``.
    """

    def __init__(self, arrays: Sequence, labels: Sequence[int], affine: np.ndarray,
                 transform: tio.Transform | None = None, seed: int = 0):
        self.arrays = [str(a) for a in arrays]
        self.labels = [int(v) for v in labels]
        self.affine = np.asarray(affine, dtype=float)
        self.transform = transform
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, key) -> tuple[torch.Tensor, int]:
        epoch, i = key if isinstance(key, tuple) else (None, key)
        x = torch.from_numpy(np.array(np.load(self.arrays[i], mmap_mode="r"),
                                      dtype=np.float32))[None]
        if self.transform is not None:
            subject = tio.Subject(image=tio.ScalarImage(tensor=x, affine=self.affine))
            if epoch is None:
                x = self.transform(subject)["image"].data
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed((self.seed * 1_000_003 + epoch) * 100_003 + i)
                    x = self.transform(subject)["image"].data
        return x, self.labels[i]

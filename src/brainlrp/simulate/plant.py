"""Plant known atrophy into a real scan: ground truth on a user's own cohort.

A healthy control's scan on the model grid (registered to MNI space and prepared as
the model sees it) is given the simulator's own disease (:mod:`.subject`, step 3):

1. **Tissue segmentation of the real scan**: grey matter, white matter and CSF
   fractions per voxel from a three-class Gaussian mixture of the scan's intensities
   inside the template brain, with the template's tissue maps (nilearn's ICBM 2009
   GM/WM/CSF) as spatial priors (expectation-maximisation as in ANTs' Atropos with
   prior probabilities, a few iterations on one image).
2. **The disease flow in atlas space**: each atrophied Neuromorphometrics label (the
   atlas on the model grid: the scan is in MNI space) is a source of the same
   integrated potential flow the simulator uses, the CSF next to it (the scan's own
   CSF fraction, ventricles weighted up) a sink that takes up the lost volume.
3. **Partial volume with the scan's own CSF level**: new CSF fills the expanding
   spaces, and atrophied grey matter shows its lost fraction as CSF signal, at the
   intensity of the scan's own CSF class.

The original scan is then the exact healthy twin of the planted one: the same
person, scanner and noise, differing only by the planted disease. The planted voxels
are re-sampled with cubic B-splines, which keep the scan's noise texture where the
flow moves tissue (trilinear sampling would smooth it and leave a trace a model-free
difference map could find), clipped to the original's value range with its minimum
and maximum kept, so that min-max scaling (the default preprocessing) scales the planted
scan exactly as its original. Without that, the splines' undershoot at the brain's edge
(down to -0.11 on a [0, 1] scan) shifted the whole planted brain by a tenth of the range
after scaling and drowned the planted disease.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from brainlrp.data.grid import Grid
from brainlrp.simulate.anatomy import sample, template_anatomy
from brainlrp.simulate.disease import CSF_LABELS
from brainlrp.simulate.subject import (
    RAREFACTION,
    VENTRICLE_SINK_BONUS,
    _disease_field,
    _fluid,
    _partial_volume,
)

#: Iterations of the prior-weighted Gaussian mixture (it converges in a few).
SEGMENTATION_ITERATIONS = 15
#: Tissue classes, in the order of :attr:`Segmentation.means`.
CLASSES = ("csf", "gm", "wm")


@dataclass(frozen=True)
class Segmentation:
    """Tissue fractions of a scan on the template's crop box.

    Attributes
    ----------
    csf, gm, wm : ndarray
        Fractions per voxel (float32), summing to the template brain's foreground.
    means, sds : tuple of float
        Intensity mean and standard deviation of each class (CSF, GM, WM).
    """

    csf: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    means: tuple[float, float, float]
    sds: tuple[float, float, float]

    @property
    def csf_level(self) -> float:
        """The scan's own CSF intensity."""
        return self.means[0]

    @property
    def tissue(self) -> np.ndarray:
        """Brain tissue fraction (GM + WM)."""
        return np.clip(self.gm + self.wm, 0.0, 1.0)


def segment(image: np.ndarray, grid: Grid,
            iterations: int = SEGMENTATION_ITERATIONS) -> Segmentation:
    """GM/WM/CSF fractions of a scan on ``grid`` (see the module docstring, step 1).

    Parameters
    ----------
    image : ndarray
        The scan on the full ``grid`` (any intensity scale; T1 contrast, CSF darkest).
    grid : Grid

    Returns
    -------
    Segmentation
        On the template anatomy's crop box (:attr:`TemplateAnatomy.box`).
    """
    a = template_anatomy(grid)
    img = np.asarray(image, dtype=np.float64)[a.box]
    inside = a.foreground > 0.05
    y = img[inside]
    priors = np.stack([a.csf[inside], a.gm[inside], a.wm[inside]]).astype(np.float64)
    priors = np.maximum(priors, 1e-3)
    priors /= priors.sum(0, keepdims=True)
    post = priors.copy()
    means = sds = None
    for _ in range(int(iterations)):
        weight = post.sum(1)
        means = (post * y).sum(1) / weight
        var = (post * (y - means[:, None]) ** 2).sum(1) / weight
        sds = np.sqrt(np.maximum(var, (1e-3 * (y.max() - y.min() + 1e-12)) ** 2))
        like = np.exp(-0.5 * ((y - means[:, None]) / sds[:, None]) ** 2) / sds[:, None]
        post = priors * like
        post /= np.maximum(post.sum(0, keepdims=True), 1e-300)
    order = np.argsort(means)  # T1: CSF < GM < WM, whatever the priors started from
    post, means, sds = post[order], means[order], sds[order]
    fg = a.foreground[inside].astype(np.float64)
    out = []
    for k in range(3):
        full = np.zeros(a.shape, dtype=np.float32)
        full[inside] = post[k] * fg
        out.append(full)
    return Segmentation(csf=out[0], gm=out[1], wm=out[2],
                        means=tuple(float(m) for m in means),
                        sds=tuple(float(s) for s in sds))


@dataclass(frozen=True)
class PlantedScan:
    """A scan with planted atrophy and its ground truth, on the full grid.

    Attributes
    ----------
    image : ndarray
        The planted scan (float32; the original outside the disease's reach).
    tissue_loss : ndarray
        Fraction of tissue lost per voxel, 0..1 (the original minus the planted scan's
        tissue fractions).
    labels_before, labels_after : ndarray
        The atlas labels (int32) inside the brain, before and after the flow.
    losses : dict
        Label name -> the relative volume loss asked for.
    segmentation : Segmentation
        The original scan's tissue classes (on the crop box).
    """

    image: np.ndarray
    tissue_loss: np.ndarray
    labels_before: np.ndarray
    labels_after: np.ndarray
    losses: dict
    segmentation: Segmentation


def plant_atrophy(image: np.ndarray, grid: Grid, losses: dict[str, float],
                  segmentation: Segmentation | None = None) -> PlantedScan:
    """Plant the relative volume losses ``losses`` into a scan on ``grid``.

    Parameters
    ----------
    image : ndarray
        A healthy scan on the full model grid (registered to MNI space).
    grid : Grid
    losses : dict of str to float
        Neuromorphometrics label name -> relative volume loss (as drawn by
        :meth:`brainlrp.simulate.disease.DiseaseModel.draw`).
    segmentation : Segmentation, optional
        The scan's tissue classes (:func:`segment` when not given).

    Returns
    -------
    PlantedScan
    """
    a = template_anatomy(grid)
    image = np.asarray(image, dtype=np.float32)
    if image.shape != tuple(grid.shape):
        raise ValueError(f"image shape {image.shape} is not the grid's {tuple(grid.shape)}")
    seg = segmentation or segment(image, grid)
    img = image[a.box]
    brain = a.foreground >= 0.5
    labels_b = (a.labels * brain).astype(np.int32)
    tissue_b = (seg.tissue * brain).astype(np.float32)
    full_labels_b = a.paste(labels_b)
    out = image.copy()
    unchanged = PlantedScan(image=out, tissue_loss=np.zeros(grid.shape, np.float32),
                            labels_before=full_labels_b, labels_after=full_labels_b.copy(),
                            losses=dict(losses), segmentation=seg)
    if not any(v > 0 for v in losses.values()):
        return unchanged
    csf_like = np.clip(a.foreground - tissue_b, 0, 1) * brain
    ventricle = np.isin(labels_b, [a.label_index(n) for n in CSF_LABELS])
    csf_like = csf_like + VENTRICLE_SINK_BONUS * ventricle
    identity = np.indices(a.shape, dtype=np.float32)
    field = _disease_field(losses, a, labels_b, csf_like, brain, identity)
    if field is None:
        return unchanged
    points, u, sink, loss = field
    coords = np.stack(points).astype(np.float32)
    at = coords + u[(slice(None),) + points]
    del u, identity
    inside = sample(a.foreground, at) >= 0.5
    new_csf = _fluid(sample(sink, at))
    rarefied = (RAREFACTION * sample(loss, at) * np.clip(sample(seg.gm, at), 0, 1)
                ).astype(np.float32)
    spline = ndi.spline_filter(img.astype(np.float64), order=3, mode="mirror")
    moved = ndi.map_coordinates(spline, at, order=3, mode="mirror", prefilter=False)
    planted = _partial_volume(moved.astype(np.float32), new_csf * inside, rarefied * inside,
                              np.float32(seg.csf_level))
    tissue_a = sample(tissue_b, at) * (1 - new_csf) * (1 - rarefied) * inside
    labels_a = sample(a.labels, at + a.label_dither[(slice(None),) + points], order=0)

    # Cubic resampling over- and undershoots at sharp edges: keep every value inside the
    # original's range, so a scan scaled by its minimum and maximum (min-max) is scaled
    # exactly as its original, and keep the original's extremes where they were.
    lo, hi = float(image.min()), float(image.max())
    crop = img.copy()
    crop[points] = np.clip(planted, lo, hi)
    tissue = tissue_b.copy()
    tissue[points] = tissue_a
    labels = labels_b.copy()
    labels[points] = np.where(inside, labels_a, 0)
    out[a.box] = crop
    for extreme, value in ((np.argmax(image), hi), (np.argmin(image), lo)):
        out.flat[extreme] = value
    loss_map = a.paste(np.clip(tissue_b - tissue, 0.0, 1.0).astype(np.float32))
    return PlantedScan(image=out, tissue_loss=loss_map, labels_before=full_labels_b,
                       labels_after=a.paste(labels.astype(np.int32)), losses=dict(losses),
                       segmentation=seg)

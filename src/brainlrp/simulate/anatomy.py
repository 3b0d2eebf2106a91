"""The template anatomy on the model grid and the deformation machinery.

Everything here is deterministic maths on arrays; randomness lives in
:mod:`brainlrp.simulate.subject`.

* :class:`TemplateAnatomy`: the ICBM 2009c T1 template, its brain foreground,
  the Neuromorphometrics labels and GM/WM/CSF fractions (nilearn's MNI152 2009
  tissue maps), all on one grid and cropped to the brain's box plus a margin.
  Built once per process and grid.
* Displacement fields are *pull-backs* in voxel units: an output voxel ``x``
  shows what the source image holds at ``x + u(x)``. A region shrinks where
  ``det(I + grad u) > 1`` and grows where it is below 1.
* :func:`bspline_field`: smooth random field from a coarse cubic B-spline
  lattice (three small tensor contractions, no full-size interpolation).
* :func:`potential_flow`: the gradient field whose divergence is a given source
  map (an FFT Poisson solve): tissue loss is a positive source, the CSF that
  fills the lost volume a negative one.
* :func:`integrate_flow`: scaling and squaring, so large expansions of small
  CSF spaces stay invertible.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
from scipy import ndimage as ndi

from brainlrp.data.grid import Grid, package_data_dir, template, template_path

#: Margin (mm) around the template brain inside which subjects are simulated.
BOX_MARGIN_MM = 16.0
#: How far (mm) outside the template brain a subject's ageing flow may reach.
NEAR_BRAIN_MM = 8.0


@dataclass
class TemplateAnatomy:
    """Template images on ``grid``, cropped to :attr:`box` (see the module docstring).

    Attributes
    ----------
    grid : Grid
    box : tuple of slice
        Crop of the full grid that holds every simulated brain.
    t1 : ndarray
        Template T1 intensities (float32, 0 outside the brain).
    foreground : ndarray
        Fraction of each voxel inside the template brain (float32).
    labels : ndarray
        Neuromorphometrics label indices (int32, nearest neighbour).
    gm, wm, csf : ndarray
        Tissue fractions (float32; ``csf = foreground - gm - wm``, clipped).
    label_names : dict
        Atlas index -> label name.
    csf_intensity, wm_intensity : float
        Template intensity of pure CSF and of white matter.
    centre : ndarray
        Brain centroid in box voxel coordinates (head-size scaling centre).
    label_dither : ndarray
        Sub-voxel offsets for label sampling (see :func:`dither`).
    near_brain : ndarray
        uint8 mask: the brain dilated by ``NEAR_BRAIN_MM`` (where a subject's
        voxels can land in brain once aged).
    """

    grid: Grid
    box: tuple[slice, slice, slice]
    t1: np.ndarray
    foreground: np.ndarray
    labels: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    label_names: dict[int, str]
    csf_intensity: float
    wm_intensity: float
    centre: np.ndarray
    label_dither: np.ndarray
    near_brain: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the cropped box."""
        return tuple(self.t1.shape)

    @property
    def tissue(self) -> np.ndarray:
        """Brain tissue fraction (GM + WM)."""
        return np.clip(self.gm + self.wm, 0.0, 1.0)

    def label_index(self, name: str) -> int:
        """Atlas index of the label called ``name``."""
        for idx, n in self.label_names.items():
            if n == name:
                return idx
        raise KeyError(name)

    def paste(self, cropped: np.ndarray, dtype=None) -> np.ndarray:
        """Put a box-sized array back onto the full grid (zeros outside the box)."""
        out = np.zeros(self.grid.shape, dtype=dtype or cropped.dtype)
        out[self.box] = cropped
        return out


def _resample(img, grid: Grid, interpolation: str) -> np.ndarray:
    from nilearn.image import resample_img

    with warnings.catch_warnings():  # linear on a binary map is wanted: partial volume
        warnings.simplefilter("ignore", UserWarning)
        out = resample_img(img, target_affine=grid.affine_array, target_shape=grid.shape,
                           interpolation=interpolation, force_resample=True,
                           copy_header=True)
    return np.asarray(out.dataobj)


@functools.lru_cache(maxsize=4)
def template_anatomy(grid: Grid) -> TemplateAnatomy:
    """The template anatomy on ``grid`` (cached per process)."""
    import nibabel as nib

    from brainlrp.atlas import load_atlas, resample_labels

    t1 = np.array(template(grid), dtype=np.float32)
    tpl = nib.load(template_path())
    inside = (np.asarray(tpl.dataobj) > 0).astype(np.float32)
    fg = np.clip(_resample(nib.Nifti1Image(inside, tpl.affine), grid, "linear"), 0, 1)
    fg = fg.astype(np.float32)
    atlas = load_atlas("neuromorphometrics")
    labels = resample_labels(atlas, grid)
    folder = package_data_dir("nilearn") / "datasets" / "data"
    tissue = {}
    for name in ("gm", "wm"):
        img = nib.load(folder / f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz")
        data = np.asarray(img.dataobj, dtype=np.float32)
        data = data / 255.0 if data.max() > 1.5 else data
        tissue[name] = np.clip(_resample(nib.Nifti1Image(data, img.affine), grid, "linear"),
                               0, 1).astype(np.float32) * fg
    gm, wm = tissue["gm"], tissue["wm"]
    over = np.maximum(gm + wm - fg, 0)  # keep gm + wm <= foreground
    scale = np.where(gm + wm > 0, 1 - over / np.maximum(gm + wm, 1e-6), 1).astype(np.float32)
    gm, wm = gm * scale, wm * scale
    csf = np.clip(fg - gm - wm, 0, 1).astype(np.float32)

    idx = np.argwhere(fg > 0)
    margin = int(np.ceil(BOX_MARGIN_MM / grid.resolution))
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + margin + 1, grid.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))

    inside_brain = fg >= 0.5
    pure_csf = inside_brain & (csf > 0.8)
    csf_level = float(np.median(t1[pure_csf])) if pure_csf.sum() > 10 else float(
        np.percentile(t1[inside_brain], 5))
    pure_wm = inside_brain & (wm > 0.9)
    wm_level = float(np.median(t1[pure_wm])) if pure_wm.sum() > 10 else float(
        np.percentile(t1[inside_brain], 95))
    crop = [np.ascontiguousarray(a[box]) for a in (t1, fg, labels, gm, wm, csf)]
    centre = (np.argwhere(crop[1] >= 0.5).mean(0)).astype(np.float64)
    names = dict(zip(atlas.labels["index"].astype(int), atlas.labels["name"], strict=True))
    return TemplateAnatomy(grid=grid, box=box, t1=crop[0], foreground=crop[1],
                           labels=crop[2].astype(np.int32), gm=crop[3], wm=crop[4],
                           csf=crop[5], label_names=names, csf_intensity=csf_level,
                           wm_intensity=wm_level, centre=centre,
                           label_dither=dither(crop[0].shape),
                           near_brain=ndi.binary_dilation(
                               crop[1] > 0, iterations=max(1, int(np.ceil(
                                   NEAR_BRAIN_MM / grid.resolution)))).astype(np.uint8))


# --- smooth random fields -------------------------------------------------------------


def _cubic_bspline(t: np.ndarray) -> np.ndarray:
    t = np.abs(t)
    out = np.zeros_like(t)
    near = t < 1
    far = (t >= 1) & (t < 2)
    out[near] = 2 / 3 - t[near] ** 2 + t[near] ** 3 / 2
    out[far] = (2 - t[far]) ** 3 / 6
    return out


def bspline_basis(n: int, spacing: float) -> np.ndarray:
    """Cubic B-spline basis ``(n, n_control)`` for ``n`` samples at ``spacing`` samples
    per control point; the lattice overhangs both ends so the field has no edge effects."""
    n_ctrl = int(np.ceil((n - 1) / spacing)) + 3
    positions = (np.arange(n_ctrl) - 1) * spacing
    return _cubic_bspline((np.arange(n)[:, None] - positions[None, :]) / spacing)


def bspline_field(shape, spacing: float, sd: float, rng: np.random.Generator,
                  n_components: int = 3) -> np.ndarray:
    """Smooth random field ``(n_components, *shape)`` from a coarse cubic B-spline lattice.

    Parameters
    ----------
    shape : tuple of int
    spacing : float
        Control-point spacing in voxels.
    sd : float
        Standard deviation of the lattice coefficients (voxels).
    rng : numpy.random.Generator
    """
    bases = [bspline_basis(n, spacing) for n in shape]
    coeffs = rng.standard_normal((n_components,) + tuple(b.shape[1] for b in bases)) * sd
    return np.stack([separable_expand(c, bases) for c in coeffs])


def separable_expand(coeffs: np.ndarray, bases) -> np.ndarray:
    """``sum_abc coeffs[a, b, c] * bx[i, a] * by[j, b] * bz[k, c]`` as three matrix
    products (float32 ``(x, y, z)``)."""
    bx, by, bz = bases
    f = np.einsum("abc,kc->abk", coeffs, bz)         # (cx, cy, z)
    f = np.einsum("abk,jb->ajk", f, by)              # (cx, y, z)
    out = bx @ f.reshape(f.shape[0], -1)             # (x, y * z)
    return out.reshape(bx.shape[0], by.shape[0], bz.shape[0]).astype(np.float32)


def linear_basis(n_out: int, n_in: int) -> np.ndarray:
    """Matrix ``(n_out, n_in)`` of linear interpolation from ``n_in`` samples spread
    over the same extent as ``n_out`` (pixel centres aligned as in ``grid_mode``)."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    return _interpolation_matrix(pos, n_in)


def point_basis(n_out: int, n_in: int, step: int) -> np.ndarray:
    """Matrix ``(n_out, n_in)`` of linear interpolation from samples taken every
    ``step`` voxels (``x[::step]``) back to every voxel."""
    return _interpolation_matrix(np.minimum(np.arange(n_out) / step, n_in - 1), n_in)


def _interpolation_matrix(pos: np.ndarray, n_in: int) -> np.ndarray:
    """Rows of linear-interpolation weights at positions ``pos`` in ``[0, n_in - 1]``."""
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    out = np.zeros((len(pos), n_in))
    out[np.arange(len(pos)), lo] += 1 - frac
    out[np.arange(len(pos)), hi] += frac
    return out


# --- flows from sources ---------------------------------------------------------------


def potential_flow(source: np.ndarray, sigma: float = 1.0, pad: int = 4) -> np.ndarray:
    """The curl-free field ``u = grad(phi)`` with ``div u = G_sigma * source``.

    Solved with FFTs on a zero-padded box. A positive source spreads material
    apart (in pull-back terms: the region shrinks), a negative one draws it in.

    Parameters
    ----------
    source : ndarray (x, y, z)
        Divergence per voxel.
    sigma : float
        Gaussian smoothing of the source (voxels), so region edges are not blocky.
    pad : int
        Zero padding (voxels) against wrap-around.

    Returns
    -------
    ndarray (3, x, y, z) float32
    """
    shape = source.shape
    full = [sfft.next_fast_len(n + 2 * pad, real=True) for n in shape]
    spec = sfft.rfftn(source.astype(np.float32), s=full, workers=1)
    kx = 2 * np.pi * sfft.fftfreq(full[0]).astype(np.float32)[:, None, None]
    ky = 2 * np.pi * sfft.fftfreq(full[1]).astype(np.float32)[None, :, None]
    kz = 2 * np.pi * sfft.rfftfreq(full[2]).astype(np.float32)[None, None, :]
    k2 = kx * kx + ky * ky + kz * kz
    k2[0, 0, 0] = 1.0
    common = spec * (np.exp(-0.5 * sigma * sigma * k2) / k2)
    common[0, 0, 0] = 0.0
    out = np.empty((3,) + shape, dtype=np.float32)
    for i, k in enumerate((kx, ky, kz)):
        comp = sfft.irfftn(-1j * k * common, s=full, workers=1)
        out[i] = comp[: shape[0], : shape[1], : shape[2]]
    return out


def sample(image: np.ndarray, coords: np.ndarray, order: int = 1,
           cval: float = 0.0) -> np.ndarray:
    """Values of ``image`` at voxel coordinates ``coords`` (3, ...): trilinear
    (``order=1``) or nearest neighbour (``order=0``); ``cval`` outside."""
    return ndi.map_coordinates(image, coords.reshape(3, -1), order=order, mode="constant",
                               cval=cval, prefilter=False).reshape(coords.shape[1:])


def integrate_flow(velocity: np.ndarray, points: tuple[np.ndarray, ...] | None = None,
                   steps: int = 4) -> np.ndarray:
    """Displacement of the flow of a stationary ``velocity`` field (scaling and squaring).

    ``u <- v / 2**steps``, then ``steps`` times ``u(x) <- u(x) + u(x + u(x))``.

    Parameters
    ----------
    velocity : ndarray (3, x, y, z)
    points : tuple of index arrays, optional
        Where the velocity may be non-zero (e.g. ``np.nonzero(window)``); the work
        is done there only and the displacement is zero elsewhere.
    steps : int

    Returns
    -------
    ndarray (3, x, y, z) float32
    """
    if points is None:
        points = tuple(np.indices(velocity.shape[1:]).reshape(3, -1))
    coords = np.stack(points).astype(np.float32)
    u_pts = velocity[(slice(None),) + points] / np.float32(2 ** steps)
    dense = np.zeros(velocity.shape, dtype=np.float32)
    for _ in range(steps):
        dense[(slice(None),) + points] = u_pts
        at = coords + u_pts
        u_pts = u_pts + np.stack([ndi.map_coordinates(dense[i], at, order=1, mode="nearest",
                                                      prefilter=False) for i in range(3)])
    dense[(slice(None),) + points] = u_pts
    return dense


def jacobian_det(u: np.ndarray) -> np.ndarray:
    """``det(I + grad u)`` per voxel (central differences), float32."""
    g = [np.gradient(u[i]) for i in range(3)]  # g[i][j] = d u_i / d x_j
    a, b, c = 1 + g[0][0], g[0][1], g[0][2]
    d, e, f = g[1][0], 1 + g[1][1], g[1][2]
    gg, h, k = g[2][0], g[2][1], 1 + g[2][2]
    return (a * (e * k - f * h) - b * (d * k - f * gg) + c * (d * h - e * gg)).astype(
        np.float32)


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """Slices of the box around ``mask`` plus ``margin`` voxels (``None`` if empty)."""
    idx = np.argwhere(mask)
    if len(idx) == 0:
        return None
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + margin + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def soft_label_volumes(labels: np.ndarray, coords: np.ndarray, n_bins: int) -> np.ndarray:
    """Partial-volume size of every label after resampling ``labels`` at ``coords``.

    The sum over output voxels of each label's trilinearly interpolated indicator:
    unlike a nearest-neighbour count it follows sub-voxel boundary shifts.

    Parameters
    ----------
    labels : int ndarray (x, y, z)
    coords : ndarray (3, ...)
        Voxel coordinates into ``labels``; outside counts as label 0.
    n_bins : int
        Result length (largest label + 1).
    """
    pts = coords.reshape(3, -1)
    # one voxel of zero padding: corners outside the array read label 0
    padded = np.pad(labels, 1)
    base = np.floor(pts).astype(np.int64)
    frac = (pts - base).astype(np.float32)
    base += 1
    hi = np.array(padded.shape)[:, None] - 2
    inside = np.all((base >= 0) & (base <= hi), axis=0)
    base = np.clip(base, 0, hi)
    flat = np.ravel_multi_index(tuple(base), padded.shape)
    strides = [padded.shape[1] * padded.shape[2], padded.shape[2], 1]
    lab_flat = padded.ravel()
    out = np.zeros(n_bins, dtype=np.float64)
    for corner in range(8):
        bits = ((corner >> 2) & 1, (corner >> 1) & 1, corner & 1)
        offset = sum(b * s for b, s in zip(bits, strides, strict=True))
        weight = np.ones(pts.shape[1], dtype=np.float32)
        for axis, bit in enumerate(bits):
            weight *= frac[axis] if bit else 1 - frac[axis]
        lab = np.where(inside, lab_flat[flat + offset], 0)
        out += np.bincount(lab, weights=weight, minlength=n_bins)[:n_bins]
    return out


def dither(shape, seed: int = 0) -> np.ndarray:
    """Fixed sub-voxel offsets in [-0.5, 0.5) (3, *shape) for nearest-neighbour label
    sampling: with them a label's expected voxel count equals its partial volume, so
    counts follow sub-voxel shrinkage instead of snapping to the grid."""
    rng = np.random.default_rng([int(seed), 0xD1])
    return (rng.random((3,) + tuple(shape), dtype=np.float32) - 0.5).astype(np.float32)

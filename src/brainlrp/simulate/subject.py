"""One simulated subject: draw its parameters, then render its images.

:func:`draw_subject` turns ``(seed, index, diagnosis)`` into a :class:`SubjectSpec`
(every random choice, recorded); :func:`render_subject` turns a spec into arrays.
Rendering is deterministic given the spec, so a subject can be re-rendered
without disease (``spec.without_disease()``) to see exactly what the disease did.

The image is built in four steps, all as one pull-back from the subject's grid
into the template, so the template is interpolated once:

1. anatomy: a smooth random displacement (B-spline, a few mm) plus head-size
   scaling about the brain centre;
2. ageing (everyone): grey matter loses ``AGE_RATE`` of its volume per year after
   ``AGE_REFERENCE``; the volume goes to the ventricles (``VENTRICLE_SHARE``) and
   the sulcal CSF; a potential flow realises it;
3. disease (AD): each atrophied label loses its drawn fraction of volume (a
   positive source of an integrated flow); CSF near it (temporal horn, sulci,
   cisterns) takes up the lost volume (a negative source);
4. partial volume: the CSF spaces that take up volume fill with fluid signal in
   proportion to how much they expand, and atrophied grey matter shows
   ``RAREFACTION`` times its lost fraction as CSF-like signal (T1 grey matter
   darkens); tissue the flows merely move or stretch keeps its signal.

The ground truth compares the subject with and without step 3: the tissue fraction
lost per voxel, and label volumes from the warped atlas before and after.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage as ndi
from scipy.stats import truncnorm

from brainlrp.simulate.anatomy import (
    TemplateAnatomy,
    bspline_field,
    integrate_flow,
    point_basis,
    potential_flow,
    sample,
    separable_expand,
    soft_label_volumes,
)
from brainlrp.simulate.disease import CSF_LABELS, DiseaseModel

#: Age distributions (mean, sd, low, high) per diagnosis; they overlap on purpose.
AGE = {"HC": (72.0, 6.0, 60.0, 85.0), "AD": (75.0, 7.0, 60.0, 90.0)}
#: Head size: log-normal isotropic scale with this sd, males larger by this factor.
HEAD_SCALE_SD = 0.02
SEX_SCALE = 1.02
#: Anatomical variation: B-spline control spacing and coefficient sd (mm).
ANATOMY_SPACING_MM = 24.0
ANATOMY_SD_MM = 2.5
#: Ageing: grey-matter volume lost per year after the reference age.
AGE_REFERENCE = 55.0
AGE_RATE = 0.0025
#: Share of the ageing loss that enlarges the ventricles (the rest widens sulci).
VENTRICLE_SHARE = 0.15
#: Fraction of lost grey matter that shows as CSF-like signal in what remains.
RAREFACTION = 1.0
#: Reach (mm) of the CSF that takes up a region's lost volume, and of the taper
#: that confines the disease deformation around the atrophied regions.
SINK_SIGMA_MM = 3.0
WINDOW_MM = 4.0
#: A one-sided model's deformation fades out over this distance before the midline.
MIDLINE_MM = 4.0
#: Extra sink weight of labelled CSF spaces (ventricles, temporal horn), so the
#: volume a region loses goes mostly into the ventricle next to it.
VENTRICLE_SINK_BONUS = 10.0
#: Largest expansion of one CSF voxel (factor) and the largest new-CSF fraction.
MAX_EXPANSION = 6.0
MAX_NEW_CSF = 0.95
#: Exponent of the one-step source correction (neighbouring regions and their CSF
#: sinks interact, so the full ratio overshoots).
CALIBRATION_DAMPING = 0.75
VENTRICLES = ("Left_Lateral_Ventricle", "Right_Lateral_Ventricle", "Left_Inf_Lat_Vent",
              "Right_Inf_Lat_Vent", "3rd_Ventricle", "4th_Ventricle")


@dataclass(frozen=True)
class SubjectSpec:
    """Every random choice of one subject (recorded in its sidecar JSON)."""

    index: int
    participant_id: str
    diagnosis: str
    age: float
    sex: str
    head_scale: float
    subtype: str
    severity: float
    losses: dict[str, float] = field(default_factory=dict)
    anatomy_seed: int = 0
    scanner_seed: int = 0

    def without_disease(self) -> SubjectSpec:
        """The same person, same scan, without the disease."""
        return replace(self, losses={}, severity=0.0, subtype="none")

    def to_json(self) -> dict:
        """JSON-friendly record."""
        return {"participant_id": self.participant_id, "index": self.index,
                "diagnosis": self.diagnosis, "age": self.age, "sex": self.sex,
                "head_scale": round(self.head_scale, 6), "subtype": self.subtype,
                "severity": round(self.severity, 6),
                "label_losses": {k: round(v, 6) for k, v in self.losses.items()},
                "anatomy_seed": self.anatomy_seed, "scanner_seed": self.scanner_seed}


def subject_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of subject ``index`` in the cohort of ``seed``."""
    return np.random.default_rng([int(seed), int(index), 0x5EED])


def draw_subject(seed: int, index: int, participant_id: str, diagnosis: str,
                 model: DiseaseModel) -> SubjectSpec:
    """Draw a subject's demographics, anatomy, disease and scanner seeds.

    The draws happen in a fixed order whatever the diagnosis, so the subject's
    anatomy and scanner do not depend on the diagnosis or the disease model.
    """
    rng = subject_rng(seed, index)
    u_age, u_sex = rng.random(2)
    z_head = float(rng.standard_normal())
    anatomy_seed = int(rng.integers(2 ** 62))
    scanner_seed = int(rng.integers(2 ** 62))
    subtype, severity, losses = model.draw(np.random.default_rng([int(seed), int(index),
                                                                  0xAD]))
    mean, sd, lo, hi = AGE[diagnosis]
    age = float(truncnorm.ppf(u_age, (lo - mean) / sd, (hi - mean) / sd, loc=mean, scale=sd))
    sex = "F" if u_sex < 0.5 else "M"
    head = math.exp(HEAD_SCALE_SD * z_head) * (SEX_SCALE if sex == "M" else 1 / SEX_SCALE)
    spec = SubjectSpec(index=index, participant_id=participant_id, diagnosis=diagnosis,
                       age=round(age, 1), sex=sex, head_scale=float(np.clip(head, 0.88, 1.12)),
                       subtype=subtype, severity=severity, losses=losses,
                       anatomy_seed=anatomy_seed, scanner_seed=scanner_seed)
    return spec if diagnosis == "AD" else spec.without_disease()


@dataclass
class SubjectImages:
    """Rendered arrays of one subject on the cropped box (see :class:`TemplateAnatomy`).

    ``t1`` is before scanner effects; ``brain`` is the subject's brain mask.
    ``*_before`` are the same subject without the disease (``t1_before`` and
    ``brain_before`` only when asked for: the healthy twin).
    """

    t1: np.ndarray
    brain: np.ndarray
    labels: np.ndarray
    labels_before: np.ndarray
    tissue: np.ndarray
    tissue_before: np.ndarray
    t1_before: np.ndarray | None = None
    brain_before: np.ndarray | None = None

    @property
    def tissue_loss(self) -> np.ndarray:
        """Fraction of tissue lost per voxel, 0..1 (float32)."""
        return np.clip(self.tissue_before - self.tissue, 0.0, 1.0).astype(np.float32)


def _mm(anatomy: TemplateAnatomy, mm: float) -> float:
    return mm / anatomy.grid.resolution


def _partial_volume(intensity, new_csf, rarefied, csf_level):
    """Mix in CSF signal: ``new_csf`` of the voxel is new fluid, ``rarefied`` of the
    remaining tissue signal turns CSF-like."""
    keep = (1 - new_csf) * (1 - rarefied)
    return intensity * keep + csf_level * (1 - keep)


def _fluid(sink: np.ndarray) -> np.ndarray:
    """Fraction of a voxel that is new CSF when a sink of divergence ``-sink`` expands
    it by ``exp(sink)`` (only sinks fill with fluid; tissue the flow merely stretches
    or moves keeps its signal)."""
    return np.minimum(-np.expm1(-np.maximum(sink, 0)), MAX_NEW_CSF).astype(np.float32)


def _labels_at(a: TemplateAnatomy, coords: np.ndarray, where=None) -> np.ndarray:
    """Atlas labels at ``coords``: nearest neighbour after the fixed sub-voxel dither
    (``where`` selects the dither of a part of the box)."""
    d = a.label_dither if where is None else a.label_dither[(slice(None),) + tuple(where)]
    return sample(a.labels, coords + d, order=0).astype(np.int32)


def _anatomy_field(spec: SubjectSpec, a: TemplateAnatomy, grid: np.ndarray) -> np.ndarray:
    """Pull-back displacement from the subject's grid into the template (voxels)."""
    rng = np.random.default_rng(spec.anatomy_seed)
    spacing = max(_mm(a, ANATOMY_SPACING_MM), 2.0)
    u = bspline_field(a.shape, spacing, _mm(a, ANATOMY_SD_MM), rng)
    centre = a.centre.reshape(3, 1, 1, 1).astype(np.float32)
    u += (grid - centre) * np.float32(1 / spec.head_scale - 1)
    return u


def _ageing_field(spec: SubjectSpec, a: TemplateAnatomy,
                  p_anat: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Grey matter loses ``AGE_RATE`` per year; ventricles and sulci take up the volume.

    The source is built from every second voxel (the flow is smooth, and this
    saves most of the interpolation), brought back to full resolution by linear
    interpolation and solved on the full grid.

    Returns
    -------
    (displacement, sink, loss): the flow (3, *box), the sink strength per voxel
    (the CSF it creates, see :func:`_fluid`) and grey matter's relative loss.
    """
    half = p_anat[:, ::2, ::2, ::2]
    gm = sample(a.gm, half)
    csf = sample(a.csf, half)
    vent = np.isin(_labels_at(a, half, (slice(None, None, 2),) * 3),
                   [a.label_index(n) for n in VENTRICLES])
    loss = AGE_RATE * max(spec.age - AGE_REFERENCE, 0.0)
    source = np.float32(-math.log(1 - loss)) * gm
    total = float(source.sum())
    sink = np.zeros_like(source)
    for weight, share in ((vent * np.maximum(csf, 0.5), VENTRICLE_SHARE),
                          (csf * ~vent, 1 - VENTRICLE_SHARE)):
        if weight.sum() > 0:
            sink += weight * np.float32(share * total / weight.sum())
    bases = [point_basis(n, h, 2) for n, h in zip(a.shape, source.shape, strict=True)]
    source = separable_expand((source - sink).astype(np.float64), bases)
    sink = separable_expand(sink.astype(np.float64), bases)
    return potential_flow(source, sigma=max(_mm(a, 2.0), 0.75)), sink, loss


def _disease_field(losses: dict[str, float], a: TemplateAnatomy, labels: np.ndarray,
                   csf_like: np.ndarray, brain: np.ndarray, p_before: np.ndarray):
    """The disease's pull-back displacement around the atrophied regions.

    Each atrophied label is a source ``-log(1 - loss)`` of a potential flow (so the
    integrated flow shrinks it by ``loss``); CSF within ``SINK_SIGMA_MM`` of it is a
    sink that takes up the same volume. The flow is tapered to zero a few mm
    around sources and sinks, so nothing else moves. One damped correction step
    rescales each label's source by target / achieved loss, the loss measured as
    the expected label count (partial volume of the template labels, see
    :func:`_labels_at`).

    Returns
    -------
    (points, displacement, sink, loss) or None when nothing is atrophied:
    ``points`` are the index arrays where the displacement may be non-zero,
    ``displacement`` the dense (3, *box) field, ``sink`` the CSF each voxel takes
    up (see :func:`_fluid`) and ``loss`` the smoothed relative loss per voxel
    (both on the subject without disease).
    """
    n_bins = int(max(a.label_names)) + 1
    target = np.zeros(n_bins, dtype=np.float64)
    for name, value in losses.items():
        target[a.label_index(name)] = value
    loss_map = target[labels].astype(np.float32)
    if not loss_map.any():
        return None
    side = _hemisphere_taper(a, losses)
    sink = _sinks(target, labels, csf_like * brain * (loss_map == 0) * side,
                  max(_mm(a, SINK_SIGMA_MM), 0.5))
    support = ((loss_map > 0) | (sink > 0)).astype(np.float32)
    window = np.clip(ndi.gaussian_filter(support, max(_mm(a, WINDOW_MM) / 2, 0.5),
                                         truncate=2.0) / 0.2, 0, 1).astype(np.float32)
    window *= side
    points = np.nonzero(window > 0)
    coords = np.stack(points).astype(np.float32)
    p_points = p_before[(slice(None),) + points]
    smooth = max(_mm(a, 1.0), 0.5)
    gain = np.ones(n_bins, dtype=np.float64)
    for step in range(2):
        effective = np.minimum(target * gain, 0.85)[labels].astype(np.float32)
        source = -np.log1p(-effective) - sink
        velocity = potential_flow(source, sigma=smooth)
        velocity *= window
        u = integrate_flow(velocity, points, steps=3)
        if step == 1:
            break
        at = coords + u[(slice(None),) + points]
        p_after = np.stack([sample(p_before[i], at) for i in range(3)])
        before = soft_label_volumes(a.labels, p_points, n_bins)
        after = soft_label_volumes(a.labels, p_after, n_bins)
        hit = target > 0
        achieved = 1 - after[hit] / np.maximum(before[hit], 1e-6)
        ratio = target[hit] / np.maximum(achieved, 1e-3)
        gain[hit] = np.clip(ratio ** CALIBRATION_DAMPING, 0.5, 2.5)
    return points, u, sink, ndi.gaussian_filter(loss_map, 0.5, truncate=2.0)


def _hemisphere_taper(a: TemplateAnatomy, losses: dict[str, float]) -> np.ndarray:
    """1 everywhere, unless every atrophied label lies in one hemisphere: then 1 in
    that hemisphere, falling to 0 over ``MIDLINE_MM`` before the midline (x = 0), as
    the falx keeps one hemisphere's atrophy from moving the other."""
    sides = {"left" if n.startswith("Left_") else "right" if n.startswith("Right_")
             else "both" for n in losses}
    out = np.ones((a.shape[0], 1, 1), dtype=np.float32)
    if len(sides) != 1 or "both" in sides:
        return out
    aff = a.grid.affine_array
    x = aff[0, 0] * (np.arange(a.shape[0]) + a.box[0].start) + aff[0, 3]
    toward = -x if sides == {"left"} else x
    out[:, 0, 0] = np.clip(toward / MIDLINE_MM, 0, 1)
    return out


def render_subject(spec: SubjectSpec, anatomy: TemplateAnatomy,
                   keep_before: bool = False) -> SubjectImages:
    """Render a subject (see the module docstring); deterministic given ``spec``.

    Parameters
    ----------
    spec : SubjectSpec
    anatomy : TemplateAnatomy
    keep_before : bool
        Also return the T1 and brain mask without the disease (``t1_before``,
        ``brain_before``): exactly what rendering ``spec.without_disease()`` gives.
    """
    a = anatomy
    grid = np.indices(a.shape, dtype=np.float32)

    u_anat = _anatomy_field(spec, a, grid)
    p_anat = grid + u_anat
    u_age, sink_age, age_loss = _ageing_field(spec, a, p_anat)
    # Only voxels that land near the template brain can hold brain: sample there.
    roi = np.nonzero(sample(a.near_brain, p_anat, order=0))
    sel = (slice(None),) + roi
    at = grid[sel] + u_age[sel]
    p_before = p_anat  # outside the roi the ageing flow does not matter
    p_before[sel] = np.stack([sample(u_anat[i], at) for i in range(3)]) + at
    del u_anat, u_age, at

    def fill(values, dtype=np.float32):
        out = np.zeros(a.shape, dtype=dtype)
        out[roi] = values
        return out

    p_roi = p_before[sel]
    fg_b = fill(sample(a.foreground, p_roi))
    brain_b = fg_b >= 0.5
    # Ageing: new CSF where the ventricles and sulci took up volume; the remaining
    # grey matter shows its lost fraction as CSF signal.
    new_age = _fluid(sink_age[roi])
    rare_age = (RAREFACTION * age_loss * np.clip(sample(a.gm, p_roi), 0, 1)).astype(
        np.float32)
    t1_b = fill(_partial_volume(sample(a.t1, p_roi), new_age, rare_age, a.csf_intensity))
    t1_b *= brain_b
    tissue_b = fill(sample(a.tissue, p_roi) * (1 - new_age) * (1 - rare_age)) * brain_b
    labels_b = fill(_labels_at(a, p_roi, roi), np.int32) * brain_b
    new_age, rare_age = fill(new_age), fill(rare_age)
    images = SubjectImages(t1=t1_b, brain=brain_b, labels=labels_b, labels_before=labels_b,
                           tissue=tissue_b, tissue_before=tissue_b,
                           t1_before=t1_b if keep_before else None,
                           brain_before=brain_b if keep_before else None)
    if not spec.losses:
        return images

    csf_like = np.clip(fg_b - tissue_b, 0, 1)
    ventricle = np.isin(labels_b, [a.label_index(n) for n in CSF_LABELS])
    csf_like = csf_like + VENTRICLE_SINK_BONUS * ventricle
    field = _disease_field(spec.losses, a, labels_b, csf_like, brain_b, p_before)
    if field is None:
        return images
    points, u_dis, sink, loss = field
    # Voxel x of the patient shows the healthy subject's content at x + u(x).
    at = np.stack(points).astype(np.float32) + u_dis[(slice(None),) + points]
    del u_dis
    p_after = np.stack([sample(p_before[i], at) for i in range(3)])
    brain_a = sample(a.foreground, p_after) >= 0.5
    new_dis = _fluid(sample(sink, at))
    rare_dis = (RAREFACTION * sample(loss, at) * np.clip(sample(a.gm, p_after), 0, 1)
                ).astype(np.float32)
    new_a, rare_a = sample(new_age, at), sample(rare_age, at)
    t1_a = _partial_volume(sample(a.t1, p_after), new_a, rare_a, a.csf_intensity)
    t1_a = _partial_volume(t1_a, new_dis, rare_dis, a.csf_intensity)
    tissue_a = (sample(a.tissue, p_after) * (1 - new_a) * (1 - rare_a)
                * (1 - new_dis) * (1 - rare_dis))
    labels_a = sample(a.labels, p_after + a.label_dither[(slice(None),) + points], order=0)

    t1, brain, labels, tissue = t1_b.copy(), brain_b.copy(), labels_b.copy(), tissue_b.copy()
    t1[points] = t1_a * brain_a
    brain[points] = brain_a
    labels[points] = np.where(brain_a, labels_a, 0)
    tissue[points] = tissue_a * brain_a
    return SubjectImages(t1=t1, brain=brain, labels=labels, labels_before=labels_b,
                         tissue=tissue, tissue_before=tissue_b,
                         t1_before=t1_b if keep_before else None,
                         brain_before=brain_b if keep_before else None)


def _sinks(target: np.ndarray, labels: np.ndarray, capacity: np.ndarray,
           sigma: float) -> np.ndarray:
    """Divergence of the CSF that takes up each label's lost volume.

    Label ``k`` loses ``target[k]`` of its voxels; that volume is shared among
    the voxels near it (a Gaussian of ``sigma`` voxels, cut at 2 sigma) in
    proportion to their ``capacity`` (CSF fraction, ventricles weighted up). A
    voxel that gains ``g`` voxels of fluid expands by ``1 + g`` (capped at
    ``MAX_EXPANSION``), a divergence of ``-log(1 + g)``.
    """
    gain = np.zeros(labels.shape, dtype=np.float32)
    reach = int(np.ceil(2 * sigma)) + 1
    hit = np.flatnonzero(target > 0)
    objects = ndi.find_objects(np.where(np.isin(labels, hit), labels, 0))
    for k in hit:
        if k > len(objects) or objects[k - 1] is None:
            continue
        box = tuple(slice(max(sl.start - reach, 0), min(sl.stop + reach, n))
                    for sl, n in zip(objects[k - 1], labels.shape, strict=True))
        mask = labels[box] == k
        near = ndi.gaussian_filter(mask.astype(np.float32), sigma, truncate=2.0)
        weight = near * capacity[box]
        total = float(weight.sum())
        if total > 0:
            gain[box] += weight * np.float32(target[k] * mask.sum() / total)
    return np.log1p(np.minimum(gain, MAX_EXPANSION - 1)).astype(np.float32)

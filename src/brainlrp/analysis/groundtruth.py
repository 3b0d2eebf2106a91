"""Ground truth: how well heatmaps recover the atrophy a simulated cohort really has.

A simulated cohort holds, per subject, ``derivatives/ground_truth/`` files (see
:func:`ground_truth_files`): a map of the fraction of tissue lost per voxel and a
table of the volume lost per Neuromorphometrics label. "Truly atrophied voxels"
are those that lost more than ``threshold`` (default 5 %) of their tissue.

Per AD scan and method:

* ``mass_accuracy``: share of the positive relevance inside the atrophied voxels
  (chance: ``atrophied_fraction``, the share of brain voxels that are atrophied);
* ``auc``: voxel ROC AUC of the relevance against the atrophy mask, over the
  template brain mask (outside the brain both are 0, which would inflate it);
* ``spearman_regions``: Spearman correlation, over the merged areas, of relevance
  density with the true relative volume loss;
* ``topk_recall``: share of the ``k`` areas that lost most volume found among the
  ``k`` areas of highest relevance density.

At group level, the ``k`` areas of largest AD gain are compared with the disease
model's ``k`` areas of largest mean true relative loss over the AD subjects
(``group_topk_overlap`` = shared areas / the disease model's areas, which is ``k``
unless fewer than ``k`` areas lose volume).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from brainlrp.analysis import metrics
from brainlrp.analysis.regions import AtlasRegions, MethodRegions, read_volume
from brainlrp.configs import DEFAULT_THRESHOLD
from brainlrp.data.grid import Grid, brain_mask
from brainlrp.errors import BrainLRPError

GROUND_TRUTH_DIR = Path("derivatives") / "ground_truth"

#: Columns of ``analysis/ground_truth.tsv`` (one row per method and AD scan).
GROUND_TRUTH_COLUMNS = ("method", "participant_id", "scan_id", "outcome", "n_atrophied_voxels",
                        "atrophied_fraction", "mass_accuracy", "auc", "auc_abs",
                        "spearman_regions", "topk_recall", "k")
#: Columns of ``analysis/ground_truth_summary.tsv`` (one row per method).
GROUND_TRUTH_SUMMARY_COLUMNS = (
    "method", "relevance", "n_subjects", "mass_accuracy_mean", "mass_accuracy_sd",
    "chance_mass_accuracy", "auc_mean", "auc_sd", "auc_abs_mean", "spearman_regions_mean",
    "topk_recall_mean",
    "group_topk_shared", "group_topk_overlap", "group_topk_areas", "disease_topk_areas", "k")


def ground_truth_dir(cohort_root: str | os.PathLike) -> Path:
    """``<cohort>/derivatives/ground_truth``."""
    return Path(cohort_root) / GROUND_TRUTH_DIR


def ground_truth_files(cohort_root: str | os.PathLike, participant_id: str
                       ) -> tuple[Path, Path]:
    """The tissue-loss map and volume-loss table of one participant.

    The simulator's own naming (:func:`brainlrp.simulate.ground_truth.subject_paths`).

    Returns
    -------
    tissue_loss : Path
        ``<participant_id>_tissue_loss.nii.gz``: fraction of tissue lost per voxel.
    volume_loss : Path
        ``<participant_id>_volume_loss.tsv``: label, index, volume_before_mm3,
        volume_after_mm3, relative_loss.
    """
    from brainlrp.simulate.ground_truth import subject_paths

    paths = subject_paths(cohort_root, participant_id)
    return paths["tissue_loss"], paths["volume_loss"]


def load_truth_map(path: Path, grid: Grid) -> np.ndarray:
    """A tissue-loss map on ``grid`` (resampled linearly when its grid differs)."""
    data, affine = read_volume(path, "ground-truth map",
                               "re-run `brainlrp simulate` to rewrite it")
    if data.ndim != 3:
        raise BrainLRPError(f"the ground-truth map {path} is {data.ndim}D",
                            "expected a 3D tissue-loss map")
    if not grid.same_as(data.shape, affine):
        import nibabel as nib
        from nilearn.image import resample_img

        data = resample_img(nib.Nifti1Image(data, affine), target_affine=grid.affine_array,
                            target_shape=grid.shape, interpolation="linear",
                            force_resample=True, copy_header=True).get_fdata(dtype=np.float32)
    return np.nan_to_num(data, nan=0.0)


class TruthMasks:
    """Atrophy masks per participant, read once and kept up to a memory budget.

    Parameters
    ----------
    cohort_root : Path
    grid : Grid
    threshold : float
        A voxel is atrophied when its tissue loss exceeds this fraction.
    max_bytes : int
        Masks are kept bit-packed (an eighth of a boolean array); beyond this
        budget the least recently used are dropped and re-read on demand, so memory
        does not grow with the cohort.
    """

    def __init__(self, cohort_root: Path, grid: Grid, threshold: float = DEFAULT_THRESHOLD,
                 max_bytes: int = 64 * 2**20):
        self.cohort_root = Path(cohort_root)
        self.grid = grid
        self.threshold = float(threshold)
        self.max_bytes = int(max_bytes)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def mask(self, participant_id: str) -> np.ndarray:
        """Boolean atrophy mask of ``participant_id`` on the grid."""
        n = int(np.prod(self.grid.shape))
        if participant_id in self._cache:
            self._cache.move_to_end(participant_id)
            packed = self._cache[participant_id]
            return np.unpackbits(packed, count=n).view(bool).reshape(self.grid.shape)
        path, _ = ground_truth_files(self.cohort_root, participant_id)
        mask = load_truth_map(path, self.grid) > self.threshold
        self._cache[participant_id] = np.packbits(mask)
        while len(self._cache) > 1 and sum(m.nbytes for m in self._cache.values()) \
                > self.max_bytes:
            self._cache.popitem(last=False)
        return mask


def read_volume_loss(path: Path, atlas: AtlasRegions) -> np.ndarray:
    """True relative volume loss per merged area from a ``volume_loss.tsv``.

    Labels are matched on ``index`` (else on the ``label`` name); an area's loss is
    ``1 - sum(after) / sum(before)`` over its labels, or the mean ``relative_loss``
    when the volumes are absent. Areas without a row get NaN.
    """
    try:
        table = pd.read_csv(path, sep="\t")
    except Exception as exc:
        raise BrainLRPError(f"cannot read the ground-truth table {path} ({exc})",
                            "re-run `brainlrp simulate` to rewrite it") from None
    labels = atlas.labels
    if "index" in table.columns and "index" in labels.columns:
        where = dict(zip(labels["index"].astype(int), range(len(labels)), strict=True))
        pos = table["index"].map(lambda v: where.get(int(v), -1) if pd.notna(v) else -1)
    elif "label" in table.columns:
        where = dict(zip(labels["region"], range(len(labels)), strict=True))
        pos = table["label"].map(lambda v: where.get(str(v), -1))
    else:
        raise BrainLRPError(f"{path} has neither an index nor a label column",
                            "re-run `brainlrp simulate` to rewrite it")
    keep = pos.to_numpy() >= 0
    area_of_label = atlas.label_to_area.argmax(axis=1)
    areas = area_of_label[pos.to_numpy()[keep]]
    n = atlas.n_areas
    rows = table[keep]
    if {"volume_before_mm3", "volume_after_mm3"} <= set(table.columns):
        before = np.bincount(areas, weights=rows["volume_before_mm3"].to_numpy(float),
                             minlength=n)
        after = np.bincount(areas, weights=rows["volume_after_mm3"].to_numpy(float),
                            minlength=n)
        return 1.0 - metrics.safe_ratio(after, before)
    if "relative_loss" not in table.columns:
        raise BrainLRPError(f"{path} has no relative_loss or volume columns",
                            "re-run `brainlrp simulate` to rewrite it")
    total = np.bincount(areas, weights=rows["relative_loss"].to_numpy(float), minlength=n)
    count = np.bincount(areas, minlength=n)
    return metrics.safe_ratio(total, count)


def true_area_loss(cohort_root: Path, participant_id: str, atlas: AtlasRegions
                   ) -> tuple[np.ndarray, str]:
    """True relative loss per merged area of one participant, and where it came from.

    The simulator's table is per Neuromorphometrics label, so it is used with that
    atlas (``"table"``); with any other atlas the loss of an area is the mean tissue
    loss of its voxels in the map (``"map"``).
    """
    tissue, table = ground_truth_files(cohort_root, participant_id)
    if atlas.atlas_name == "neuromorphometrics" and table.is_file():
        return read_volume_loss(table, atlas), "table"
    from brainlrp.atlas import region_sums

    loss = load_truth_map(tissue, atlas.grid)
    sums = region_sums(loss, atlas.area_codes, atlas.n_areas)
    return metrics.density(sums, atlas.areas["n_voxels"].to_numpy()), "map"


class GroundTruthScorer:
    """Scores batches of relevance maps against the atrophy masks (voxel metrics).

    Used as the ``on_batch`` hook of :func:`~brainlrp.analysis.regions.stream_method`,
    so heatmaps are read once for region tables and ground truth together.

    Parameters
    ----------
    masks : TruthMasks
    brain : numpy.ndarray
        Template brain mask on the grid (AUC is computed inside it).
    participants : set of str
        Participants with ground truth (others are skipped).
    """

    def __init__(self, masks: TruthMasks, brain: np.ndarray, participants: set[str]):
        self.masks = masks
        self.brain = np.asarray(brain, dtype=bool)
        self.participants = set(participants)
        self.rows: list[dict] = []

    def __call__(self, block: pd.DataFrame, maps: np.ndarray,
                 magnitudes: np.ndarray | None = None) -> None:
        """Score the AD scans of a batch (``magnitudes``: ``|raw map|`` for ``auc_abs``)."""
        if magnitudes is None:
            magnitudes = np.abs(maps)
        for (_, scan), relevance, magnitude in zip(block.iterrows(), maps, magnitudes,
                                                   strict=True):
            if scan["label"] != 1 or scan["participant_id"] not in self.participants:
                continue
            mask = self.masks.mask(scan["participant_id"])
            inside = mask[self.brain]
            self.rows.append({
                "participant_id": scan["participant_id"], "scan_id": scan["scan_id"],
                "outcome": scan["outcome"], "n_atrophied_voxels": int(inside.sum()),
                "atrophied_fraction": float(inside.mean()) if inside.size else float("nan"),
                "mass_accuracy": metrics.mass_accuracy(relevance, mask),
                "auc": metrics.roc_auc(relevance[self.brain], inside),
                "auc_abs": metrics.roc_auc(magnitude[self.brain], inside)})


def region_scores(scans: pd.DataFrame, density: np.ndarray, truth: dict[str, np.ndarray],
                  k: int) -> pd.DataFrame:
    """Spearman and top-k recall per AD scan with ground truth.

    Parameters
    ----------
    scans : pandas.DataFrame
        Rows matching ``density``.
    density : array (n_scans, n_areas)
    truth : dict
        participant_id -> true relative loss per area.
    k : int
    """
    rows = []
    for i, (pid, sid) in enumerate(zip(scans["participant_id"], scans["scan_id"],
                                       strict=True)):
        if pid not in truth:
            continue
        t = truth[pid]
        rows.append({"participant_id": pid, "scan_id": sid,
                     "spearman_regions": metrics.spearman(density[i], t),
                     "topk_recall": metrics.top_k_recall(density[i], t, k)})
    return pd.DataFrame(rows, columns=["participant_id", "scan_id", "spearman_regions",
                                       "topk_recall"])


def disease_top_k(truth: dict[str, np.ndarray], k: int) -> np.ndarray:
    """The disease model's top-``k`` areas: largest mean true relative loss over AD subjects.

    Only areas that lose volume qualify, so a disease model with fewer than ``k``
    affected areas gives fewer.
    """
    if not truth:
        return np.array([], dtype=int)
    mean = np.nanmean(np.stack(list(truth.values())), axis=0)
    return np.array([i for i in metrics.top_k(mean, k).tolist() if mean[i] > 0], dtype=int)


def summarise(per_scan: pd.DataFrame, method: str, relevance: str, group_gain: np.ndarray,
              disease_top: np.ndarray, area_names: list[str], k: int) -> dict:
    """One row of the method comparison (:data:`GROUND_TRUTH_SUMMARY_COLUMNS`)."""
    group_top = metrics.top_k(group_gain, k) if group_gain.size else np.array([], int)
    shared = sorted(set(group_top.tolist()) & set(disease_top.tolist()))

    def stat(col, fn):
        values = per_scan[col].to_numpy(float) if len(per_scan) else np.array([])
        values = values[np.isfinite(values)]
        if not values.size:
            return float("nan")
        return float(fn(values))

    def sd(v):
        return np.std(v, ddof=1) if v.size > 1 else np.nan

    return {
        "method": method, "relevance": relevance, "n_subjects": int(per_scan["participant_id"]
                                                                    .nunique()),
        "mass_accuracy_mean": stat("mass_accuracy", np.mean),
        "mass_accuracy_sd": stat("mass_accuracy", sd),
        "chance_mass_accuracy": stat("atrophied_fraction", np.mean),
        "auc_mean": stat("auc", np.mean), "auc_sd": stat("auc", sd),
        "auc_abs_mean": stat("auc_abs", np.mean),
        "spearman_regions_mean": stat("spearman_regions", np.mean),
        "topk_recall_mean": stat("topk_recall", np.mean),
        "group_topk_shared": len(shared) if group_top.size and disease_top.size else np.nan,
        "group_topk_overlap": (len(shared) / disease_top.size
                               if group_top.size and disease_top.size else np.nan),
        "group_topk_areas": ";".join(area_names[i] for i in group_top),
        "disease_topk_areas": ";".join(area_names[i] for i in disease_top),
        "k": k}


@dataclass(frozen=True)
class GroundTruthSummary:
    """A method's summary part: means over AD scans of the recovery scores."""

    gt_n_subjects: int
    gt_mass_accuracy: float
    gt_chance_mass_accuracy: float
    gt_auc: float
    gt_auc_abs: float
    gt_spearman_regions: float
    gt_topk_recall: float
    gt_group_topk_overlap: float


@dataclass
class Truth:
    """Ground truth prepared once for all methods: masks, true area loss, disease top-k."""

    root: Path
    masks: TruthMasks
    brain: np.ndarray
    area_loss: dict[str, np.ndarray]
    disease_top: np.ndarray
    k: int

    def scorer(self) -> GroundTruthScorer:
        """A fresh voxel scorer for one method's pass."""
        return GroundTruthScorer(self.masks, self.brain, set(self.area_loss))

    def finish(self, method: str, mr: MethodRegions, scorer: GroundTruthScorer,
               atlas: AtlasRegions) -> tuple[pd.DataFrame, dict, GroundTruthSummary]:
        """The per-scan ground-truth table of a method, its summary row and summary part."""
        area_names = atlas.areas["region"].tolist()
        voxel = pd.DataFrame(scorer.rows, columns=["participant_id", "scan_id", "outcome",
                                                   "n_atrophied_voxels", "atrophied_fraction",
                                                   "mass_accuracy", "auc", "auc_abs"])
        regional = region_scores(mr.scans, mr.area_density(atlas), self.area_loss, self.k)
        per_scan = voxel.merge(regional, on=["participant_id", "scan_id"], how="left")
        per_scan.insert(0, "method", method)
        per_scan["k"] = self.k
        ad = mr.group_area_means("AD")
        gain = ad["gain"].to_numpy(float) if len(ad) else np.zeros(0)
        row = summarise(per_scan, method, mr.relevance, gain, self.disease_top, area_names,
                           self.k)
        part = GroundTruthSummary(
            gt_n_subjects=row["n_subjects"], gt_mass_accuracy=row["mass_accuracy_mean"],
            gt_chance_mass_accuracy=row["chance_mass_accuracy"], gt_auc=row["auc_mean"],
            gt_auc_abs=row["auc_abs_mean"],
            gt_spearman_regions=row["spearman_regions_mean"],
            gt_topk_recall=row["topk_recall_mean"], gt_group_topk_overlap=row["group_topk_overlap"])
        return per_scan[list(GROUND_TRUTH_COLUMNS)], row, part


def prepare_truth(cohort_root: Path | None, scans_of: dict[str, pd.DataFrame],
                  atlas: AtlasRegions, threshold: float, k: int, notices: list[str]
                  ) -> Truth | None:
    """Ground truth for the AD participants of ``scans_of``; ``None`` (with notices) without."""
    if cohort_root is None or not ground_truth_dir(cohort_root).is_dir():
        return None
    ad = sorted({p for s in scans_of.values()
                 for p in s.loc[s["label"] == 1, "participant_id"]})
    area_loss = {}
    missing = []
    sources = set()
    for pid in ad:
        tissue, _ = ground_truth_files(cohort_root, pid)
        if not tissue.is_file():
            missing.append(pid)
            continue
        area_loss[pid], source = true_area_loss(cohort_root, pid, atlas)
        sources.add(source)
    if missing:
        notices.append(f"ground truth missing for {len(missing)} AD participant(s) "
                       f"(e.g. {missing[0]}); they are left out of the ground-truth tables")
    if not area_loss:
        notices.append("the cohort has derivatives/ground_truth but none for the analysed AD "
                       "participants: ground-truth analysis skipped")
        return None
    if "map" in sources:
        notices.append("true area loss taken from the tissue-loss maps (the volume-loss tables "
                       "are per Neuromorphometrics label)")
    return Truth(root=cohort_root, masks=TruthMasks(cohort_root, atlas.grid, threshold),
                  brain=brain_mask(atlas.grid), area_loss=area_loss,
                  disease_top=disease_top_k(area_loss, k), k=k)

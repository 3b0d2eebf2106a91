"""The model's own ground truth, from each AD patient's healthy twin (simulated cohorts).

A simulated AD subject has a twin: the same person, age and scanner rendered
without the disease (``derivatives/ground_truth/<pid>_desc-healthy_T1w.nii.gz``).
Both are preprocessed as the model sees them. Per AD test scan:

* ``p_ad_twin``: the model's p(AD) for the twin: how much of the decision the
  disease explains;
* the **evidence map** ``|patient - twin|`` (written to ``analysis/evidence/``) and
  how well it finds the atrophy mask (``evidence_auc``, ``evidence_mass``): a check
  that the ground truth itself is sound;
* the **restoration importance** of every merged atlas area: the drop in p(AD)
  when that area, dilated by a few voxels so the CSF next to it goes along, is
  replaced by the twin's voxels. That is which areas *this model* uses for this
  patient; explanations are ranked against it (region Spearman), their relevance
  summed over the same grown areas (:func:`restored_area_sums`), so a map is judged
  on the voxels the importance was measured on (the CSF where atrophy shows too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from brainlrp.analysis import metrics

#: Columns of ``analysis/twins.tsv`` (one row per AD scan with a twin).
TWIN_COLUMNS = ("participant_id", "scan_id", "p_ad", "p_ad_twin", "evidence_auc",
                "evidence_mass", "atrophied_fraction")
#: Columns of ``analysis/restoration.tsv`` (one row per scan and merged area).
RESTORATION_COLUMNS = ("participant_id", "scan_id", "area", "n_voxels", "p_ad_restored",
                       "drop")

PredictFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TwinResult:
    """Tables of the twin analysis and the restoration importance per scan.

    Attributes
    ----------
    twins : pandas.DataFrame
        :data:`TWIN_COLUMNS`.
    restoration : pandas.DataFrame
        :data:`RESTORATION_COLUMNS`.
    importance : dict of str to numpy.ndarray
        ``scan_id -> (n_areas,)`` drop in p(AD) per merged area.
    areas : scipy.sparse.csr_matrix, optional
        ``(n_voxels, n_areas)`` indicator of the restored (grown) areas, voxels in
        C order (see :func:`restored_area_sums`).
    changed : dict of str to numpy.ndarray, optional
        ``scan_id -> (n_areas,)`` mean ``|patient - twin|`` per voxel of each restored
        area: where the scan differs from its healthy self.
    """

    twins: pd.DataFrame
    restoration: pd.DataFrame
    importance: dict[str, np.ndarray]
    areas: object = None
    changed: dict = None


def area_masks(area_codes: np.ndarray, n_areas: int, dilate: int) -> list[np.ndarray]:
    """Each merged area as a boolean mask, dilated by ``dilate`` voxels (26-neighbourhood)."""
    structure = ndi.generate_binary_structure(3, 3)
    masks = []
    for code in range(1, n_areas + 1):
        mask = area_codes == code
        if dilate > 0 and mask.any():
            mask = ndi.binary_dilation(mask, structure, iterations=int(dilate))
        masks.append(mask)
    return masks


def area_matrix(masks: list[np.ndarray]):
    """The areas as a sparse ``(n_voxels, n_areas)`` 0/1 matrix (voxels in C order)."""
    from scipy import sparse

    columns = [np.flatnonzero(m.ravel()) for m in masks]
    rows = np.concatenate(columns) if columns else np.zeros(0, dtype=np.int64)
    cols = np.repeat(np.arange(len(columns)), [len(c) for c in columns])
    n_vox = int(masks[0].size) if masks else 0
    return sparse.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)),
                             shape=(n_vox, len(columns)))


def restored_area_sums(maps: np.ndarray, areas) -> np.ndarray:
    """Relevance summed over each restored area: ``(n_maps, n_areas)`` for maps
    ``(n_maps, *grid)`` and :attr:`TwinResult.areas` (grown areas overlap, as the
    restorations do)."""
    maps = np.asarray(maps, dtype=np.float64)
    return np.asarray((areas.T @ maps.reshape(len(maps), -1).T).T)


def restoration_importance(predict: PredictFn, patient: np.ndarray, twin: np.ndarray,
                           masks: list[np.ndarray], batch_size: int = 8
                           ) -> tuple[float, np.ndarray]:
    """p(AD) of the patient and its drop when each area is restored from the twin.

    Parameters
    ----------
    predict : callable
        ``predict(x) -> p(AD)`` for ``x`` of shape ``(n, 1, X, Y, Z)``.
    patient, twin : numpy.ndarray
        ``(X, Y, Z)`` preprocessed inputs.
    masks : list of bool arrays
        The areas to restore, one at a time.
    batch_size : int

    Returns
    -------
    p_ad : float
    drops : numpy.ndarray
        ``(len(masks),)``: ``p_ad - p_ad(restored)``; positive when the area carries
        evidence for AD.
    """
    p_ad = float(predict(patient[None, None])[0])
    drops = np.zeros(len(masks))
    for start in range(0, len(masks), batch_size):
        chunk = masks[start: start + batch_size]
        batch = np.repeat(patient[None, None], len(chunk), axis=0)
        for i, mask in enumerate(chunk):
            batch[i, 0][mask] = twin[mask]
        drops[start: start + len(chunk)] = p_ad - predict(batch)
    return p_ad, drops


def twin_analysis(scans: pd.DataFrame, patient_inputs: Callable[[list[str]], np.ndarray],
                  twin_inputs: Callable[[list[str]], np.ndarray], predict: PredictFn,
                  area_codes: np.ndarray, area_names: list[str], brain: np.ndarray,
                  atrophy: Callable[[str], np.ndarray] | None, dilate: int = 2,
                  batch_size: int = 8, evidence_dir: Path | None = None,
                  affine: np.ndarray | None = None,
                  advance: Callable[[int], None] | None = None) -> TwinResult:
    """p(AD) of twins, evidence maps and restoration importance for AD scans.

    Parameters
    ----------
    scans : pandas.DataFrame
        AD scans with twins: ``participant_id``, ``scan_id``.
    patient_inputs, twin_inputs : callable
        ``f(scan_ids) -> (n, 1, X, Y, Z)`` preprocessed patient scans and twins.
    predict : callable
        ``predict(x) -> p(AD)``.
    area_codes : int array (X, Y, Z)
        Merged-area code per voxel (0 outside).
    area_names : list of str
    brain : bool array (X, Y, Z)
        Where the evidence map is scored.
    atrophy : callable, optional
        ``atrophy(participant_id) -> bool mask`` of truly atrophied voxels.
    dilate : int
        Voxels by which each area grows before it is restored.
    batch_size : int
    evidence_dir : Path, optional
        Where ``<scan_id>.nii.gz`` evidence maps go (with ``affine``).
    affine : numpy.ndarray, optional
    advance : callable, optional
        Progress callback, called once per scan.

    Returns
    -------
    TwinResult
    """
    from brainlrp._io import save_nifti

    masks = area_masks(area_codes, len(area_names), dilate)
    sizes = [int(m.sum()) for m in masks]
    matrix = area_matrix(masks)
    twin_rows, rest_rows, importance, changed = [], [], {}, {}
    brain = np.asarray(brain, dtype=bool)
    for row in scans.itertuples():
        sid, pid = str(row.scan_id), str(row.participant_id)
        x = np.asarray(patient_inputs([sid]), dtype=np.float32).reshape(area_codes.shape)
        t = np.asarray(twin_inputs([sid]), dtype=np.float32).reshape(area_codes.shape)
        p_ad, drops = restoration_importance(predict, x, t, masks, batch_size)
        p_twin = float(predict(t[None, None])[0])
        evidence = np.abs(x - t)
        if evidence_dir is not None:
            save_nifti(evidence_dir / f"{sid}.nii.gz", evidence, affine,
                       description="brainlrp |patient - healthy twin|")
        auc = mass = fraction = float("nan")
        if atrophy is not None:
            mask = np.asarray(atrophy(pid), dtype=bool)
            auc = metrics.roc_auc(evidence[brain], mask[brain])
            mass = metrics.mass_accuracy(evidence, mask)
            fraction = float(mask[brain].mean()) if brain.any() else float("nan")
        twin_rows.append({"participant_id": pid, "scan_id": sid, "p_ad": p_ad,
                          "p_ad_twin": p_twin, "evidence_auc": auc, "evidence_mass": mass,
                          "atrophied_fraction": fraction})
        importance[sid] = drops
        changed[sid] = restored_area_sums(evidence[None], matrix)[0] / np.maximum(sizes, 1)
        rest_rows += [{"participant_id": pid, "scan_id": sid, "area": name, "n_voxels": n,
                       "p_ad_restored": p_ad - d, "drop": d}
                      for name, n, d in zip(area_names, sizes, drops, strict=True)]
        if advance is not None:
            advance(1)
    return TwinResult(pd.DataFrame(twin_rows, columns=list(TWIN_COLUMNS)),
                      pd.DataFrame(rest_rows, columns=list(RESTORATION_COLUMNS)), importance,
                      matrix, changed)


#: An area "changed" when its mean |patient - twin| is at least this share of the
#: scan's most changed area's; the model "does not use" it when restoring it moves
#: p(AD) by less than :data:`UNUSED_DROP`.
CHANGED_SHARE = 0.25
UNUSED_DROP = 0.01


def unused_change_share(area_relevance: np.ndarray, scan_ids: list[str],
                        importance: dict[str, np.ndarray], changed: dict[str, np.ndarray]
                        ) -> np.ndarray:
    """Per scan, the share of a method's positive area relevance that lies in areas the
    scan has changed in (it differs from its healthy twin there, :data:`CHANGED_SHARE`)
    but the model does not use (restoring the area moves p(AD) by less than
    :data:`UNUSED_DROP`): an explanation is not an anomaly map, so lower is better. NaN
    for scans without restoration importance or without such areas.
    """
    out = np.full(len(scan_ids), np.nan)
    for i, sid in enumerate(scan_ids):
        if sid not in importance or sid not in changed:
            continue
        delta = np.asarray(changed[sid], float)
        unused = (delta >= CHANGED_SHARE * delta.max()) & (np.abs(importance[sid]) < UNUSED_DROP)
        positive = np.clip(np.asarray(area_relevance[i], float), 0, None)
        if unused.any() and positive.sum() > 0:
            out[i] = float(positive[unused].sum() / positive.sum())
    return out


def restoration_spearman(area_relevance: np.ndarray, scan_ids: list[str],
                         importance: dict[str, np.ndarray]) -> np.ndarray:
    """Per scan, the Spearman correlation over areas of a method's area relevance with
    the restoration importance (NaN for scans without it).

    Parameters
    ----------
    area_relevance : array (n_scans, n_areas)
        Relevance per restored area (:func:`restored_area_sums`).
    scan_ids : list of str
        The scans of the rows.
    importance : dict
        :attr:`TwinResult.importance`.
    """
    out = np.full(len(scan_ids), np.nan)
    for i, sid in enumerate(scan_ids):
        if sid in importance:
            out[i] = metrics.spearman(np.asarray(area_relevance[i], float), importance[sid])
    return out


def run_twins(rd, ctx, truth, cohort_root: Path, predictions: pd.DataFrame, atlas, config,
              notices: list[str], progress: bool) -> TwinResult | None:
    """:func:`twin_analysis` over a seeded sample of a run's AD test scans with a healthy
    twin (``ctx``: the run's :class:`~brainlrp.analysis.checks.ModelContext`;
    ``config``: ``analyze``'s :class:`~brainlrp.configs.AnalysisConfig`); ``None``, with
    a notice, when no scan has a twin."""
    import copy

    import torch

    from brainlrp._progress import progress_bar
    from brainlrp.analysis.checks import load_model_inputs
    from brainlrp.card import read_card
    from brainlrp.data.grid import brain_mask
    from brainlrp.data.preprocess import PreprocessCache
    from brainlrp.simulate.ground_truth import healthy_twin_path

    ad = predictions[(predictions["label"] == 1)]
    test = ad[ad["split"] == "test"]
    pool = test if len(test) else ad
    has = pool["participant_id"].map(lambda p: healthy_twin_path(cohort_root, p).is_file())
    pool = pool[has.to_numpy(bool)]
    if pool.empty:
        notices.append("no AD scan has a healthy twin (a cohort simulated before twins were "
                       "written?): restoration importance skipped - re-run `brainlrp "
                       "simulate` on the cohort to add them")
        return None
    if len(pool) > config.restoration_subjects:
        rng = np.random.default_rng(config.seed)
        pool = pool.iloc[np.sort(rng.choice(len(pool), config.restoration_subjects,
                                            replace=False))]
    prep = read_card(rd.root).prep
    cache = PreprocessCache()
    twin_of = dict(zip(pool["scan_id"], pool["participant_id"], strict=True))

    def twin_inputs(ids):
        paths = [cache.get(healthy_twin_path(cohort_root, twin_of[s]), prep) for s in ids]
        return np.stack([np.load(p)[None] for p in paths]).astype(np.float32)

    model = copy.deepcopy(ctx.model).eval()
    param = next(model.parameters(), None)

    def predict(x):
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if param is not None:
            t = t.to(device=param.device)
        with torch.no_grad():
            return torch.softmax(model(t), dim=1)[:, ctx.target].double().cpu().numpy()

    shape = atlas.grid.shape
    evidence_dir = rd.analysis / "evidence"
    evidence_dir.mkdir(parents=True, exist_ok=True)
    for old in evidence_dir.glob("*.nii.gz"):
        old.unlink()
    with progress_bar(len(pool), "restoration", progress) as advance:
        return twin_analysis(
            pool, lambda ids: load_model_inputs(ctx.inputs_fn, ids, shape), twin_inputs,
            predict, atlas.area_codes, atlas.areas["region"].tolist(), brain_mask(atlas.grid),
            truth.masks.mask if truth is not None else None, dilate=config.restoration_dilate,
            batch_size=min(config.batch_size, 4), evidence_dir=evidence_dir,
            affine=atlas.grid.affine_array, advance=advance)


def _restored_sums(rd, method: str, scan_ids: list[str], mode: str, grid,
                   areas) -> np.ndarray:
    """The method's relevance (``mode`` applied) over each restored area of the scans."""
    from brainlrp.analysis.regions import read_heatmap

    out = np.zeros((len(scan_ids), areas.shape[1]))
    for i, sid in enumerate(scan_ids):
        maps = read_heatmap(rd.heatmap(method, sid), grid)[None]
        metrics.apply_relevance(maps, mode, out=maps)
        out[i] = restored_area_sums(maps, areas)[0]
    return out


def restoration_scores(rd, results: dict, modes: dict[str, str], grid, twin: TwinResult
                       ) -> dict[str, dict[str, float | None]]:
    """Per method, its summary's restoration scores against ``twin``'s importance: the
    mean over scans of :func:`restoration_spearman` and of :func:`unused_change_share`
    (``results``: each method's :class:`~brainlrp.analysis.regions.MethodRegions`)."""
    out = {}
    for m, mr in results.items():
        ids = [s for s in mr.scans["scan_id"] if s in twin.importance]
        sums = _restored_sums(rd, m, ids, modes[m], grid, twin.areas)
        rho = restoration_spearman(sums, ids, twin.importance)
        rho = rho[np.isfinite(rho)]
        unused = unused_change_share(sums, ids, twin.importance, twin.changed or {})
        unused = unused[np.isfinite(unused)]
        out[m] = {"gt_spearman_restoration": float(rho.mean()) if rho.size else None,
                  "gt_unused_change_share": float(unused.mean()) if unused.size else None}
    return out

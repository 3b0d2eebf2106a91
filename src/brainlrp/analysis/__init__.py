"""Analysis of heatmaps per atlas region, subject and group (``brainlrp analyze``).

:func:`analyze` reads a run's ``predictions.tsv``, ``model/card.json`` and
``heatmaps/<method>/<scan_id>.nii.gz`` and writes the files below (TSV,
tab-separated, numbers with 6 significant digits, NaN as empty). Re-running with the
same inputs and options rewrites the same files; analysis files not produced by
this run (e.g. ``sanity.tsv`` after ``--no-sanity``) are removed.

Relevance
---------
A heatmap becomes relevance by one of three modes (``--relevance``): ``positive``
(keep values > 0), ``absolute`` or ``signed``. ``auto`` (default) picks per method:
the catalog's default of each method (:attr:`brainlrp.catalog.MethodInfo.relevance`):
positive for LRP (beta = 0 is non-negative anyway and the paper summed it),
integrated gradients and occlusion (signed attributions: the positive part is
evidence for AD); absolute for guided backpropagation, the gradient and SmoothGrad
(sensitivities, whose sign is a direction, not evidence). Every number below uses
the method's mode. Relevance sum = sum over a region's voxels; density = sum /
n_voxels; gain = group mean / HC mean (NaN when the HC mean is 0).

Groups: ``AD`` (label 1), ``HC`` (label 0), ``TP``, ``TN``, ``FP``, ``FN``
(outcomes from label and predicted). Each subject counts once per group (its scans
are averaged). Empty groups get no rows and no mean image.

Files and columns (the contract)
--------------------------------
``regions/<method>/subjects.tsv``
    participant_id, scan_id, diagnosis, outcome, region, hemisphere, area, n_voxels,
    relevance_sum, relevance_density. One row per scan and atlas label.
``regions/<method>/groups.tsv``
    group, level (label | area), region, hemisphere, area, n_voxels, n_subjects,
    mean_sum, mean_density, gain. ``area`` rows are the merged areas (68 for
    Neuromorphometrics; fewer when a label vanishes on a coarse grid).
``means/<method>/<group>.nii.gz``
    Mean relevance map of the group, float32 on the model grid with its affine: each
    scan's map goes through the method's relevance mode before it is averaged, so a
    ``positive`` method's mean averages only positive parts (negative values are 0 in
    every map first) and an ``absolute`` one's averages magnitudes.
``analysis/summary.json``
    atlas, n_labels, n_areas, relevance (method -> mode), top_k, threshold, seed,
    disease_model_top_areas, notices, and ``methods``: per method the keys of
    :data:`~brainlrp.analysis.summary.SUMMARY_KEYS` (null when not computed).
``analysis/summary.tsv``
    method + :data:`~brainlrp.analysis.summary.SUMMARY_KEYS`: relevance, n_scans, n_ad,
    n_hc, hc_ad_ratio, fingerprint_n_patients, fingerprint_mean_similarity,
    fingerprint_min_similarity, patient_a, patient_b, hippocampus_n, hippocampus_r,
    hippocampus_p, gt_n_subjects, gt_mass_accuracy, gt_chance_mass_accuracy, gt_auc,
    gt_auc_abs,
    gt_spearman_regions, gt_topk_recall, gt_group_topk_overlap, aopc_relevance,
    aopc_random, aopc_difference, sanity_spearman_top_layer,
    sanity_spearman_all_layers.
``analysis/relevance_totals.tsv``
    method, relevance, group, n_subjects, mean_total_relevance (whole-map relevance;
    ``hc_ad_ratio`` = HC mean / AD mean).
``analysis/fingerprints.tsv``
    method, participant_id, p_ad, area_rank, area, relevance_density: the density
    vectors of TPs with p_ad > 0.9 over the 25 areas of highest mean density.
``analysis/fingerprint_similarity.tsv``
    method, participant_a, participant_b, cosine_similarity (the full matrix in long
    format, diagonal included). The least similar pair is patients A and B.
``analysis/beta_overlap.tsv``
    method_a, method_b, beta_a, beta_b, measure (sum | density | gain), group (TP, or
    AD without TPs), k, n_shared, overlap (n_shared / k), shared_areas (``;``).
    Only with two or more ``lrp-b*`` methods.
``analysis/hippocampus.tsv``
    method, relevance, n_subjects, r, p_value, n_permutations (Pearson r over TPs of
    the Hippocampus area's relevance sum with ``hippocampus_volume``; two-sided,
    seeded permutations, p = (1 + #{|r_perm| >= |r|}) / (1 + n_permutations)).
``analysis/hippocampus_subjects.tsv``
    method, participant_id, hippocampus_relevance, hippocampus_volume.
``analysis/ground_truth.tsv`` (cohorts with ``derivatives/ground_truth/``)
    method, participant_id, scan_id, outcome, n_atrophied_voxels, atrophied_fraction,
    mass_accuracy, auc (of the relevance), auc_abs (of |heatmap|), spearman_regions,
    topk_recall, k. One row per AD scan.
``analysis/ground_truth_summary.tsv``
    method, relevance, n_subjects, mass_accuracy_mean, mass_accuracy_sd,
    chance_mass_accuracy, auc_mean, auc_sd, auc_abs_mean, spearman_regions_mean,
    topk_recall_mean,
    group_topk_shared, group_topk_overlap, group_topk_areas, disease_topk_areas, k.
    One row per method: the comparison table.
``analysis/top_areas.tsv``
    method, group (TP, or AD without TPs), measure (sum | density | gain), rank, area,
    value: the 25 areas ranked highest by each measure in that group.
``analysis/scan_areas.tsv``
    method, scan_id, participant_id, rank, area, density, hc_mean, hc_sd, z: each
    scan's 10 areas of highest relevance density (areas of at least 0.1 % of the
    atlas's voxels on the grid), with the healthy controls' mean and SD of that area
    (each control subject once) and the scan's z-score against them; the report's
    cards and examples rank areas by it (:mod:`brainlrp.analysis.scans`).
``analysis/confusion.tsv``
    split, diagnosis, predicted, outcome, n: the confusion matrix of every split of
    ``predictions.tsv`` (``analysed``: the analysed scans, when no scan is a test scan).
``analysis/roc.tsv``
    split, threshold, fpr, tpr, auc: the ROC curve of every split with both classes.
``analysis/claims.tsv``
    method, claim (individual | hc_low | temporal), statement, evidence, verdict
    (yes | no | – when not judged): the paper's claims on this run
    (:mod:`brainlrp.analysis.claims`).
``analysis/twins.tsv`` (cohorts with healthy twins, i.e. simulated)
    participant_id, scan_id, p_ad, p_ad_twin, evidence_auc, evidence_mass,
    atrophied_fraction: the model's p(AD) for the patient and its healthy twin, and how
    well ``|patient - twin|`` (``analysis/evidence/<scan_id>.nii.gz``) finds the atrophy.
``analysis/restoration.tsv``
    participant_id, scan_id, area, n_voxels, p_ad_restored, drop: the drop in p(AD)
    when each merged area (dilated by ``restoration_dilate`` voxels) is restored from the
    twin; the model's own ground truth (:mod:`brainlrp.analysis.twins`).
``analysis/method_benchmark.tsv``
    rank, method, label, family, needs_twin, recommended, mass_accuracy,
    chance_mass_accuracy, auc_abs, spearman_restoration, topk_recall, sanity_top_layer,
    sanity_all_layers, aopc_difference, seconds_per_scan, cost_ratio: every method
    ranked, and the recommended one (:mod:`brainlrp.analysis.benchmark`).
``analysis/faithfulness.tsv``
    method (``random`` = the random-order baseline), scan_id, order (relevance |
    random), step, n_areas_replaced, p_ad, p_ad_drop.
``analysis/faithfulness_aopc.tsv``
    method, n_subjects, steps, aopc_relevance, aopc_random, aopc_difference.
``analysis/sanity.tsv``
    method, scan_id, stage, layer, spearman (stage k: the top k weight layers
    re-initialised, cumulatively).
"""

from brainlrp.analysis.stage import AnalysisConfig, AnalysisResult, analyze
from brainlrp.analysis.summary import AnalysisSummary, MethodSummary, read_summary

__all__ = ["AnalysisConfig", "AnalysisResult", "AnalysisSummary", "MethodSummary", "analyze",
           "read_summary"]

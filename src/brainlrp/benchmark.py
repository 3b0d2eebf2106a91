"""``brainlrp benchmark RUN``: ground truth on any run, by planting atrophy into its own
held-out controls.

Every validity score of the method benchmark (mass accuracy, ``|.|``-AUC, restoration
Spearman, randomisation, AOPC; :mod:`brainlrp.analysis.benchmark`) needs to know where
a patient's disease is. A simulated cohort knows; a real one does not. This stage
makes it known on the run's own data:

1. **Held-out controls**: up to ``n`` validation and ``n`` test controls of the run
   (never a training scan), preprocessed as the model sees them.
2. **Planting**: each gets a patient's atrophy drawn from a disease model (a shipped
   one or a user's JSON), planted with the simulator's own flow
   (:func:`brainlrp.simulate.plant.plant_atrophy`). The original scan is the planted
   scan's exact healthy twin.
3. **Two planted cohorts** (``benchmark/val/`` and ``benchmark/test/``), each a
   simulated-cohort-like folder (planted scans, twins and tissue-loss maps under
   ``derivatives/ground_truth/``) beside the run's training controls (the references
   ``mean``, ``knn`` and ``pca`` are built from them), and a run on each that shares the
   model: explained and analysed by the usual stages.
4. **Choice without peeking**: the method is recommended on the validation plants
   (:func:`brainlrp.analysis.benchmark.recommend`) and the scores reported are the test
   plants'. ``benchmark/method_benchmark.tsv`` holds them with ``truth = planted``;
   ``analyze`` takes it into ``analysis/method_benchmark.tsv`` and the report shows it.

Whether the model responds to the planted disease decides whether the scores mean
anything: ``benchmark/response.tsv`` holds p(AD) of every planted scan and its original;
where the mean rise is below :data:`brainlrp.configs.MIN_RESPONSE` the benchmark says it
cannot judge on this cohort and ranks nothing.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from brainlrp._io import read_json, write_json, write_table
from brainlrp.configs import BenchmarkConfig
from brainlrp.errors import BrainLRPError
from brainlrp.run import RunDir

#: The folder of a run that holds the benchmark.
FOLDER = "benchmark"
#: Columns of ``benchmark/response.tsv``.
RESPONSE_COLUMNS = ("split", "participant_id", "planted_id", "subtype", "severity",
                    "p_ad_original", "p_ad_planted", "rise", "atrophied_fraction")
PLANTED_SUFFIX = "planted"


@dataclass
class BenchmarkResult:
    """What :func:`benchmark` did.

    Attributes
    ----------
    run : Path
    table : pandas.DataFrame
        The test plants' method benchmark (``truth = planted``), best first.
    recommended : str or None
        Chosen on the validation plants.
    response : pandas.DataFrame
        :data:`RESPONSE_COLUMNS`.
    notices : list of str
    seconds : float
    """

    run: Path
    table: pd.DataFrame
    recommended: str | None
    response: pd.DataFrame
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def mean_rise(self) -> float:
        """Mean rise of p(AD) from the original scans to the planted ones (test)."""
        test = self.response[self.response["split"] == "test"]
        return float(test["rise"].mean()) if len(test) else float("nan")


def held_out_controls(rd: RunDir, n: int, seed: int) -> dict[str, list[tuple[str, str]]]:
    """``split -> [(participant_id, scan_id)]``: up to ``n`` validation and ``n`` test
    controls of the run, drawn with ``seed`` (one scan per participant)."""
    from brainlrp.analysis.inputs import read_predictions

    pred = read_predictions(rd)
    out = {}
    rng = np.random.default_rng([int(seed), 0xBE])
    for split in ("val", "test"):
        rows = pred[(pred["split"] == split) & (pred["label"] == 0)]
        rows = rows.drop_duplicates("participant_id").sort_values("scan_id")
        take = np.sort(rng.permutation(len(rows))[:int(n)])
        out[split] = list(zip(rows["participant_id"].iloc[take],
                              rows["scan_id"].iloc[take], strict=True))
    if not any(out.values()):
        raise BrainLRPError(f"{rd.predictions} holds no validation or test control (HC) to "
                            "plant atrophy into",
                            "train with held-out controls (brainlrp train keeps 18 per class "
                            "for validation and 30 for test by default)")
    return out


def benchmark(run: str | os.PathLike, config: BenchmarkConfig | None = None, *,
              progress: bool = True, say=print) -> BenchmarkResult:
    """Benchmark the explanation methods on planted atrophy (see the module docstring).

    Parameters
    ----------
    run : path-like
        A trained or imported run.
    config : BenchmarkConfig, optional
    progress : bool
        Progress bars of the stages it runs.
    say : callable
        Where the step lines go.

    Returns
    -------
    BenchmarkResult
    """
    from brainlrp import catalog
    from brainlrp.analysis.benchmark import recommend
    from brainlrp.card import read_card
    from brainlrp.simulate.disease import load_disease_model

    config = config or BenchmarkConfig()
    start = time.perf_counter()
    rd = RunDir.existing(run)
    if config.n < 1:
        raise BrainLRPError(f"--n must be at least 1, got {config.n}", "e.g. --n 20")
    model_spec = load_disease_model(config.disease_model)
    methods = catalog.parse(list(config.methods or catalog.method_set("benchmark")))
    card = read_card(rd.root)
    controls = held_out_controls(rd, config.n, config.seed)
    settings = {"disease_model": model_spec.to_json(), "n": config.n, "seed": config.seed,
                "controls": {s: [c for _, c in chosen] for s, chosen in controls.items()},
                "checkpoint_mtime": rd.checkpoint.stat().st_mtime_ns}
    _start_afresh_unless(rd.root / FOLDER, settings)
    notices: list[str] = []
    tables, responses = {}, []
    for split, chosen in controls.items():
        if not chosen:
            notices.append(f"the run has no {split} control to plant into")
            continue
        folder = rd.root / FOLDER / split
        if _planted_before(folder):
            say(f"{split}: reusing the {len(chosen)} planted controls of the last call "
                "(same disease model, seed, controls and model)")
        else:
            say(f"{split}: planting {model_spec.name!r} atrophy into {len(chosen)} held-out "
                f"controls")
        sub, response = _planted_run_of(rd, card, folder, chosen, model_spec, config, split)
        responses.append(response)
        say(f"{split}: p(AD) {response['p_ad_original'].mean():.3f} -> "
            f"{response['p_ad_planted'].mean():.3f} (mean over {len(response)} scans)")
        tables[split] = _explain_and_analyse(sub, methods, config, progress, say, split)
    response = pd.concat(responses, ignore_index=True)[list(RESPONSE_COLUMNS)]
    test_split = "test" if "test" in tables else next(iter(tables))
    table = tables[test_split].copy()
    rise = float(response.loc[response["split"] == test_split, "rise"].mean())
    recommended = None
    if not rise >= config.min_response:
        notices.append(f"the model barely responds to the planted disease (p(AD) rises by "
                       f"{rise:.3f} on average, under {config.min_response:g}): the "
                       "benchmark cannot judge methods on this cohort, so nothing is ranked")
        table["rank"] = np.nan
    else:
        choose_on = tables.get("val", table)
        recommended = recommend(choose_on) if "rank" in choose_on else None
        if "val" not in tables:
            notices.append("no validation control: the method was chosen on the test plants")
    table["recommended"] = table["method"] == recommended
    table["truth"] = "planted"
    table["chosen_on"] = "val" if "val" in tables else test_split
    out = rd.root / FOLDER
    write_table(out / "method_benchmark.tsv", table)
    write_table(out / "response.tsv", response)
    if "val" in tables:
        write_table(out / "method_benchmark_val.tsv", tables["val"].assign(truth="planted"))
    seconds = time.perf_counter() - start
    record = {"disease_model": model_spec.name, "n": config.n, "seed": config.seed,
              "methods": list(methods), "recommended": recommended,
              "mean_rise": round(rise, 4), "min_response": config.min_response,
              "n_planted": {s: len(c) for s, c in controls.items()},
              "notices": notices, "seconds": round(seconds, 1)}
    write_json(out / "benchmark.json", record)
    rd.record("benchmark", {"status": "done"} | record)
    _update_analysis(rd)
    return BenchmarkResult(run=rd.root, table=table, recommended=recommended,
                           response=response, notices=notices, seconds=seconds)


def _planted_run_of(rd: RunDir, card, folder: Path, chosen: list[tuple[str, str]],
                    model_spec, config: BenchmarkConfig, split: str
                    ) -> tuple[RunDir, pd.DataFrame]:
    """The planted run of ``split``: the one a previous call finished with the same
    settings (:func:`_start_afresh_unless` removed any other), else planted now.

    Reusing it leaves its files untouched, so its explain and analyze are up to date and
    a repeated ``brainlrp benchmark`` only does what is new (e.g. an added method).
    """
    if _planted_before(folder):
        return RunDir(folder / "run"), pd.read_csv(
            folder / "response.tsv", sep="\t", dtype={"participant_id": str,
                                                      "planted_id": str})
    sub, response = _planted_run(rd, card, folder, chosen, model_spec, config, split)
    write_table(folder / "response.tsv", response)
    return sub, response


def _planted_before(folder: Path) -> bool:
    """Whether ``folder`` holds a finished planted run (its response is written last)."""
    return (folder / "response.tsv").is_file() and RunDir(folder / "run").predictions.is_file()


def _planted_run(rd: RunDir, card, folder: Path, chosen: list[tuple[str, str]], model_spec,
                 config: BenchmarkConfig, split: str) -> tuple[RunDir, pd.DataFrame]:
    """Write the planted cohort and its run under ``folder``; return the run and the
    response rows."""
    from brainlrp.data.prepare import load_inputs, prepare_cohort, write_splits
    from brainlrp.data.reference import training_control_paths
    from brainlrp.simulate.plant import plant_atrophy
    from brainlrp.training.checkpoint import load_model
    from brainlrp.training.evaluate import (
        classification_metrics,
        predict_proba,
        prediction_table,
    )

    cohort, sub = folder / "cohort", RunDir(folder / "run")
    grid = card.prep.grid
    x = load_inputs(rd.root, [s for _, s in chosen], card.prep)[:, 0]
    controls = training_control_paths(rd)
    rows, truth = [], []
    (cohort / "derivatives" / "ground_truth").mkdir(parents=True, exist_ok=True)
    for i, (pid, _scan) in enumerate(chosen):
        rng = np.random.default_rng([int(config.seed), i, 0xAD, 1 if split == "test" else 0])
        subtype, severity, losses = model_spec.draw(rng)
        planted = plant_atrophy(x[i], grid, losses)
        new_id = f"sub-{str(pid).removeprefix('sub-')}{PLANTED_SUFFIX}"
        _write_planted(cohort, new_id, planted, x[i], grid, subtype, severity)
        rows.append({"participant_id": new_id, "diagnosis": "AD"})
        truth.append({"split": split, "participant_id": pid, "planted_id": new_id,
                      "subtype": subtype, "severity": round(float(severity), 4),
                      "atrophied_fraction": _atrophied_fraction(planted.tissue_loss, grid)})
    for i, path in enumerate(controls):
        # The training controls go along under new names: the references (mean, knn,
        # pca) are built from them, as in the run.
        pid = f"sub-reference{i:04d}"
        _link_or_copy(path, cohort / pid / "anat" / f"{pid}_T1w{_suffix(path)}")
        rows.append({"participant_id": pid, "diagnosis": "HC"})
    write_table(cohort / "participants.tsv", pd.DataFrame(rows).drop_duplicates(
        "participant_id"))
    write_json(cohort / "dataset_description.json",
               {"Name": f"planted atrophy ({model_spec.name}) in {rd.root.name}'s {split} "
                        "controls", "BIDSVersion": "1.8.0", "DatasetType": "raw",
                "GeneratedBy": [{"Name": "brainlrp benchmark"}]})
    write_json(cohort / "derivatives" / "ground_truth" / "disease_model.json",
               model_spec.to_json())

    splits = pd.DataFrame(rows).drop_duplicates("participant_id")
    splits["split"] = np.where(splits["diagnosis"] == "AD", "test", "train")
    splits = splits[["participant_id", "split", "diagnosis"]]
    prepared = prepare_cohort(cohort, resolution=grid.resolution, splits=splits,
                              preprocessing=card.prep, progress=False)
    sub.root.mkdir(parents=True, exist_ok=True)
    if sub.model_dir.exists():
        shutil.rmtree(sub.model_dir)
    shutil.copytree(rd.model_dir, sub.model_dir)
    write_splits(sub, splits, overwrite=True)
    sub.set_cohort(prepared.cohort.summary())
    model, _ = load_model(sub.root)
    scans = prepared.scans
    planted_rows = scans[scans["split"] == "test"]
    p_planted = predict_proba(model, planted_rows["array"].tolist(), config.batch_size,
                              target=card.target_class)
    table = prediction_table(planted_rows, p_planted)
    write_table(sub.predictions, table)
    write_json(sub.metrics, {"test": classification_metrics(table["label"], table["p_ad"]),
                             "planted": True})
    from brainlrp.analysis.inputs import read_predictions

    pred = read_predictions(rd)
    original = pred.set_index("scan_id")["p_ad"]
    by_pid = dict(zip(table["participant_id"], table["p_ad"], strict=True))
    response = pd.DataFrame(truth)
    response["p_ad_original"] = [float(original[s]) for _, s in chosen]
    response["p_ad_planted"] = [float(by_pid[p]) for p in response["planted_id"]]
    response["rise"] = response["p_ad_planted"] - response["p_ad_original"]
    return sub, response


def _start_afresh_unless(folder: Path, settings: dict) -> None:
    """Keep a previous benchmark's planted cohorts and runs (its explain and analyze
    resume) only when it planted the same way into the same scans of the same model."""
    record = folder / "settings.json"
    if record.is_file() and read_json(record) == settings:
        return
    for split in ("val", "test"):
        if (folder / split).exists():
            shutil.rmtree(folder / split)
    write_json(record, settings)


def _update_analysis(rd: RunDir) -> None:
    """Put the planted rows into an existing ``analysis/method_benchmark.tsv`` and its
    recommendation into ``analysis/summary.json`` (what ``analyze`` would write), so the
    report shows them without analysing the run again."""
    import dataclasses

    from brainlrp.analysis.benchmark import (
        BENCHMARK_COLUMNS,
        read_planted,
        run_recommendation,
        with_planted,
    )
    from brainlrp.analysis.summary import read_summary

    table_path, summary_path = rd.analysis / "method_benchmark.tsv", rd.analysis / "summary.json"
    if not (table_path.is_file() and summary_path.is_file()):
        return
    own = pd.read_csv(table_path, sep="\t")
    if "truth" not in own:  # written before the column existed
        scored = own[["mass_accuracy", "auc_abs", "spearman_restoration"]].notna().any(axis=1)
        own["truth"] = np.where(scored, "simulated", "none")
    # A table written by an older brainlrp may lack newer columns: they are unmeasured.
    own = own[own["truth"] != "planted"].reindex(columns=list(BENCHMARK_COLUMNS))
    merged = with_planted(own, read_planted(rd.root))
    recommended = run_recommendation(merged)
    write_table(table_path, merged)
    summary = read_summary(summary_path)
    dataclasses.replace(summary, recommended_method=recommended).write(summary_path)


def _explain_and_analyse(sub: RunDir, methods: list[str], config: BenchmarkConfig,
                         progress: bool, say, split: str) -> pd.DataFrame:
    from brainlrp.analysis.stage import analyze
    from brainlrp.explain.stage import explain_run

    say(f"{split}: explaining the planted scans with {len(methods)} methods")
    explain_run(sub.root, methods=methods, split="test", batch_size=config.batch_size,
                progress=progress)
    say(f"{split}: scoring the methods against the planted truth")
    n_test = int((pd.read_csv(sub.predictions, sep="\t")["split"] == "test").sum())
    analyze(sub.root, methods=list(methods), progress=progress,
            restoration_subjects=min(n_test, 10))
    return pd.read_csv(sub.analysis / "method_benchmark.tsv", sep="\t")


def _write_planted(cohort: Path, pid: str, planted, original: np.ndarray, grid,
                   subtype: str, severity: float) -> None:
    from brainlrp.simulate import ground_truth as gt
    from brainlrp.simulate.anatomy import template_anatomy
    from brainlrp.simulate.stage import write_nifti

    paths = gt.subject_paths(cohort, pid)
    affine = grid.affine_array
    write_nifti(paths["t1"], planted.image, affine, np.float32,
                "brainlrp planted atrophy (model grid, prepared)")
    write_nifti(gt.healthy_twin_path(cohort, pid), original, affine, np.float32,
                "the original scan: the planted scan's healthy twin")
    write_nifti(paths["tissue_loss"], planted.tissue_loss, affine, np.float32,
                "fraction of tissue lost to the planted disease")
    write_nifti(paths["labels"], planted.labels_after, affine, np.int16,
                "Neuromorphometrics labels after planting")
    a = template_anatomy(grid)
    table = gt.volume_table(planted.labels_before, planted.labels_after, a.label_names,
                            grid.voxel_volume, planted.losses)
    write_table(paths["volume_loss"], table)
    write_json(paths["sidecar"], {"Planted": True, "subtype": subtype,
                                  "severity": round(float(severity), 6),
                                  "label_losses": {k: round(v, 6)
                                                   for k, v in planted.losses.items()}})


def _atrophied_fraction(loss: np.ndarray, grid) -> float:
    from brainlrp.configs import DEFAULT_THRESHOLD
    from brainlrp.data.grid import brain_mask

    brain = brain_mask(grid)
    return round(float((loss[brain] > DEFAULT_THRESHOLD).mean()), 5)


def _suffix(path: Path) -> str:
    name = path.name
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix


def _link_or_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        return
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def read_benchmark(run: str | os.PathLike) -> dict | None:
    """``benchmark/benchmark.json`` of a run (None when it has not been benchmarked)."""
    path = Path(run) / FOLDER / "benchmark.json"
    return read_json(path) if path.is_file() else None


__all__ = ["BenchmarkConfig", "BenchmarkResult", "benchmark",
           "held_out_controls", "read_benchmark"]

"""Which explanation finds what the model uses? The method benchmark on a simulated run.

Usage::

    python benchmarks/explanation_benchmark.py RUN [--ig-steps 16] [--methods a,b,...]
    python benchmarks/explanation_benchmark.py RUN --references-only   # the last two tables

``RUN`` is a trained run on a simulated cohort with healthy twins (``brainlrp demo``
or ``brainlrp simulate`` + ``brainlrp train``). The script explains the test scans
with every method, runs ``analyze`` (ground truth, restoration importance from the
twins, randomisation check, AOPC, and each method's cost, timed against the input
gradient on 3 AD test scans: :mod:`brainlrp.analysis.costs`) and prints
``analysis/method_benchmark.tsv`` as a Markdown table, then how close each reference
built from the training controls comes to the healthy twin:

* ``|ref - twin|``: mean absolute difference inside the brain (0 = the twin);
* ``AUC |x - ref|``: voxel AUC of the difference map against the atrophy mask (the
  twin's own difference map is the ground truth's upper bound). For a ``-restore``
  reference the difference is one-sided: only where the scan is darker.

and last, the **ceiling**: how good a reference must be for ``lrp-ref`` to reach the
scores, from the healthy twin (which shares the scan's noise image, as no reference
on real data can), the twin **scanned again** (same person and scanner, fresh noise:
a perfectly registered healthy baseline scan, the best a real reference could be),
that re-scan misregistered by a smooth displacement of 1 and 2 mm RMS, and the
recommended ``knn-restore``; each with its ``-restore`` form.

Every table, with the commit, the run's seed and cohort and the script's settings, is
written to ``benchmarks/results/NAME.json`` and ``NAME.md`` (``--name``, default
``explanation_benchmark``; ``--references-only`` writes ``NAME_references``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

METHODS = ("gradient", "gb", "ig", "lrp-b0", "lrp-b1", "lrp-epsilon-plus",
           "lrp-epsilon-gamma-box", "lrp-epsilon-plus-flat",
           "lrp-ref@mean", "lrp-ref@knn", "lrp-ref@pca", "lrp-ref@twin",
           "lrp-ref@mean-restore", "lrp-ref@knn-restore", "lrp-ref@pca-restore",
           "lrp-ref@twin-restore", "lrp-ref@rescan", "lrp-ref@rescan-restore",
           "ig-ref@mean", "ig-ref@pca", "ig-ref@twin",
           "ig-ref@knn-restore", "ig-ref@pca-restore",
           "occlusion-ref@pca", "occlusion-ref@twin", "edges", "noise")


def markdown(frame: pd.DataFrame) -> str:
    """A Markdown table (numbers with 3 decimals), without extra dependencies."""
    def cell(v) -> str:
        if isinstance(v, float):
            return "–" if v != v else f"{v:.3f}"
        return str(v)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |",
             "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def reference_quality(run: Path, n_scans: int = 8) -> pd.DataFrame:
    """Mean |reference - twin| and the difference map's AUC per reference kind."""
    import brainlrp.simulate.references  # noqa: F401  (registers twin, rescan)
    from brainlrp.analysis import metrics
    from brainlrp.analysis.groundtruth import TruthMasks
    from brainlrp.card import read_card
    from brainlrp.data import load_inputs
    from brainlrp.data.reference import RESTORE, References
    from brainlrp.run import RunDir

    rd = RunDir(run)
    prep = read_card(run).prep
    refs = References(rd, prep)
    pred = pd.read_csv(run / "predictions.tsv", sep="\t", dtype={"participant_id": str})
    ad = pred[(pred["label"] == 1) & (pred["split"] == "test")].head(n_scans)
    masks = TruthMasks(rd.cohort_source(), prep.grid)
    brain = refs.brain
    rows = []
    for row in ad.itertuples():
        x = load_inputs(run, [row.scan_id], prep)[0, 0]
        twin = refs.twin(row.scan_id)
        mask = masks.mask(row.participant_id)
        built = {}
        for kind in ("twin", "mean", "knn", "pca"):
            tick = time.perf_counter()
            ref = twin if kind == "twin" else refs.get(kind, [row.scan_id], x[None, None])[0, 0]
            built[kind] = (ref, time.perf_counter() - tick)
        for kind, (ref, seconds) in list(built.items()):  # -restore: from the same image
            tick = time.perf_counter()
            built[kind + RESTORE] = (refs.restore(x, ref), seconds + time.perf_counter() - tick)
        for kind, (ref, seconds) in built.items():
            diff = np.abs(x - ref)
            rows.append({"reference": kind, "scan_id": row.scan_id,
                         "ref_minus_twin": float(np.abs(ref - twin)[brain].mean()),
                         "auc_diff": metrics.roc_auc(diff[brain], mask[brain]),
                         "mass_diff": metrics.mass_accuracy(diff, mask), "seconds": seconds})
    return (pd.DataFrame(rows).groupby("reference", sort=False)
            [["ref_minus_twin", "auc_diff", "mass_diff", "seconds"]].mean().reset_index())


def misregister(image: np.ndarray, brain: np.ndarray, rms_mm: float, resolution: float,
                seed: int = 0, spacing_mm: float = 12.0) -> np.ndarray:
    """``image`` pulled through a smooth random displacement (cubic B-spline lattice of
    ``spacing_mm``) scaled to ``rms_mm`` root-mean-square length inside ``brain``."""
    from scipy import ndimage as ndi

    from brainlrp.simulate.anatomy import bspline_field

    field = bspline_field(image.shape, spacing_mm / resolution, 1.0,
                          np.random.default_rng(seed))
    rms = float(np.sqrt((field ** 2).sum(axis=0)[brain].mean()))
    coords = np.indices(image.shape, dtype=np.float32) + field * (rms_mm / resolution / rms)
    return (ndi.map_coordinates(image, coords, order=1) * brain).astype(np.float32)


def reference_ceiling(run: Path, n_scans: int | None = None, shifts_mm=(1.0, 2.0)
                      ) -> pd.DataFrame:
    """``lrp-ref`` scored against the ground truth from references of known quality
    (see the module docstring): mean p(AD) of the reference, mass accuracy, |.|-AUC and
    restoration Spearman over the AD test scans with restoration importance (the first
    ``n_scans`` of them)."""
    import torch

    import brainlrp.simulate.references  # noqa: F401  (registers twin, rescan)
    from brainlrp.analysis import metrics
    from brainlrp.analysis.groundtruth import TruthMasks
    from brainlrp.analysis.regions import AtlasRegions
    from brainlrp.analysis.stage import AnalysisConfig
    from brainlrp.analysis.twins import area_masks, area_matrix, restored_area_sums
    from brainlrp.data import load_inputs
    from brainlrp.data.reference import RESTORE, References
    from brainlrp.explain import explain
    from brainlrp.run import RunDir
    from brainlrp.training import load_model

    rd = RunDir(run)
    model, card = load_model(run)
    prep = card.prep
    refs = References(rd, prep)
    brain = refs.brain
    config = AnalysisConfig()
    atlas = AtlasRegions.fit(config.atlas, prep.grid)
    areas = area_matrix(area_masks(atlas.area_codes, atlas.n_areas, config.restoration_dilate))
    restoration = pd.read_csv(run / "analysis" / "restoration.tsv", sep="\t",
                              dtype={"participant_id": str})
    pred = pd.read_csv(run / "predictions.tsv", sep="\t", dtype={"participant_id": str})
    ad = pred[(pred["label"] == 1) & (pred["split"] == "test")
              & pred["scan_id"].isin(set(restoration["scan_id"]))].head(n_scans or len(pred))
    masks = TruthMasks(rd.cohort_source(), prep.grid)
    rows = []
    for row in ad.itertuples():
        x = load_inputs(run, [row.scan_id], prep)[0, 0]
        mask = masks.mask(row.participant_id)
        importance = (restoration[restoration["scan_id"] == row.scan_id].set_index("area")
                      ["drop"].reindex(atlas.areas["region"]).to_numpy())
        rescan = refs.rescan(row.scan_id)
        built = {"twin": refs.twin(row.scan_id), "twin re-scanned": rescan}
        for mm in shifts_mm:
            built[f"twin re-scanned, {mm:g} mm off"] = misregister(
                rescan, brain, mm, prep.grid.resolution, seed=row.Index)
        built["knn"] = refs.get("knn", [row.scan_id], x[None, None])[0, 0]
        xt = torch.from_numpy(x[None, None])
        for name, base in built.items():
            for restore in (False, True):
                ref = refs.restore(x, base) if restore else base
                rt = torch.from_numpy(np.ascontiguousarray(ref, dtype=np.float32)[None, None])
                with torch.no_grad():
                    p_ad = float(torch.softmax(model(rt), 1)[0, 1])
                rel = explain(model, xt, "lrp-ref", reference=rt)[0, 0].numpy()
                restored = restored_area_sums(np.maximum(rel, 0)[None], areas)[0]
                rows.append({
                    "reference": name + (RESTORE if restore else ""), "p_ad_reference": p_ad,
                    "mass_accuracy": metrics.mass_accuracy(rel, mask),
                    "auc_abs": metrics.roc_auc(np.abs(rel)[brain], mask[brain]),
                    "spearman_restoration": metrics.spearman(restored, importance)})
    return (pd.DataFrame(rows).groupby("reference", sort=False).mean().reset_index())


def reference_tables(run: Path) -> dict[str, pd.DataFrame]:
    """The references against the healthy twin, then the ceiling table (printed)."""
    tables = {"references": reference_quality(run)}
    print("references against the healthy twin:")
    print(markdown(tables["references"]))
    tables["ceiling"] = reference_ceiling(run)
    print("\nceiling: lrp-ref from references of known quality (AD test scans):")
    print(markdown(tables["ceiling"]))
    return tables


def save(name: str, run: Path, args: argparse.Namespace, tables: dict[str, pd.DataFrame],
         extra: dict | None = None) -> None:
    """``benchmarks/results/NAME.json`` (every table, the run's seed and cohort, the
    script's settings, the commit) and ``NAME.md`` (the tables as printed)."""
    import json

    from _results import write_result

    record = json.loads((run / "run.json").read_text())
    train = (record.get("stages", {}).get("train") or {}).get("config") or {}
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    text = "\n\n".join(f"### {title}\n\n{markdown(frame)}" for title, frame in tables.items())
    path = write_result(name, {"run": str(run.resolve()), "seed": train.get("seed"),
                               "cohort": record.get("cohort"), "train": train,
                               "settings": settings, **(extra or {}),
                               "tables": {k: json.loads(f.to_json(orient="records"))
                                          for k, f in tables.items()}}, text)
    print(f"\nwrote {path} and {path.with_suffix('.md')}")


def main() -> None:
    from brainlrp.analysis import analyze
    from brainlrp.explain.stage import explain_run

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--ig-steps", type=int, default=16)
    parser.add_argument("--restoration-subjects", type=int, default=10)
    parser.add_argument("--skip-explain", action="store_true")
    parser.add_argument("--all-scans", action="store_true",
                        help="Explain the controls too (slower; the scores use AD scans).")
    parser.add_argument("--references-only", action="store_true",
                        help="Only the reference tables (on a run the benchmark analysed).")
    parser.add_argument("--name", default="explanation_benchmark",
                        help="Results go to benchmarks/results/NAME.json and NAME.md.")
    args = parser.parse_args()
    if args.references_only:
        save(args.name + "_references", args.run, args, reference_tables(args.run))
        return
    methods = [m for m in args.methods.split(",") if m]
    tick = time.perf_counter()
    if not args.skip_explain:
        # The ground-truth scores are computed on patients: only AD test scans are
        # explained (methods the run already has keep their controls' maps).
        explain_run(args.run, methods=methods, split="test", batch_size=2, progress=False,
                    label=None if args.all_scans else 1,
                    method_options={"ig": {"steps": args.ig_steps},
                                    "ig-ref": {"steps": args.ig_steps}})
    explained = time.perf_counter() - tick
    result = analyze(args.run, methods=methods, progress=False, faithfulness_subjects=2,
                     sanity_subjects=1, restoration_subjects=args.restoration_subjects,
                     cost_subjects=3)
    bench = pd.read_csv(args.run / "analysis" / "method_benchmark.tsv", sep="\t")
    cols = ["rank", "method", "recommended", "mass_accuracy", "chance_mass_accuracy",
            "auc_abs", "spearman_restoration", "topk_recall", "sanity_top_layer",
            "sanity_all_layers", "aopc_difference", "cost_ratio"]
    print(f"explain {explained:.0f} s, analyze {result.seconds:.0f} s "
          f"({', '.join(f'{k} {v:.0f} s' for k, v in result.timings.items() if v > 5)})")
    print(markdown(bench[cols]))
    twins = pd.read_csv(args.run / "analysis" / "twins.tsv", sep="\t")
    evidence = {"n": len(twins), "p_ad": twins["p_ad"].mean(),
                "p_ad_twin": twins["p_ad_twin"].mean(),
                "evidence_auc": twins["evidence_auc"].mean(),
                "evidence_mass": twins["evidence_mass"].mean(),
                "chance_mass": twins["atrophied_fraction"].mean()}
    print(f"\ntwins: p(AD) patient {evidence['p_ad']:.3f} -> twin "
          f"{evidence['p_ad_twin']:.3f} (n = {len(twins)}); evidence |patient - twin| "
          f"AUC {evidence['evidence_auc']:.3f}, mass {evidence['evidence_mass']:.3f} "
          f"(chance {evidence['chance_mass']:.3f})")
    print()
    tables = {"methods": bench[cols], **reference_tables(args.run)}
    save(args.name, args.run, args, tables,
         {"seconds": {"explain": round(explained, 1), "analyze": round(result.seconds, 1)},
          "twins": {k: float(round(v, 4)) for k, v in evidence.items()}})


if __name__ == "__main__":
    main()

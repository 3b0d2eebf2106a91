"""Does the recommended method beat the floors, and reach the targets, on every table?

Reads the method tables other scripts wrote to ``benchmarks/results/`` (each a run's
``analysis/method_benchmark.tsv`` rows, through ``benchmarks/method_table.py``) and the
re-scan ceiling of ``benchmarks/explanation_benchmark.py --references-only``, and writes
``benchmarks/results/recommendation_check.md`` and ``.json``.

The methods checked are fixed before any of these test tables is read: the one the
default cohort's planted *validation* controls chose (``RUN/benchmark/benchmark.json``,
recorded in the planted table as ``recommended``) and the catalog's default. For each
table (planted test controls of the demo run, the demo's simulated patients, the
``frontal`` and ``right-temporal`` cohorts) each is compared on mass, |.|-AUC and ρ
restoration with the floors ``edges``, ``noise`` and its own reference's difference from
the scan (``diff@<reference>``), and with the issue's targets: mass >= 0.65, ρ >= 0.75
and |.|-AUC within 0.03 of the re-scan ceiling (``lrp-ref`` from the healthy twin scanned
again, the best reference real data could have; its ``-restore`` form for a ``-restore``
reference), measured on the demo run's simulated patients and so compared with their
table only (planted controls have no re-scan).

Usage::

    python benchmarks/recommendation_check.py
"""

from __future__ import annotations

import json

from _results import RESULTS, write_result

from brainlrp import catalog

#: (results name, what the table rests on).
TABLES = (("demo_planted_benchmark", "planted test controls (demo run)"),
          ("demo_method_benchmark", "simulated patients (demo run)"),
          ("pattern_frontal", "simulated patients (frontal cohort)"),
          ("pattern_right_temporal", "simulated patients (right-temporal cohort)"))
MEASURES = {"mass_accuracy": "mass", "auc_abs": "abs-AUC", "spearman_restoration": "ρ"}
TARGET_MASS, TARGET_RHO, TARGET_AUC_GAP = 0.65, 0.75, 0.03
#: The table whose scans the re-scan ceiling was measured on.
CEILING_TABLE = "demo_method_benchmark"


def _rows(name: str) -> dict[str, dict] | None:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        return None
    return {r["method"]: r for r in json.loads(path.read_text())["rows"]}


def _ceiling() -> dict[str, float]:
    """|.|-AUC of lrp-ref from the re-scan (and its -restore form), by reference name."""
    path = RESULTS / "demo_explanation_benchmark_references.json"
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text())["tables"]["ceiling"]
    return {r["reference"]: r["auc_abs"] for r in rows}


def _fmt(v) -> str:
    """Three decimals: a target such as mass >= 0.65 is judged on the unrounded value."""
    return "–" if v is None or v != v else f"{v:.3f}"


def check(rows: dict[str, dict], method: str, ceiling: dict[str, float]) -> dict:
    """The method's scores, its floors', where it does not beat them, and the targets."""
    row = rows.get(method)
    if row is None:
        return {"method": method, "explained": False}
    own = catalog.own_difference(method)
    floors = [f for f in (catalog.EDGES_FLOOR, catalog.NOISE_FLOOR, own) if f in rows]
    not_beaten = [f"{MEASURES[c]} ({f} {_fmt(rows[f][c])})" for f in floors for c in MEASURES
                  if row[c] is not None and rows[f][c] is not None and not row[c] > rows[f][c]]
    ref = catalog.reference_of(method) or ""
    # The ceiling table's names: "twin re-scanned" and "twin re-scanned-restore".
    rescan = "twin re-scanned" + ("-restore" if ref.endswith("-restore") else "")
    top = ceiling.get(rescan)
    auc_gap = None if top is None or row["auc_abs"] is None else top - row["auc_abs"]
    return {"method": method, "explained": True,
            **{c: row[c] for c in MEASURES}, "floors": floors, "not_beaten": not_beaten,
            "ceiling_reference": rescan, "ceiling_auc_abs": top, "auc_gap": auc_gap,
            "targets": {"mass": row["mass_accuracy"] is not None
                        and row["mass_accuracy"] >= TARGET_MASS,
                        "rho": row["spearman_restoration"] is not None
                        and row["spearman_restoration"] >= TARGET_RHO,
                        "auc": auc_gap is not None and auc_gap <= TARGET_AUC_GAP}}


def main() -> None:
    planted = _rows("demo_planted_benchmark")
    if planted is None:
        raise SystemExit("benchmarks/results/demo_planted_benchmark.json is missing: run "
                         "brainlrp benchmark and benchmarks/method_table.py --truth planted")
    chosen = next(m for m, r in planted.items() if r.get("recommended"))
    methods = list(dict.fromkeys([chosen, catalog.DEFAULT_METHODS[0]]))
    ceiling = _ceiling()
    results, lines = [], [
        "| table | method | mass | abs-AUC | ρ restoration | not better than a floor on | "
        "abs-AUC below the re-scan ceiling | targets met (mass ≥ 0.65, ρ ≥ 0.75, abs-AUC "
        "within 0.03) |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | --- |"]
    for name, what in TABLES:
        rows = _rows(name)
        if rows is None:
            continue
        # The ceiling was measured on the demo run's simulated patients: only their
        # table is compared with it.
        top = ceiling if name == CEILING_TABLE else {}
        for method in methods:
            c = check(rows, method, top) | {"table": name}
            results.append(c)
            if not c["explained"]:
                lines.append(f"| {what} | `{method}` | not explained on this run | | | | | |")
                continue
            met = [k for k, ok in c["targets"].items() if ok]
            gap = (f"{c['auc_gap']:.3f} (ceiling {c['ceiling_auc_abs']:.3f})"
                   if c["auc_gap"] is not None else "–")
            lines.append(f"| {what} | `{method}` | {_fmt(c['mass_accuracy'])} | "
                         f"{_fmt(c['auc_abs'])} | {_fmt(c['spearman_restoration'])} | "
                         f"{', '.join(c['not_beaten']) or 'none: beats all'} | {gap} | "
                         f"{', '.join(met) or 'none'} |")
    write_result("recommendation_check", {"chosen_on_planted_validation": chosen,
                                          "catalog_default": catalog.DEFAULT_METHODS[0],
                                          "ceiling": ceiling, "checks": results},
                 "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

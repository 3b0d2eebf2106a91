"""A run's method benchmark as a results file, for README's tables.

Reads ``RUN/analysis/method_benchmark.tsv`` (the rows of one ground truth: ``simulated``
from ``analyze``, ``planted`` from ``brainlrp benchmark``) and writes
``benchmarks/results/NAME.md`` (the Markdown table README shows, through
``benchmarks/readme_tables.py``) and ``NAME.json`` (every column, with the commit, the
run's cohort, seed, model metrics and the number of scans scored).

Usage::

    python benchmarks/method_table.py RUN --name demo_method_benchmark [--truth simulated]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _results import write_result


def _fmt(value, digits: int = 2) -> str:
    import math

    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


def main() -> None:
    import pandas as pd

    from brainlrp import catalog

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--truth", default="simulated", choices=("simulated", "planted"))
    args = parser.parse_args()
    table = pd.read_csv(args.run / "analysis" / "method_benchmark.tsv", sep="\t")
    if "truth" in table:
        table = table[table["truth"] == args.truth]
    if table.empty:
        sys.exit(f"{args.run} has no {args.truth} rows in analysis/method_benchmark.tsv")
    unused = "unused_change_share" in table and table["unused_change_share"].notna().any()
    lines = ["| rank | method | mass | abs-AUC | ρ restoration | "
             + ("relevance on unused change | " if unused else "")
             + "top-layer randomisation ρ | cost (x gradient) |",
             "| ---: | --- | ---: | ---: | ---: | " + ("---: | " if unused else "")
             + "---: | ---: |"]
    for _, row in table.iterrows():
        info = catalog.describe(row["method"])
        note = (" (recommended)" if bool(row["recommended"])
                else " (needs the twin)" if bool(row["needs_twin"])
                else " (floor)" if info.family == "floor" else "")
        rank = "–" if pd.isna(row["rank"]) else f"{int(row['rank'])}"
        lines.append(f"| {rank} | `{row['method']}`{note} | {_fmt(row['mass_accuracy'])} | "
                     f"{_fmt(row['auc_abs'])} | {_fmt(row['spearman_restoration'])} | "
                     + (f"{_fmt(row['unused_change_share'])} | " if unused else "")
                     + f"{_fmt(row['sanity_top_layer'])} | {_fmt(row['cost_ratio'], 1)}x |")
    run = json.loads((args.run / "run.json").read_text())
    metrics = json.loads((args.run / "metrics.json").read_text())
    record = {"run": str(args.run), "truth": args.truth,
              "cohort": run.get("cohort"), "train": run.get("stages", {}).get("train", {})
              .get("config"), "test_metrics": metrics.get("test"),
              "chance_mass_accuracy": float(table["chance_mass_accuracy"].dropna().iloc[0])
              if table["chance_mass_accuracy"].notna().any() else None,
              "rows": json.loads(table.to_json(orient="records"))}
    twins = args.run / "analysis" / "twins.tsv"
    if twins.is_file():
        t = pd.read_csv(twins, sep="\t")
        record["twins"] = {"n": len(t), "p_ad_mean": round(float(t["p_ad"].mean()), 3),
                           "p_ad_twin_mean": round(float(t["p_ad_twin"].mean()), 3)}
    write_result(args.name, record, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Is planting honest? The method ranking from planted controls against the ranking from
the simulator's true patients, on one simulated run.

A simulated cohort has both truths: its AD patients' own atrophy (``analyze`` scores the
methods on it: ``analysis/method_benchmark.tsv``, ``truth = simulated``) and, after
``brainlrp benchmark RUN``, atrophy planted into its held-out controls as if they were
real scans (``benchmark/method_benchmark.tsv``, ``truth = planted``). Over the methods
both tables hold, this script ranks each table the way the benchmark does (mean of the
ranks in mass accuracy, ``|.|``-AUC and restoration Spearman) and reports the Spearman
correlation of the two rankings, each measure's correlation, and the scores side by side.

Results go to ``benchmarks/results/planting_honesty.json`` (with the commit) and, as a
Markdown table, to ``benchmarks/results/planting_honesty.md``.

Usage::

    python benchmarks/planting_honesty.py RUN
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _results import write_result

SCORES = ("mass_accuracy", "auc_abs", "spearman_restoration")



def main() -> None:
    import pandas as pd
    from scipy.stats import spearmanr

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    args = parser.parse_args()
    own = pd.read_csv(args.run / "analysis" / "method_benchmark.tsv", sep="\t")
    if "truth" in own:
        own = own[own["truth"] == "simulated"]
    planted = pd.read_csv(args.run / "benchmark" / "method_benchmark.tsv", sep="\t")
    common = [m for m in own["method"] if m in set(planted["method"])]
    if len(common) < 3:
        sys.exit(f"only {len(common)} methods in both tables")
    a = own.set_index("method").loc[common, list(SCORES)]
    b = planted.set_index("method").loc[common, list(SCORES)]

    def ranking(scores: pd.DataFrame) -> pd.Series:
        ranks = scores.rank(ascending=False, method="average", na_option="bottom")
        return ranks.mean(axis=1).rank(method="average")

    rank_a, rank_b = ranking(a), ranking(b)
    rho = float(spearmanr(rank_a, rank_b).statistic)
    per_measure = {c: float(spearmanr(a[c], b[c], nan_policy="omit").statistic) for c in SCORES}
    table = pd.DataFrame({"rank_simulated": rank_a, "rank_planted": rank_b})
    for c in SCORES:
        table[f"{c}_simulated"] = a[c]
        table[f"{c}_planted"] = b[c]
    table = table.sort_values("rank_simulated")
    bench = json.loads((args.run / "benchmark" / "benchmark.json").read_text())
    result = {"run": str(args.run), "n_methods": len(common),
              "methods": common, "rank_spearman": round(rho, 4),
              "measure_spearman": {k: round(v, 4) for k, v in per_measure.items()},
              "planted": {k: bench.get(k) for k in ("disease_model", "n", "seed",
                                                    "n_planted", "mean_rise",
                                                    "recommended")},
              "recommended_simulated": (own.loc[own["recommended"].astype(bool), "method"]
                                        .tolist() or [None])[0],
              "table": table.round(4).reset_index().to_dict(orient="records")}
    lines = ["| method | rank (simulated) | rank (planted) | mass sim / planted | "
             "abs-AUC sim / planted | rho restoration sim / planted |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for method, row in table.iterrows():
        lines.append(f"| `{method}` | {row['rank_simulated']:g} | {row['rank_planted']:g} | "
                     + " | ".join(f"{row[f'{c}_simulated']:.2f} / {row[f'{c}_planted']:.2f}"
                                  for c in SCORES) + " |")
    write_result("planting_honesty", result, "\n".join(lines))
    print("\n".join(lines))
    print(f"rank correlation over {len(common)} methods: {rho:.3f}; per measure "
          + ", ".join(f"{k} {v:.3f}" for k, v in per_measure.items()))


if __name__ == "__main__":
    main()

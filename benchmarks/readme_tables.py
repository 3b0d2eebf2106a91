"""Put the benchmark tables of ``benchmarks/results/`` into README.md.

A README block between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` holds
the Markdown table of ``benchmarks/results/NAME.md`` exactly, as written by the script that
measured it, or rendered here from the script's ``NAME.json`` (:data:`RENDERERS`). This
script rewrites every such block from its file;
``tests/test_readme_tables.py`` fails when a block and its file differ, so a number in
the README's tables is always the one a script wrote.

Usage::

    python benchmarks/readme_tables.py          # rewrite README.md
    python benchmarks/readme_tables.py --check  # exit 1 if a block is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results"
BLOCK = re.compile(r"(<!-- results:(?P<name>[A-Za-z0-9_.-]+) -->\n)(?P<body>.*?)"
                   r"(<!-- /results:(?P=name) -->)", re.S)


def blocks(text: str) -> list[tuple[str, str]]:
    """``(name, body)`` of every results block of a README text."""
    return [(m.group("name"), m.group("body")) for m in BLOCK.finditer(text)]


def _new_patient(data: dict) -> str:
    routes = [("ch2bet --resample", "`ch2bet.nii.gz --resample` (the MNI-space file as it is)"),
              ("ch2 --resample", "`ch2.nii.gz --resample`"),
              ("ch2bet --register", "`ch2bet.nii.gz --register`"),
              ("ch2 --register", "`ch2.nii.gz --register`"),
              ("moved ch2bet --register", "`ch2bet` moved to a 1 x 1 x 1.2 mm LAS grid by a "
                                          "known transform, `--register`"),
              ("moved ch2 --register", "`ch2` moved likewise, `--register`")]
    lines = ["| route | p(AD) | time |", "| --- | ---: | ---: |"]
    for key, label in routes:
        r = data["routes"][key]
        if "refused" in r:
            why = r["refused"].split(" (")[0].removeprefix("error: ")
            lines.append(f"| {label} | refused: {Path(why.split(' ')[0]).name} "
                         f"{' '.join(why.split(' ')[1:])} | {r['seconds']:.0f} s |")
        else:
            lines.append(f"| {label} | {r['p_ad']:.3f} ({r['predicted']}) | "
                         f"{r['seconds']:.0f} s |")
    return "\n".join(lines)


def _costs_under_load(data: dict) -> str:
    lines = ["| x gradient | `analyze`: `lrp-b0` | `analyze`: `lrp-ref@knn-restore` | "
             "`lrp_speed.py` `lrp-b0`, 1 / 2 threads |", "| --- | ---: | ---: | ---: |"]
    for row in data["rows"]:
        label = ("as it is" if row["busy_processes"] == 0
                 else f"+ {row['busy_processes']} busy processes")
        a = row["analyze"]
        lines.append(f"| {label} | {a['lrp-b0']:.2f} | {a['lrp-ref@knn-restore']:.2f} | "
                     f"{row['lrp_speed_lrp_b0_1_thread']:.2f} / "
                     f"{row['lrp_speed_lrp_b0_2_threads']:.2f} |")
    return "\n".join(lines)


def _demo_method_benchmark_lead(data: dict) -> str:
    twins = data.get("twins") or {}
    text = (f"Scored on the demo run's AD test scans (its model's test balanced accuracy "
            f"{data['test_metrics']['balanced_accuracy']:.3f}); chance mass is "
            f"{data['chance_mass_accuracy']:.2f}, the atrophied share of the brain.")
    if twins:
        text += (f" The model provably uses the simulated atrophy: p(AD) of {twins['n']} "
                 f"patients falls from {twins['p_ad_mean']:.2f} to {twins['p_ad_twin_mean']:.2f}"
                 " on average when each is replaced by its healthy twin.")
    return text


def _planting_honesty_lead(data: dict) -> str:
    planted, m = data["planted"], data["measure_spearman"]
    return (f"`brainlrp benchmark RUN --n {planted['n']}` planted the "
            f"`{planted['disease_model']}` disease model into {planted['n_planted']['val']} "
            f"validation and {planted['n_planted']['test']} test controls of the demo run; "
            f"p(AD) rose by {planted['mean_rise']:.2f} on average on the test plants, and the "
            f"method chosen on the validation plants is `{planted['recommended']}`. Ranked "
            f"as the benchmark ranks, the {data['n_methods']} methods both tables hold "
            f"correlate at Spearman **{data['rank_spearman']:.2f}** between the planted "
            f"controls and the simulated patients (per measure: mass "
            f"{m['mass_accuracy']:.2f}, abs-AUC {m['auc_abs']:.2f}, ρ restoration "
            f"{m['spearman_restoration']:.2f}).")


#: Tables and sentences rendered from a script's JSON results (name -> renderer).
RENDERERS = {"new_patient": _new_patient, "costs_under_load": _costs_under_load,
             "demo_method_benchmark_lead": _demo_method_benchmark_lead,
             "planting_honesty_lead": _planting_honesty_lead}
#: Blocks rendered from another name's JSON (block name -> results name).
SOURCES = {"demo_method_benchmark_lead": "demo_method_benchmark",
           "planting_honesty_lead": "planting_honesty"}


def expected(name: str) -> str:
    """The block body for ``benchmarks/results/NAME.md`` (or NAME.json's rendering)."""
    if name in RENDERERS:
        import json

        data = json.loads((RESULTS / f"{SOURCES.get(name, name)}.json").read_text())
        return RENDERERS[name](data).rstrip("\n") + "\n"
    path = RESULTS / f"{name}.md"
    if not path.is_file():
        raise FileNotFoundError(f"README names results:{name} but {path} does not exist")
    return path.read_text().rstrip("\n") + "\n"


def render(text: str) -> str:
    """The README text with every block rewritten from its file."""
    return BLOCK.sub(lambda m: m.group(1) + expected(m.group("name")) + m.group(4), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = README.read_text()
    new = render(text)
    if args.check:
        stale = [n for n, body in blocks(text) if body != expected(n)]
        if stale:
            sys.exit(f"README tables out of date: {', '.join(stale)} (run "
                     "python benchmarks/readme_tables.py)")
        return
    if new != text:
        README.write_text(new)
    print(f"{len(blocks(new))} results block(s) in README.md")


if __name__ == "__main__":
    main()

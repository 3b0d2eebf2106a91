"""Training and classification: metrics (trials mean ± SD), curves, confusion matrix, ROC."""

from __future__ import annotations

import pandas as pd

from brainlrp.analysis.scans import ANALYSED
from brainlrp.report import figures as figs
from brainlrp.report.html import Section, details, key_values, table
from brainlrp.report.sections.context import Context, fixed
from brainlrp.report.sections.spec import SectionSpec

METRICS = {"balanced_accuracy": "balanced accuracy", "sensitivity": "sensitivity",
           "specificity": "specificity", "roc_auc": "ROC AUC", "accuracy": "accuracy"}
CONFIG_KEYS = ("arch", "epochs", "batch_size", "lr", "weight_decay", "patience",
               "early_stopping_start", "trials", "flip", "shift", "seed")


def build(ctx: Context, sec: Section) -> None:
    """The metrics table, trials, training curves, classification figure, configuration."""
    data = ctx.data
    metrics = data.metrics
    if metrics is not None:
        test = metrics.get("test", {})
        frame = pd.DataFrame([{"metric": name, "test": test.get(k)}
                              for k, name in METRICS.items()])
        summ = metrics.get("trials_summary")
        cols = {"metric": "metric", "test": "kept model (test)"}
        if summ:
            frame["trials"] = [f"{summ[k]['mean']:.3f} ± {summ[k]['sd']:.3f}"
                               if k in summ else "–" for k in METRICS]
            cols["trials"] = f"{len(metrics.get('trials', []))} trials, mean ± SD"
        sec.add(table(frame, cols, formats={"test": fixed},
                      caption=f"Test split, n = {test.get('n', '?')} scans. The kept model is "
                              f"the trial with the best validation balanced accuracy "
                              f"(trial {metrics.get('selected_trial', '?')}).",
                      table_id="metrics"))
        trials = metrics.get("trials") or []
        if len(trials) > 1:
            t = pd.DataFrame([{"trial": x.get("trial"), "seed": x.get("seed"),
                               "epochs": x.get("epochs"),
                               "best val bacc": x.get("best_val_bacc"),
                               "val bacc": (x.get("val") or {}).get("balanced_accuracy"),
                               "test bacc": (x.get("test") or {}).get("balanced_accuracy")}
                              for x in trials])
            sec.add(details("Trials", table(t)))
    log = data.training_log
    train_cfg = data.card.train_config
    if log is not None and not log.empty and "epoch" in log:
        if "trial" not in log:
            log = log.assign(trial=0)
        selected = (metrics or {}).get("selected_trial")
        fig = figs.training_curves(log, selected, train_cfg.early_stopping_start
                                   if train_cfg is not None else None)
        sec.add(ctx.fig(fig, "training curves", "Loss and balanced accuracy per epoch "
                        "(solid: training, dashed: validation). The star marks the kept "
                        "checkpoint (best validation balanced accuracy); the shaded epochs are "
                        "ignored by early stopping.", "fig-training-curves"))
    test = data.predictions[data.predictions["split"] == "test"]
    split = "test"
    if test.empty:
        test, split = data.test_scans(), ANALYSED
    if len(test):
        confusion, roc = data.tables["confusion"], data.tables["roc"]
        fig = figs.classification_figure(
            test, confusion[confusion["split"] == split], roc[roc["split"] == split])
        sec.add(ctx.fig(fig, "confusion matrix, ROC curve and AD probabilities",
                        f"Test split ({len(test)} scans): confusion matrix, ROC curve, and each "
                        "scan's AD probability coloured by outcome.", "fig-classification"))
    if train_cfg is not None:
        # As card.json writes them (a shift range is a JSON list).
        sec.add(details("Training configuration", key_values(
            [(k, list(v) if isinstance(v, tuple) else v)
             for k, v in ((k, getattr(train_cfg, k)) for k in CONFIG_KEYS)])))


SPEC = SectionSpec(
    "training", "Training and classification",
    "How well the network tells AD from controls on the held-out test subjects (the paper "
    "reports balanced accuracy, sensitivity and specificity over four trials).",
    build, requires=("predictions.tsv",),
    optional=(("metrics.json", "the metrics table; the figures below use predictions.tsv "
                               "only"),
              ("training_log.csv", "the training curves (written per epoch)")),
    data=("predictions.tsv", "metrics.json", "training_log.csv", "splits.tsv",
          "analysis/confusion.tsv", "analysis/roc.tsv"))

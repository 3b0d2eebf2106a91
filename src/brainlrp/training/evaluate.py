"""Predictions and classification metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from brainlrp.data.preprocess import load_arrays

OUTCOMES = {(1, 1): "TP", (0, 0): "TN", (0, 1): "FP", (1, 0): "FN"}


@torch.no_grad()
def predict_proba(model: nn.Module, arrays, batch_size: int = 4,
                  device: str | torch.device = "cpu", target: int = 1) -> np.ndarray:
    """AD probability (softmax, output ``target``: the card's ``target_class``) for each
    cached array."""
    model = model.eval().to(device)
    out = []
    for start in range(0, len(arrays), batch_size):
        x = torch.from_numpy(load_arrays(arrays[start:start + batch_size])).to(device)
        out.append(torch.softmax(model(x).float(), dim=1)[:, target].cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def prediction_table(scans: pd.DataFrame, p_ad: np.ndarray,
                     threshold: float = 0.5) -> pd.DataFrame:
    """The contract's predictions.tsv rows for ``scans`` (one per scan)."""
    predicted = (p_ad >= threshold).astype(int)
    labels = scans["label"].astype(int).to_numpy()
    return pd.DataFrame({
        "participant_id": scans["participant_id"].to_numpy(),
        "scan_id": scans["scan_id"].to_numpy(),
        "diagnosis": scans["diagnosis"].to_numpy(),
        "label": labels, "p_ad": p_ad.astype(float), "predicted": predicted,
        "outcome": [OUTCOMES[(int(t), int(p))] for t, p in zip(labels, predicted, strict=True)],
        "split": scans["split"].to_numpy(),
    })


def classification_metrics(labels, p_ad, threshold: float = 0.5) -> dict:
    """Balanced accuracy, sensitivity, specificity, ROC AUC, accuracy, confusion matrix."""
    from sklearn.metrics import confusion_matrix, roc_auc_score

    labels = np.asarray(labels, dtype=int)
    p_ad = np.asarray(p_ad, dtype=float)
    predicted = (p_ad >= threshold).astype(int)
    cm = confusion_matrix(labels, predicted, labels=[0, 1])
    tn, fp, fn, tp = (int(v) for v in cm.ravel())
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    auc = (float(roc_auc_score(labels, p_ad)) if len(np.unique(labels)) == 2
           else float("nan"))
    return {"balanced_accuracy": float(np.nanmean([sens, spec])), "sensitivity": sens,
            "specificity": spec, "accuracy": float((predicted == labels).mean()),
            "roc_auc": auc, "n": int(len(labels)),
            "confusion_matrix": {"labels": ["HC", "AD"], "rows": "true", "columns": "predicted",
                                 "matrix": cm.tolist()}}

"""The paper's numbers the report compares with, in one place (Böhle et al. 2019;
``shared/paper-summary.md``)."""

from __future__ import annotations

#: The paper, as the report cites it.
CITATION = ("Böhle M, Eitel F, Weygandt M, Ritter K (2019). Layer-wise relevance propagation "
            "for explaining deep neural network decisions in MRI-based Alzheimer's disease "
            "classification. Front. Aging Neurosci. 11:194. doi:10.3389/fnagi.2019.00194 "
            "(arXiv:1903.07317)")
#: Pearson r between hippocampal volume and hippocampal relevance of the true positives,
#: for beta = 0, 0.25, 0.5, 0.75, 1 of the paper's LRP beta rule.
HIPPOCAMPUS_R = {0.0: -0.560, 0.25: -0.562, 0.5: -0.525, 0.75: -0.457, 1.0: -0.361}
#: Why a method has no paper r.
NOT_IN_PAPER = "the paper reports r only for its LRP beta rule (lrp-b0 ... lrp-b1)"

__all__ = ["CITATION", "HIPPOCAMPUS_R", "NOT_IN_PAPER"]

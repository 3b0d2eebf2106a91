# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # brainlrp from Python: a quickstart
#
# A tiny simulated cohort, a model trained for a few epochs, its decisions explained
# with the recommended method, one heatmap, the brain areas that carry the relevance,
# and the method benchmark against the atrophy the simulated patients really have.
#
# Everything is tiny so that the notebook runs in well under a minute on two CPU cores
# (16 subjects on an 8 mm grid, the `tiny` network, 3 epochs): such a model barely
# classifies, so read the numbers as a demonstration of the API, not as results.
# `brainlrp demo` runs the real thing (200 subjects at 2 mm, the paper's network).
#
# The notebook is kept as `examples/quickstart.py` (a jupytext percent script) and
# paired with `examples/quickstart.ipynb`; the test suite executes it
# (`tests/test_api.py`). The API is documented in `docs/api.md`.

# %%
from importlib.util import find_spec
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display
from nilearn import plotting

import brainlrp as bl

work = Path("brainlrp-quickstart")

# %% [markdown]
# ## A simulated cohort
#
# T1 scans built from the MNI template, half of them patients with known,
# heterogeneous atrophy (ground truth under `derivatives/ground_truth/`).

# %%
cohort = bl.simulate_cohort(work / "cohort", n_subjects=16, resolution=8, seed=3, n_jobs=1,
                            progress=False)
display(cohort.counts)

# %% [markdown]
# ## Train
#
# `TrainConfig` holds the paper's defaults; here 3 epochs at a learning rate 100 times
# the paper's, and 3 test and 2 validation subjects per class. `bl.train` makes the run
# directory.

# %%
config = bl.TrainConfig(arch="tiny", resolution=8, epochs=3, lr=1e-2, test=3, val=2,
                        early_stopping_start=0, patience=3, seed=0)
trained = bl.train(work / "cohort", work / "run", config, progress=False)
run = bl.Run(trained.run)
display(run.predictions("test")[["scan_id", "diagnosis", "p_ad", "outcome"]])

# %% [markdown]
# ## Explain
#
# Before any benchmark on this run, `run.recommended_method` is the catalog's default,
# the method the benchmark recommends on the default simulated cohort: LRP against the
# scan with its lost signal restored from its nearest training controls. The paper's
# LRP, the plain gradient and the edge floor are explained beside it, so that the
# benchmark below has something to rank.

# %%
method = run.recommended_method
explained = run.explain([method, "lrp-b0", "gradient", "edges"])
print(f"{method}: {explained.n_scans} test scans")

# %% [markdown]
# One patient's heatmap, a NIfTI image on the model grid, over the scan as the model
# saw it: the evidence for AD (positive relevance) above its median, through the left
# hippocampus. On 8 mm voxels and three training controls per class, the nearest
# controls match a patient's anatomy poorly, so relevance also lands on the brain's
# edge.

# %%
patient = run.scan_ids("test", label=1)[0]
heatmap = run.heatmap(method, patient)
scan = run.input_image(patient)
evidence = heatmap.get_fdata()
figure = plt.figure(figsize=(9, 3))
plotting.plot_stat_map(heatmap, bg_img=scan, cut_coords=(-28, -20, -15), cmap="hot",
                       vmin=0, symmetric_cbar=False,
                       threshold=float(np.median(evidence[evidence > 0])),
                       title=f"{patient}: {method}", figure=figure)
plt.show()

# %% [markdown]
# The same explanation from tensors, with the conservation gap: the relevance sums to
# p(AD | scan) - p(AD | reference), up to rounding.

# %%
result = run.explain_tensor(run.inputs([patient]), method, scan_ids=[patient])
print(f"sum of relevance {float(result.totals[0]):.6f}, p(AD) difference "
      f"{float(result.explained[0]):.6f}, gap {float(result.gap[0]):.1e}")

# %% [markdown]
# In Jupyter with `ipyniivue` installed (`pip install 'brainlrp[viewer]'`), the same
# heatmap in an interactive NiiVue viewer with the atlas area under the crosshair:

# %%
if find_spec("ipyniivue") is not None:
    from brainlrp.report import view

    display(view(run.path, patient, method))
else:
    print("ipyniivue is not installed: no interactive viewer")

# %% [markdown]
# ## Regions
#
# `run.analyze` sums every heatmap per atlas region (Neuromorphometrics), per subject
# and per group, and scores each method against the simulated atrophy. The checks that
# run the model again (faithfulness, randomisation, restoration from the healthy twins,
# costs) are left out here to keep it quick.

# %%
analysis = run.analyze(faithfulness=False, sanity=False, restoration=False, costs=False)
groups = run.regions(method, "groups")
patients = groups[(groups["group"] == "AD") & (groups["level"] == "area")]
display(patients.nlargest(8, "mean_density")[["area", "hemisphere", "mean_density", "gain"]])

# %% [markdown]
# ## The method benchmark
#
# Every method ranked against the ground truth (mass accuracy: the share of positive
# relevance inside the truly atrophied voxels, beside its chance level; |.|-AUC: how
# well the map's magnitude finds those voxels), with the floors a useful method must
# beat. With `restoration=True`, `analyze` also ranks on the model's own ground truth,
# the drop in p(AD) when an area is restored from the healthy twin. `run.benchmark()`
# does the same on a real cohort by planting known atrophy into its held-out controls
# (docs/benchmark.md).

# %%
benchmark = run.method_benchmark()
display(benchmark[["rank", "method", "recommended", "mass_accuracy", "chance_mass_accuracy",
                   "auc_abs"]])

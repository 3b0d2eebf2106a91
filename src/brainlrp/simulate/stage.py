"""``brainlrp simulate``: write a synthetic BIDS-like cohort with known atrophy.

Layout (see :mod:`brainlrp.simulate.ground_truth` for the derivative files)::

    OUT/
      dataset_description.json
      participants.tsv            written last: the cohort is complete when it exists
      participants.json           column descriptions
      sub-0001/anat/sub-0001_T1w.nii.gz   int16, ICBM 2009c grid, MNI affine
      sub-0001/anat/sub-0001_T1w.json     the subject's simulation record
      derivatives/ground_truth/...

Every subject is drawn from ``(seed, index)`` alone, so the files do not depend
on the number of worker processes or their scheduling, and NIfTI files are
gzipped without time stamps: the same command gives byte-identical files.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from brainlrp._io import atomic_path, read_json, remove_temporaries, write_json, write_table
from brainlrp._progress import progress_bar
from brainlrp.data.grid import TEMPLATE_NAME, Grid
from brainlrp.errors import BrainLRPError
from brainlrp.simulate import ground_truth as gt
from brainlrp.simulate.disease import DiseaseModel, load_disease_model

#: Bumped whenever the simulation maths changes (part of the resume check).
SIMULATION_VERSION = 1
#: gzip level of the NIfTI files (1: fast; the noise does not compress much anyway).
GZIP_LEVEL = 1
HIPPOCAMPUS = ("Left_Hippocampus", "Right_Hippocampus")
PARTICIPANT_COLUMNS = {
    "participant_id": "Subject identifier (sub-0001, ...).",
    "diagnosis": "HC (healthy control, cognitively normal) or AD (Alzheimer's disease, "
                 "simulated atrophy).",
    "age": "Age in years; drives the shared ageing effect.",
    "sex": "F or M; males have slightly larger heads.",
    "subtype": "Atrophy subtype of the disease model; 'none' for HC.",
    "severity": "Disease severity in [0, 1) drawn from the model's range; 0 for HC.",
    "hippocampus_volume": "Left plus right hippocampus volume (mm3) on the subject's "
                          "simulated label map.",
    "total_atrophy": "Brain tissue lost to the disease as a fraction of the subject's "
                     "tissue volume without disease; 0 for HC.",
}


@dataclass
class SimulationResult:
    """What :func:`simulate` wrote.

    Attributes
    ----------
    root : Path
    participants : pandas.DataFrame
        The participants table as written.
    grid : Grid
    disease_model : str
        Name of the disease model.
    n_written, n_skipped : int
        Subjects simulated now, and subjects whose files already existed.
    seconds : float
    n_jobs : int
        Worker processes used.
    """

    root: Path
    participants: pd.DataFrame
    grid: Grid
    disease_model: str
    n_written: int = 0
    n_skipped: int = 0
    seconds: float = 0.0
    n_jobs: int = 1
    notices: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Subjects per diagnosis."""
        return {dx: int((self.participants["diagnosis"] == dx).sum()) for dx in ("HC", "AD")}


def participant_ids(n_subjects: int) -> list[str]:
    """``sub-0001`` ... zero-padded to at least four digits."""
    width = max(4, len(str(n_subjects)))
    return [f"sub-{i:0{width}d}" for i in range(1, n_subjects + 1)]


def assign_diagnoses(n_subjects: int, ad_fraction: float, seed: int) -> list[str]:
    """``round(n * ad_fraction)`` AD subjects at positions drawn from ``seed``."""
    n_ad = int(round(n_subjects * ad_fraction))
    order = np.random.default_rng([int(seed), 0xC0]).permutation(n_subjects)
    dx = np.array(["HC"] * n_subjects, dtype=object)
    dx[order[:n_ad]] = "AD"
    return dx.tolist()


def simulate(out: str | os.PathLike, n_subjects: int = 200, resolution: float = 2.0,
             seed: int = 0, disease_model: str | os.PathLike | dict | DiseaseModel = "default",
             ad_fraction: float = 0.5, n_jobs: int | None = None, overwrite: bool = False,
             progress: bool = True) -> SimulationResult:
    """Simulate a cohort of T1 scans with known atrophy (see the module docstring).

    Parameters
    ----------
    out : path-like
        Cohort folder to write (created if needed).
    n_subjects : int
    resolution : float
        Grid resolution in mm (the ICBM 2009c grid; 2 gives 97 x 115 x 97).
    seed : int
    disease_model : str, path-like, dict or DiseaseModel
        A shipped model's name, a JSON file or document (see
        :mod:`brainlrp.simulate.disease`).
    ad_fraction : float
        Fraction of AD subjects, in [0, 1].
    n_jobs : int, optional
        Worker processes (default: all CPUs). They are started with ``spawn``: a
        script that calls this with ``n_jobs > 1`` needs the usual
        ``if __name__ == "__main__":`` guard.
    overwrite : bool
        Re-simulate subjects whose files exist (otherwise they are kept and only
        missing subjects are written).
    progress : bool

    Returns
    -------
    SimulationResult
    """
    start = time.perf_counter()
    if isinstance(n_subjects, bool) or int(n_subjects) != n_subjects or n_subjects < 1:
        raise BrainLRPError(f"--n-subjects must be a positive whole number, got {n_subjects}",
                            "e.g. --n-subjects 200")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise BrainLRPError(f"--seed must be a whole number >= 0, got {seed}", "e.g. --seed 0")
    if not 0 <= float(ad_fraction) <= 1:
        raise BrainLRPError(f"--ad-fraction must lie in [0, 1], got {ad_fraction}",
                            "e.g. --ad-fraction 0.5")
    n_jobs = int(n_jobs) if n_jobs else available_cpus()
    if n_jobs < 1:
        raise BrainLRPError(f"--jobs must be at least 1, got {n_jobs}", "e.g. --jobs 2")
    grid = Grid.from_resolution(resolution)
    model = load_disease_model(disease_model)
    root = Path(out)
    config = {"version": SIMULATION_VERSION, "n_subjects": int(n_subjects),
              "resolution": grid.resolution, "seed": int(seed),
              "ad_fraction": float(ad_fraction), "disease_model": model.to_json()}
    _prepare_folder(root, config, overwrite)

    ids = participant_ids(int(n_subjects))
    diagnoses = assign_diagnoses(int(n_subjects), float(ad_fraction), int(seed))
    rows: dict[int, dict] = {}
    todo = []
    for index, (pid, dx) in enumerate(zip(ids, diagnoses, strict=True)):
        record = None if overwrite else _finished(root, pid)
        if record is not None and record.get("diagnosis") == dx:
            rows[index] = _row(record)
        else:
            todo.append((index, pid, dx))
    n_skipped = len(rows)

    if todo:
        # The cohort is complete only once participants.tsv exists again (a finished
        # cohort simulated again keeps it, and every other file, untouched).
        (root / "participants.tsv").unlink(missing_ok=True)
    tasks = [(str(root), grid, model, int(seed), index, pid, dx) for index, pid, dx in todo]
    n_workers = max(1, min(n_jobs, len(tasks)))
    with progress_bar(len(tasks), "simulating", enabled=progress, unit="subjects") as advance:
        if n_workers == 1:
            for task in tasks:
                rows[task[4]] = simulate_subject(*task)
                advance(1)
        else:
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")
            with _single_threaded_children():
                pool = ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx,
                                           initializer=_init_worker)
                try:
                    futures = {pool.submit(simulate_subject, *task): task[4]
                               for task in tasks}
                    for future in as_completed(futures):
                        rows[futures[future]] = future.result()
                        advance(1)
                except BaseException:
                    # Finished subjects are on disk; drop the queue, let the running
                    # ones finish (their files are written atomically anyway).
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
                pool.shutdown(wait=True)

    participants = pd.DataFrame([rows[i] for i in range(len(ids))],
                                columns=list(PARTICIPANT_COLUMNS))
    write_json(root / "participants.json",
               {k: {"Description": v} for k, v in PARTICIPANT_COLUMNS.items()})
    write_table(root / "participants.tsv", participants)
    return SimulationResult(root=root, participants=participants, grid=grid,
                            disease_model=model.name, n_written=len(tasks),
                            n_skipped=n_skipped, seconds=time.perf_counter() - start,
                            n_jobs=n_workers)


def available_cpus() -> int:
    """CPUs this process may use (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


@contextlib.contextmanager
def _single_threaded_children():
    """Start worker processes with one BLAS/OpenMP thread each (they run in
    parallel already); the parent's environment is restored afterwards."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {n: os.environ.get(n) for n in names}
    for n in names:
        os.environ.setdefault(n, "1")
    try:
        yield
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _prepare_folder(root: Path, config: dict, overwrite: bool) -> None:
    """Check the folder holds nothing or this same simulation; write the cohort files."""
    record = gt.config_path(root)
    if record.is_file():
        try:
            old = read_json(record)
        except (OSError, ValueError):
            old = None
        if old != _jsonable(config) and not overwrite:
            diff = [k for k in config if old is None or old.get(k) != _jsonable(config)[k]]
            raise BrainLRPError(
                f"{root} holds a cohort simulated with other settings "
                f"({', '.join(diff) or 'unreadable record'} differ)",
                "pass --overwrite to replace it, or choose another folder")
    elif root.exists() and any(root.iterdir()) and not overwrite:
        raise BrainLRPError(f"{root} is not empty and holds no simulated cohort",
                            "choose a new folder, or pass --overwrite to write into it")
    root.mkdir(parents=True, exist_ok=True)
    from brainlrp import __version__

    write_json(root / "dataset_description.json", {
        "Name": "brainlrp simulated Alzheimer's disease cohort",
        "BIDSVersion": "1.8.0", "DatasetType": "raw",
        "GeneratedBy": [{"Name": "brainlrp simulate", "Version": __version__,
                         "Description": "Synthetic T1 scans from the MNI ICBM 2009c template "
                                        "with anatomical variation, ageing, scanner effects "
                                        "and atrophy drawn from a disease model."}],
        "TemplateSpace": TEMPLATE_NAME})
    folder = gt.folder(root)
    write_json(folder / "dataset_description.json", {
        "Name": "brainlrp simulation ground truth", "BIDSVersion": "1.8.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "brainlrp simulate", "Version": __version__}]})
    write_json(folder / "disease_model.json", config["disease_model"])
    write_table(folder / "labels.tsv", gt.label_table())
    write_json(record, config)
    for stale in (root, folder):  # left by a killed run; subject folders: simulate_subject
        remove_temporaries(stale)


def _jsonable(obj):
    import json

    return json.loads(json.dumps(obj))


def _finished(root: Path, pid: str) -> dict | None:
    """The subject's record if all of its files exist, else ``None``."""
    paths = gt.subject_paths(root, pid)
    if not all(p.is_file() for p in paths.values()):
        return None
    try:
        record = read_json(paths["sidecar"])
    except (OSError, ValueError):
        return None
    if record.get("label_losses") and not gt.healthy_twin_path(root, pid).is_file():
        return None  # an AD subject from before twins were written
    return record


def _row(record: dict) -> dict:
    return {k: record.get(k) for k in PARTICIPANT_COLUMNS}


def simulate_subject(root: str, grid: Grid, model: DiseaseModel, seed: int, index: int,
                     participant_id: str, diagnosis: str) -> dict:
    """Simulate and write one subject; return its participants row."""
    from brainlrp.simulate.anatomy import template_anatomy
    from brainlrp.simulate.scanner import scanner_effects
    from brainlrp.simulate.subject import draw_subject, render_subject

    anatomy = template_anatomy(grid)
    spec = draw_subject(seed, index, participant_id, diagnosis, model)
    images = render_subject(spec, anatomy, keep_before=bool(spec.losses))
    t1 = scanner_effects(images.t1, images.brain, anatomy.wm_intensity, spec.scanner_seed)
    loss = images.tissue_loss
    paths = gt.subject_paths(Path(root), participant_id)
    remove_temporaries(paths["t1"].parent)  # left by a killed run
    affine = grid.affine_array
    write_nifti(paths["t1"], anatomy.paste(t1), affine, np.int16, "brainlrp simulated T1w")
    write_nifti(paths["tissue_loss"], anatomy.paste(loss), affine, np.float32,
                "fraction of tissue lost to the disease")
    write_nifti(paths["labels"], anatomy.paste(images.labels), affine, np.int16,
                "Neuromorphometrics labels, subject anatomy")
    if spec.losses:
        # The healthy twin: the same person, age and scanner without the disease.
        twin = scanner_effects(images.t1_before, images.brain_before, anatomy.wm_intensity,
                               spec.scanner_seed)
        write_nifti(gt.healthy_twin_path(Path(root), participant_id), anatomy.paste(twin),
                    affine, np.int16, "brainlrp simulated T1w, healthy twin")
    table = gt.volume_table(images.labels_before, images.labels, anatomy.label_names,
                            grid.voxel_volume, spec.losses)
    write_table(paths["volume_loss"], table)
    hippocampus = float(table.loc[table["label"].isin(HIPPOCAMPUS), "volume_after_mm3"].sum())
    tissue = float(images.tissue_before.sum())
    record = {"Simulated": True, **spec.to_json(),
              "hippocampus_volume": round(hippocampus, 3),
              "total_atrophy": round(float(loss.sum()) / tissue, 6) if tissue > 0 else 0.0}
    write_json(paths["sidecar"], record)
    return _row(record)


def healthy_rescan(root: str | os.PathLike, participant_id: str, rescan: int = 1):
    """A simulated subject's healthy twin scanned again: the same person, age and scanner
    (bias field, contrast, noise level, gain) without the disease, with fresh noise.

    The twin shares the patient's noise image, which no reference built for real data
    can; the re-scan is the best such reference could be (a healthy baseline scan of the
    same person on the same scanner, perfectly registered).

    Parameters
    ----------
    root : path-like
        The simulated cohort.
    participant_id : str
    rescan : int
        Which re-scan (each number draws its own noise image; >= 1).

    Returns
    -------
    nibabel.Nifti1Image
        int16 on the cohort's grid, like the subject's scan.
    """
    import nibabel as nib

    from brainlrp.simulate.anatomy import template_anatomy
    from brainlrp.simulate.scanner import scanner_effects
    from brainlrp.simulate.subject import draw_subject, render_subject

    root = Path(root)
    config, record = gt.config_path(root), gt.subject_paths(root, participant_id)["sidecar"]
    if not (config.is_file() and record.is_file()):
        raise BrainLRPError(f"{root} has no simulation record of {participant_id}",
                            "re-scans exist only for cohorts made by brainlrp simulate")
    if int(rescan) < 1:
        raise ValueError(f"rescan must be >= 1, got {rescan}")
    config, record = read_json(config), read_json(record)
    grid = Grid.from_resolution(config["resolution"])
    spec = draw_subject(config["seed"], record["index"], participant_id, record["diagnosis"],
                        load_disease_model(config["disease_model"])).without_disease()
    if spec.anatomy_seed != record.get("anatomy_seed"):
        raise BrainLRPError(f"{participant_id} in {root} was simulated by another version of "
                            "brainlrp: its re-scan would be another person",
                            "simulate the cohort again with this version")
    anatomy = template_anatomy(grid)
    images = render_subject(spec, anatomy)
    noise_seed = int(np.random.default_rng([spec.scanner_seed, int(rescan)]).integers(2 ** 31))
    data = anatomy.paste(scanner_effects(images.t1, images.brain, anatomy.wm_intensity,
                                         spec.scanner_seed, noise_seed=noise_seed))
    return nib.Nifti1Image(data, grid.affine_array)


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, dtype,
                description: str = "") -> None:
    """Write a NIfTI-1 ``.nii.gz`` atomically and reproducibly (gzip without a time
    stamp or file name), with the affine as MNI sform and qform."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), np.asarray(affine, dtype=float))
    img.header.set_xyzt_units("mm")
    img.set_sform(img.affine, code=4)
    img.set_qform(img.affine, code=4)
    if description:
        img.header["descrip"] = description[:79].encode()
    raw = img.to_bytes()
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        with gzip.GzipFile(filename="", mode="wb", fileobj=fh, compresslevel=GZIP_LEVEL,
                           mtime=0) as gz:
            gz.write(raw)

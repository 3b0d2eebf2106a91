"""Lightning helpers that every stage running a Lightning loop shares (train, explain).

Public names without a leading underscore: import them from here, never from
another stage's private helpers.
"""

from __future__ import annotations

import logging
import os
import warnings


def global_rank() -> int:
    """This process's rank under DDP or a cluster launcher (0 when alone).

    Read from the environment (``RANK``, Slurm, MPI, or Lightning's
    ``LOCAL_RANK + NODE_RANK``), so it is known before a Trainer exists.
    """
    for key in ("RANK", "SLURM_PROCID", "PMI_RANK", "OMPI_COMM_WORLD_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return int(os.environ.get("LOCAL_RANK", 0) or 0) + int(os.environ.get("NODE_RANK", 0) or 0)


def is_main_process() -> bool:
    """Whether this process has rank 0 (the one that writes shared files)."""
    return global_rank() == 0


def quiet_lightning() -> None:
    """Silence Lightning's info logs and the warnings that do not concern brainlrp's users.

    Call it after importing Lightning: Lightning sets its loggers up when imported.
    """
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*")
    warnings.filterwarnings("ignore", message=".*isinstance.*treespec.*")
    warnings.filterwarnings("ignore", message=".*predict returned None.*")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric.utilities.rank_zero").setLevel(logging.WARNING)

"""Training: the LightningModule, fit/evaluate, checkpoints (the card is :mod:`brainlrp.card`)."""

from brainlrp.card import read_card
from brainlrp.training.bundle import import_bundle
from brainlrp.training.checkpoint import load_model
from brainlrp.training.importer import ImportResult, import_model
from brainlrp.training.maps import import_maps
from brainlrp.training.stage import TrainConfig, TrainResult, train

__all__ = ["ImportResult", "TrainConfig", "TrainResult", "import_bundle", "import_maps",
           "import_model", "load_model", "read_card", "train"]

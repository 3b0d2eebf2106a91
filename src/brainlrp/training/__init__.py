"""Training: the LightningModule, fit/evaluate, checkpoints and the model card."""

from brainlrp.training.checkpoint import load_model, read_card
from brainlrp.training.stage import TrainConfig, TrainResult, load_inputs, train

__all__ = ["TrainConfig", "TrainResult", "load_inputs", "load_model", "read_card", "train"]

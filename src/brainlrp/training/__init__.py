"""brainlrp.training."""

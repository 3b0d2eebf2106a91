"""brainlrp.explain.lrp."""

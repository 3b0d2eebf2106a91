"""brainlrp.explain."""

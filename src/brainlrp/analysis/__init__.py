"""brainlrp.analysis."""

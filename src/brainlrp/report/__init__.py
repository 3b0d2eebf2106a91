"""brainlrp.report."""

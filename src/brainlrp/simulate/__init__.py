"""brainlrp.simulate."""

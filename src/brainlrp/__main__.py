"""``python -m brainlrp`` runs the command line."""

from brainlrp.cli import app

app(prog_name="brainlrp")

"""One way to call a method: what MethodCalls adds to a method's options."""

from __future__ import annotations

import pytest

from brainlrp.card import InputFormat, ModelCard
from brainlrp.data.grid import Grid
from brainlrp.data.preprocess import Preprocessing
from brainlrp.explain.call import MethodCalls, options_per_method


def _card(value_range=(0.0, 1.0)) -> ModelCard:
    grid = Grid.from_resolution(6)
    return ModelCard(architecture="tiny", model_kwargs={},
                     preprocessing=Preprocessing(grid=grid).to_dict(),
                     input=InputFormat(value_range=value_range))


def test_the_box_rule_gets_the_cards_value_range(tmp_path):
    calls = MethodCalls.of_card(tmp_path, _card((-1.0, 3.0)))
    opts = calls.method_kwargs("lrp-epsilon-gamma-box")
    assert (opts["low"], opts["high"]) == (-1.0, 3.0)
    # Methods without box bounds get none; a caller's own bounds win.
    assert "low" not in calls.method_kwargs("lrp-b0")
    assert "low" not in calls.method_kwargs("lrp-epsilon-plus-flat")
    given = MethodCalls.of_card(tmp_path, _card((-1.0, 3.0)),
                                method_options={"lrp-epsilon-gamma-box": {"low": 0.5}})
    assert given.method_kwargs("lrp-epsilon-gamma-box")["low"] == 0.5


def test_region_occlusion_gets_the_grids_areas(tmp_path):
    card = _card()
    opts = MethodCalls.of_card(tmp_path, card).method_kwargs("occlusion-ref@mean")
    assert opts["areas"].shape == card.grid.shape and opts["areas"].max() > 0
    assert "areas" not in MethodCalls.of_card(tmp_path, card).method_kwargs("gradient")


def test_a_bare_reference_methods_options_reach_each_reference():
    per = options_per_method(["ig-ref@knn", "ig-ref@mean", "ig"],
                             {"ig-ref": {"steps": 4}, "ig-ref@mean": {"steps": 9}})
    assert per == {"ig-ref@knn": {"steps": 4}, "ig-ref@mean": {"steps": 9}, "ig": {}}


def test_the_card_keeps_its_input_format(tmp_path):
    card = _card((-1.0, 3.0))
    card.write(tmp_path)
    from brainlrp.card import read_card

    again = read_card(tmp_path)
    assert again.input == InputFormat(value_range=(-1.0, 3.0), channels=1)
    # A card written before the field existed takes brainlrp's own [0, 1].
    data = card.to_dict()
    del data["input"]
    assert ModelCard.from_dict(data).input.value_range == (0.0, 1.0)
    with pytest.raises(ValueError, match="must rise"):
        InputFormat.from_dict({"value_range": [1, 0]})


def test_the_card_types_its_training_and_metrics():
    from brainlrp.configs import TrainConfig

    card = _card()
    card.training = {"arch": "tiny", "epochs": 3, "shift": [-2, 3], "lr": 0.001}
    card.metrics = {"test": {"balanced_accuracy": 0.75, "n": 8}}
    assert card.train_config == TrainConfig(arch="tiny", epochs=3, shift=(-2, 3), lr=0.001)
    assert card.split_metrics("test").balanced_accuracy == 0.75
    assert card.split_metrics("test").n == 8 and card.split_metrics("val") is None
    card.training = {"imported": True, "weights": "w.pt"}
    assert card.train_config is None

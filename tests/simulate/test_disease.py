"""Disease models: the shipped default, validation of user models, patient draws."""

from __future__ import annotations

import json

import numpy as np
import pytest

from brainlrp.errors import BrainLRPError
from brainlrp.simulate.disease import (
    MAX_LOSS,
    load_disease_model,
    parse_disease_model,
    region_names,
    shipped_models,
)


def _model(**overrides) -> dict:
    doc = {"name": "test", "severity": [0.3, 0.9],
           "subtypes": {"one": {"weight": 1, "regions": {"Hippocampus": 0.4}}}}
    doc.update(overrides)
    return doc


def test_default_model_is_shipped_and_valid():
    assert "default" in shipped_models()
    model = load_disease_model("default")
    assert model.name == "default"
    assert {s.name for s in model.subtypes} >= {"typical", "limbic-predominant",
                                                "hippocampal-sparing", "lateral-temporal"}
    assert sum(s.weight for s in model.subtypes) == pytest.approx(1.0)
    lo, hi = model.severity
    assert 0 <= lo <= hi < 1
    # The literature's medial temporal regions are atrophied in every subtype.
    for subtype in model.subtypes:
        for side in ("Left", "Right"):
            for area in ("Hippocampus", "Amygdala", "Ent_entorhinal_area",
                         "PHG_parahippocampal_gyrus"):
                assert subtype.labels.get(f"{side}_{area}", 0) > 0, (subtype.name, area)


def test_default_model_hippocampal_loss_is_in_the_clinical_range():
    model = load_disease_model("default")
    loss = model.expected_loss(["Left_Hippocampus", "Right_Hippocampus"])
    # AD hippocampi are ~15-30 % smaller than controls' (Jack 1997, Frisoni 2010).
    assert 0.15 <= loss <= 0.30
    sparing = model.subtype("hippocampal-sparing").labels
    typical = model.subtype("typical").labels
    assert sparing["Left_Hippocampus"] < typical["Left_Hippocampus"]
    assert sparing["Left_PCu_precuneus"] > typical["Left_PCu_precuneus"]


def test_area_names_mean_both_hemispheres_and_labels_one():
    model = parse_disease_model(_model(subtypes={"a": {"weight": 1, "regions": {
        "Hippocampus": 0.3, "Left_Amygdala": 0.2}}}), "m")
    labels = model.subtypes[0].labels
    assert labels == {"Left_Hippocampus": 0.3, "Right_Hippocampus": 0.3, "Left_Amygdala": 0.2}


def test_model_file_and_dict_load_alike(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(_model()))
    assert load_disease_model(path).subtypes == load_disease_model(_model()).subtypes


@pytest.mark.parametrize("doc, needle", [
    (_model(subtypes={"a": {"weight": 1, "regions": {"Left_Hipocampus": 0.3}}}),
     "unknown region 'Left_Hipocampus'; close matches: Left_Hippocampus"),
    (_model(subtypes={"a": {"weight": 1, "regions": {"Hippocampus": -0.1}}}),
     "weight -0.1"),
    (_model(subtypes={"a": {"weight": -1, "regions": {"Hippocampus": 0.1}}}),
     "has weight -1"),
    (_model(subtypes={"a": {"weight": 1, "regions": {"Hippocampus": 1.5}}}),
     "in [0, 1]"),
    (_model(subtypes={}), "no subtypes"),
    (_model(severity=[0.3, 1.0]), "outside [0, 1)"),
    (_model(severity=[-0.1, 0.5]), "outside [0, 1)"),
    (_model(severity=[0.8, 0.2]), "reversed"),
    (_model(severity=0.5), "must be a range"),
    (_model(subtypes={"a": {"weight": 1, "regions": {"Left_Lateral_Ventricle": 0.2}}}),
     "CSF space"),
    (_model(subtypes={"a": {"weight": 0, "regions": {"Hippocampus": 0.2}}}),
     "every subtype has weight 0"),
    (_model(colour="blue"), "unknown key(s) 'colour'"),
])
def test_bad_models_are_rejected_with_a_clear_message(doc, needle):
    with pytest.raises(BrainLRPError) as err:
        parse_disease_model(doc, "model.json")
    assert needle in str(err.value)
    assert "\n" not in err.value.one_line()


def test_unknown_model_name_and_broken_json(tmp_path):
    with pytest.raises(BrainLRPError, match="unknown disease model 'defualt'.*'default'"):
        load_disease_model("defualt")
    broken = tmp_path / "broken.json"
    broken.write_text("{\"severity\": [0.1, 0.2],")
    with pytest.raises(BrainLRPError, match="not valid JSON"):
        load_disease_model(broken)


def test_draws_are_reproducible_and_capped():
    model = load_disease_model(_model(region_jitter=0.5, severity=[0.9, 0.95],
                                      subtypes={"a": {"weight": 1,
                                                      "regions": {"Hippocampus": 1.0}}}))
    first = [model.draw(np.random.default_rng(3)) for _ in range(2)]
    assert first[0] == first[1]
    losses = [model.draw(np.random.default_rng(s))[2] for s in range(50)]
    values = [v for d in losses for v in d.values()]
    assert max(values) <= MAX_LOSS
    assert len({round(v, 6) for v in values}) > 10  # jitter makes patients differ


def test_region_names_list_areas_and_labels_but_no_csf():
    names = region_names()
    assert "Hippocampus" in names and "Left_Hippocampus" in names
    assert "Left_Lateral_Ventricle" not in names and "CSF" not in names

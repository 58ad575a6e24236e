"""The split stage: fold invariants over many random cohorts, leakage measurement, bad input."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from pipeline import split
from pipeline.core.errors import DataError
from pipeline.core.params import from_dict

MUSCLES = ("D", "B", "R", "G", "T", "FCR", "FDP")


def random_manifest(rng: np.random.Generator, patients: int, per_side: int = 2, side_dropout: float = 0.0) -> pd.DataFrame:
    """A manifest with the real cohort's structure; some muscle sides randomly missing."""
    diagnoses = rng.choice(["N", "IBM", "PM", "DM"], size=patients, p=[33 / 80, 19 / 80, 14 / 80, 14 / 80])
    diagnoses[:4] = ["N", "IBM", "PM", "DM"]  # every diagnosis present
    rows = []
    for p, dx in enumerate(diagnoses):
        for side, muscle in itertools.product("RL", MUSCLES):
            if rng.random() < side_dropout:
                continue
            for r in range(per_side):
                rows.append({"patient_id": f"P{p:03d}", "diagnosis": dx, "muscle": muscle, "side": side})
    m = pd.DataFrame(rows)
    m.insert(0, "image_id", np.arange(len(m)))
    return m.assign(source="synthetic", path="x", sha256="0", source_name="x")


def make_params(**split_kw) -> object:
    return from_dict({"split": {"protocols": ["patient", "image"], **split_kw}, "train": {"folds": [1]}})


@pytest.mark.parametrize("trial", range(12))
def test_fold_invariants_over_random_cohorts(trial):
    rng = np.random.default_rng(trial)
    scenario = ["S1", "S2", "S3", "S4"][trial % 4]
    folds = [3, 4, 5][trial % 3]
    manifest = random_manifest(rng, patients=int(rng.integers(40, 90)), per_side=int(rng.integers(1, 4)),
                               side_dropout=float(rng.uniform(0, 0.3)))
    params = make_params(scenarios=[scenario], folds=folds, val_fraction=float(rng.uniform(0.1, 0.3)))
    s = split.make_splits(manifest, params)
    in_scenario = manifest[manifest["diagnosis"].isin(split.scenarios.label_map(scenario))]
    for protocol, sub in s.groupby("protocol"):
        # every image of the scenario: one row per fold, tested exactly once
        assert sorted(sub["image_id"].unique()) == sorted(in_scenario["image_id"])
        assert (sub.groupby("image_id").size() == folds).all()
        assert (sub[sub["part"] == "test"].groupby("image_id").size() == 1).all()
        assert set(sub["part"]) == {"train", "val", "test"}
        for _, f in sub.groupby("fold"):
            assert set(f["label"]) == set(range(len(split.scenarios.class_names(scenario)))) or protocol == "patient"
            if protocol == "patient":
                parts = {p: set(f.loc[f["part"] == p, "patient_id"]) for p in ("train", "val", "test")}
                assert not parts["train"] & parts["test"]
                assert not parts["val"] & parts["test"]
                assert not parts["train"] & parts["val"]
    # labels follow the scenario's map
    merged = s.merge(manifest[["image_id", "diagnosis"]], on="image_id")
    assert (merged["diagnosis"].map(split.scenarios.label_map(scenario)) == merged["label"]).all()


def test_same_seed_same_folds_and_seed_changes_them():
    manifest = random_manifest(np.random.default_rng(0), 40)
    a = split.make_splits(manifest, make_params(folds=3))
    b = split.make_splits(manifest, make_params(folds=3))
    pd.testing.assert_frame_equal(a, b)
    c = split.make_splits(manifest, from_dict({"seed": 1, "split": {"folds": 3}, "train": {"folds": [1]}}))
    assert not a["part"].equals(c["part"])


def test_image_protocol_leaks_and_patient_protocol_does_not():
    manifest = random_manifest(np.random.default_rng(1), 80, per_side=3)
    s = split.make_splits(manifest, make_params(folds=5))
    image_leak = [split.leakage(f, manifest) for _, f in s[s["protocol"] == "image"].groupby("fold")]
    patient_leak = [split.leakage(f, manifest) for _, f in s[s["protocol"] == "patient"].groupby("fold")]
    assert all(l["same_patient"] > 0.95 for l in image_leak)
    assert all(l["same_muscle_side"] > 0.5 for l in image_leak)
    assert all(l["same_patient"] == 0 and l["same_muscle_side"] == 0 for l in patient_leak)


def test_too_few_patients_of_a_class_is_refused():
    manifest = random_manifest(np.random.default_rng(2), 12)
    with pytest.raises(DataError, match=r"class '\w+' has \d patient\(s\), but split.folds=5"):
        split.make_splits(manifest, make_params(scenarios=["S4"], folds=5))


def test_scenario_without_its_diagnoses_is_refused():
    manifest = random_manifest(np.random.default_rng(3), 20)
    manifest = manifest[manifest["diagnosis"] == "N"]
    with pytest.raises(DataError, match="scenario S3 needs"):
        split.make_splits(manifest, make_params(scenarios=["S3"], folds=3))


def test_repeats_draw_their_folds_again_and_keep_every_guarantee():
    manifest = random_manifest(np.random.default_rng(5), 30)
    s = split.make_splits(manifest, make_params(folds=3, repeats=3))
    assert sorted(s["repeat"].unique()) == [1, 2, 3]
    one = split.make_splits(manifest, make_params(folds=3))
    # repeat 1 is what a one-repeat run draws
    pd.testing.assert_frame_equal(s[s["repeat"] == 1].reset_index(drop=True), one.reset_index(drop=True))
    for protocol in ("patient", "image"):
        split.assert_invariants(s, protocol)          # per repeat: every image tested once, no shared patient
        folds = [s[(s["repeat"] == r) & (s["protocol"] == protocol) & (s["part"] == "test")]
                 .set_index("image_id")["fold"].sort_index() for r in (1, 2, 3)]
        assert not folds[0].equals(folds[1]) and not folds[1].equals(folds[2])
    bad = s.copy()
    i = bad.index[(bad["protocol"] == "patient") & (bad["repeat"] == 2) & (bad["fold"] == 1) & (bad["part"] == "test")][0]
    bad.loc[i, "part"] = "train"
    with pytest.raises(AssertionError, match="repeat 2"):
        split.assert_invariants(bad, "patient")


def test_assert_invariants_catches_a_shared_patient():
    manifest = random_manifest(np.random.default_rng(4), 40)
    s = split.make_splits(manifest, make_params(folds=3))
    bad = s.copy()
    # move one test image of a patient into training: now that patient is in two parts
    i = bad.index[(bad["protocol"] == "patient") & (bad["fold"] == 1) & (bad["part"] == "test")][0]
    bad.loc[i, "part"] = "train"
    with pytest.raises(AssertionError):
        split.assert_invariants(bad, "patient")


def test_stage_writes_atomically_and_keeps_old_outputs_on_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/processed").mkdir(parents=True)
    random_manifest(np.random.default_rng(5), 24).to_csv("data/processed/manifest.csv", index=False)
    (tmp_path / "params.yaml").write_text("split: {folds: 3}\ntrain: {folds: [1, 2, 3]}\n")
    assert split.main([]) == 0
    before = (tmp_path / "data/splits/S1.csv").read_bytes()
    assert "Leakage" in (tmp_path / "reports/split_summary.md").read_text()
    (tmp_path / "params.yaml").write_text("split: {folds: 9, scenarios: [S1, S4]}\ntrain: {folds: [1]}\n")
    with pytest.raises(DataError, match="patient"):
        split.main([])
    assert (tmp_path / "data/splits/S1.csv").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "data/splits").iterdir()) == ["S1.csv"]


def test_each_scenario_gets_its_own_folds_of_its_own_patients(tmp_path, monkeypatch):
    manifest = random_manifest(np.random.default_rng(6), 60)
    s = split.make_splits(manifest, make_params(scenarios=["S1", "S2", "S3", "S4"], folds=3))
    assert list(dict.fromkeys(s["scenario"])) == ["S1", "S2", "S3", "S4"]
    diagnosis = manifest.set_index("image_id")["diagnosis"]
    for scenario, wanted in (("S1", {"N", "IBM", "PM", "DM"}), ("S2", {"N", "IBM"}), ("S3", {"IBM", "PM", "DM"}),
                             ("S4", {"N", "IBM", "PM", "DM"})):
        sub = s[s["scenario"] == scenario]
        assert set(diagnosis.loc[sub["image_id"]]) == wanted, scenario
        for protocol in ("patient", "image"):
            tested = sub[(sub["protocol"] == protocol) & (sub["part"] == "test")]
            assert sorted(tested["image_id"]) == sorted(manifest[manifest["diagnosis"].isin(wanted)]["image_id"])
    # the stage writes one file per scenario, and the summary names every scenario
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/processed").mkdir(parents=True)
    manifest.to_csv("data/processed/manifest.csv", index=False)
    (tmp_path / "params.yaml").write_text("split: {folds: 3, scenarios: [S2, S4]}\ntrain: {folds: [1]}\n")
    assert split.main([]) == 0
    assert sorted(p.name for p in (tmp_path / "data/splits").iterdir()) == ["S2.csv", "S4.csv"]
    assert set(pd.read_csv("data/splits/S2.csv")["scenario"]) == {"S2"}
    summary = (tmp_path / "reports/split_summary.md").read_text()
    assert "## Scenario S2: normal vs IBM" in summary and "## Scenario S4: four classes" in summary


def test_ucar_protocol_is_refused_for_a_source_without_published_folds():
    """Where the ucar folds are made: protocol 'ucar' needs data.source 'ucar', refused before any fold."""
    from pipeline.core.params import ParamsError

    manifest = random_manifest(np.random.default_rng(0), 20)
    params = from_dict({"split": {"protocols": ["patient", "ucar"]}})   # the synthetic source
    with pytest.raises(ParamsError, match="'ucar' folds exist only for data.source 'ucar', not 'synthetic'"):
        split.make_splits(manifest, params)

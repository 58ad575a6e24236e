"""params.yaml validation: typed objects, unknown keys and bad values refused by name."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.params import ParamsError, apply_profile, from_dict, load

ROOT = Path(__file__).resolve().parents[1]


def test_repository_params_and_profiles_are_valid():
    base = load(ROOT / "params.yaml")
    assert base.data.source == "synthetic" and base.seed == 0
    assert base.train.optim_for("stanet") == base.train.optim
    assert "dual_vgg_bn" in base.train.models and not base.train.pretrained_for("dual_vgg_bn")
    paper = from_dict(yaml.safe_load((ROOT / "profiles/paper.yaml").read_text()) | {})
    assert paper.train.optim_for("dual_vgg").lr == pytest.approx(2e-5)   # Uçar's setting
    assert paper.train.pretrained_for("dual_vgg") and paper.train.optim_for("dual_vgg").batch_size == 32
    # one primary comparison declared before the run; repeats: the demo 1, the paper profile at least 3
    assert (base.evaluate.primary.reference, base.evaluate.primary.comparator) == ("stanet", "dual_vgg_bn")
    assert (base.evaluate.primary.metric, base.evaluate.primary.protocol) == ("balanced_accuracy", "patient")
    assert base.split.repeats == 1 and paper.split.repeats >= 3
    assert (paper.evaluate.primary.reference, paper.evaluate.primary.comparator) == ("stanet", "dual_vgg")


def test_repeat_seeds_derive_from_the_seed():
    p = from_dict({"seed": 7, "split": {"repeats": 3}})
    seeds = [p.repeat_seed(r) for r in (1, 2, 3)]
    assert seeds[0] == 7 and len(set(seeds)) == 3           # repeat 1 keeps the seed: R = 1 runs are unchanged
    assert seeds == [from_dict({"seed": 7}).repeat_seed(r) for r in (1, 2, 3)]
    assert from_dict({"seed": 8}).repeat_seed(2) != seeds[1]


@pytest.mark.parametrize("raw, message", [
    ({"data": {"sourc": "synthetic"}}, "unknown key data.sourc"),
    ({"bogus": 1}, "unknown key bogus"),
    ({"data": {"source": "dicom"}}, "data.source: 'dicom' is not accepted; expected one of"),
    ({"data": {"image_size": 8}}, "data.image_size: 8"),
    ({"data": {"image_size": "64"}}, "data.image_size: '64' is not accepted; expected an integer"),
    ({"data": {"channels": 2}}, "data.channels: 2"),
    ({"split": {"scenarios": ["S5"]}}, "split.scenarios[0]: 'S5'"),
    ({"split": {"scenarios": []}}, "split.scenarios: [] is not accepted"),
    ({"split": {"scenarios": ["S1", "S1"]}}, "a list without repeats"),
    ({"split": {"scenario": "S1"}}, "split.scenario was replaced by split.scenarios"),
    ({"split": {"protocols": ["patient", "patient"]}}, "split.protocols"),
    ({"split": {"folds": 3}, "train": {"folds": [1, 4]}}, "train.folds: [4] exceed split.folds=3"),
    ({"train": {"epochs": 0}}, "train.epochs: 0"),
    ({"train": {"optim": {"lr": -1}}}, "train.optim.lr: -1"),
    ({"train": {"augment": "yes"}}, "train.augment: 'yes' is not accepted; expected true or false"),
    ({"train": {"overrides": {"vgg99": {"lr": 0.1}}}}, "train.overrides.vgg99"),
    ({"train": {"overrides": {"dual_vgg": {"batch_size": 0}}}}, "train.overrides.dual_vgg.batch_size: 0"),
    ({"profile": {"latency_runs": 5}}, "profile.latency_runs: 5"),
    ({"deploy": {"folds": [9]}}, "deploy.folds: [9] are not in train.folds"),
    ({"deploy": {"protocols": ["ucar"]}}, "deploy.protocols: ['ucar'] are not in split.protocols"),
    ({"deploy": {"calibration_images": 0}}, "deploy.calibration_images: 0"),
    ({"seed": -1}, "seed: -1"),
    ({"split": {"repeats": 0}}, "split.repeats: 0"),
    ({"data": {"source": "ucar"}, "split": {"protocols": ["ucar"], "repeats": 2}},
     "split.repeats: 2 is not accepted; expected 1 with the 'ucar' protocol: the release publishes one partition"),
    ({"evaluate": {"primary": {"comparator": "vgg99"}}},
     "evaluate.primary.comparator: 'vgg99' is not accepted; expected one of"),
    ({"evaluate": {"primary": {"reference": "resnet_x"}}}, "evaluate.primary.reference: 'resnet_x'"),
    ({"evaluate": {"primary": {"metric": "auc"}}}, "evaluate.primary.metric: 'auc' is not accepted"),
    ({"evaluate": {"primary": {"protocol": "ucar"}}}, "evaluate.primary.protocol: 'ucar' is not accepted"),
    ({"evaluate": {"primary": {"scenario": "S2"}}}, "evaluate.primary.scenario: 'S2' is not accepted"),
    ({"evaluate": {"primary": {"comparator": "stanet"}}}, "evaluate.primary.comparator: 'stanet'"),
    ({"evaluate": {"primary": {"compartor": "dual_vgg"}}}, "unknown key evaluate.primary.compartor"),
])
def test_bad_params_are_refused_naming_the_key(raw, message):
    with pytest.raises(ParamsError) as e:
        from_dict(raw)
    assert message in str(e.value)


def test_override_is_merged_over_the_default_optimiser():
    p = from_dict({"train": {"optim": {"lr": 0.01, "batch_size": 16}, "overrides": {"dual_vgg": {"lr": 0.001}}}})
    assert p.train.optim_for("dual_vgg").lr == 0.001
    assert p.train.optim_for("dual_vgg").batch_size == 16   # inherited from train.optim
    assert p.train.epochs_for("dual_vgg") == p.train.epochs


def test_load_names_the_file(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("data: {image_size: 3}\n")
    with pytest.raises(ParamsError, match=r"params.yaml: data.image_size: 3"):
        load(f)
    f.write_text("data: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load(f)


def test_apply_profile_merges_and_refuses_bad_profiles_without_touching_params(tmp_path):
    target = tmp_path / "params.yaml"
    target.write_text((ROOT / "params.yaml").read_text())
    params = apply_profile(ROOT / "profiles/paper.yaml", target)
    assert params.data.image_size == 224 and params.split.folds == 5 and params.train.epochs == 30
    assert yaml.safe_load(target.read_text())["train"]["models"] == list(params.train.models)
    before = target.read_bytes()
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: -3}\n")
    with pytest.raises(ParamsError, match="train.epochs: -3"):
        apply_profile(bad, target)
    assert target.read_bytes() == before


@pytest.mark.parametrize("profile", sorted(p.name for p in (ROOT / "profiles").glob("*.yaml")))
def test_apply_keeps_the_comments_and_order_of_params_yaml(tmp_path, profile):
    target = tmp_path / "params.yaml"
    original = (ROOT / "params.yaml").read_text()
    target.write_text(original)
    apply_profile(ROOT / "profiles" / profile, target)
    comment = lambda text: [ln.split("#", 1)[1].strip() for ln in text.splitlines() if "#" in ln]  # noqa: E731
    before, after = comment(original), comment(target.read_text())
    kept = sum(1 for c in before if c in after)
    assert kept >= 0.8 * len(before), f"{kept} of {len(before)} comments kept"
    top_keys = lambda text: [k for k in yaml.safe_load(text)]  # noqa: E731
    assert top_keys(target.read_text())[:len(top_keys(original))] == top_keys(original)


def test_params_knows_every_data_source_by_name():
    """params validates data.source against SOURCE_NAMES without importing the sources: the two lists agree."""
    from pipeline.params import SOURCE_NAMES
    from pipeline.sources import SOURCES

    assert list(SOURCE_NAMES) == list(SOURCES)

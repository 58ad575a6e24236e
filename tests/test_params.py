"""params.yaml validation: typed objects, unknown keys and bad values refused by name."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from pipeline.core.params import ParamsError, apply_profile, from_dict, load

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
    ({"profile": {"latency_runs": 1}}, "profile.latency_runs: 1"),
    ({"profile": {"batch_size": 0}}, "profile.batch_size: 0"),
    ({"deploy": {"calibration_images": 0}}, "deploy.calibration_images: 0"),
    ({"seed": -1}, "seed: -1"),
    ({"split": {"repeats": 0}}, "split.repeats: 0"),
    ({"data": {"source": "ucar"}, "split": {"protocols": ["ucar"], "repeats": 2}},
     "split.repeats: 2 is not accepted; expected 1 with the 'ucar' protocol: the release publishes one partition"),
    ({"evaluate": {"primary": {"comparator": "vgg99"}}},
     "evaluate.primary.comparator: 'vgg99' is not accepted; expected one of"),
    ({"evaluate": {"primary": {"reference": "resnet_x"}}}, "evaluate.primary.reference: 'resnet_x'"),
    ({"evaluate": {"primary": {"metric": "auc"}}}, "evaluate.primary.metric: 'auc' is not accepted"),
    ({"evaluate": {"primary": {"protocol": "ucr"}}}, "evaluate.primary.protocol: 'ucr' is not accepted"),
    ({"evaluate": {"primary": {"scenario": "S5"}}}, "evaluate.primary.scenario: 'S5' is not accepted"),
    ({"evaluate": {"primary": {"comparator": "stanet"}}}, "evaluate.primary.comparator: 'stanet'"),
    ({"evaluate": {"primary": {"compartor": "dual_vgg"}}}, "unknown key evaluate.primary.compartor"),
])
def test_bad_params_are_refused_naming_the_key(raw, message):
    with pytest.raises(ParamsError) as e:
        from_dict(raw)
    assert message in str(e.value)


@pytest.mark.parametrize("primary", [{"protocol": "ucar"}, {"scenario": "S2"}, {"comparator": "resnet50"}])
def test_a_primary_this_run_does_not_have_is_dropped_with_a_note(primary, capsys):
    """A known model, protocol or scenario the run leaves out (a shrunk profile): no primary, and a note."""
    p = from_dict({"evaluate": {"primary": primary}})
    assert p.evaluate.primary is None
    assert "no primary comparison in this run" in capsys.readouterr().err


def test_deploy_keeps_what_the_run_has_and_a_shrunk_run_still_deploys():
    """deploy.protocols and deploy.folds choose among what is run; a run without any of them deploys
    everything it trained rather than refusing (a user shrinking split.protocols or train.folds)."""
    p = from_dict({"split": {"protocols": ["patient", "image"]}, "train": {"folds": [1, 2, 3]},
                   "deploy": {"protocols": ["patient"], "folds": [1]}})
    assert (p.deploy_protocols(), p.deploy_folds()) == (["patient"], [1])
    shrunk = from_dict({"split": {"protocols": ["image"]}, "train": {"folds": [2]},
                        "deploy": {"protocols": ["patient"], "folds": [1]}, "evaluate": {"primary": None}})
    assert (shrunk.deploy_protocols(), shrunk.deploy_folds()) == (["image"], [2])


def test_override_for_a_model_outside_train_models_is_ignored_with_a_note(capsys):
    """Shrinking the paper profile as a user does: dual_vgg and efficientnet_b0 taken out of train.models,
    their overrides left in place: accepted, each named in a note, and without effect."""
    p = from_dict({"train": {"models": ["stanet", "handcrafted"],
                             "overrides": {"dual_vgg": {"lr": 2e-5, "pretrained": True},
                                           "efficientnet_b0": {"precise_bn": True}, "stanet": {"lr": 0.01}}}})
    err = capsys.readouterr().err
    assert "train.overrides.dual_vgg: ignored" in err and "train.overrides.efficientnet_b0: ignored" in err
    assert "stanet: ignored" not in err
    assert p.train.optim_for("stanet").lr == 0.01
    assert p.train.optim_for("handcrafted") == p.train.optim


def test_override_for_a_name_that_is_no_model_is_refused_even_outside_train_models():
    with pytest.raises(ParamsError, match=r"train.overrides.dual_vggg: 'dual_vggg' is not accepted; expected one "
                                          r"of train.models \['stanet'\], or another registered model"):
        from_dict({"train": {"models": ["stanet"], "overrides": {"dual_vggg": {"lr": 0.1}}}})


def test_paper_profile_shrunk_as_a_user_would_applies(tmp_path, capsys):
    """profiles/paper.yaml applied, then a profile that only shortens train.models: its overrides stay."""
    target = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", target)
    apply_profile(ROOT / "profiles" / "paper.yaml", target)
    shrink = tmp_path / "shrink.yaml"
    shrink.write_text("train:\n  models: [stanet, handcrafted]\n")
    params = apply_profile(shrink, target)
    assert params.train.models == ("stanet", "handcrafted") and "dual_vgg" in params.train.overrides
    assert "train.overrides.dual_vgg: ignored" in capsys.readouterr().err


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
    from pipeline.core.params import SOURCE_NAMES
    from pipeline.data.sources import SOURCES

    assert list(SOURCE_NAMES) == list(SOURCES)

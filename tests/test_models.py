"""models/: the registry, every registered network, the soft-threshold attention, offline weights."""
from __future__ import annotations

import time

import pytest
import torch
from torch import nn

import models
from models import SoftThreshold, WeightsNotFoundError

# every registered network, a new one included (it gets the checks below with no edit here)
OWN_MODELS = models.list_models()
# the ones the paper's comparison names (pipeline/core/roster.py): registered under these names
PAPER_MODELS = ["dual_vgg", "dual_vgg_bn", "handcrafted", "stanet", "stanet_conv", "stanet_dsc", "stanet_noatt"]


def test_registry_lists_own_models_with_display_names():
    assert OWN_MODELS == sorted(set(OWN_MODELS)) and set(PAPER_MODELS) <= set(OWN_MODELS)
    assert models.display_name("stanet") == "STANet (proposed)"
    assert models.display_name("dual_vgg") == "Dual VGG16+VGG19 (Uçar 2022)"
    assert models.display_name("resnet18") == "resnet18"   # timm names as they are
    assert len({models.display_name(n) for n in OWN_MODELS}) == len(OWN_MODELS)


@pytest.mark.parametrize("name, hint", [("stanet_noat", "stanet_noatt"), ("resnet_18", "resnet18"),
                                        ("dual_vgg16", "dual_vgg")])
def test_unknown_name_lists_close_matches(name, hint):
    with pytest.raises(ValueError, match="close matches") as e:
        models.create_model(name, num_classes=2, in_chans=1)
    assert repr(hint) in str(e.value)
    with pytest.raises(ValueError, match=repr(hint)):
        models.display_name(name)


def test_timm_names_pass_through():
    model = models.create_model("mobilenetv3_small_100", num_classes=3, in_chans=1)
    assert model.default_cfg["architecture"] == "mobilenetv3_small_100"
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)


@pytest.mark.parametrize("name", OWN_MODELS)
@pytest.mark.parametrize("in_chans, num_classes", [(1, 2), (3, 4)])
def test_forward_backward(name, in_chans, num_classes):
    torch.manual_seed(0)
    model = models.create_model(name, num_classes=num_classes, in_chans=in_chans).train()
    x = torch.randn(2, in_chans, 32, 32)   # 32x32: stage 4 of STANet and VGG's last block are 1x1
    logits = model(x)
    assert logits.shape == (2, num_classes)
    nn.functional.cross_entropy(logits, torch.tensor([0, num_classes - 1])).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no finite gradient for {missing[:5]}"
    model.eval()
    with torch.no_grad():
        assert model(x[:1]).shape == (1, num_classes)   # batch 1 at inference


@pytest.mark.parametrize("name", [n for n in OWN_MODELS if n.startswith("stanet")])
def test_stanet_runs_at_the_smallest_image_size(name):
    model = models.create_model(name, num_classes=2, in_chans=1).eval()
    with torch.no_grad():   # 16x16 (data.image_size's minimum): stages 3 and 4 see 1x1 maps
        assert model(torch.randn(2, 1, 16, 16)).shape == (2, 2)


def block_kinds(model) -> list[tuple[str, bool]]:
    """The network's blocks in order, each as ('cconv' | 'dsc', has soft-threshold attention)."""
    from models.stanet import ResidualUnit

    def kind(block) -> str:
        first = next(m for m in block.modules() if isinstance(m, nn.Conv2d))
        return "dsc" if first.groups == first.in_channels > 1 else "cconv"

    out = [(kind(model.stem), False)]
    for stage in model.stages:
        for block in stage:
            body = block.body if isinstance(block, ResidualUnit) else block
            out.append((kind(body), isinstance(block, ResidualUnit) and isinstance(block.shrink, SoftThreshold)))
    return out


def _runs(kinds: list[str]) -> list[str]:
    """Consecutive blocks of one kind collapsed to one entry."""
    return [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]]


def test_stanet_alternates_dsc_and_conventional_blocks_with_attention_in_stages_3_and_4():
    blocks = block_kinds(models.create_model("stanet", num_classes=2, in_chans=3))
    kinds = [k for k, _ in blocks]
    # stem CConv, then per stage a CConv down-sampling block followed by DSC units: the kinds alternate
    # at every stage boundary, four times CConv -> DSC
    assert _runs(kinds) == ["cconv", "dsc"] * 4, kinds
    assert [k for k, _ in blocks[:3]] == ["cconv", "cconv", "dsc"]
    attended = [i for i, (_, att) in enumerate(blocks) if att]
    assert len(attended) == 4 and all(kinds[i] == "dsc" for i in attended)
    assert attended == [i for i in range(len(blocks)) if i >= len(blocks) - 6 and kinds[i] == "dsc"]  # stages 3-4
    # the ablations break exactly one design choice each
    assert [att for _, att in block_kinds(models.create_model("stanet_noatt", 2, 3))] == [False] * len(blocks)
    assert _runs([k for k, _ in block_kinds(models.create_model("stanet_conv", 2, 3))]) == ["cconv"]
    assert _runs([k for k, _ in block_kinds(models.create_model("stanet_dsc", 2, 3))]) == ["cconv", "dsc"]  # stem


def test_stanet_rejects_bad_config():
    with pytest.raises(ValueError, match="one entry per stage"):
        models.create_model("stanet", 2, 3, widths=(8, 16), depths=(1, 1, 1))
    with pytest.raises(ValueError, match="mix='conv'"):
        models.create_model("stanet", 2, 3, mix="conv")


def test_soft_threshold_shrinks_toward_zero():
    torch.manual_seed(0)
    st = SoftThreshold(16).eval()
    with torch.no_grad():
        st.fc2.bias.fill_(1.0)   # alpha well inside (0, 1), so some values fall under tau
    x = torch.randn(4, 16, 8, 8) * torch.linspace(0.1, 3, 16)[None, :, None, None]
    tau = st.thresholds(x).detach()
    s = x.abs().mean(dim=(2, 3))
    assert (tau >= 0).all() and (tau <= s + 1e-6).all()
    y = st(x).detach()
    t = tau[:, :, None, None]
    small = x.abs() <= t
    assert small.any() and (~small).any()
    assert (y[small] == 0).all()
    assert (torch.sign(y[~small]) == torch.sign(x[~small])).all()
    torch.testing.assert_close(y.abs()[~small], (x.abs() - t.expand_as(x))[~small])


def test_soft_threshold_passes_gradients_to_input_and_thresholds():
    torch.manual_seed(0)
    st = SoftThreshold(8).train()
    x = torch.randn(4, 8, 5, 5, requires_grad=True)
    st(x).pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for p in (st.fc1.weight, st.fc2.weight, st.fc2.bias):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_soft_threshold_counts_its_own_macs():
    st = SoftThreshold(64, reduction=4)   # hidden 16
    assert st.macs((2, 64, 7, 7)) == 2 * (64 * 16 + 16 * 64) + 2 * 2 * 64 * 49 + 2 * 64




def test_the_meta_device_check_builds_nothing_and_refuses_as_the_real_one():
    """check_input(build=False), train's check: a model that takes the input passes on the meta device
    (None: nothing built, no weights drawn); one that does not gets the real forward's refusal, word for word."""
    assert models.check_input("stanet", 2, 1, 32, build=False) is None
    assert isinstance(models.check_input("stanet", 2, 1, 32), nn.Module)
    refusals = []
    for build in (True, False):
        with pytest.raises(models.ModelInputError) as caught:
            models.check_input("vit_tiny_patch16_224", 2, 1, 32, build=build)
        refusals.append(str(caught.value))
    assert refusals[0] == refusals[1] and "cannot take 1x32x32 input" in refusals[0]
    with pytest.raises(models.UnknownModelError):
        models.check_input("resnt18", 2, 1, 32, build=False)


def test_build_on_meta_draws_no_weight_and_says_when_it_cannot(monkeypatch):
    """models.build_on_meta: the network's shapes without storage; None for an __init__ that reads values
    there (its callers then build for real); an unknown name still raises."""
    import torch

    from models import registry

    net = models.build_on_meta("stanet", 2, 1)
    assert all(p.device.type == "meta" for p in net.parameters())

    def reads_values(num_classes, in_chans, pretrained=False, **kwargs):
        scale = torch.ones(1).item()        # a value: impossible on the meta device
        return torch.nn.Linear(in_chans, num_classes * int(scale))

    monkeypatch.setitem(registry._model_entrypoints, "reads_values", reads_values)
    assert models.build_on_meta("reads_values", 2, 1) is None
    assert isinstance(models.create_model("reads_values", 2, 1), torch.nn.Linear)   # the real build still works
    with pytest.raises(models.UnknownModelError):
        models.build_on_meta("resnt18", 2, 1)

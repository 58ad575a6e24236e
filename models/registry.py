"""One registry for every network the benchmark trains: the project's own models and timm's.

timm style: each public model is a registered factory function; `create_model` looks the name
up here first and passes any other timm name through to `timm.create_model`. Pretrained weights
come the way timm gets them: from the Hugging Face cache, downloaded when the hub is reachable.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Callable

from torch import nn

# timm (and through it torchvision) is imported only where a timm model is built or looked up:
# it costs about 2 s of start-up, which every stanet training stage would otherwise pay.

_model_entrypoints: dict[str, Callable[..., nn.Module]] = {}
_display_names: dict[str, str] = {}
_without_weights: set[str] = set()   # registered models that have no pretrained weights


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights were asked for but are not on this machine."""


class UnknownModelError(ValueError):
    """A model name that is neither registered here nor known to timm."""


class ModelInputError(ValueError):
    """A model that cannot take the input size it is asked to train on."""


# input sizes tried when a model refuses one, to say which it does take
CANDIDATE_SIZES = (32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384)


def register_model(display_name: str, weights: bool = True) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a factory `fn(num_classes, in_chans, pretrained=False, **kwargs)` under its name;
    `weights=False` for a model that has no pretrained weights (`has_weights`)."""
    def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _model_entrypoints:
            raise ValueError(f"model {name!r} is registered twice")
        _model_entrypoints[name] = fn
        _display_names[name] = display_name
        if not weights:
            _without_weights.add(name)
        return fn
    return register


def list_models() -> list[str]:
    """Names of the project's own models (timm names are accepted too, but not listed)."""
    return sorted(_model_entrypoints)


def _check_name(name: str) -> None:
    if name in _model_entrypoints:
        return
    import timm

    if timm.is_model(name):
        return
    candidates = list_models() + timm.list_models()
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
    hint = f"close matches: {close}" if close else "no close match"
    raise UnknownModelError(f"unknown model {name!r} ({hint}); accepted: one of {list_models()} "
                            f"or a timm model name (timm.list_models())")


def has_weights(name: str) -> bool:
    """Whether model `name` has pretrained ImageNet weights to start from (a timm model: timm knows a hub id)."""
    if name in _model_entrypoints:
        return name not in _without_weights
    import timm

    cfg = timm.models.get_pretrained_cfg(name) if timm.is_model(name) else None
    return bool(cfg is not None and cfg.hf_hub_id)


def display_name(name: str) -> str:
    """Name for tables and figures: e.g. 'STANet (proposed)'; timm names as they are."""
    _check_name(name)
    return _display_names.get(name, name)


def create_model(name: str, num_classes: int, in_chans: int, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build model `name` with a `num_classes`-way head for `in_chans`-channel input.

    Registered names call their factory; any other timm name goes to `timm.create_model`, and its
    freshly created classifier is re-initialised (`init_head`). With `pretrained=True` the ImageNet
    weights come the way timm gets them (`pretrained_weights`): from the Hugging Face cache, downloaded
    into it when the hub is reachable; a missing file is a WeightsNotFoundError at once.
    """
    _check_name(name)
    if name in _model_entrypoints:
        return _model_entrypoints[name](num_classes=num_classes, in_chans=in_chans, pretrained=pretrained, **kwargs)
    if pretrained:
        pretrained_weights(name)        # fails within seconds, with what to do, when they are not to be had
    import timm

    model = timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)
    init_head(model.get_classifier())
    return model


def init_head(classifier: nn.Module) -> None:
    """A new classifier starts near zero: N(0, 0.01) weights and zero bias, so the first logits are
    about equal and the first loss about ln(classes).

    timm draws a fresh head of some models (MobileNetV3, EfficientNet) from U(+-1/sqrt(fan_out)): with
    two classes that is +-0.71, a first-batch loss of 4-6 and training that starts by undoing it.
    """
    if isinstance(classifier, nn.Linear):
        nn.init.normal_(classifier.weight, std=0.01)
        if classifier.bias is not None:
            nn.init.zeros_(classifier.bias)


def input_normalization(model: nn.Module, in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The per-channel mean and std (on 0..1 pixels) that a pretrained model's weights expect, from its
    timm pretrained config; None when it has none. One-channel input takes the mean of the RGB values,
    matching timm's adaptation of the first convolution, which sums the RGB kernels."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean, std = cfg.get("mean"), cfg.get("std")
    if not mean or not std:
        return None
    if in_chans == len(mean):
        return tuple(mean), tuple(std)
    return (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans


def _forward_error(model: nn.Module, in_chans: int, size: int) -> str | None:
    import torch

    try:
        with torch.no_grad():
            model(torch.zeros(2, in_chans, size, size))
    except (RuntimeError, ValueError, AssertionError, IndexError) as e:
        return f"{type(e).__name__}: {str(e).splitlines()[0][:160]}" if str(e) else type(e).__name__
    return None


def build_on_meta(name: str, num_classes: int, in_chans: int, **kwargs) -> nn.Module | None:
    """Model `name` built on PyTorch's meta device: its shapes and attributes without a weight drawn (a dual
    VGG draws 35 M, seconds on a CPU). With pretrained=True the weights file is still found, read and loaded
    against the network's names and shapes (the copy into meta tensors is a no-op, its warning silenced).
    None when the model cannot be built there (an __init__ that reads values): the caller builds it for real.
    An unknown name, a bad keyword or missing weights raise as `create_model` does."""
    import warnings

    import torch

    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter")
            return create_model(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
    except (UnknownModelError, WeightsNotFoundError, TypeError):
        raise
    except Exception:
        return None


def _takes_on_meta(name: str, num_classes: int, in_chans: int, size: int, **kwargs) -> bool:
    """Whether model `name`, built on PyTorch's meta device (`build_on_meta`: shapes without storage, no
    arithmetic), passes a batch of two in_chans x size x size images. False also when the model cannot be
    built or run on the meta device at all (a forward that reads values, as the handcrafted model's histogram
    does)."""
    import torch

    model = build_on_meta(name, num_classes, in_chans, **kwargs)
    if model is None:
        return False
    try:
        with torch.device("meta"), torch.no_grad():
            model.eval()(torch.zeros(2, in_chans, size, size))
    except TypeError:
        raise
    except Exception:   # the real build below decides and words the refusal; this is only a fast path
        return False
    return True


def _takes(name: str, model: nn.Module, num_classes: int, in_chans: int, size: int, **kwargs) -> bool:
    """Whether the model takes in_chans x size x size: on the meta device when it passes there (shapes
    only: a 384-px dual VGG forward is seconds of arithmetic, and a refusal tries eleven sizes), else by
    the real `model`'s forward, which decides every size the meta check does not pass."""
    return _takes_on_meta(name, num_classes, in_chans, size, **kwargs) or _forward_error(model, in_chans, size) is None


def check_input(name: str, num_classes: int, in_chans: int, size: int, build: bool = True, **kwargs) -> nn.Module | None:
    """Build model `name` and pass a batch of two in_chans x size x size images through it; the model built
    (in eval mode), for a caller that needs one (the profile stage builds it once, not twice).

    With `build=False` (a caller that builds its own model, as train does) the check runs on the meta
    device first, in milliseconds rather than the seconds a 224-px dual VGG takes to draw its weights and
    run; only when that does not pass is the model built for real, so that every refusal is the real
    forward's; returns None when the meta check passed.

    An unknown name raises UnknownModelError; a model that cannot take the size (a ViT fixed at
    224, five max-pools on 16 pixels) raises ModelInputError naming the model, the size and the
    sizes it does take, found by trying CANDIDATE_SIZES.
    """
    _check_name(name)
    if not build and _takes_on_meta(name, num_classes, in_chans, size, **kwargs):
        return None
    model = create_model(name, num_classes=num_classes, in_chans=in_chans, **kwargs).eval()
    error = _forward_error(model, in_chans, size)
    if error is None:
        return model
    works = [s for s in CANDIDATE_SIZES if s != size and _takes(name, model, num_classes, in_chans, s, **kwargs)]
    hint = (f"it does take {', '.join(str(s) for s in works[:5])} (set data.image_size to one of them)" if works
            else f"it took none of {list(CANDIDATE_SIZES)} either")
    raise ModelInputError(f"model {name!r} cannot take {in_chans}x{size}x{size} input ({error}); {hint}, or "
                          f"remove it from train.models")


def pretrained_weights(timm_name: str) -> tuple[str, Path]:
    """The Hugging Face hub id and the local file of the ImageNet weights of timm model `timm_name`.

    Found the way timm finds them: in the Hugging Face cache (HF_HOME / HF_HUB_CACHE), and, when the
    hub is reachable, downloaded into it. Offline (HF_HUB_OFFLINE=1) with no cached file, or when the
    download fails, a WeightsNotFoundError says at once which weights were looked for and how to
    provide them: nothing waits on a network that is not there.
    """
    import huggingface_hub
    import timm

    cfg = timm.models.get_pretrained_cfg(timm_name)
    hub_id = cfg.hf_hub_id if cfg is not None else None
    if not hub_id:
        raise WeightsNotFoundError(f"pretrained weights for {timm_name}: timm knows no Hugging Face weights for it; "
                                   f"set its `pretrained: false`")
    filenames = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
    for filename in filenames:
        cached = huggingface_hub.try_to_load_from_cache(hub_id, filename)
        if isinstance(cached, str):
            return hub_id, Path(cached)
    how = (f"provide them by running once where the hub is reachable (timm downloads them into the cache), "
           f"by `huggingface-cli download {hub_id}` there and copying the cache, or by pointing HF_HOME or "
           f"HF_HUB_CACHE at a filled cache; or train the model from scratch (`pretrained: false`)")
    if huggingface_hub.is_offline_mode():
        raise WeightsNotFoundError(f"pretrained weights for {timm_name}: {hub_id} is not in the Hugging Face cache "
                                   f"{_hub_cache()} and the hub is offline (HF_HUB_OFFLINE is set); {how}")
    try:
        return hub_id, Path(huggingface_hub.hf_hub_download(hub_id, filenames[0]))
    except Exception as e:   # no network, a proxy, a rate limit: all mean the weights are not to be had here
        raise WeightsNotFoundError(f"pretrained weights for {timm_name}: {hub_id} is not in the Hugging Face cache "
                                   f"{_hub_cache()} and downloading it failed ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0][:200] if str(e) else ''}); {how}") from None


def weight_names(path: Path) -> set[str]:
    """The tensor names in a .safetensors or torch checkpoint file."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return set(f.keys())
    import torch

    return set(torch.load(path, map_location="cpu", weights_only=True))


def _hub_cache() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE

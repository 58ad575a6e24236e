"""One registry for every network the benchmark trains: the project's own models and timm's.

timm style: each public model is a registered factory function; `create_model` looks the name
up here first and passes any other timm name through to `timm.create_model`. Pretrained weights
are only ever read from local files; nothing here touches the network.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Callable

from torch import nn

# timm (and through it torchvision) is imported only where a timm model is built or looked up:
# it costs about 2 s of start-up, which every stanet training stage would otherwise pay.

_model_entrypoints: dict[str, Callable[..., nn.Module]] = {}
_display_names: dict[str, str] = {}


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights were asked for but are not on this machine."""


class UnknownModelError(ValueError):
    """A model name that is neither registered here nor known to timm."""


class ModelInputError(ValueError):
    """A model that cannot take the input size it is asked to train on."""


# input sizes tried when a model refuses one, to say which it does take
CANDIDATE_SIZES = (32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384)


def register_model(display_name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a factory `fn(num_classes, in_chans, pretrained=False, **kwargs)` under its name."""
    def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _model_entrypoints:
            raise ValueError(f"model {name!r} is registered twice")
        _model_entrypoints[name] = fn
        _display_names[name] = display_name
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


def display_name(name: str) -> str:
    """Name for tables and figures: e.g. 'STANet (proposed)'; timm names as they are."""
    _check_name(name)
    return _display_names.get(name, name)


def create_model(name: str, num_classes: int, in_chans: int, pretrained: bool = False, **kwargs) -> nn.Module:
    """Build model `name` with a `num_classes`-way head for `in_chans`-channel input.

    Registered names call their factory; any other timm name goes to `timm.create_model`.
    With `pretrained=True` weights come only from local files (see `local_weights`), never the network.
    """
    _check_name(name)
    if name in _model_entrypoints:
        return _model_entrypoints[name](num_classes=num_classes, in_chans=in_chans, pretrained=pretrained, **kwargs)
    if pretrained:
        file = local_weights(name, kwargs.pop("pretrained_file", None))
        kwargs["pretrained_cfg_overlay"] = {"file": str(file)}
    import timm

    return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)


def _forward_error(model: nn.Module, in_chans: int, size: int) -> str | None:
    import torch

    try:
        with torch.no_grad():
            model(torch.zeros(2, in_chans, size, size))
    except (RuntimeError, ValueError, AssertionError, IndexError) as e:
        return f"{type(e).__name__}: {str(e).splitlines()[0][:160]}" if str(e) else type(e).__name__
    return None


def check_input(name: str, num_classes: int, in_chans: int, size: int, **kwargs) -> None:
    """Build model `name` and pass a batch of two in_chans x size x size images through it.

    An unknown name raises UnknownModelError; a model that cannot take the size (a ViT fixed at
    224, five max-pools on 16 pixels) raises ModelInputError naming the model, the size and the
    sizes it does take, found by trying CANDIDATE_SIZES.
    """
    model = create_model(name, num_classes=num_classes, in_chans=in_chans, **kwargs).eval()
    error = _forward_error(model, in_chans, size)
    if error is None:
        return
    works = [s for s in CANDIDATE_SIZES if s != size and _forward_error(model, in_chans, s) is None]
    hint = (f"it does take {', '.join(str(s) for s in works[:5])} (set data.image_size to one of them)" if works
            else f"it took none of {list(CANDIDATE_SIZES)} either")
    raise ModelInputError(f"model {name!r} cannot take {in_chans}x{size}x{size} input ({error}); {hint}, or "
                          f"remove it from train.models")


def local_weights(timm_name: str, path: str | Path | None = None) -> Path:
    """Path of ImageNet weights for timm model `timm_name` on this machine, or WeightsNotFoundError at once.

    Looked for, in order: `path`; the file named by env var MYOBENCH_WEIGHTS_<NAME> (e.g.
    MYOBENCH_WEIGHTS_VGG16); the Hugging Face hub cache (`timm/<name>.<tag>`, as timm would
    download it). The hub is never contacted, so this cannot hang on the network.
    """
    env = f"MYOBENCH_WEIGHTS_{timm_name.upper()}"
    given = path or os.environ.get(env)
    if given:
        if not Path(given).is_file():
            raise WeightsNotFoundError(f"pretrained weights for {timm_name}: {given} is not a file "
                                       f"(given {'as an argument' if path else 'by ' + env})")
        return Path(given)
    import timm

    cfg = timm.models.get_pretrained_cfg(timm_name)
    hub_id = cfg.hf_hub_id if cfg is not None else None
    if hub_id:
        from huggingface_hub import constants, try_to_load_from_cache

        filenames = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        for filename in filenames:
            cached = try_to_load_from_cache(hub_id, filename, cache_dir=constants.HF_HUB_CACHE)
            if isinstance(cached, str):
                return Path(cached)
    where = f"the Hugging Face cache {_hub_cache()} holds no {hub_id}" if hub_id else "timm knows no weights for it"
    raise WeightsNotFoundError(
        f"pretrained=True for {timm_name}: no local ImageNet weights ({where}, and {env} is not set). "
        f"This project never downloads weights at run time: put the file on this machine and set "
        f"{env}=/path/to/weights (.safetensors or .pth), or use pretrained=False")


def _hub_cache() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE

"""A model named in train.models, checked before a stage spends time on it: does it exist, and
does it take the configured input? A sentence naming the model, the size and what would work,
instead of a ValueError, an AssertionError or a RuntimeError minutes into a run."""
from __future__ import annotations

from torch import nn

import models
from pipeline.core.errors import DataError
from pipeline.core.params import Params
from pipeline.core.scenarios import class_names


def check_model(params: Params, model: str, scenario: str | None = None, build: bool = True) -> nn.Module | None:
    """Refuse (DataError) an unknown model, one that cannot take data.channels x data.image_size^2, or
    one asked to start from ImageNet weights that are not to be had (within seconds, offline). Returns
    the model it built (from scratch, data.channels in, the scenario's classes out); with `build=False`
    (train builds its own), None where the check could run on the meta device (models.check_input)."""
    scenario = scenario or params.split.scenarios[0]
    try:
        built = models.check_input(model, len(class_names(scenario)), params.data.channels, params.data.image_size,
                                     build=build)
    except (models.UnknownModelError, models.ModelInputError) as e:
        raise DataError(f"train.models: {e}") from None
    if params.train.pretrained_for(model) and not models.has_weights(model):
        own = getattr(params.train.overrides.get(model), "pretrained", None)
        if own:   # asked for by name: refused; by train.pretrained for every model: skipped
            raise DataError(f"train.overrides.{model}.pretrained: {model} has no pretrained weights; set it to "
                            f"false (or remove it)")
        print(f"note: train.pretrained is true, but {model} has no pretrained weights; it is trained from scratch")
    elif params.train.pretrained_for(model):
        try:
            _build_pretrained(model, len(class_names(scenario)), params.data.channels)
        except models.WeightsNotFoundError as e:
            raise DataError(f"train.overrides.{model}.pretrained: {e}") from None
    return built


def _build_pretrained(model: str, num_classes: int, in_chans: int) -> None:
    """Build `model` from its pretrained weights, to refuse weights that are not to be had: on the meta
    device (models.build_on_meta: the file found, read and loaded against the network, no weight drawn:
    a dual VGG's 3.5 s become 0.1 s), or for real where the meta device cannot build it."""
    if models.build_on_meta(model, num_classes, in_chans, pretrained=True) is None:
        models.create_model(model, num_classes, in_chans, pretrained=True)

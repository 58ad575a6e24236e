"""The networks of the benchmark, behind one registry (no pipeline code here).

    create_model(name, num_classes, in_chans, pretrained=False, **kwargs) -> nn.Module
    list_models() -> the project's own names; any timm name is accepted too
    display_name(name) -> the name tables and figures use
"""
import importlib
import pkgutil

from models.registry import (ModelInputError, UnknownModelError, WeightsNotFoundError, build_on_meta, check_input,
                             create_model, display_name, has_weights, init_head, input_normalization, list_models,
                             pretrained_weights, register_model)
from models.attention import SoftThreshold

# Every module of this package is imported here, so a network is registered by its file alone:
# adding models/mynet.py with a @register_model factory is all it takes.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["create_model", "build_on_meta", "check_input", "list_models", "display_name", "register_model", "pretrained_weights",
           "has_weights", "init_head", "input_normalization", "WeightsNotFoundError", "UnknownModelError", "ModelInputError",
           "SoftThreshold"]

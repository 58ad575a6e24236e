"""The networks of the benchmark, behind one registry (no pipeline code here).

    create_model(name, num_classes, in_chans, pretrained=False, **kwargs) -> nn.Module
    list_models() -> the project's own names; any timm name is accepted too
    display_name(name) -> the name tables and figures use
"""
from models.registry import (WeightsNotFoundError, create_model, display_name, list_models, local_weights,
                             register_model)
from models.attention import SoftThreshold
from models import dual_vgg as _dual_vgg, stanet as _stanet  # noqa: F401  (registers the models)

__all__ = ["create_model", "list_models", "display_name", "register_model", "local_weights",
           "WeightsNotFoundError", "SoftThreshold"]

"""The roster: which of this project's models play which part in the paper's comparison.

The only place outside models/ and params.yaml that names the paper's networks. It imports nothing
of the project, so params (the default train.models), the report and the paper table can all read
it without one importing another.
"""
from __future__ import annotations

# This project's models for the paper's two networks. The paper states computation as a share of
# the dual-branch network's.
PROPOSED_MODEL = "stanet"
COMPUTE_REFERENCE = "dual_vgg"
# A model that stands in for a published network in runs that cannot train the network itself (the
# CPU demo trains the batch-normalised dual VGG from scratch); every table says which one was run.
STAND_INS = {"dual_vgg_bn": COMPUTE_REFERENCE}
# The paper's design choices, each removed by one ablation of the proposed network (models/stanet.py),
# all at the proposed network's MACs: what each variant takes away.
ABLATIONS = {
    "stanet_noatt": "the soft-threshold attention removed",
    "stanet_dsc": "depthwise separable blocks only (no conventional convolutions to alternate with)",
    "stanet_conv": "conventional convolutions only (no depthwise separable blocks)",
}
DEFAULT_MODELS = (PROPOSED_MODEL, *ABLATIONS, COMPUTE_REFERENCE, "resnet18", "mobilenetv3_small_100", "efficientnet_b0",
                  "handcrafted")


def in_run(model: str, models: list[str] | tuple[str, ...]) -> str | None:
    """`model` if the run trained it, else the run's stand-in for it (STAND_INS), else None."""
    if model in models:
        return model
    return next((m for m, stands_for in STAND_INS.items() if stands_for == model and m in models), None)

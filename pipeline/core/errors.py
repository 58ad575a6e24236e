"""Errors a user can act on. Each message names the file, row, key or value at fault and what
would be accepted; `pipeline.core.cli.run_stage` prints it without a traceback and exits 2."""
from __future__ import annotations


class PipelineError(Exception):
    """Base class for errors caused by input, params or the environment, not by a bug."""


class DataError(PipelineError):
    """Input data (a manifest, an image, a spreadsheet, a split) that cannot be used."""


class TrainingError(PipelineError):
    """Training cannot go on: a non-finite loss, out of memory, a corrupt checkpoint."""


class ExportError(PipelineError):
    """A trained network whose ONNX export does not reproduce it (parity beyond the tolerance)."""

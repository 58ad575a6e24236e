"""A run's trained folds as they are deployed: loaded, exported to ONNX, run under ONNX Runtime, int8.

Shared by the deploy stage (pipeline/deploy.py) and `python -m pipeline.predict`.

- `load_run(stage_dir)`: every fold of one train stage's output (runs/<scenario>/<model>/<protocol>),
  with what predicting needs, read from the fold's metrics.json: the class names, the input size
  and the normalisation statistics the training batches used (`input_mean`, `input_std`).
- `normalise`: uint8 images (N, C, S, S) to the network's input, with the operations of the training
  data path (pipeline/training/batches.py `eval_batches`), so the numbers are the same bit for bit.
- `export_onnx`: the network followed by a softmax, so ONNX Runtime returns probabilities, with a
  dynamic batch axis. The exporter is torch's TorchScript-based one (`dynamo=False`), not the
  torch.export-based default of torch 2.14: measured on the 2-core demo machine, the default took
  8-23 s per network (torch.export, then the ONNX translation) against 0.3-2.5 s, and a run of the demo
  has 48 trained networks (8 models x 2 protocols x 3 folds): several minutes against the stage's
  budget of about 40 s. Both give standard operators for the soft-threshold units (Abs, ReduceMean,
  Gemm, Sigmoid, Min/Max or Clip, Sub); tests/test_deploy.py checks parity under both.
- `quantize_int8`: ONNX Runtime's static quantization in QDQ format (activations uint8, weights int8,
  per channel), calibrated (MinMax) on images the caller passes: the deploy stage passes the fold's
  training part, never its test part.
- `latency`: batch-1 wall time of a callable, median, 90th percentile and minimum.
"""
from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

import models
from pipeline.core.errors import DataError
from pipeline.core.readers import read_json
from pipeline.training.batches import ImageBank, eval_batches

OPSET = 17
SYNTHETIC_CAVEAT = "trained on synthetic data: not for clinical use"
EXPORTER = f"torch.onnx.export (TorchScript-based, dynamo=False), opset {OPSET}"


@dataclass
class Fold:
    """One trained fold of a run: its weights and everything needed to preprocess and predict."""
    directory: Path
    fold: int
    model: str
    scenario: str
    protocol: str
    class_names: list[str]
    input_size: tuple[int, int, int]     # channels, height, width, as trained
    mean: float | list[float]
    std: float | list[float]
    pretrained: bool
    data_source: str
    metrics: dict

    def build(self) -> nn.Module:
        """The network with the fold's weights, in inference mode."""
        state = torch.load(self.directory / "weights.pt", map_location="cpu", weights_only=True)
        net = models.create_model(self.model, num_classes=len(self.class_names), in_chans=self.input_size[0])
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            raise DataError(f"{self.directory / 'weights.pt'}: the weights do not fit {self.model} with "
                            f"{self.input_size[0]} input channel(s) and {len(self.class_names)} classes, as its "
                            f"metrics.json says ({str(e).splitlines()[1 if len(str(e).splitlines()) > 1 else 0][:200]}"
                            f"); retrain the run") from None
        return net.eval()

    @property
    def is_network(self) -> bool:
        """False for a model fitted in closed form (the handcrafted baseline: features and a regression).
        Built on the meta device where it can be (no weights drawn: a dual VGG's draws were 1.6 s a deploy stage)."""
        shape = dict(num_classes=len(self.class_names), in_chans=self.input_size[0])
        net = models.build_on_meta(self.model, **shape) or models.create_model(self.model, **shape)
        return not hasattr(net, "fit")


def at_input(fold: Fold, net: nn.Module, channels: int) -> nn.Module:
    """The fold's trained network rebuilt for `channels` input channels (the paper's 3): every weight as
    trained, the first convolution's kernels spread over the new channels as timm adapts a pretrained
    network's input (`adapt_input_conv`: repeated, scaled by trained / new channels). Every network here is
    fully convolutional up to global pooling, so it runs at any height and width; its cost is what timing
    it at the paper's input measures (its predictions on 3-channel images mean nothing)."""
    if channels == fold.input_size[0]:
        return net
    from timm.models import adapt_input_conv

    other = models.create_model(fold.model, num_classes=len(fold.class_names), in_chans=channels)
    want = other.state_dict()
    state = {}
    for key, value in net.state_dict().items():
        if key in want and want[key].shape != value.shape and value.ndim == 4 and value.shape[1] == fold.input_size[0]:
            value = adapt_input_conv(channels, value, base_chans=fold.input_size[0])
        state[key] = value
    other.load_state_dict(state)
    return other.eval()


def _stat(value: Any) -> float | list[float]:
    return [float(v) for v in value] if isinstance(value, list) else float(value)


def load_run(stage_dir: str | Path, folds: Sequence[int] | None = None) -> list[Fold]:
    """The folds of runs/<scenario>/<model>/<protocol> (all, or those of `folds`), checked to agree."""
    stage_dir = Path(stage_dir)
    if not stage_dir.is_dir():
        raise DataError(f"{stage_dir}: no such run; expected a train stage's output, "
                        f"runs/<scenario>/<model>/<protocol> (run `dvc repro` first)")
    found = sorted((int(p.name.split("-", 1)[1]), p) for p in stage_dir.glob("fold-*")
                   if p.name.split("-", 1)[1].isdigit() and (p / "weights.pt").is_file())
    if folds:
        missing = sorted(set(folds) - {k for k, _ in found})
        if missing:
            raise DataError(f"{stage_dir}: no trained fold {missing}; it has folds {[k for k, _ in found]}")
        found = [(k, p) for k, p in found if k in folds]
    if not found:
        raise DataError(f"{stage_dir}: no trained fold (fold-<k>/weights.pt); expected a train stage's output, "
                        f"runs/<scenario>/<model>/<protocol>")
    out = []
    for k, path in found:
        m = read_json(path / "metrics.json", "retrain the run")
        missing = [key for key in ("model", "scenario", "protocol", "class_names", "input_size", "input_mean",
                                   "input_std", "data_source") if key not in m]
        if missing:
            raise DataError(f"{path / 'metrics.json'}: has no {missing}; it was written before the normalisation "
                            f"statistics and the data source were stored with a run: retrain it (dvc repro)")
        out.append(Fold(path, k, m["model"], m["scenario"], m["protocol"], list(m["class_names"]),
                        tuple(int(v) for v in m["input_size"]), _stat(m["input_mean"]), _stat(m["input_std"]),
                        bool(m.get("pretrained")), str(m["data_source"]), m))
    first = out[0]
    for f in out[1:]:
        if (f.model, f.class_names, f.input_size, f.data_source) != (first.model, first.class_names,
                                                                     first.input_size, first.data_source):
            raise DataError(f"{stage_dir}: fold {f.fold} ({f.model}, {f.class_names}, input {list(f.input_size)}) "
                            f"does not match fold {first.fold} ({first.model}, {first.class_names}, input "
                            f"{list(first.input_size)}); the folds of one run must agree")
    return out


def normalise(images: np.ndarray, fold: Fold, batch_size: int = 256) -> torch.Tensor:
    """uint8 (N, C, S, S) -> float32 network input, exactly as the training data path computes it."""
    mean, std = ((torch.tensor(v).view(1, -1, 1, 1) if isinstance(v, list) else v) for v in (fold.mean, fold.std))
    bank = ImageBank(np.ascontiguousarray(images), torch.device("cpu"))
    return torch.cat(list(eval_batches(bank, np.arange(len(images)), batch_size, mean, std)))


@torch.no_grad()
def torch_probabilities(net: nn.Module, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Softmax probabilities (N, classes), float32, under PyTorch on the CPU."""
    return torch.cat([net(x[i:i + batch_size]).float().softmax(dim=1)
                      for i in range(0, len(x), batch_size)]).numpy()


class _WithSoftmax(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).softmax(dim=1)


def export_onnx(net: nn.Module, input_size: Sequence[int], path: str | Path, dynamo: bool = False) -> Path:
    """Write `net` (then a softmax) to the ONNX file `path`, input "image" (batch, C, H, W), output
    "probabilities"; the batch axis is dynamic. `dynamo=True` uses torch's torch.export-based exporter."""
    path = Path(path)
    wrapped = _WithSoftmax(net).eval()
    example = torch.zeros(2, *input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the TorchScript exporter's deprecation notice; the choice is documented
        if dynamo:
            program = torch.onnx.export(wrapped, (example,), input_names=["image"], output_names=["probabilities"],
                                        dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True,
                                        opset_version=max(OPSET, 18), verbose=False)
            program.save(str(path))
        else:
            torch.onnx.export(wrapped, (example,), str(path), input_names=["image"], output_names=["probabilities"],
                              dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}},
                              opset_version=OPSET, dynamo=False)
    return path


def session(path: str | Path, threads: int):
    """An ONNX Runtime CPU inference session with `threads` intra-op threads (one inter-op thread)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def ort_probabilities(sess, x: torch.Tensor | np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Probabilities (N, classes) from an exported model's session."""
    x = x.numpy() if isinstance(x, torch.Tensor) else x
    return np.concatenate([sess.run(None, {"image": np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32)})[0]
                           for i in range(0, len(x), batch_size)])


def quantize_int8(fp32_path: str | Path, int8_path: str | Path, calibration: torch.Tensor | np.ndarray,
                  batch_size: int = 32) -> Path:
    """Static int8 quantization (QDQ; uint8 activations, int8 per-channel weights; MinMax calibration on
    the normalised images `calibration`)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    x = calibration.numpy() if isinstance(calibration, torch.Tensor) else np.asarray(calibration)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"image": np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32)}
                                 for i in range(0, len(x), batch_size)])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(int8_path), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=CalibrationMethod.MinMax)
    return Path(int8_path)


def latency(run: Callable[[], Any], runs: int, warmup: int) -> dict:
    """Wall time of `run()` in ms over `runs` calls after `warmup`: median, 90th percentile and minimum."""
    times = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        run()
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000.0)
    deciles = statistics.quantiles(times, n=10, method="inclusive")
    # the minimum too: on a busy machine it is the run the scheduler did not interrupt
    return {"median_ms": round(statistics.median(times), 4), "p90_ms": round(deciles[8], 4),
            "min_ms": round(min(times), 4), "runs": runs, "warmup": warmup}

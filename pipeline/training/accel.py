"""Everything training does differently on a GPU, in one place: the CUDA code path's switch.

`for_device(device, compile_requested)` returns the `Accel` settings the train stage (and
benchmarks/throughput.py) use. On CUDA:

- autocast_dtype: bfloat16 autocast for the forward pass (the loss and softmax stay float32);
- channels_last: the model's weights and every batch in NHWC memory order;
- fused_optimizer: the fused Adam/AdamW/SGD kernels (the CPU takes the multi-tensor `foreach` path);
- compile: torch.compile, when train.compile asks for it.

The data tensor lives on the training device on every device (pipeline/training/batches.py's ImageBank copies the
whole cohort there once, so there is nothing to pin: pinned memory is not used on any device).

`CUDA_PATH_ON_CPU` (environment variable MYOBENCH_CUDA_PATH_ON_CPU=1) gives a CPU run the CUDA settings
each of which has a CPU equivalent (all of the above: bfloat16 autocast, channels_last, fused CPU
optimizer kernels, torch.compile through inductor's C++ backend), so the suite runs the GPU code path
without a GPU. What stays untested without one: CUDA kernels themselves, cuDNN, CUDA RNG state in
checkpoints, NCCL among ranks, and memory limits.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

CUDA_PATH_ON_CPU = "MYOBENCH_CUDA_PATH_ON_CPU"


@dataclass(frozen=True)
class Accel:
    """How a device runs training: the CUDA path's settings, or plain float32 NCHW."""
    autocast_dtype: torch.dtype | None   # None: float32 throughout
    channels_last: bool
    fused_optimizer: bool
    compile: bool
    forced: bool = False                 # the CUDA settings on a CPU (MYOBENCH_CUDA_PATH_ON_CPU)

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The forward pass's autocast context for `device` (a no-op without autocast_dtype)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)

    def optimizer_kwargs(self) -> dict[str, bool]:
        """fused kernels, or on the CPU the multi-tensor path (~13% faster than the per-parameter loop)."""
        return {"fused": True} if self.fused_optimizer else {"foreach": True}

    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def describe(self) -> dict:
        """The settings as plain values (for metrics.json and the throughput benchmark's JSON)."""
        return {"autocast": str(self.autocast_dtype).removeprefix("torch.") if self.autocast_dtype else None,
                "channels_last": self.channels_last, "fused_optimizer": self.fused_optimizer,
                "compile": self.compile, "cuda_path_on_cpu": self.forced}


def cuda_path_forced() -> bool:
    """Whether MYOBENCH_CUDA_PATH_ON_CPU asks a CPU run to take the CUDA path's settings."""
    return os.environ.get(CUDA_PATH_ON_CPU, "") not in ("", "0")


def for_device(device: torch.device, compile_requested: bool = False) -> Accel:
    """The settings for training on `device`: the CUDA path on CUDA (or on a CPU when forced), else float32."""
    cuda_path = device.type == "cuda" or (device.type == "cpu" and cuda_path_forced())
    if not cuda_path:
        return Accel(autocast_dtype=None, channels_last=False, fused_optimizer=False, compile=False)
    return Accel(autocast_dtype=torch.bfloat16, channels_last=True, fused_optimizer=True, compile=compile_requested,
                 forced=device.type != "cuda")

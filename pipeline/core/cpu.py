"""The CPU code paths of the numerical libraries, pinned so that runs on different CPUs differ less,
and runs on the same CPU model give the same bits.

numpy, OpenBLAS, PyTorch's ATen, oneDNN and MKL each pick their kernels by the CPU they find. On
an AVX-512 machine numpy's float64 exp/log (the synthetic cohort's speckle), oneDNN's convolutions
and MKL's reductions round differently from an AVX2 machine's, so a baseline made on one machine
fails on another (measured on this project's demo: each of the five settings below, alone,
changes the trained models' predictions, and numpy's alone changes the synthetic images).
`runtime.cpu_isa: avx2` caps all five at AVX2, the level every x86-64 CPU of the last decade has.

What the pins do not give is the same bits on every such CPU: measured on an Intel Xeon with the
pins in place (a fresh clone of ce818c3, run as the README says, every pin recorded as in the
committed run): the processed data and folds were identical to the committed AMD EPYC run's, but 39
of the 54 fold runs' test accuracies differed, by up to 7.1 points (stanet_dsc, patient folds), and
so did reports/metrics.json; `python -m pipeline.check` passed there. The portable part is the
check's measured noise (pipeline/check.py), not the pins.

The settings are environment variables that the libraries read once, when they load or first
compute; so `pin()` runs when the `pipeline` package is imported (pipeline/__init__.py), before
any stage module imports numpy or torch. It reads only params.yaml's `runtime` section (validated
with the rest by pipeline/core/params.py at load) and never overrides a variable the user has set.
"""
from __future__ import annotations

import os
from pathlib import Path

SETTINGS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {
        "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",   # numpy's AVX-512 kernels
        "OPENBLAS_CORETYPE": "Haswell",                                  # OpenBLAS's AVX2 kernels
        "OPENBLAS_NUM_THREADS": "1",                                     # BLAS sums in one fixed order
        "ATEN_CPU_CAPABILITY": "avx2",                                   # PyTorch's own CPU kernels
        "ONEDNN_MAX_CPU_ISA": "AVX2",                                    # PyTorch's convolutions
        "MKL_CBWR": "AVX2",                                              # MKL's conditional bitwise reproducibility
    },
}
VARIABLES = tuple(dict.fromkeys(k for s in SETTINGS.values() for k in s))


def _declared_isa(params_path: Path) -> str:
    """runtime.cpu_isa of params.yaml, 'native' when absent or unreadable (params.load reports errors)."""
    try:
        import yaml

        raw = yaml.safe_load(params_path.read_text()) or {}
        isa = (raw.get("runtime") or {}).get("cpu_isa", "native")
    except (OSError, ValueError, AttributeError, ImportError):
        return "native"
    return isa if isa in SETTINGS else "native"


def pin(params_path: str | Path = "params.yaml") -> dict[str, str]:
    """Set the environment for params.yaml's runtime.cpu_isa (variables the user set are kept); what was set."""
    done = {}
    for key, value in SETTINGS[_declared_isa(Path(params_path))].items():
        if key not in os.environ:
            os.environ[key] = value
            done[key] = value
    return done


def in_effect() -> dict[str, str | None]:
    """The pinning variables as this process sees them, and the capability PyTorch dispatches to
    (recorded with every run, since the numbers depend on them)."""
    out: dict[str, str | None] = {k: os.environ.get(k) for k in VARIABLES}
    try:
        import torch

        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except ImportError:
        pass
    return out

"""myobench pipeline: one module per DVC stage, run as `python -m pipeline.<stage>`.

Importing the package pins the CPU code paths of numpy, OpenBLAS, PyTorch, oneDNN and MKL as
params.yaml's `runtime.cpu_isa` says (pipeline/cpu.py): it must happen before they load.
"""
from pipeline import cpu as _cpu

_cpu.pin()

"""myobench pipeline: the seven DVC stages (prepare, split, train, profile, deploy, evaluate, report), each
run as `python -m pipeline.<stage>`, beside the modules they share (docs/architecture.md maps them).

Importing the package pins the CPU code paths of numpy, OpenBLAS, PyTorch, oneDNN and MKL as
params.yaml's `runtime.cpu_isa` says (pipeline/core/cpu.py). This is the one import-time side effect of
the project, and it is here on purpose:
- the libraries read these environment variables once, when they load, so the pin must come before
  the first `import numpy` or `import torch` of any stage, and every stage imports this package first;
- it reads ./params.yaml from the working directory, as every stage does (DVC runs them from the
  repository root); without one (a notebook elsewhere, a test's scratch directory) or with an unreadable
  one it pins nothing ('native'), and `params.load` reports what is wrong with the file;
- a variable the user already set is kept, so `OMP_NUM_THREADS=...` and friends still win.
"""
from pipeline.core import cpu as _cpu

_cpu.pin()

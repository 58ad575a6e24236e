"""myobench pipeline: one module per DVC stage, run as `python -m pipeline.<stage>`."""

"""Training one fold: the recipe (optimiser, schedule, step, validation), batches, checkpoints, folds side by
side, torchrun, the CUDA path, the nested recipe search, and the model check before any work (train)."""

"""The cohort: data sources (synthetic, a folder with a manifest, the Uçar release), image reading and
resizing, patient identity, duplicates, the protocols and the Uçar release's published folds (prepare, split)."""

"""What every stage stands on, declared whole by each in dvc.yaml: params (the schema, validated once),
layout (where files live), the run grid (grid), scenarios, the roster, fold coverage, the one balanced
accuracy (scores), fingerprints, atomic outputs, errors, the stage CLI, its lifecycle and timing, the CPU
pin, YAML and table readers, machine info. Imports nothing of the project outside this package."""

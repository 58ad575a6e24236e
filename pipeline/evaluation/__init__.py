"""The test metrics and their statistics (evaluate). No train stage imports this package: a new metric
reruns evaluate and report only."""

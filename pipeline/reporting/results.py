"""The one reader of reports/metrics.json: what the evaluate stage wrote, as typed lookups.

figures, report, findings, check and paper read the results through `Results`, never by walking
the JSON by hand: the statistic of a model under a scenario and protocol, whether it learned,
the comparisons with the reference model, and the (scenario, protocol) panels to draw.

    results, per_fold = read(Path("reports/metrics.json"), Path("reports/per_fold.csv"), remedy)
    results.stat("S1", "resnet18", "patient", "accuracy", "sd")
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.core.grid import fold_keys
from pipeline.core.readers import read_evaluation


@dataclass(frozen=True)
class Results:
    """reports/metrics.json: `raw` as written; a lookup of something absent gives None or empty."""
    raw: dict

    @property
    def meta(self) -> dict:
        """The run's settings: scenarios, models, protocols, folds, data_source, reference_model, ..."""
        return self.raw["meta"]

    @property
    def scenarios(self) -> list[str]:
        return list(self.meta.get("scenarios") or [])

    @property
    def models(self) -> list[str]:
        return list(self.meta.get("models") or [])

    @property
    def protocols(self) -> list[str]:
        return list(self.meta.get("protocols") or [])

    @property
    def folds(self) -> list[int]:
        return list(self.meta.get("folds") or [])

    @property
    def repeats(self) -> int:
        """split.repeats of the run."""
        return int(self.meta.get("repeats") or 1)

    @property
    def fold_keys(self) -> list[tuple[int, int]]:
        """(repeat, fold) of every fold run, repeat by repeat (grid.fold_keys: the order of metrics.json's
        per-fold lists and of per_fold.csv)."""
        return fold_keys(self.repeats, self.folds)

    @property
    def panels(self) -> list[tuple[str, str]]:
        """(scenario, protocol) pairs in report order."""
        return [(s, p) for s in self.scenarios for p in self.protocols]

    def scenario_meta(self, scenario: str) -> dict:
        """A scenario's own meta: class_names, majority_rate, validation, ..."""
        return (self.raw.get(scenario) or {}).get("meta") or {}

    def class_names(self, scenario: str) -> list[str]:
        return self.scenario_meta(scenario)["class_names"]

    def has(self, scenario: str, model: str) -> bool:
        """Whether the results hold `model` under `scenario`."""
        return model in (self.raw.get(scenario) or {})

    def summary(self, scenario: str, model: str, protocol: str) -> dict:
        """Everything evaluated of a model under a scenario and protocol (accuracy, degenerate, ...)."""
        return ((self.raw.get(scenario) or {}).get(model) or {}).get(protocol) or {}

    def stat(self, scenario: str, model: str, protocol: str, metric: str, field: str = "mean") -> float | None:
        """A summary statistic (`field`: mean, sd, ci_low, ...) of `metric`; None where absent."""
        return (self.summary(scenario, model, protocol).get(metric) or {}).get(field)

    def learned(self, scenario: str, model: str, protocol: str) -> bool:
        """True unless the model is marked degenerate (did not learn) under this scenario and protocol."""
        return not self.summary(scenario, model, protocol).get("degenerate", False)

    @property
    def degenerate(self) -> set[tuple[str, str, str]]:
        """(scenario, model, protocol) of every model that did not learn."""
        return {(s, m, p) for s, p in self.panels for m in self.models
                if self.summary(s, m, p).get("degenerate")}

    def majority_rates(self, scenario: str, protocol: str) -> list[float | None]:
        """The majority-class rate of each fold of a scenario and protocol."""
        return (self.scenario_meta(scenario).get("majority_rate") or {}).get(protocol, [])

    def comparisons(self, scenario: str, protocol: str) -> dict[str, dict]:
        """Model -> its comparison with the reference model under a scenario and protocol."""
        return ((self.raw.get(scenario) or {}).get("comparisons") or {}).get(protocol) or {}


def read(metrics_path: Path, per_fold_path: Path | None, remedy: str) -> tuple[Results, pd.DataFrame | None]:
    """reports/metrics.json and, when asked for, the per_fold.csv written with it (checked to belong together)."""
    metrics, per_fold = read_evaluation(metrics_path, per_fold_path, remedy)
    return Results(metrics), per_fold


"""Published figures, and the table that sets each beside this run's figure for the same quantity.

The published numbers are literature constants, each with its citation. This run's numbers are
always read from reports/metrics.json and reports/complexity/*.json, never typed in here.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.roster import COMPUTE_REFERENCE, PROPOSED_MODEL, in_run
from pipeline.reporting.results import Results

# (short name, full citation, DOI)
TAN_2024 = ("Tan et al. 2024",
            "Tan et al., A lightweight convolutional neural network for myositis classification from muscle "
            "ultrasound images, J. Biomed. Eng. 2024, 41(5):895-902", "10.7507/1001-5515.202301023")
UCAR_2022 = ("Uçar 2022",
             "Uçar, Classification of myositis from muscle ultrasound images using deep learning, "
             "Biomed. Signal Process. Control 71 (2022) 103277", "10.1016/j.bspc.2021.103277")
BURLINA_2017 = ("Burlina et al. 2017",
                "Burlina, Billings, Joshi, Albayda, Automated diagnosis of myositis from muscle ultrasound: "
                "exploring the use of machine learning and deep learning methods, PLoS One 2017, 12(8):e0184059",
                "10.1371/journal.pone.0184059")
REFERENCES = (TAN_2024, UCAR_2022, BURLINA_2017)

NOT_STATED = "not stated in the abstract"

PROPOSED_MACS_PCT = 0.25    # the abstract: the proposed network's computation, % of the dual-branch network's


@dataclass(frozen=True)
class Published:
    """One figure from the literature and the quantity of this run it corresponds to."""
    source: str               # short name, e.g. "Uçar 2022"
    citation: str
    doi: str
    network: str              # the network the paper reports on
    quantity: str             # accuracy | accuracy_gain | macs_pct
    value: float              # accuracy and gain in percent (points); macs_pct in percent
    sd: float | None          # as published (across folds), None when not given
    scenario: str | None      # None: the abstract does not say
    protocol: str | None      # "image": image-level folds; None: not stated
    this_run_model: str       # this run's model for the same quantity ("best": a network this run does not have)
    note: str = ""
    decimals: int = 1         # as printed in the paper


PUBLISHED: tuple[Published, ...] = (
    Published(*TAN_2024, "proposed lightweight network (DSC/CConv + soft-threshold attention)",
              "accuracy", 96.1, None, None, None, PROPOSED_MODEL),
    Published(*TAN_2024, "dual-branch feature-fusion network (Uçar 2022)", "accuracy", 96.1 - 5.9, None,
              None, None, COMPUTE_REFERENCE, "derived: the abstract gives 96.1 and a 5.9-point gain"),
    Published(*TAN_2024, "proposed minus dual-branch", "accuracy_gain", 5.9, None, None, None, PROPOSED_MODEL),
    Published(*TAN_2024, "proposed network's computation as % of the dual-branch network's", "macs_pct",
              PROPOSED_MACS_PCT, None, None, None, PROPOSED_MODEL, decimals=2),
    *(Published(*UCAR_2022, "dual-branch VGG16+VGG19 feature fusion", "accuracy", acc, None, s, "image",
                COMPUTE_REFERENCE, "image-level stratified 5-fold (published FileList folds)", decimals=2)
      for s, acc in (("S1", 93.00), ("S2", 96.01), ("S3", 91.74), ("S4", 95.12))),
    *(Published(*BURLINA_2017, f"fine-tuned AlexNet (problem {p})", "accuracy", acc, sd, s, None, "best",
                "accuracy ± sd as in the abstract")
      for p, s, acc, sd in (("A", "S1", 76.2, 3.1), ("B", "S2", 86.6, 2.4), ("C", "S3", 74.8, 3.9))),
)

QUANTITY_WORDS = {
    "accuracy": "accuracy (%)",
    "accuracy_gain": "accuracy difference (points)",
    "macs_pct": "MACs at 3x224x224, % of dual-branch",
}


def _pct(stat: dict | None) -> str:
    if not stat or stat.get("mean") is None:
        return "n/a"
    sd = stat.get("sd")
    return f"{100 * stat['mean']:.1f}" + (f" ± {100 * sd:.1f}" if sd is not None else "")


def _protocol_for(published_protocol: str | None, protocols: list[str]) -> list[str]:
    """This run's protocols that match a published one: the paper's own folds first, then image-level."""
    if published_protocol is None:
        return list(protocols)
    if published_protocol == "image":
        for p in ("ucar", "image"):
            if p in protocols:
                return [p]
    return [p for p in protocols if p == published_protocol]


def _scenario_for(published_scenario: str | None, scenarios: list[str]) -> str | None:
    """This run's scenario to set beside a published figure: its own, or, when the paper does not
    say (Tan et al.'s abstract), S1 (normal vs myositis, the clinical question) if run, else the first."""
    if published_scenario is not None:
        return published_scenario if published_scenario in scenarios else None
    return "S1" if "S1" in scenarios else (scenarios[0] if scenarios else None)


def beside_this_run(r: Results, complexity: dict[str, dict], caveat: str) -> list[dict]:
    """Rows of the paper-beside-this-run table: citation, quantity, scenario, protocol, published
    figure, this run's figure and setting, and a note on comparability that applies to that row
    (`caveat`: the data source's words on whether its figures compare with a published one). This
    run's figure is set beside a published one only for the same network, scenario and protocol;
    where the network differs (a stand-in, or a network this run lacks) or the paper does not state
    its scenario and protocol, the row says what this run has instead and gives no number."""
    meta = r.meta
    scenarios, protocols, source = r.scenarios, r.protocols, meta["data_source"]
    rows = []
    for pub in PUBLISHED:
        base = {"source": pub.source, "citation": pub.citation, "doi": pub.doi, "network": pub.network,
                "quantity": QUANTITY_WORDS[pub.quantity],
                "published": f"{pub.value:.{pub.decimals}f}"
                             + (f" ± {pub.sd:.{pub.decimals}f}" if pub.sd is not None else ""),
                "published_scenario": pub.scenario or NOT_STATED,
                "published_protocol": {"image": "image-level folds", None: NOT_STATED}.get(pub.protocol, pub.protocol)}
        not_run = {**base, "this_run_model": "", "this_run_setting": "", "note": pub.note}
        if pub.quantity == "macs_pct":
            rows.append({**base, **_macs_pct(complexity, meta["models"])})
            continue
        scenario = _scenario_for(pub.scenario, scenarios)
        if scenario is None:
            rows.append({**not_run, "this_run": f"not run (this run: {', '.join(scenarios)})"})
            continue
        models = [m for m in r.models if r.has(scenario, m)]
        setting = (f"{source}, {scenario}, {len(meta['folds'])} folds, input "
                   + "x".join(str(v) for v in (meta.get("input_size") or [])))
        matched = _protocol_for(pub.protocol, protocols)
        if not matched:
            rows.append({**not_run, "this_run": f"not run (this run: protocols {', '.join(protocols)})"})
            continue
        aside = []   # rows that set no number beside the figure: said once for all of its protocols
        for protocol in matched:
            accuracy = lambda m: r.summary(scenario, m, protocol).get("accuracy") or {}  # noqa: E731
            theirs = in_run(COMPUTE_REFERENCE, models)
            if pub.quantity == "accuracy_gain":
                wanted, model = f"{PROPOSED_MODEL} - {COMPUTE_REFERENCE}", (
                    f"{PROPOSED_MODEL} - {theirs}" if theirs and PROPOSED_MODEL in models else None)
            else:
                wanted = pub.this_run_model
                model = in_run(wanted, models) if wanted != "best" else None
            here = f"{setting}, {protocol} protocol"
            if model is None and wanted != "best":
                rows.append({**not_run, "this_run": f"not run ({wanted} not in this run)"})
                continue
            different = (wanted == "best" or model != wanted)
            if different or pub.scenario is None:
                # not the same network, or the paper does not say which scenario and protocol: no number
                # is set beside the published one; the row says what this run has instead
                if wanted == "best":
                    instead = (f"this run has no {pub.network}; its models' figures for {scenario} are in the "
                               f"Models table")
                elif different:
                    stand_in = model.split(" - ")[-1]
                    instead = (f"this run has {stand_in}, a variant trained from scratch that stands in for "
                               f"{COMPUTE_REFERENCE}, not the published network")
                else:
                    instead = (f"the paper's scenario and protocol are {NOT_STATED}; this run's {model} figures "
                               f"are in the Models table")
                aside.append({**base, "this_run": "not set beside (see comparability)", "this_run_model": model or "",
                              "this_run_setting": here, "note": "; ".join(n for n in (pub.note, instead) if n)})
                continue
            if pub.quantity == "accuracy_gain":
                a, b = accuracy(PROPOSED_MODEL).get("mean"), accuracy(theirs).get("mean")
                value = f"{100 * (a - b):+.1f}" if a is not None and b is not None else "not run"
            else:
                value = _pct(accuracy(model)) if accuracy(model) else "not run"
            if value.startswith("not run"):
                rows.append({**not_run, "this_run": f"not run ({model} not in this run)"})
                continue
            rows.append({**base, "this_run": value, "this_run_model": model, "this_run_setting": here,
                         "note": "; ".join(n for n in (pub.note, caveat) if n)})
        if aside:
            # one published figure, one row: the protocols this run has for it named together, the reason once
            done = [a["this_run_setting"].rsplit(", ", 1)[1].split()[0] for a in aside]
            rows.append({**aside[0], "this_run_setting": f"{setting}, {' and '.join(done)} protocol"
                                                         + ("s" if len(aside) > 1 else ""),
                         "note": "; ".join(dict.fromkeys(a["note"] for a in aside))})
    return rows


def _macs_pct(complexity: dict[str, dict], models: list[str]) -> dict:
    """The proposed network's MACs as a share of the dual-branch network's (or its stand-in's, which
    has the same convolutions), counted at 3x224x224."""
    ours, theirs = PROPOSED_MODEL, in_run(COMPUTE_REFERENCE, models) or COMPUTE_REFERENCE
    macs = {m: (complexity.get(m) or {}).get("paper_setting", {}).get("macs") for m in (ours, theirs)}
    if macs[ours] and macs[theirs]:
        value = f"{100 * macs[ours] / macs[theirs]:.2f}"
        note = ("matches by construction: {ours} is this project's reconstruction from the abstract, and its layer "
                "table was sized to this share, so agreement confirms nothing; MACs counted by thop at 3x224x224, "
                "independent of the data").format(ours=ours)
    else:
        value, note = f"not run (needs {ours} and {theirs} complexity)", ""
    return {"this_run": value, "this_run_model": f"{ours} / {theirs}", "this_run_setting": "3x224x224, thop",
            "note": note}

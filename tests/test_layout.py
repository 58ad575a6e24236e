"""dvc.yaml tells the truth: every stage declares the code it runs and the files it writes.

The code deps are derived from the imports (pipeline/codedeps.py), so an edit to any module a
stage runs makes `dvc repro` rerun it, and an edit elsewhere does not.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pipeline import codedeps
from pipeline.core import layout
from pipeline.reporting import figures

ROOT = Path(__file__).resolve().parents[1]
STAGE_MODULES = {"pipeline.prepare", "pipeline.split", "pipeline.train", "pipeline.profile", "pipeline.deploy",
                 "pipeline.evaluate", "pipeline.report"}


def _stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _body(stage: dict) -> dict:
    return stage.get("do", stage)


def _entries(items: list) -> list[str]:
    """dvc.yaml list entries as paths (an entry may be a one-key mapping with options)."""
    return [next(iter(e)) if isinstance(e, dict) else str(e) for e in items or []]


def _declared_code(deps: list[str]) -> set[str]:
    """The project .py files that the declared deps cover (a directory dep covers its modules)."""
    out = set()
    for dep in deps:
        path = ROOT / dep
        if not dep.split("/")[0] in codedeps.PACKAGES:
            continue
        if path.is_dir():
            out.update(p.relative_to(ROOT).as_posix() for p in path.glob("*.py"))
        else:
            out.add(dep)
    return out


def test_every_stage_runs_a_pipeline_module():
    assert set(codedeps.stage_modules().values()) == STAGE_MODULES


@pytest.mark.parametrize("stage", sorted(codedeps.stage_modules()))
def test_stage_declares_exactly_the_code_it_imports(stage):
    module = codedeps.stage_modules()[stage]
    needed = set(codedeps.closure(module))
    declared = _declared_code(_entries(_body(_stages()[stage]).get("deps")))
    # pipeline/core is declared whole by every stage (codedeps.FOUNDATION); every other declared file is imported
    foundation = {p for p in declared if any(p.startswith(f"{package}/") for package in codedeps.FOUNDATION)}
    assert foundation & needed, stage
    missing, extra = sorted(needed - declared), sorted(declared - needed - foundation)
    assert not missing and not extra, (
        f"dvc.yaml stage {stage!r}: missing code deps {missing}, declared but not imported {extra}; "
        f"`python -m pipeline.codedeps` prints the list")


# what training must not run: the report's code, the paper's table and the data sources (prepare's job)
NOT_TRAINING = {"pipeline/reporting/paper.py", "pipeline/reporting/findings.py", "pipeline/report.py", "pipeline/reporting/figures.py",
                "pipeline/evaluate.py", "pipeline/data/sources.py", "pipeline/data/synthetic.py",
                # the test metrics and their statistics are evaluate's: adding a metric retrains nothing
                "pipeline/evaluation/metrics.py", "pipeline/evaluation/stats.py"}


def test_training_does_not_depend_on_the_report_code():
    train = set(codedeps.closure("pipeline.train"))
    assert not train & NOT_TRAINING, sorted(train & NOT_TRAINING)
    # nor on any module of the packages that report, evaluate or deploy: a comment in one retrains nothing
    declared = _declared_code(_entries(_stages()["train"]["deps"]))
    assert not [p for p in train | declared
                if p.startswith(("pipeline/reporting/", "pipeline/evaluation/", "pipeline/deployment/"))], sorted(train)
    # nor on the deployment code: editing it reruns deploy and report, never a train stage
    assert not train & {"pipeline/deploy.py", "pipeline/deployment/exports.py", "pipeline/reporting/deployreport.py",
                        "pipeline/predict.py"}, sorted(train)
    train_stage = _stages()["train"]
    assert not [d for d in train_stage["deps"] if "deploy" in d] and "deploy" not in train_stage["params"]


def _import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (anywhere in it), over pipeline/ and models/; a
    module's own packages (whose __init__ runs first by Python's rules) are left out."""
    graph = {}
    for package in codedeps.PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = codedeps._module_name(path, ROOT)
            graph[name] = {m for m in codedeps._direct_imports(path, ROOT)
                           if m != name and not name.startswith(m + ".")}
    return graph


def test_no_import_cycle():
    import graphlib

    try:
        order = list(graphlib.TopologicalSorter(_import_graph()).static_order())
    except graphlib.CycleError as e:
        raise AssertionError(f"import cycle: {' -> '.join(e.args[1])}") from None
    assert "pipeline.train" in order and "models.stanet" in order


def test_the_cycle_test_sees_a_cycle(monkeypatch):
    import graphlib

    graph = _import_graph()
    graph["pipeline.core.errors"] = graph["pipeline.core.errors"] | {"pipeline.core.params"}   # params imports errors
    with pytest.raises(graphlib.CycleError):
        list(graphlib.TopologicalSorter(graph).static_order())


def test_no_stage_module_imports_another():
    for module in STAGE_MODULES:
        others = {m.replace(".", "/") + ".py" for m in STAGE_MODULES - {module}}
        assert not set(codedeps.closure(module)) & others, module


def test_closure_sees_imports_inside_functions(tmp_path):
    for package in ("pipeline", "models"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "pipeline/stage.py").write_text("import os\n\ndef main():\n    from pipeline import lazy\n")
    (tmp_path / "pipeline/lazy.py").write_text("from models.net import Net\n")
    (tmp_path / "models/net.py").write_text("class Net: pass\n")
    (tmp_path / "pipeline/unused.py").write_text("")
    assert codedeps.closure("pipeline.stage", tmp_path) == [
        "models/__init__.py", "models/net.py", "pipeline/__init__.py", "pipeline/lazy.py", "pipeline/stage.py"]


def test_a_package_that_discovers_its_modules_needs_them_all():
    train = set(codedeps.closure("pipeline.train"))
    assert {p.relative_to(ROOT).as_posix() for p in (ROOT / "models").glob("*.py")} <= train


def test_the_training_fingerprint_hashes_the_declared_code(monkeypatch):
    from pipeline import train
    from pipeline.core import fingerprints

    assert fingerprints.declared_code("train") == codedeps.closure("pipeline.train")
    assert "pipeline/codedeps.py" not in codedeps.closure("pipeline.train")   # a tool, not training code
    digest = train.code_digest()
    real = fingerprints.declared_code

    def without_recipe(stage, root=fingerprints.ROOT):
        return [p for p in real(stage, root) if p != "pipeline/training/recipe.py"]

    monkeypatch.setattr(fingerprints, "declared_code", without_recipe)
    assert train.code_digest() != digest     # the digest covers exactly what dvc.yaml declares


def test_figures_table_and_dvc_yaml_agree():
    stages = _stages()
    report_plots = {Path(p).name for p in _entries(stages["report"].get("plots")) if p.endswith(".png")}
    assert report_plots == {f.file for f in figures.figures_of("report")}
    prepare_outs = {Path(p).name for p in _entries(stages["prepare"]["outs"]) if p.endswith(".png")}
    assert prepare_outs == {f.file for f in figures.figures_of("prepare")}
    for stage in ("prepare", "report"):
        for f in figures.figures_of(stage):
            assert f.caption and callable(f.draw)


def test_layout_paths_match_dvc_yaml():
    stages = _stages()
    assert str(layout.PROCESSED_DIR) in _entries(stages["prepare"]["outs"])
    assert str(layout.SPLITS_DIR) in _entries(stages["split"]["outs"])
    assert "data/splits/${item.scenario}.csv" in _entries(stages["train"]["deps"])
    assert str(layout.splits_path("S3")) == "data/splits/S3.csv"
    assert str(layout.SPLIT_SUMMARY) in _entries(stages["split"]["outs"])
    item = lambda text: (text.replace("${item.scenario}", "S").replace("${item.model}", "M")  # noqa: E731
                         .replace("${item.protocol}", "P"))
    assert item(stages["train"]["cmd"]) == layout.train_command("S", "M", "P")
    assert Path(item(_entries(stages["train"]["outs"])[0])) == layout.stage_dir("S", "M", "P")
    assert set(stages["train"]["matrix"]) == {"scenario", "model", "protocol"}
    assert layout.train_stage("S", "M", "P") == "train@S-M-P"
    assert str(layout.METRICS) in _entries(stages["evaluate"]["metrics"])
    assert str(layout.PER_FOLD) in _entries(stages["evaluate"]["plots"])
    profile = _body(stages["profile"])
    assert profile["cmd"].replace("${item}", "M") == layout.profile_command("M")
    assert _entries(profile["outs"])[0].replace("${item}", "M") == str(layout.complexity_path("M"))
    deploy = stages["deploy"]
    assert item(deploy["cmd"]) == layout.deploy_command("S", "M")
    assert Path(item(_entries(deploy["outs"])[0])) == layout.deploy_path("S", "M")
    assert item("runs/${item.scenario}/${item.model}") in map(item, _entries(deploy["deps"]))
    assert str(layout.DEPLOY_DIR) in _entries(stages["report"]["deps"])


def test_only_models_params_and_the_roster_name_the_papers_models():
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        if path.name == "roster.py":
            continue
        code = "\n".join(line for line in path.read_text().splitlines()
                         if not line.lstrip().startswith("#"))
        # usage examples in docstrings may show a model name; code may not
        body = code.split('"""', 2)[-1] if code.lstrip().startswith(('"""', "from __future__")) else code
        for name in ('"stanet"', "'stanet'", '"dual_vgg"', "'dual_vgg'"):
            assert name not in body, f"{path.name} names {name}; read it from pipeline/core/roster.py or params"


@pytest.mark.slow
@pytest.mark.parametrize("edited", ["pipeline/reporting/paper.py", "pipeline/reporting/findings.py", "pipeline/reporting/figures.py",
                                    "pipeline/evaluation/metrics.py", "pipeline/evaluation/stats.py"])
def test_editing_report_code_leaves_every_train_stage_unchanged(placeholder_checkout, edited):
    """In a scratch checkout with a dvc.lock that matches it (placeholder outputs, `dvc commit -f`: the
    shared `placeholder_checkout`), a comment added to report-side code, or to a metric (metrics.py,
    stats.py: evaluate's, never train's), changes the report stage and no train stage, nor prepare or
    split; the edit is taken back afterwards, so the checkout is up to date for the next."""
    import json
    import sys

    from projects import run

    work, env = placeholder_checkout
    status = lambda: run([sys.executable, "-m", "dvc", "status", "--json"], work, env).stdout  # noqa: E731
    assert json.loads(status()) == {}, "the placeholder checkout is not up to date"
    path = work / edited
    original = path.read_bytes()
    try:
        path.write_text(original.decode() + "# a comment\n")
        changed = json.loads(status())
    finally:
        path.write_bytes(original)
    assert "report" in changed, changed          # the edit is seen
    assert not [s for s in changed if s.startswith(("train", "prepare", "split"))], sorted(changed)


def test_one_table_of_protocols():
    """Each protocol params accepts has one entry of words, colour and marker (pipeline/data/protocols.py)."""
    from pipeline.core import params
    from pipeline.data import protocols

    assert list(params.PROTOCOLS) == list(protocols.PROTOCOLS)
    assert typing_args(params.SplitParams, "protocols") == params.PROTOCOLS


def typing_args(cls: type, name: str) -> tuple:
    """The Literal choices of a tuple field of a params dataclass."""
    import typing

    hint = typing.get_type_hints(cls)[name]
    return typing.get_args(typing.get_args(hint)[0])


def test_the_readme_names_every_module_of_the_pipeline():
    """The architecture page (docs/architecture.md, linked from README.md) stays true: each module of
    pipeline/ is named there."""
    page = (ROOT / "docs" / "architecture.md").read_text()
    unnamed = [p.name for p in sorted((ROOT / "pipeline").rglob("*.py"))
               if p.name != "__init__.py" and f"{p.name}`" not in page]
    assert not unnamed, f"docs/architecture.md does not name {unnamed}"
    packages = [d.name for d in sorted((ROOT / "pipeline").iterdir()) if (d / "__init__.py").is_file()]
    assert len(packages) >= 6 and not [name for name in packages if f"  {name}/ " not in page], packages


def _project_builds(source: str) -> list[str]:
    """Where a module's code builds a pipeline project: a call of `scratch_project`, or a command list
    that runs `dvc repro`."""
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name == "scratch_project":
                found.append(f"line {node.lineno}: scratch_project(...)")
        if isinstance(node, ast.List):
            words = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if "dvc" in words and "repro" in words:
                found.append(f"line {node.lineno}: a `dvc repro` command")
    return found


def test_no_test_module_builds_a_pipeline_project_outside_the_shared_fixtures():
    """Every pipeline project is built once, by a fixture of tests/projects.py; a module that builds its own
    (the duplication issue 31 removed) fails here."""
    tests = ROOT / "tests"
    builds = {p.name: _project_builds(p.read_text()) for p in sorted(tests.glob("*.py")) if p.name != "projects.py"}
    assert {name: found for name, found in builds.items() if found} == {}
    assert _project_builds((tests / "projects.py").read_text())   # the check sees what it looks for


def test_the_build_check_sees_both_ways_of_building():
    assert _project_builds("env = scratch_project(work, ['profiles/tiny.yaml'])") == ["line 1: scratch_project(...)"]
    assert _project_builds("run([sys.executable, '-m', 'dvc', 'repro'], work, env)") == ["line 1: a `dvc repro` command"]
    assert _project_builds("run([sys.executable, '-m', 'dvc', 'status'], work, env)") == []


# the run grid rebuilt by hand (issue 32): from params, or re-inferred from the data
HAND_BUILT_GRID = (re.compile(r"range\(1, (?:\w+\.)*repeats \+ 1\)"),
                   re.compile(r"\[\"repeat\"\]\.nunique\(\)"), re.compile(r"max\(r\[\"repeat\"\]"),
                   re.compile(r"meta\.get\(\"repeats\""), re.compile(r"itertools\.product\(\s*params\."))


def test_the_run_grid_is_built_from_params_in_one_module():
    """pipeline/core/grid.py lists the (scenario, model, protocol, repeat, fold) runs; results.py gives the same
    (repeat, fold) order from metrics.json through grid.fold_keys; split.py draws each repeat's folds (the
    data of the grid, not the runs). No other module walks the grid by hand."""
    own = {"grid.py", "results.py", "split.py"}
    found = [f"{p.name}: {m.group(0)}" for p in sorted((ROOT / "pipeline").rglob("*.py")) if p.name not in own
             for rx in HAND_BUILT_GRID for m in rx.finditer(p.read_text())]
    assert not found, found
    # and the check sees a hand-built grid
    assert all(HAND_BUILT_GRID[0].search(f"for r in range(1, {v} + 1)") for v in ("repeats", "params.split.repeats"))
    assert not HAND_BUILT_GRID[0].search("range(1, max_repeats + 1)")   # a power search, not the grid


def test_the_grid_lists_every_run_once_repeat_by_repeat():
    from pipeline.core import grid
    from pipeline.core.params import from_dict, to_dict
    from pipeline.core.params import Params as P

    raw = to_dict(P())
    raw["split"].update(scenarios=["S1", "S2"], protocols=["patient", "image"], repeats=2)
    raw["train"].update(models=["stanet", "resnet18"], folds=[1, 3])
    params = from_dict(raw)
    runs = grid.runs(params)
    assert len(runs) == len(set(runs)) == 2 * 2 * 2 * 2 * 2
    assert grid.folds_of(params) == [(1, 1), (1, 3), (2, 1), (2, 3)] and grid.folds_of(params, [3]) == [(1, 3), (2, 3)]
    assert grid.stages(params)[:2] == [("S1", "stanet", "patient"), ("S1", "stanet", "image")]
    assert runs[2] == grid.Run("S1", "stanet", "patient", 2, 1)
    assert runs[2].dir() == layout.run_dir("S1", "stanet", "patient", 1, repeat=2)


def test_a_stage_run_by_dvc_records_its_wall_time_however_it_ends(tmp_path, monkeypatch):
    """pipeline/core/stagetime.py through cli.run_stage: under DVC (DVC_STAGE, DVC_ROOT) one record per stage with
    its wall time, start-up and exit status, a refused stage too; typed by hand, no file."""
    import json

    from pipeline.core import cli, stagetime
    from pipeline.core.errors import DataError

    def refused(argv):
        raise DataError("bad input")

    monkeypatch.chdir(tmp_path)
    for name, main, want in (("train@S1-x-patient", lambda argv: stagetime.note(fold_runs=3) or 0, 0),
                             ("evaluate", refused, 2)):
        monkeypatch.setenv("DVC_STAGE", name)
        monkeypatch.setenv("DVC_ROOT", str(tmp_path))
        with pytest.raises(SystemExit) as end:
            cli.run_stage(main)
        assert end.value.code == want
        record = json.loads((tmp_path / "timing" / f"{name}.json").read_text())
        assert record["stage"] == name and record["exit"] == want and record["wall_s"] >= record["startup_s"] >= 0
    assert json.loads((tmp_path / "timing/train@S1-x-patient.json").read_text())["fold_runs"] == 3
    monkeypatch.delenv("DVC_STAGE")
    (tmp_path / "timing").rename(tmp_path / "before")
    with pytest.raises(SystemExit):
        cli.run_stage(lambda argv: 0)
    assert not (tmp_path / "timing").exists()


def test_pyproject_installs_every_package():
    """A non-editable install gets every subpackage: pyproject's packages list names each folder with an
    __init__.py under pipeline/ and models/."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {p.parent.relative_to(ROOT).as_posix().replace("/", ".")
             for package in codedeps.PACKAGES for p in (ROOT / package).rglob("__init__.py")}
    assert listed == found, (sorted(found - listed), sorted(listed - found))

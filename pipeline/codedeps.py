"""Which project modules a stage's command runs, found from its imports: the code part of its deps.

dvc.yaml declares, for every stage, each module under pipeline/ and models/ that the stage's
`python -m pipeline.<stage>` imports, directly or through other modules, at the top of a file or
inside a function, and nothing more. `closure` derives that list from the source; the test suite
(tests/test_layout.py) fails when dvc.yaml and the derivation disagree, and the train stage's
checkpoint fingerprint hashes the files dvc.yaml declares (pipeline/core/fingerprints.py
`declared_code`), so this tool is not on any stage's path. An edit to any code a stage runs makes
`dvc repro` rerun it, and an edit to code it does not run does not.

    python -m pipeline.codedeps        # print each stage's code deps, as dvc.yaml should list them
"""
from __future__ import annotations

import ast
import re
import sys
from functools import lru_cache
from pathlib import Path

PACKAGES = ("pipeline", "models")
ROOT = Path(__file__).resolve().parents[1]
# a package __init__ that imports every module beside it (models/ registers its networks this way)
DISCOVERS_SUBMODULES = "pkgutil.iter_modules(__path__)"
STAGE_COMMAND = re.compile(r"python -m (pipeline\.\w+)")
# the package every stage stands on, declared whole by each (an edit there reruns every stage, as an edit to
# params.py always did); every other package is declared whole only by a stage that imports all of it
FOUNDATION = ("pipeline/core",)


def module_path(name: str, root: Path = ROOT) -> Path | None:
    """The file of project module `name` (a package's __init__.py), or None for other modules."""
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    base = root.joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


@lru_cache(maxsize=None)
def _direct_imports(path: Path, root: Path) -> frozenset[str]:
    """Project modules that the file `path` imports (anywhere in it), and the packages they are in."""
    text = path.read_text()
    here = _module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)   # `from pkg import module`
    if path.name == "__init__.py" and DISCOVERS_SUBMODULES in text:
        found.update(f"{here}.{p.stem}" for p in path.parent.glob("*.py") if p.name != "__init__.py")
    modules = set()
    for name in found:
        parts = name.split(".")
        # importing a.b.c runs a/__init__.py and a/b/__init__.py first
        modules.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return frozenset(m for m in modules if module_path(m, root) is not None)


def closure(module: str, root: Path = ROOT) -> list[str]:
    """Repo-relative paths of every project file that running `module` imports, itself included."""
    start = module_path(module, root)
    if start is None:
        raise ValueError(f"{module!r} is not a module under {', '.join(PACKAGES)} in {root}")
    seen: dict[Path, None] = {}
    todo = [start]
    for parent in range(1, len(module.split("."))):   # its packages' __init__ files run first
        todo.append(module_path(".".join(module.split(".")[:parent]), root))
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen[path] = None
        todo.extend(module_path(m, root) for m in _direct_imports(path, root))
    return sorted(p.relative_to(root).as_posix() for p in seen)


def stage_modules(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, str]:
    """Stage name -> the pipeline module its command runs (`python -m pipeline.<stage>`)."""
    import yaml

    stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages") or {}
    out = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        match = STAGE_COMMAND.search(str(body.get("cmd", "")))
        if match:
            out[name] = match.group(1)
    return out


def as_declared(files: list[str], root: Path = ROOT) -> list[str]:
    """`files` as dvc.yaml lists them: a package whose every module is needed is named as its directory
    (models/, pipeline/training/, ...; a directory dep stands for its own *.py files, so an edit anywhere
    in it reruns the stage), and pipeline/core/ (FOUNDATION) by every stage that imports any of it: each
    imports most of it, train all of it. pipeline/ itself, whose top level is the commands, never is."""
    out, needed = [], set(files)
    packages = [root / package for package in PACKAGES]
    packages += [d for d in sorted((root / "pipeline").iterdir()) if (d / "__init__.py").is_file()]
    for directory in packages:
        members = set(p.relative_to(root).as_posix() for p in directory.glob("*.py"))
        name = directory.relative_to(root).as_posix()
        if directory != root / "pipeline" and members and (needed >= members or (name in FOUNDATION and needed & members)):
            out.append(name)
            needed -= members
    return sorted(out) + sorted(needed)


def main() -> int:
    """Print every stage's code deps in dvc.yaml's form."""
    for stage, module in stage_modules().items():
        print(f"{stage} ({module}):")
        for dep in as_declared(closure(module)):
            print(f"  - {dep}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

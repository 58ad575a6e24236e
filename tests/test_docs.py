"""The documentation stays true to the tree: README.md and every page of docs/ link only to files that
exist, name only `python -m` modules that exist, every docs page is reachable from README.md, and README.md
stays short enough for a newcomer. Plain file reads, no subprocesses."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 250

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
MODULE = re.compile(r"-m\s+((?:pipeline|models)(?:\.[A-Za-z_]\w*)+)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def relative_links(markdown: str) -> list[str]:
    """The relative targets of markdown links and image links, outside code: http(s)://, mailto: and pure
    #anchors are left out; a trailing #anchor stays on (see `split_anchor`)."""
    prose = INLINE_CODE.sub("code", FENCE.sub("", markdown))
    found = []
    for target in LINK.findall(prose):
        if not target or target.startswith("#") or re.match(r"(?i)(https?://|mailto:)", target):
            continue
        found.append(target)
    return found


def split_anchor(target: str) -> tuple[str, str]:
    path, _, anchor = target.partition("#")
    return path, anchor


def broken_links(page: Path, markdown: str | None = None) -> list[str]:
    """The relative links of `page` (or of `markdown`, read as if it were `page`) that name no existing file
    or directory, relative to the page."""
    text = page.read_text() if markdown is None else markdown
    return [t for t in relative_links(text) if not (page.parent / split_anchor(t)[0]).exists()]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, code marks and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    return {slug(h) for h in HEADING.findall(FENCE.sub("", markdown))}


def missing_modules(markdown: str) -> list[str]:
    """The `python -m pipeline.X` / `-m models.X` modules the text shows (code included) that are no
    module file or package of the tree."""
    missing = []
    for name in MODULE.findall(markdown):
        base = ROOT.joinpath(*name.split("."))
        if not (base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()):
            missing.append(name)
    return missing


def too_long(text: str, limit: int = MAX_README_LINES) -> bool:
    return len(text.splitlines()) > limit


# ---- the checks can fail ---------------------------------------------------------------------------------

def test_the_link_extractor_finds_links_and_images_and_leaves_out_what_is_not_a_file():
    text = ("See [the map](docs/architecture.md#each-stage-one-module), ![fig](reports/figures/x.png), "
            "[web](https://example.org), [mail](mailto:a@b.c), [here](#quick-start), "
            "[t](docs/ci.md \"title\") and `[not a link](code.md)`.\n"
            "```\n[in a fence](fenced.md)\n```\n")
    assert relative_links(text) == ["docs/architecture.md#each-stage-one-module", "reports/figures/x.png",
                                    "docs/ci.md"]


def test_a_broken_link_is_found():
    text = "[ok](docs/architecture.md) [gone](docs/no-such-page.md#x) ![gone too](reports/figures/nope.png)"
    assert broken_links(README, text) == ["docs/no-such-page.md#x", "reports/figures/nope.png"]
    # relative to the page: from docs/, the README is one level up
    assert broken_links(DOCS / "ci.md", "[up](../README.md) [not here](README.md)") == ["README.md"]


def test_a_missing_module_is_found():
    text = "python -m pipeline.params check; torchrun -m pipeline.train; python3 -m pipeline.no_such_stage"
    assert missing_modules(text) == ["pipeline.no_such_stage"]
    assert missing_modules("python -m models.registry") == []


def test_the_line_limit_can_be_exceeded():
    assert too_long("line\n" * (MAX_README_LINES + 1))
    assert not too_long("line\n" * MAX_README_LINES)


def test_the_slug_is_githubs():
    assert slug("GPU (one NVIDIA H200): not yet measured") == "gpu-one-nvidia-h200-not-yet-measured"
    assert slug("CPU demo (`dvc repro` on the default params)") == "cpu-demo-dvc-repro-on-the-default-params"


# ---- the documentation -----------------------------------------------------------------------------------

def test_there_are_docs_pages():
    assert len(pages()) > 1


def test_every_relative_link_resolves():
    broken = {p.relative_to(ROOT).as_posix(): b for p in pages() if (b := broken_links(p))}
    assert broken == {}


def test_every_anchor_into_a_page_names_one_of_its_headings():
    wrong = []
    for page in pages():
        for target in relative_links(page.read_text()):
            path, anchor = split_anchor(target)
            dest = page.parent / path
            if anchor and dest.suffix == ".md" and dest.is_file() and anchor not in anchors(dest.read_text()):
                wrong.append(f"{page.relative_to(ROOT).as_posix()}: {target}")
    assert wrong == []


def test_every_module_shown_exists():
    missing = {p.relative_to(ROOT).as_posix(): m for p in pages() if (m := missing_modules(p.read_text()))}
    assert missing == {}
    assert any(MODULE.search(p.read_text()) for p in pages())   # the check sees what it looks for


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / split_anchor(t)[0]).resolve() for t in relative_links(README.read_text())}
    unlinked = [p.name for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert unlinked == []


def test_the_readme_is_short():
    lines = len(README.read_text().splitlines())
    assert not too_long(README.read_text()), f"README.md has {lines} lines, at most {MAX_README_LINES}"


# a figure left to be filled in: an upper-case token ending in what a measurement is (FULL_SUITE_TIME, ...)
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*_(?:TIME|FIGURE|PEAK|COUNT|NUMBER)\b|\b(?:TODO|TBD|FIXME|XXX)\b")


def test_no_page_carries_a_placeholder_for_a_figure():
    """README.md once landed with 'measured: FULL_SUITE_TIME': every figure a page quotes is filled in."""
    assert PLACEHOLDER.search("measured: FULL_SUITE_TIME") and not PLACEHOLDER.search("HF_HUB_OFFLINE=1, 142 s")
    left = {p.relative_to(ROOT).as_posix(): PLACEHOLDER.findall(p.read_text(encoding="utf-8")) for p in pages()}
    assert {page: found for page, found in left.items() if found} == {}

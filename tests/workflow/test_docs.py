"""The documentation stays true to the repository: the configuration reference is the schema's, every
relative link in README.md and docs/ leads somewhere, the code's "METHOD §n" citations find their section
in docs/method.md, and the README stays a short page."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


def _generator():
    spec = importlib.util.spec_from_file_location("config_reference", DOCS / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_is_generated_from_the_schema():
    """docs/configuration.md is what docs/config_reference.py writes from the current schema."""
    expected = _generator().render(REPO / "workflow/schemas/config.schema.yaml")
    committed = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert committed == expected, "the schema changed: run `python docs/config_reference.py` and commit " \
                                  "docs/configuration.md"


def test_configuration_reference_lists_every_schema_key():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text(encoding="utf-8"))
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    for section, node in schema["properties"].items():
        assert f"| `{section}" in page, section
        for key in node.get("properties") or {}:
            assert f"| `{section}.{key}` |" in page, f"{section}.{key}"
    assert "| `corpora.<name>.splits.<split>.portion` |" in page
    assert "| `proxies.<name>.nmf.mu` |" in page


def test_schema_descriptions_are_whole():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text(encoding="utf-8"))
    assert _generator().stray_keys(schema) == []


# ------------------------------------------------------------------------------------------------ links

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(text: str) -> str:
    """The page without fenced code blocks and inline code, where brackets are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a Markdown page's headings (a repeated heading gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    out = set()
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _links():
    for page in PAGES:
        for target in LINK.findall(_prose(page.read_text(encoding="utf-8"))):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):      # http:, https:, mailto:
                continue
            yield page, target


def test_pages_exist():
    for name in ("usage.md", "configuration.md", "outputs.md", "method.md", "results.md", "development.md",
                 "EXPERIMENTS.md"):
        assert (DOCS / name).is_file(), name
    assert not (DOCS / "docs/outputs.md").exists(), "docs/outputs.md is docs/outputs.md now"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(page):
    """Every relative link of the page names an existing file, and an anchor a heading of its page."""
    broken = []
    for source, target in _links():
        if source != page:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(REPO)}")
    assert not broken, "\n".join(broken)


def test_readme_links_into_every_docs_page():
    targets = {t.partition("#")[0] for p, t in _links() if p.name == "README.md"}
    for name in ("usage.md", "configuration.md", "outputs.md", "method.md", "results.md", "development.md"):
        assert f"docs/{name}" in targets, name


# ------------------------------------------------------------------------------------------ the method


def test_every_method_citation_has_its_section():
    """The code cites "METHOD §n" / "METHOD section n"; docs/method.md has a section n for each."""
    cited = set()
    for folder in ("src", "workflow", "tests", "config", "examples"):
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and path.suffix in {".py", ".smk", ".yaml", ".yml", ".rst", ".md"}:
                text = path.read_text(encoding="utf-8", errors="replace")
                cited |= {int(n) for n in re.findall(r"(?:METHOD|docs/method\.md),? (?:§|section )(\d+)", text)}
    for path in (REPO / "Snakefile", REPO / "config.yaml"):
        cited |= {int(n) for n in re.findall(r"(?:METHOD|docs/method\.md),? (?:§|section )(\d+)", path.read_text())}
    assert cited, "no METHOD citation found: the pattern is out of date"
    method = (DOCS / "method.md").read_text(encoding="utf-8")
    sections = {int(n) for n in re.findall(r"^## (\d+)\. ", method, flags=re.M)}
    assert cited <= sections, f"cited but missing from docs/method.md: {sorted(cited - sections)}"
    assert sections == set(range(1, max(sections) + 1)), "sections numbered 1..n without gaps"
    assert "2401.08268" in method, "method.md cites the paper"


# ------------------------------------------------------------------------------------- README, LICENSE


def test_readme_is_short():
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 160


def test_license_is_the_one_pyproject_declares():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["license"]["text"] == "MIT"
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "Permission is hereby granted, free of charge" in text

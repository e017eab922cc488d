"""The documentation holds together: every relative link in the README, docs/ and the benchmark's
report points to a file that exists (and, with an anchor, to a heading in it), the README stays a
short front page, and the benchmark report keeps its hand-written log when it is rewritten."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), ROOT / "bench" / "RESULTS.md",
                ROOT / "include" / "mappings" / "README.md"])
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose(text: str) -> list[str]:
    """The lines of a Markdown text outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: its text, lower case, without punctuation, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = text.replace("`", "").replace("*", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in prose(page.read_text(encoding="utf-8")):
        if m := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line):
            slug = anchor(m[1])
            found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return found


def links(page: Path) -> list[str]:
    """Relative link targets of ``page``, outside code blocks and inline code."""
    found = []
    for line in prose(page.read_text(encoding="utf-8")):
        line = re.sub(r"`[^`]*`", "", line)
        found += [t for t in LINK.findall(line) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_points_to_a_file_and_heading_that_exist(page: Path) -> None:
    broken = []
    for target in links(page):
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"{target}: no heading #{fragment} in {file.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}:\n" + "\n".join(broken)


def test_every_docs_page_is_in_the_table_of_contents() -> None:
    listed = set(links(ROOT / "docs" / "README.md"))
    missing = [p.name for p in (ROOT / "docs").glob("*.md") if p.name != "README.md" and p.name not in listed]
    assert not missing, f"docs/README.md does not list {missing}"


def test_the_readme_is_a_front_page() -> None:
    """At most 300 lines before the Layout section; the rest belongs in docs/."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    front = text.split("\n## Layout\n", 1)[0]
    assert front.count("\n") + 1 <= 300, "README.md grew past 300 lines (Layout aside): move detail to docs/"
    assert "TODO" not in front


def _bench_report():
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_report_keeps_the_hand_written_log(tmp_path: Path) -> None:
    report = _bench_report()
    committed = (ROOT / "bench" / "RESULTS.md").read_text(encoding="utf-8")
    log = committed[committed.index("\n" + report.LOG_HEADING + "\n") + 1:]
    assert report.render({}).endswith("\n" + log)
    earlier = tmp_path / "RESULTS.md"
    earlier.write_text("# Benchmark results\n\nno log yet\n", encoding="utf-8")
    assert report.LOG_HEADING not in report.render({}, keep_log_of=earlier)
    assert report.LOG_HEADING not in report.render({}, keep_log_of=None)

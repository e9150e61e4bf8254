"""Every relative Markdown link in README.md, BENCHMARKS.md and docs/*.md resolves: the target file exists and a
`#anchor` is a heading of the target (GitHub's slugs). Text only: no model, no subprocess."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+).+?\1")
# [text](target) and ![alt](target); the target may carry a "title"
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def prose_lines(text: str):
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercase, punctuation other than '-' and '_' removed,
    spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor; repeats get -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(page.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match[2])
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path):
    """(line number, target) of every link in the page's prose; a link's text may wrap onto the next line."""
    lines = dict(prose_lines(page.read_text(encoding="utf-8")))
    # code spans are not links; fenced lines become blank, so offsets still map to line numbers
    prose = "\n".join(CODE_SPAN.sub("", lines.get(n, "")) for n in range(1, max(lines, default=0) + 1))
    for match in INLINE_LINK.finditer(prose):
        yield prose.count("\n", 0, match.start(1)) + 1, match[1]
    for number, line in enumerate(prose.split("\n"), 1):
        if definition := REFERENCE_DEF.match(line):
            yield number, definition[1]


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for number, target in links(page):
        if EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(root)}:{number}: {target}"
        if not resolved.exists():
            broken.append(f"{where} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{where} (no heading '#{anchor}' in {resolved.relative_to(root)})")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page):
    assert not broken_links(page), "\n".join(broken_links(page))


def test_the_checker_sees_a_broken_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Two words: `code`\n", encoding="utf-8")
    page = tmp_path / "README.md"
    page.write_text(
        "# Top\n\n[ok](docs/a.md) [ok](docs/a.md#two-words-code) [ok](#top) [web](https://example.com/x.md)\n"
        "`[not a link](nowhere.md)`\n```\n[in code](nowhere.md)\n```\n"
        "[gone](docs/missing.md) [bad anchor](docs/a.md#two-words) ![img](docs/nope.png) [wrapped\n"
        "text](docs/gone.md)\n\n[ref]: docs/a.md#a-page\n[ref2]: docs/nothing.md\n", encoding="utf-8")
    assert broken_links(page, tmp_path) == [
        "README.md:8: docs/missing.md (no such file)",
        "README.md:8: docs/a.md#two-words (no heading '#two-words' in docs/a.md)",
        "README.md:8: docs/nope.png (no such file)",
        "README.md:9: docs/gone.md (no such file)",
        "README.md:12: docs/nothing.md (no such file)",
    ]


def test_slugs_follow_github():
    assert slug("More than one process: `accelerate launch`") == "more-than-one-process-accelerate-launch"
    assert slug("bf16 vs float32 on the CPU, and the default vs the previous default") == (
        "bf16-vs-float32-on-the-cpu-and-the-default-vs-the-previous-default")
    assert slug("Parameters (`params.yaml`)") == "parameters-paramsyaml"
    assert slug("GPU: `make run LOCK=requirements/cuda.lock`") == "gpu-make-run-lockrequirementscudalock"
    assert slug("snake_case and kebab-case") == "snake_case-and-kebab-case"


def test_readme_links_every_docs_page():
    readme = {target.partition("#")[0] for _, target in links(ROOT / "README.md")}
    missing = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if f"docs/{p.name}" not in readme]
    assert not missing, f"docs pages not linked from README.md: {missing}"

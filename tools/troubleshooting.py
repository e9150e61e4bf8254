"""Write docs/troubleshooting.md's table from src/qlora_sentiment/problems/ (catalogue.py gathers the areas).

    python tools/troubleshooting.py          # rewrite docs/troubleshooting.md between the markers
"""

from pathlib import Path

from qlora_sentiment.problems.catalogue import render_markdown

PAGE = Path(__file__).resolve().parents[1] / "docs" / "troubleshooting.md"
START, END = "<!-- troubleshooting:start -->", "<!-- troubleshooting:end -->"


def with_section(text: str) -> str:
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{render_markdown()}{END}{tail}"


if __name__ == "__main__":
    PAGE.write_text(with_section(PAGE.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"updated {PAGE}")

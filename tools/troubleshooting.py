"""Write the README's Troubleshooting section from src/qlora_sentiment/troubleshooting.py.

    python tools/troubleshooting.py          # rewrite README.md between the markers
"""

from pathlib import Path

from qlora_sentiment.troubleshooting import render_markdown

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- troubleshooting:start -->", "<!-- troubleshooting:end -->"


def with_section(text: str) -> str:
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{render_markdown()}{END}{tail}"


if __name__ == "__main__":
    README.write_text(with_section(README.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"updated {README}")

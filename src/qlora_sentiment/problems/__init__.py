# output-neutral: the bad-input catalogue's rows (messages, fixes, triggers); what they say is never a stage output
"""The bad-input catalogue, one module per area (params, data, model, ...): each row holds what the one-line error
says, what to do, and how to set it off. The code that detects a bad input raises from its row where the text is
the code's own (`bad_input("ray-with-resume").format(...)`: the row's template, its fields filled in); where pydantic
or a library composes the line, the row's message is the distinctive part. tests/test_bad_inputs.py triggers every
row for real; tools/troubleshooting.py renders docs/troubleshooting.md from `catalogue.CATALOGUE`.

A stage imports only its own areas, and these modules are output-neutral (an error message is never a stage's
output), so editing a row re-runs no stage. Triggers are plain data: a kind that tests/bad_input_triggers.py's
TRIGGERS interprets, and its arguments, where `<tmp>` (the test's folder), `<tiny_llama>`, `<trained>`, `<aspects>` (the
session's tiny models) and `<free_port>` stand for what the test supplies."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

DELETE = "<delete>"  # a params change that removes the key


@dataclass(frozen=True)
class Trigger:
    kind: str                   # a key of tests/bad_input_triggers.py's TRIGGERS
    args: Mapping[str, Any]


@dataclass(frozen=True)
class Problem:
    id: str
    area: str        # the module that holds it: params | data | model | install | cloud | predict | serve | compare
    message: str     # what the one-line error says (a distinctive part of it): the test matches it, the docs show it
    fix: str
    trigger: Trigger
    template: str | None = field(default=None, compare=False)  # the whole message with {named} fields, if raised

    def format(self, **fields: Any) -> str:
        """The error line the code raises: the row's template with these fields filled in."""
        if self.template is None:
            raise ValueError(f"{self.id}: the row has no template; raise its .message")
        return self.template.format(**fields)


def trigger(kind: str, **args: Any) -> Trigger:
    return Trigger(kind, args)


def rows_of(area: str, *rows: tuple) -> list[Problem]:
    """An area's rows from (id, message, fix, trigger[, template]) tuples."""
    return [Problem(row[0], area, *row[1:]) for row in rows]


def index(rows: list[Problem]) -> Callable[[str], Problem]:
    """`bad_input(id)` for these rows; an unknown id is a KeyError at the raise site's first test."""
    by_id = {p.id: p for p in rows}
    return by_id.__getitem__


def cli(*argv: str, **options: Any) -> Trigger:
    """`qlora-sentiment ARGV` in the test's folder. options: files {path: bytes} and folders [path] made first,
    copies {path: source}, env, setup (a function of tests/bad_input_triggers.py that prepares more), absent (paths
    that must not exist after: nothing half-written), unchanged (paths of `files` that must keep their bytes)."""
    return Trigger("cli", {"argv": list(argv), **options})


def shell(script: str) -> Trigger:
    """`sh -c SCRIPT` with $0 the qlora-sentiment executable (for stdin closed or piped)."""
    return Trigger("shell", {"script": script})

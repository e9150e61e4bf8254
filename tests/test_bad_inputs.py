"""The bad-input catalogue, triggered for real: every row of qlora_sentiment/problems/ is set off through its real
entry point by its trigger (bad_input_triggers.TRIGGERS: kind -> how) and gives one `error:` line containing its
message, a non-zero exit and no traceback (the web API: the row's 4xx, its one-line detail the message);
docs/troubleshooting.md's table is generated from the catalogue."""

import string
import sys
from difflib import SequenceMatcher

import pytest

from bad_input_triggers import CLI, TRIGGERS, Case, patched, run, write_params
from helpers import ROOT
from test_serving_door import door_server  # noqa: F401 (a fixture: the web API's rows ask for it)
from qlora_sentiment.problems.catalogue import CATALOGUE


def assert_one_error_line(result, message):
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(errors) == 1, result.stderr[-2000:]
    assert message in errors[0], errors[0]
    return errors[0]


# placeholders and set-ups that make or load a session's tiny model or export
HEAVY = ("<trained", "<aspects", "<tiny_llama", "export_without_onnx", "export_without_cleaning")


def needs_a_model(problem) -> bool:
    """Rows that start a server, load a model or run the base_model stage: `slow`, left out of `make test-fast`."""
    kind, args = problem.trigger.kind, repr(problem.trigger.args)
    return kind in ("http", "base_model", "export_low_memory", "trained_output") or any(h in args for h in HEAVY)


@pytest.mark.parametrize("problem", [pytest.param(p, marks=[pytest.mark.slow] if needs_a_model(p) else [])
                                     for p in CATALOGUE], ids=[p.id for p in CATALOGUE])
def test_bad_input_gives_one_clear_line(problem, tmp_path, request):
    result = TRIGGERS[problem.trigger.kind](Case(problem.id, tmp_path, request.getfixturevalue),
                                            **problem.trigger.args)
    if problem.trigger.kind == "http":  # a real server's answer: (status, headers, JSON body)
        status, _, body = result
        # a client error, or the one server-side refusal a client can act on: 503 + Retry-After (serve-overloaded)
        assert status == problem.trigger.args["status"] and (400 <= status < 500 or status == 503), (status, body)
        assert set(body) == {"detail", "field"}, body
        assert problem.message in body["detail"] and "\n" not in body["detail"], body
    else:
        assert_one_error_line(result, problem.message)


def test_every_trigger_kind_is_known_and_every_template_names_its_fields():
    """A row's kind must have a trigger; a row the code raises through a template names each field (format's
    keywords) and shares a stretch of its text with the message the test matches (the triggered line holds both)."""
    assert {p.trigger.kind for p in CATALOGUE} <= set(TRIGGERS)
    for p in CATALOGUE:
        if p.template is not None:
            parts = list(string.Formatter().parse(p.template))
            assert all(name for _, name, _, _ in parts if name is not None), p.id
            shared = max(SequenceMatcher(None, text, p.message).find_longest_match().size for text, *_ in parts)
            assert shared >= min(8, len(p.message)), p.id


def test_debug_shows_the_traceback(tmp_path):
    params = write_params(tmp_path, patched({"train.learnig_rate": 1e-4}))
    result = run([CLI, "--debug", "check", "--params", str(params)], tmp_path)
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_catalogue_is_big_enough_and_the_docs_page_matches_it():
    assert len(CATALOGUE) >= 20 and len({p.id for p in CATALOGUE}) == len(CATALOGUE)
    sys.path.insert(0, str(ROOT / "tools"))
    from troubleshooting import with_section

    page = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    assert with_section(page) == page, "docs/troubleshooting.md is stale: run python tools/troubleshooting.py"

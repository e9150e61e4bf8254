# output-neutral: the whole catalogue and its docs table; what they say is never a stage output
"""Every area's rows, in the order docs/troubleshooting.md shows them, and that page's table."""

from __future__ import annotations

from . import aspect_files, cloud, compare, data, index, install, model, params, predict, predict_output, serve, web

CATALOGUE = [*params.ROWS, *data.ROWS, *model.ROWS, *install.ROWS, *cloud.ROWS, *predict.ROWS,
             *aspect_files.ROWS, *predict_output.ROWS, *serve.ROWS, *web.ROWS, *compare.ROWS]
bad_input = index(CATALOGUE)  # any row, for code outside the stages (a stage imports its own areas only)


def render_markdown() -> str:
    lines = [
        "Every error is one line starting with `error:` that names the key, file or row; the exit code is 2 "
        "(3 for out of memory, 4 when `serve`'s port is in use) and no traceback is shown unless you add `--debug` "
        "or set `QLORA_DEBUG=1`. "
        "Each row below is triggered for real by `tests/test_bad_inputs.py`. Rows whose fix starts with `HTTP` "
        "are the web API's answers: the message is the `detail` of the JSON body `{\"detail\": ..., \"field\": ...}`.",
        "",
        "| area | the error says | what to do |",
        "|---|---|---|",
    ]
    for p in CATALOGUE:
        lines.append(f"| {p.area} | `{p.message}` | {p.fix} |")
    lines += [
        "",
        "A stage that fails under `dvc repro` has already lost its outputs: DVC removes them before running the "
        "stage's command. Check params first (`qlora-sentiment check`, which `make run` does), and after a failure "
        "restore the git-tracked outputs with `git checkout -- <the files git status lists>` and the cached ones "
        "with `dvc checkout`.",
    ]
    return "\n".join(lines) + "\n"

# output-neutral: error messages, fixes and triggers; what they say is never a stage output
"""`predict --file FILE --aspect-column COL` (or `--aspect-list-column COL`) refusals on an aspect model: each
names the file, line and column, comes before the model loads, and leaves an earlier --output (here one being
resumed) as it was."""

from __future__ import annotations

from . import Trigger, cli, index, rows_of

EARLIER = b'{"row": 0, "text": "earlier", "aspect": "run", "label": "positive"}\n'


def aspect_file(name: str, data: bytes, *flags: str) -> Trigger:
    """The tiny aspect_term export labelling `name` into out.jsonl with --resume: refused, out.jsonl untouched."""
    return cli("predict", "--model", "<aspects>/export", "--file", name, *flags, "--output", "out.jsonl", "--resume",
               files={name: data, "out.jsonl": EARLIER}, unchanged=["out.jsonl"])


ROWS = rows_of(
    "predict",
    ("aspect-file-column-missing",
     "in.csv: line 1: no aspect column 'aspect' (columns: ['text', 'label'])",
     "Name the column that holds each row's aspect with `--aspect-column` (a list of aspects per row: "
     "`--aspect-list-column`). JSON Lines: the first row must have it.",
     aspect_file("in.csv", b"text,label\nthe food was great,1\n", "--aspect-column", "aspect"),
     "{name}: line {line}: no aspect column {column!r} (columns: {columns}); name it with {flag}"),
    ("aspect-column-empty",
     "in.csv: line 2: column 'aspect' is empty in every row",
     "An aspect model labels (text, aspect) pairs: fill the column, or label whole texts with a sentence model.",
     aspect_file("in.csv", b"text,aspect\nthe food was great,\nthe wine was cheap,\n", "--aspect-column", "aspect"),
     "{name}: line {line}: column {column!r} is empty in every row; an aspect model labels (text, aspect) pairs: "
     "fill it, or label whole texts with a sentence model"),
    ("aspect-rows-mixed",
     "in.jsonl: line 2: column 'aspect' is empty, but line 1 has an aspect",
     "Every row needs an aspect (a list column: at least one): a row without one is a sentence-level row, which an "
     "aspect model does not label. Drop those rows, or label them apart with a sentence model.",
     aspect_file("in.jsonl", b'{"text": "the food was great", "aspect": "food"}\n{"text": "a fine evening"}\n',
                 "--aspect-column", "aspect"),
     "{name}: line {line}: column {column!r} is empty, but line {other} has an aspect: every row needs one (drop "
     "the rows without, or label them with a sentence model)"),
    ("aspect-list-not-a-list",
     "in.jsonl: line 1: column 'aspects' is a string, not a list of aspects",
     'With `--aspect-list-column` each cell is a list of strings: a JSON array in JSON Lines, and in CSV/TSV a '
     'JSON array in the cell (`"[""food"", ""service""]"`). One aspect per row: `--aspect-column`.',
     aspect_file("in.jsonl", b'{"text": "the food was great", "aspects": "food"}\n', "--aspect-list-column",
                 "aspects"),
     '{name}: line {line}: column {column!r} is {what}, not a list of aspects; write them as a JSON list, '
     '["food", "service"]'),
    ("aspect-column-without-file",
     "--aspect-column names a column of --file FILE",
     "An aspect column is read from a file: `--file FILE --aspect-column COL`. One text's aspects: "
     '`--aspect ASPECT "TEXT"`.',
     cli("predict", "--model", "<aspects>/export", "--aspect-column", "aspect", "the food was great"),
     '{flag} names a column of --file FILE (.csv, .tsv, .jsonl or .parquet); one text\'s aspects: --aspect ASPECT '
     '"TEXT"'),
    ("aspect-column-on-txt",
     "in.txt: a .txt file has one text a line and no aspect column",
     "Give the texts and their aspects as columns of a .csv, .tsv, .jsonl or .parquet file.",
     aspect_file("in.txt", b"the food was great\n", "--aspect-column", "aspect"),
     "{name}: a .txt file has one text a line and no aspect column; give the texts and their aspects as .csv, "
     ".tsv, .jsonl or .parquet columns"),
    ("aspect-file-not-in-text",
     "in.csv: line 3: column 'aspect': 'wine' does not occur in the text",
     "An aspect-term model labels words of the text: each row's aspect must be in its text as the text spells it "
     "(case is ignored). Fix or drop the row named.",
     aspect_file("in.csv", b"text,aspect\nthe food was great,food\nthe food was great,wine\n", "--aspect-column",
                 "aspect"),
     "{name}: line {line}: column {column!r}: {problem}"),
)
bad_input = index(ROWS)

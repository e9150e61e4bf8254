# output-neutral: error messages, fixes and triggers; what they say is never a stage output
"""Data the prepare stage refuses: each row triggered by the real prepare stage on params.yaml with these changes,
after writing these files (paths relative to the run's folder; data/raw/ is the folder prepare depends on)."""

from __future__ import annotations

from . import Trigger, index, rows_of, trigger


def prepare(changes: dict, files: dict | None = None, setup: str | None = None) -> Trigger:
    return trigger("prepare", changes=changes, files=files or {}, setup=setup)


def local_csv(content: bytes, more: dict | None = None) -> Trigger:
    """A CSV in data/raw/, the folder prepare depends on."""
    return prepare({"data.source": "local", "data.name": "data/raw/reviews.csv", "data.group_column": None,
                    "data.label_column": "label", **(more or {})}, files={"data/raw/reviews.csv": content})


def saved_dataset(splits: dict | None) -> Trigger:
    """A saved Hugging Face dataset (splits train and unlabelled, label -1) in data/raw/ds."""
    return prepare({"data.source": "hub", "data.name": "data/raw/ds", "data.group_column": None,
                    "data.label_column": "label", "data.splits": splits}, setup="saved_dataset")


def aspect_file(name: str, content: str, task: str = "aspect_term") -> Trigger:
    return prepare({"data.task": task, "data.source": "local", "data.name": "data/raw/absa",
                    "data.splits": {"train": name}, "data.group_column": None},
                   files={f"data/raw/absa/{name}": content.encode()})


ASPECT_XML = ('<sentences><sentence><text>the service was slow</text>\n<aspectTerms><aspectTerm term="service" '
              'polarity="negative" from="{start}" to="11"/></aspectTerms></sentence></sentences>\n')


ROWS = rows_of(
    "data",
    ("data-file-missing",
     'data.name: file not found',
     'Check the path in `data.name`.',
     prepare({"data.source": "local", "data.name": "data/raw/missing.csv"}),
     'data.name: file not found: {path}; fix the path (relative to the project folder)'),
    ("data-column-missing",
     "data.text_column: column 'review' not in",
     'Set `data.text_column` / `data.label_column` to columns the file has (listed in the message).',
     local_csv(b"text,label\ngood,positive\nbad,negative\n", {"data.text_column": "review"})),
    ("label-outside-map",
     "row 1: label 'meh' is not in the label map",
     'Add the raw value under `data.label_map`, or drop those rows.',
     local_csv(b"text,label\nok film,meh\nbad film,negative\n"),
     "{where}: row {row}: label '{raw}' is not in the label map for {labels}; add it under data.label_map (e.g. "
     "'{raw}': {first}, or null to drop the rows)"),
    ("not-utf8",
     'not UTF-8 at byte',
     'Re-encode the file as UTF-8 (`iconv -t utf-8`).',
     local_csv(b"text,label\ncaf\xe9 good,positive\nbad,negative\n"),
     'not UTF-8 at byte {byte} (line {line})'),
    ("single-class",
     'only one label',
     'The data needs examples of at least two labels.',
     local_csv(b"text,label\ngood,positive\ngreat,positive\nfine,positive\n"),
     '{where}: only one label ({present}) after cleaning; a classifier needs at least two of {labels}: check '
     'data.label_column and data.label_map'),
    ("empty-after-cleaning",
     'no rows left after cleaning (empty: 3)',
     'The counts say which step removed the rows; check `data.text_column`, `data.clean`, `data.min_confidence`.',
     local_csv(b"text,label\n ,positive\n<br />,negative\n&nbsp;,negative\n"),
     '{where}: no rows left after cleaning ({dropped}); check data.text_column, data.clean and data.min_confidence'),
    ("text-too-long",
     'row 2: text is 1,048,576 characters, over data.clean.max_chars',
     'Raise `data.clean.max_chars`, or set `data.clean.too_long` to `truncate` or `drop` (counted in the report).',
     local_csv(b"text,label\ngood,positive\n" + b"a" * 2**20 + b",negative\n")),
    ("unlabelled-rows",
     "split 'unlabelled': row 1: no label",
     "Name the labelled splits in `data.splits` (SST-2's and IMDB's extra splits have label -1).",
     saved_dataset(None),
     '{where}: row {row}: no label; drop unlabelled rows (e.g. pick labelled splits with data.splits) or fill '
     'the label column'),
    ("unknown-source-split",
     "data.splits.test: 'dev' is not a split of",
     'Use a split name the message lists.',
     saved_dataset({"train": "train", "test": "dev"}),
     "data.splits.{ours}: '{theirs}' is not a split of {origin} (has {splits})"),
    ("aspect-file-sentence-task",
     'holds aspect-level labels; set data.task: aspect_term',
     "Set `data.task: aspect_term` (or `aspect_category` for SemEval's categories) to train on aspects.",
     aspect_file("train.xml", ASPECT_XML.format(start=4), task="sentence"),
     "data.task: {path} holds aspect-level labels; set data.task: aspect_term (or aspect_category for SemEval's "
     'categories)'),
    ("aspect-xml-broken",
     'train.xml: line 2: the XML is not well-formed (mismatched tag)',
     'Fix the XML at the line shown (an unclosed or misspelt tag).',
     aspect_file("train.xml", ASPECT_XML.format(start=4).replace("</aspectTerms>", "")),
     '{path}: line {line}: the XML is not well-formed ({reason}); fix the file there'),
    ("aspect-xml-attribute",
     "train.xml: line 2: aspectTerm has no 'polarity' attribute",
     'Every aspect needs its term (or category), polarity and, for terms, from/to offsets.',
     aspect_file("train.xml", ASPECT_XML.format(start=4).replace(' polarity="negative"', ""))),
    ("aspect-offsets",
     "text[5:11] is 'ervice', not the term 'service'; fix from/to",
     'from/to are 0-based character offsets, the end excluded: `text[from:to]` must be the term.',
     aspect_file("train.xml", ASPECT_XML.format(start=5)),
     'text[{start}:{end}] is {found!r}, not the term {term!r}; fix from/to (0-based, end exclusive)'),
    ("aspect-seg-lines",
     'train.seg: line 1: 2 lines is not a multiple of 3',
     'A `$T$` file has three lines per aspect: the sentence with `$T$`, the aspect, the polarity -1/0/1.',
     aspect_file("train.seg", "the $T$ was slow\nservice\n"),
     '{path}: line {line}: {count} lines is not a multiple of 3 (sentence with $T$, aspect, polarity); the block '
     'starting here is incomplete'),
    ("aspect-column-missing",
     "data.aspect_column: column 'aspect' not in",
     "Set `data.aspect_column` to the column holding each row's aspect (listed in the message).",
     local_csv(b"text,label\ngood food,positive\nbad food,negative\n", {"data.task": "aspect_term"})),
    ("offline-corpus",
     'data.name: unknown offline corpus',
     'Use a name the message lists.',
     prepare({"data.name": "rotten_potatoes"}),
     "data.name: unknown offline corpus '{name}'; known: {known}"),
    ("hub-dataset-unreachable",
     'data.name: cannot reach the Hugging Face Hub for dataset',
     'Without network: `HF_HUB_OFFLINE=1` with a populated cache, or `data.source: local`.',
     prepare({"data.source": "hub", "data.name": "qlora-sentiment-tests/no-such-dataset",
              "data.group_column": None})),
    ("local-data-untracked",
     'is outside data/raw/, the folder dvc.yaml tracks for this stage',
     'Move the file into `data/raw/` (large files: `dvc add data/raw/<file>`) so DVC re-runs prepare when it '
     'changes.',
     prepare({"data.source": "local", "data.name": "<tmp>/reviews.csv"},
             files={"reviews.csv": b"text,label\ngood,positive\nbad,negative\n"})),
)
bad_input = index(ROWS)

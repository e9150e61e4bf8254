# output-neutral: error messages, fixes and triggers; what they say is never a stage output
"""`qlora-sentiment predict` refusals: each the real command, most before any model loads (--model names no folder
at all); `<trained>` and `<aspects>` rows use the session's tiny models."""

from __future__ import annotations

from . import Trigger, cli, index, rows_of, shell


def ray(*argv: str) -> Trigger:
    """predict --ray, refused before the model loads or Ray starts: no output folder made, earlier shards kept."""
    return cli("predict", "--model", "no-model", "--ray", *argv, absent=["out"],
               unchanged=["shards/part-00000.parquet"],
               files={"in.txt": b"good\nbad\n", "shards/part-00000.parquet": b"earlier run"})


LONG_LINE = "".join(f"review {i}\n" for i in range(1, 150)).encode() + b"a" * 30_000 + b"\n"


ROWS = rows_of(
    "predict",
    ("onnx-backend-on-adapter",
     '--backend onnx needs a merged export',
     'ONNX Runtime runs the merged export (`--model models/export`, made by `dvc repro export`); an adapter runs '
     'on torch (`--backend auto` or `torch`).',
     cli("predict", "--model", "<trained>/adapter", "--base", "<trained>/base", "--backend", "onnx", "a fine film"),
     '{path}: --backend onnx needs a merged export (dvc repro export: models/export); an adapter runs on torch'),
    ("ray-without-file",
     '--ray labels --file FILE or a folder of files',
     '`predict --ray` labels files (`--file reviews.csv` or `--file folder/`); texts as arguments or on stdin go '
     'through `predict` without `--ray`.',
     ray("a review", "--output-dir", "<tmp>/out"),
     '--ray labels --file FILE or a folder of files (texts as arguments or on stdin: predict without --ray)'),
    ("ray-with-resume",
     '--ray cannot --resume',
     'A stopped `--ray` run leaves no output folder (shards appear only when every row is done): run it again.',
     ray("--file", "<tmp>/in.txt", "--resume", "--output-dir", "<tmp>/out"),
     '--ray cannot --resume: a stopped run leaves no output; run it again'),
    ("ray-output-dir-not-empty",
     'not empty; name a new or empty folder',
     '`--output-dir` takes a new or empty folder; move the earlier shards away or name another folder.',
     ray("--file", "<tmp>/in.txt", "--output-dir", "<tmp>/shards"),
     '--output-dir {folder}: not empty; name a new or empty folder'),
    ("ray-cluster-unreachable",
     'no Ray cluster answers there',
     'Start the cluster (`ray start --head` on the head node) and pass its address (`--ray HEAD_IP:6379`, or '
     '`--ray auto` on a node of it); no address starts a local cluster.',
     cli("predict", "--model", "<trained>/export", "--file", "<tmp>/in.txt", "--ray", "127.0.0.1:<free_port>",
         "--output-dir", "<tmp>/out", files={"in.txt": b"good\n"}),
     '--ray {address}: no Ray cluster answers there ({reason}); start one with `ray start --head` or check the '
     'address'),
    ("aspect-not-in-text",
     "aspects[1]: 'wine' does not occur in the text; this model (aspect_term)",
     'An aspect-term model labels words of the text: name the aspect as the text spells it, from the start of a '
     'word (case is ignored; docs/aspects.md "The aspect-term rule").',
     cli("predict", "--model", "<aspects>/export", "--aspect", "food", "--aspect", "wine",
         "the food was great but the service was awful"),
     'aspects[{index}]: {aspect!r} does not occur in the text; this model (aspect_term) labels terms of the '
     "text: use the text's own words"),
    ("aspect-model-without-aspects",
     'labels aspects of a text, and predict without --aspect takes whole texts',
     'Name the aspects: `qlora-sentiment predict --aspect food --aspect service "TEXT"`.',
     cli("predict", "--model", "<aspects>/export", "the food was great but the service was awful"),
     '{folder}: an aspect model (data.task: {task}) labels aspects of a text, and {whole_texts} takes whole '
     'texts; use qlora-sentiment predict --aspect ASPECT [--aspect ...] "TEXT", or --file FILE --aspect-column '
     'COLUMN'),
    ("aspects-on-sentence-model",
     'aspects: this model labels whole texts',
     'Leave out --aspect, or use a model trained with `data.task: aspect_term` (`-S data=mams_atsa`).',
     cli("predict", "--model", "<trained>/export", "--aspect", "film", "a fine film"),
     'aspects: this model labels whole texts (trained with data.task: sentence); leave out the aspects, or use a '
     'model trained on an aspect task'),
    ("aspect-empty",
     'aspects[0]: empty text',
     'Give every --aspect a word or phrase.',
     cli("predict", "--model", "<aspects>/export", "--aspect", " ", "the food was great but the service was awful")),
    ("aspect-too-many-tokens",
     "aspects[0]: 600 tokens; at most 95 for this model's max_length of 96 tokens",
     "The aspect must fit the model's max_length beside at least one token of the text (a generative model's: "
     "half of the review's room); name it shorter. The web API answers the same as a 422.",
     cli("predict", "--model", "<aspects>/export", "--aspect", "\u597d" * 200, "\u597d" * 200)),
    ("aspect-with-file",
     '--aspect labels the aspects of one text given as an argument',
     'Give the one text as an argument; a file names each row\'s aspect in a column: `--file reviews.csv '
     '--aspect-column aspect` (or a list per row: `--aspect-list-column aspects`), docs/aspects.md.',
     cli("predict", "--model", "no-model", "--aspect", "food", "--file", "in.txt"),
     '--aspect labels the aspects of one text given as an argument; a file names them in a column: --file FILE '
     '--aspect-column COLUMN (or --aspect-list-column COLUMN)'),
    ("predict-batch-size",
     'argument --batch-size: must be in 1..4096, got -1',
     'Use a positive batch size; checked before the model loads.',
     cli("predict", "--batch-size", "-1", "a review")),
    ("predict-threads",
     'argument --threads: must be in 1..1024, got -1',
     'Use a positive thread count (more than the CPU cores only prints a warning).',
     cli("predict", "--threads", "-1", "a review")),
    ("predict-long-line",
     'in.txt: line 150: 30,000 characters; at most 20,000 per text',
     'That row holds more than one review (a missing newline or an unclosed quote?); fix it at the line shown.',
     cli("predict", "--model", "no-model", "--file", "<tmp>/in.txt", files={"in.txt": LONG_LINE})),
    ("predict-empty-row",
     'in.txt: line 2: empty text',
     'Every row is labelled, one output row per input row: delete the blank row (blank lines at the very end are '
     'fine).',
     cli("predict", "--model", "no-model", "--file", "<tmp>/in.txt", files={"in.txt": b"good\n\nbad\n"}),
     '{name}: line {line}: empty text'),
    ("predict-invisible-text",
     'line 1: empty text (only invisible or control characters)',
     'The row holds only whitespace, control or format characters (NUL, zero-width space): drop it.',
     cli("predict", "--model", "no-model", "--file", "<tmp>/in.txt", files={"in.txt": "\u200b\u200b\n".encode()})),
    ("predict-lone-surrogate",
     'in.jsonl: line 1: not valid Unicode: a lone surrogate U+D800',
     'The file escapes half of a UTF-16 pair (`\\ud800`); re-export it from the source with proper Unicode.',
     cli("predict", "--model", "no-model", "--file", "<tmp>/in.jsonl", files={"in.jsonl": b'{"text": "\\ud800"}\n'})),
    ("predict-nan-text",
     "in.jsonl: line 1: 'text' is NaN (not valid JSON), not a string",
     'The text field must be a JSON string; NaN, numbers and null are not texts.',
     cli("predict", "--model", "no-model", "--file", "<tmp>/in.jsonl", files={"in.jsonl": b'{"text": NaN}\n'}),
     "{name}: line {line}: '{column}' is {what}, not a string"),
    ("predict-stdin-closed",
     'no texts: stdin is closed',
     'Pipe texts in, or give them as arguments or with `--file`.',
     shell('exec "$0" predict --model no-model <&-'),
     'no texts: stdin is closed; give texts as arguments, with --file, or one per line on stdin'),
    ("predict-stdin-not-utf8",
     'stdin: line 2 is not UTF-8',
     'Convert the input first: `iconv -f latin1 -t utf-8 reviews.txt | qlora-sentiment predict`.',
     shell('printf "good\\nt\\351t\\351\\n" | "$0" predict --model no-model'),
     '{name}: line {line} is not UTF-8 (byte {byte}); re-save it as UTF-8'),
    ("predict-argv-not-utf8",
     'argument 1 is not UTF-8 (byte 0xe9',
     'Pass UTF-8 text (a UTF-8 terminal/locale), or put the texts in a UTF-8 file and use `--file`.',
     cli("predict", "--model", "no-model", "caf\udce9"),
     # argv bytes b"caf\xe9"
     'argument {index} is not UTF-8 (byte 0x{byte:02x} at character {position}); pass UTF-8 text'),
)
bad_input = index(ROWS)

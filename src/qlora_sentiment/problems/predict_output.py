# output-neutral: error messages, fixes and triggers; what they say is never a stage output
"""`predict --output FILE` and `--resume` refusals: the output, its lock and its progress record."""

from __future__ import annotations

from . import Trigger, cli, index, rows_of, trigger


def output(*flags: str, files: dict | None = None, folders: list | None = None,
           unchanged: list | None = None) -> Trigger:
    return cli("predict", "--file", "in.txt", "--model", "no-model", *flags,
               files={"in.txt": b"a fine film\na dull one\n", **(files or {})}, folders=folders or [],
               unchanged=unchanged or [])


def resume(change: dict | None) -> Trigger:
    """`--resume` of out.jsonl (one row of two written) by a stand-in adapter, its progress record changed so
    (None: no record); the refusal leaves out.jsonl as it was."""
    return trigger("resume", change=change)


ROWS = rows_of(
    "predict",
    ("predict-resume-without-output",
     '--resume needs --output FILE',
     'Rows written to stdout cannot be continued: write with `--output FILE`, then `--resume` continues it.',
     output("--resume"),
     '--resume needs --output FILE (rows written to stdout cannot be continued)'),
    ("predict-output-is-folder",
     'is a folder; name a file',
     'Give `--output` a file name.',
     output("--output", "."),
     '--output {path}: is a folder; name a file'),
    ("predict-output-no-folder",
     'out.jsonl: no folder missing; make it first',
     'Create the folder (`mkdir -p`) or fix the path; `predict` does not make folders.',
     output("--output", "missing/out.jsonl"),
     '--output {path}: no folder {folder}; make it first'),
    ("predict-output-not-a-file",
     '--output /dev/null: not a regular file',
     '`--output` writes a progress record beside its file: for a pipe or a device, leave `--output` out and '
     'redirect stdout.',
     output("--output", "/dev/null"),
     '--output {path}: not a regular file; write to stdout (no --output) for pipes and devices'),
    ("predict-output-is-input",
     '--output in.txt is the input file',
     'Name another file: labelling the input into itself would destroy it.',
     output("--output", "in.txt"),
     '--output {path} is the input file; name another file'),
    ("predict-output-unwritable",
     'cannot write it (File name too long)',
     "The message gives the system's reason (no permission, a read-only or full disk, a name too long); checked "
     'before the model loads. A full disk mid-run keeps the complete rows: free space, then `--resume`.',
     output("--output", "o" * 300 + ".jsonl"),
     '--output {path}: cannot write it ({reason})'),
    ("predict-resume-other-model",
     'was labelled by another model',
     '`--resume` continues only the model that began the file (sha256 of its folder, in FILE.progress.json): '
     'pass that `--model`, or start over without `--resume`.',
     resume({"model": {"path": "elsewhere", "sha256": "0" * 64}})),
    ("predict-resume-other-input",
     'was labelled from other input',
     "The input's bytes changed since (sha256 in FILE.progress.json): pass the same input, or start over.",
     resume({"input": {"name": "old.txt", "sha256": "0" * 64, "rows": 2}})),
    ("predict-resume-other-format",
     "was written with format 'csv', not 'json'",
     'Pass the same `--format`, `--text-column`, aspect column and `--raw-csv` as the run you continue.',
     resume({"format": "csv"}),
     '--resume: {path} was written with {key} {earlier!r}, not {now!r}; pass the same --format, --text-column, '
     '--aspect-column or --aspect-list-column and --raw-csv'),
    ("predict-resume-no-record",
     'has no usable progress record (out.jsonl.progress.json: missing)',
     'FILE was not written by `predict --output`, or its record was deleted: start over without `--resume`.',
     resume(None),
     '--resume: {path} has no usable progress record ({record}: {why}); start over without --resume'),
    ("predict-resume-output-changed",
     'is not what predict wrote',
     'FILE was edited after the run stopped (its sha256 no longer matches the record): start over without '
     '`--resume`, or restore it.',
     resume({"output_sha256": "0" * 64}),
     '--resume: {path} is not what predict wrote (its first {size:,} bytes changed since); start over without '
     '--resume'),
    ("predict-output-busy",
     'is writing it; wait for it or pick another --output',
     'Another `predict` (the pid named) writes this FILE: two writers would corrupt it. Wait for it, or name '
     'another `--output`. The lock (`.FILE.predict-lock` beside FILE) dies with its holder, even after `kill '
     '-9`: nothing to remove.',
     trigger("output_busy"),
     '{output}: another predict (pid {pid}) is writing it; wait for it or pick another --output'),
    ("predict-output-lock-unmade",
     'cannot make its lock file .out.jsonl.predict-lock (Is a directory)',
     "`predict --output FILE` takes a lock file `.FILE.predict-lock` beside FILE: the system's reason says why "
     'it cannot (something else of that name, no permission, a full disk, a file system without `flock`). Move '
     'that away or pick another `--output`.',
     output("--output", "out.jsonl", folders=[".out.jsonl.predict-lock"]),
     '--output {output}: cannot make its lock file {lock} ({reason})'),
    ("predict-output-lock-foreign",
     '.out.jsonl.predict-lock exists and is not a predict lock file',
     'A file of that name holds something else, which predict never overwrites: move it away or pick another '
     '`--output`.',
     output("--output", "out.jsonl", files={".out.jsonl.predict-lock": b"my notes\n"},
            unchanged=[".out.jsonl.predict-lock"]),
     '--output {output}: {lock} exists and is not a predict lock file; move it away or pick another --output'),
    ("predict-output-lock-is-input",
     'its lock file .out.jsonl.predict-lock is the input file',
     'Name another `--output` (its lock file would be the input).',
     cli("predict", "--file", ".out.jsonl.predict-lock", "--model", "no-model", "--output", "out.jsonl",
         files={".out.jsonl.predict-lock": b"a review\n"}, unchanged=[".out.jsonl.predict-lock"]),
     '--output {output}: its lock file {lock} is the input file; name another --output'),
    ("predict-resume-bad-record",
     'rows_written is "10", not a whole number >= 0',
     'FILE.progress.json was edited or damaged (a value of the wrong type or range): start over without `--resume`.',
     resume({"rows_written": "10"})),
    ("predict-resume-rows-mismatch",
     'does not match its progress record (out.jsonl.progress.json says 2 rows in the first 24 bytes; they hold 1)',
     "The record's row count is not what the bytes it names hold (rows would be skipped or written twice): start "
     'over without `--resume`.',
     resume({"rows_written": 2}),
     '--resume: {path} does not match its progress record ({record} says {rows:,} rows in the first {size:,} '
     'bytes; they {held}); start over without --resume'),
    ("predict-resume-complete-partial",
     'holds 1 row and its progress record says complete, but the input has 2',
     'A record that calls a partial FILE complete is not trusted: start over without `--resume`.',
     resume({"complete": True}),
     '--resume: {path} holds {rows:,} row{plural} and its progress record says {state}, but the input has '
     '{total:,}; start over without --resume'),
    ("predict-input-changed",
     'in.txt: changed while it was being labelled',
     'The input was appended to or edited during the run (its bytes no longer hash as when checked): FILE is not '
     'marked complete. Label it again, without `--resume`, once the input has stopped changing.',
     trigger("trained_output", what="input_changed"),
     '{name}: changed while it was being labelled (appended or edited after its rows were checked); {where}: '
     'label it again without --resume once it stops changing'),
    ("predict-stdout-full",
     'stdout: cannot write it (No space left on device)',
     'Free the space where stdout goes, or write with `--output FILE` (resumable).',
     trigger("trained_output", what="stdout_full"),
     'stdout: cannot write it ({reason}); {rows:,} rows were written: free the space, or write with --output '
     'FILE (resumable)'),
    ("predict-record-disk-full",
     'cannot write its progress record out.jsonl.progress.json (No space left on device)',
     'The disk is full: free the space, then `--resume` continues from the last record (kept whole).',
     trigger("trained_output", what="record_disk_full"),
     '--output {path}: cannot write its progress record {record} ({reason}); {rows:,} rows are recorded '
     'complete: free the space and continue with --resume'),
    ("predict-duplicate-key",
     'in.jsonl: line 1: text: duplicate key in a JSON object; give each field once',
     'A JSON Lines row gives a key twice (which value is meant?): keep one, as the web API asks.',
     cli("predict", "--model", "no-model", "--file", "in.jsonl", files={"in.jsonl": b'{"text": "a", "text": "b"}\n'})),
)
bad_input = index(ROWS)

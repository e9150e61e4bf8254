"""`qlora-sentiment predict`: label texts given as arguments, on stdin or in a file (streamed and resumable),
one text's aspects (--aspect), or a file on Ray workers (--ray). An --output FILE has one writer (a lock held from
before the input is read to the end of the run); an input that changes while it is labelled stops the run before
it is called complete; stdout that cannot be written (a full disk) is one line, as every other error."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from qlora_sentiment.problems.catalogue import bad_input


def load_analyzer(args):
    from qlora_sentiment.core.runtime import setup_torch
    from qlora_sentiment.api.analyzer import SentimentAnalyzer

    setup_torch(args.threads, seed=None)  # scoring draws no random number
    return SentimentAnalyzer.from_pretrained(args.model, base=base_folder(args), backend=args.backend,
                                             threads=args.threads)


def base_folder(args):
    """--base, or inside the project models/base when it is the adapter's base (None: the adapter's record)."""
    from qlora_sentiment.model.base import REFERENCE_FILE

    base = args.base
    if base is None and Path("models/base", REFERENCE_FILE).is_file() \
            and (Path(args.model) / "adapter_config.json").is_file():
        from qlora_sentiment.core.io import read_json
        from qlora_sentiment.model.record import read_record

        # Inside the project: reuse the base_model stage's folder when it is the adapter's base.
        if read_json(Path("models/base", REFERENCE_FILE)) == read_record(args.model).base_model:
            base = "models/base"
    return base


def predict(args) -> None:
    """Label the texts a chunk at a time, each chunk's rows written (and flushed) as soon as they are labelled.
    Ctrl-C or SIGTERM: one line saying how many rows are complete, exit 130 / 143, the complete rows kept."""
    from types import SimpleNamespace

    from qlora_sentiment.labelling.output import Interrupted, Signals

    if args.aspect is not None:
        try:
            return _predict_aspects(args)
        except BrokenPipeError:
            _stdout_gone()
    if args.ray is not None:
        return _predict_with_ray(args)
    _refuse_ray_flags(args)
    args.format = args.format or "json"
    run = SimpleNamespace(output=None, total=None, bar=None, lock=None)
    with Signals() as signals:
        try:
            _label(args, signals, run)
        except Interrupted as exc:
            if run.bar is not None:
                run.bar.close()
            if run.output is not None:
                run.output.stop()
            print(_interrupted(args, run), file=sys.stderr, flush=True)
            sys.exit(128 + exc.signum)
        except BrokenPipeError:
            _stdout_gone()
        finally:
            if run.lock is not None:
                run.lock.release()


def _stdout_gone() -> None:
    """stdout's reader has gone (`| head`): nothing left to say, nowhere to say it."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(141)


def _predict_aspects(args) -> None:
    """--aspect A --aspect B "text": one row per aspect of one text, in order (an aspect-task model)."""
    from qlora_sentiment.core.errors import DataError
    from qlora_sentiment.labelling.output import check_output_folder, check_output_path
    from qlora_sentiment.labelling.output_lock import OutputLock

    columns = bool(args.aspect_column or args.aspect_list_column)
    refused = [(bool(args.file) or args.ray is not None or columns, bad_input("aspect-with-file").format()),
               (len(args.texts) != 1, f"--aspect needs exactly one text as an argument (got {len(args.texts)})"),
               (args.resume or bool(args.output_dir) or args.format == "parquet",
                "--aspect writes its rows to stdout or --output FILE as json, csv or table (no --resume, --ray "
                "flags or parquet)")]
    for bad, message in refused:
        if bad:
            raise DataError(message)
    _refuse_ray_flags(args)
    with contextlib.ExitStack() as held:
        if args.output:  # one writer: locked before the model loads, so that a second run stops at once
            check_output_folder(Path(args.output), None)
            held.enter_context(OutputLock(Path(args.output)))
            check_output_path(Path(args.output), None)
        _label_aspects(args)


def _label_aspects(args) -> None:
    from qlora_sentiment.core.errors import DataError
    from qlora_sentiment.core.io import write_text
    from qlora_sentiment.cli_inputs import check_model_folder, warn_about_threads
    from qlora_sentiment.labelling.output import Formatter, Output

    warn_about_threads(args.threads)
    check_model_folder(args.model)
    from qlora_sentiment.model.record import read_record
    from qlora_sentiment.api.analyzer import aspect_inputs

    aspect_inputs(read_record(args.model), args.texts[0], args.aspect)  # bad aspects: before the model loads
    analyzer = load_analyzer(args)
    rows = [{"text": args.texts[0], **p}
            for p in analyzer.predict(args.texts[0], batch_size=args.batch_size, aspects=args.aspect)]
    formatter = Formatter(args.format or "json", analyzer.labels, args.raw_csv, aspects=True)
    if args.output:  # a few rows: written whole (atomically), no progress record to resume from
        try:
            write_text(args.output, formatter.header() + formatter.rows(rows))
        except OSError as exc:  # a full disk: one line
            raise DataError(f"--output {args.output}: cannot write it ({exc.strerror})") from None
        return
    output = Output({})
    output.open(formatter)
    output.write(rows)


def _refuse_ray_flags(args) -> None:
    from qlora_sentiment.core.errors import DataError

    for flag, given in (("--output-dir", args.output_dir), ("--ray-workers", args.ray_workers),
                        ("--format parquet", args.format == "parquet")):
        if given:
            raise DataError(f"{flag} is for --ray (shards written by Ray workers); without it use --output FILE "
                            "and --format json, csv or table")


def _predict_with_ray(args) -> None:
    """--ray: a file or folder labelled by Ray workers into --output-dir shards (labelling/ray_labelling.py).
    Ctrl-C or SIGTERM: one line, exit 130 / 143, no output folder left behind."""
    from qlora_sentiment.core.errors import DataError
    from qlora_sentiment.labelling.output import Interrupted, Signals
    from qlora_sentiment.labelling.ray_labelling import label_with_ray

    refused = [(not args.file, bad_input("ray-without-file").format()),
               (bool(args.texts), "--ray labels --file only; give texts as arguments without --ray"),
               (args.resume, bad_input("ray-with-resume").format()),
               (bool(args.output), "--ray writes shards to --output-dir DIR, not --output FILE"),
               (not args.output_dir, "--ray needs --output-dir DIR (a new or empty folder for the shards)"),
               (args.format in ("json", "table"), (f"--format {args.format}: with --ray use parquet (the default) "
                                                   "or csv"))]
    for bad, message in refused:
        if bad:
            raise DataError(message)
    workers, threads, fmt = args.ray_workers or 2, args.threads or 1, args.format or "parquet"
    if args.ray == "local" and workers * threads > (os.cpu_count() or 1):
        print(f"warning: --ray-workers {workers} x --threads {threads} is more than the {os.cpu_count()} CPU cores "
              "here; workers will compete for them", file=sys.stderr, flush=True)
    with Signals():
        try:
            run = label_with_ray([Path(args.file)], args.model, Path(args.output_dir), base=base_folder(args),
                                 backend=args.backend, fmt=fmt, address=None if args.ray == "local" else args.ray,
                                 workers=workers, batch_size=args.batch_size, threads_per_worker=threads,
                                 column=args.text_column, raw_csv=args.raw_csv,
                                 aspect_column=args.aspect_column or args.aspect_list_column,
                                 listed=bool(args.aspect_list_column))
        except Interrupted as exc:
            print(f"interrupted: nothing written to {args.output_dir}", file=sys.stderr, flush=True)
            sys.exit(128 + exc.signum)
    print(f"labelled {run.rows:,} rows of {run.files} file(s) into {run.shards} {fmt} shard(s) in {args.output_dir}: "
          f"{run.seconds:.1f} s, {run.rows_per_second:,.0f} rows/s with {run.workers} Ray workers", file=sys.stderr)


def _interrupted(args, run) -> str:
    if run.total is None:
        return "interrupted while checking the input; nothing was written"
    written = run.output.rows_written if run.output is not None else 0
    where = args.output or "stdout"
    hint = "; continue with --resume" if args.output and written < run.total else ""
    return f"interrupted: {written:,} of {run.total:,} rows written to {where}{hint}"


def _read_input(args):
    """The texts, from arguments, --file or stdin; or with --aspect-column / --aspect-list-column, an aspect file's
    (text, aspect) pairs, checked against the model's record (its task, its cleaning; the model is not loaded)."""
    from qlora_sentiment.core.errors import DataError
    from qlora_sentiment.cli_inputs import predict_texts
    from qlora_sentiment.problems.aspect_files import bad_input as aspect_problem

    column = args.aspect_column or args.aspect_list_column
    if column is None:
        return predict_texts(args.texts, args.file, args.text_column)
    flag = "--aspect-column" if args.aspect_column else "--aspect-list-column"
    if not args.file or args.texts:
        raise DataError(aspect_problem("aspect-column-without-file").format(flag=flag))
    from qlora_sentiment.labelling.aspectfiles import AspectFile, aspect_record

    return AspectFile.open_pairs(args.file, args.text_column, column, bool(args.aspect_list_column),
                                 aspect_record(args.model))


def _label(args, signals, run) -> None:
    from itertools import islice

    from tqdm import tqdm

    from qlora_sentiment.core.errors import DataError
    from qlora_sentiment.cli_inputs import check_model_folder, warn_about_threads
    from qlora_sentiment.labelling.aspectfiles import AspectFile, label_chunk
    from qlora_sentiment.labelling.output import (CHUNK_BATCHES, FileOutput, Formatter, Output, check_output_folder,
                                                  check_output_path, model_fingerprint)
    from qlora_sentiment.labelling.output_lock import OutputLock

    output = Path(args.output) if args.output else None
    if args.resume and output is None:
        raise DataError(bad_input("predict-resume-without-output").format())
    if output is not None:
        source = Path(args.file) if args.file else None
        check_output_folder(output, source)
        run.lock = OutputLock(output, source).acquire()  # one writer: before anything is read or written
        check_output_path(output, source)  # the write probe, under the lock (it may make FILE and remove it)
    texts = _read_input(args)  # every input error before the model loads
    run.total, pairs = texts.rows, isinstance(texts, AspectFile)
    warn_about_threads(args.threads)
    check_model_folder(args.model, whole_texts=None if pairs else "predict --file without --aspect-column"
                       if args.file else "predict without --aspect")
    column = args.text_column if args.file and Path(args.file).suffix.lower() != ".txt" else None
    settings = {"format": args.format, "text_column": column, "raw_csv": args.raw_csv,
                "batch_size": args.batch_size, "threads": args.threads}
    if pairs:  # recorded (and checked by --resume) for aspect files only: a sentence run's record is as it was
        settings.update(aspect_column=args.aspect_column, aspect_list_column=args.aspect_list_column)
    if output is None:
        run.output = Output(settings)
    else:
        settings.update(model={"path": args.model, "sha256": model_fingerprint(args.model)},
                        input={"name": texts.name, "sha256": texts.sha256, "rows": texts.rows})
        run.output = FileOutput(output, settings, args.resume)
        if run.output.complete:
            print(f"{output}: already complete ({texts.rows:,} rows); nothing to do", file=sys.stderr)
            return
        if run.output.rows_written:
            print(f"{output}: continuing after row {run.output.rows_written:,} of {texts.rows:,}", file=sys.stderr)
    analyzer = load_analyzer(args)
    with signals.deferred():
        run.output.open(Formatter(args.format, analyzer.labels, args.raw_csv, aspects=pairs, numbered=pairs))
    pending = texts.texts(skip=run.output.rows_written)
    chunk = args.batch_size * CHUNK_BATCHES  # the same rows in every run, and as --ray's workers call predict
    piped = bool(args.file) or (not args.texts and not sys.stdin.isatty())  # a terminal's few lines need no bar
    # to a log file (stderr not a terminal) a redraw every 10 s, not ten a second: hours of labelling stay short
    with tqdm(total=texts.rows, initial=run.output.rows_written, unit="pair" if pairs else "text",
              disable=not piped, file=sys.stderr,
              mininterval=0.1 if sys.stderr.isatty() else 10) as run.bar:
        try:
            while part := list(islice(pending, chunk)):
                labelled = label_chunk(analyzer, part, args.batch_size)
                with signals.deferred():
                    run.output.write(labelled)
                run.bar.update(len(part))
        except DataError:  # a bad row on the second pass: the input was cut or edited since the first one
            if texts.unchanged():
                raise
    if not texts.unchanged():  # appended to or edited while it was labelled: not what was checked and recorded
        with signals.deferred():
            run.output.stop()
        where = f"{output} is left incomplete" if output else "the rows written are not all of it"
        raise DataError(bad_input("predict-input-changed").format(name=texts.name, where=where))
    with signals.deferred():
        run.output.finish()
    texts.close()  # stdin's temporary copy goes with it

"""`predict --ray`: label a file, or a folder of files, on a Ray cluster with Ray Data (`pip install 'ray[data]'`).

    label_with_ray([Path("reviews.csv")], "models/export", Path("labelled"), workers=4)

Row identity: the driver reads every input with predict's own readers (textfiles.TextFile: same checks, stripping
and errors, all before Ray starts), so each text is exactly what single-process predict scores (Ray's read_csv or
read_json parse quoted newlines, BOMs, blank rows their own way). Every row carries (file, row), its 0-based index
in that file. Blocks of whole predict chunks (batch_size x 8 rows of one file) go to the object store one at a
time (the driver never holds a whole input; the store spills to disk), and a worker calls SentimentAnalyzer.predict
on exactly the rows the CLI passes in one call: the same forward passes, so the same numbers (with the same
--batch-size, threads and backend).

Order: DataContext.preserve_order keeps blocks in input order and shards are named part-00000, ... by write task:
read in name order, the rows come in input order; (file, row) is the key to sort or join on.

Model shipping: workers get the model as an absolute path and load it once each (a callable class). On several
nodes the model folder and --output-dir must be at the same path on every node (NFS, a shared volume, or copied);
runtime_env's working_dir caps uploads far below an export's size. Nodes need this project installed (same lock or
image). Shards go to a hidden sibling folder, renamed to --output-dir once every row is written: a failed or
interrupted run leaves no half-written output.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from qlora_sentiment.core.errors import DataError, QloraError
from qlora_sentiment.problems.predict import bad_input
from qlora_sentiment.labelling.aspectfiles import AspectFile, Pair, aspect_record, label_chunk
from qlora_sentiment.labelling.output import CHUNK_BATCHES, neutralise
from qlora_sentiment.labelling.textfiles import SUFFIXES, TextFile

FORMATS = ("parquet", "csv")
BLOCK_ROWS = 1024  # at most this many rows per Ray block (whole chunks): what one worker call labels


@dataclass
class RayRun:
    rows: int
    files: int
    shards: int
    seconds: float  # from connecting to the last shard written
    workers: int

    rows_per_second = property(lambda self: self.rows / self.seconds if self.seconds else 0.0)


def input_files(inputs: list[Path]) -> list[Path]:
    """Files given, and a folder's .txt/.csv/.tsv/.jsonl/.parquet files (not its subfolders), sorted by name."""
    files = []
    for path in map(Path, inputs):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES
                           and not p.name.startswith("."))
            if not found:
                raise DataError(f"--file {path}: a folder with no {', '.join(SUFFIXES)} files")
            files += found
        else:
            files.append(path)
    return files


def check_output_dir(out_dir: Path) -> None:
    """A new or empty folder in an existing one: shards never mix with an earlier run's."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"--output-dir {out_dir}: not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise DataError(bad_input("ray-output-dir-not-empty").format(folder=out_dir))
    if not out_dir.absolute().parent.is_dir():
        raise DataError(f"--output-dir {out_dir}: no folder {out_dir.absolute().parent}; make it first")


def import_ray():
    try:
        import ray
        import ray.data  # ray without its data extra fails here: pyarrow, pandas, fsspec
    except ImportError as exc:
        raise QloraError(f"--ray needs Ray Data ({exc}): pip install 'ray[data]'") from None
    # Ray Data's INFO lines (plans, progress every 10 s when stderr is no terminal) stay in the session's
    # ray-data.log; the console gets warnings and errors, less "no available CPUs, the job will hang": our workers
    # hold the CPUs by design (the pool is checked to fit) and the shard writers need none
    for handler in logging.getLogger("ray.data").handlers:
        if type(handler).__name__ != "SessionFileHandler":
            handler.setLevel(max(handler.level, logging.WARNING))
            handler.addFilter(lambda record: "not have any available CPUs" not in record.getMessage())
    return ray


def _reachable(address: str) -> None:
    """ray.init retries an unreachable host:port for minutes; a 5 s TCP connect says so at once."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" or a form Ray reads itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise QloraError(bad_input("ray-cluster-unreachable").format(address=address, reason=exc.strerror or exc)) \
            from None


def connect(ray, address: str | None, cpus: int) -> bool:
    """Join the cluster at `address` ("auto", host:port, ray://host:10001), or start a local one of `cpus` CPUs.
    An existing connection (a test's, a notebook's) is used as it is. True: this call connected (and disconnects)."""
    if address:
        _reachable(address)
    if ray.is_initialized():
        return False
    local = {} if address else {"num_cpus": max(cpus, os.cpu_count() or 1)}
    main = threading.current_thread() is threading.main_thread()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        ray.init(address=address, logging_level=logging.WARNING, include_dashboard=False, **local)
    except (ConnectionError, ValueError) as exc:  # no cluster at "auto"; ray:// without ray[client]
        raise QloraError(f"--ray {address}: {str(exc).splitlines()[0]}") from None
    for signum, handler in handlers.items():  # Ray's core worker takes SIGTERM (a stack dump, abort): give it back
        if handler is not None:
            signal.signal(signum, handler)
    return True


def _blocks(ray, texts: list[TextFile], rows_per_block: int):
    """Object refs of Arrow tables (file, row, text), in input order, each whole chunks of one file."""
    import pyarrow as pa

    refs = []
    for text_file in texts:
        rows = iter(enumerate(text_file.texts()))
        while part := list(itertools.islice(rows, rows_per_block)):
            columns = {"file": [text_file.name] * len(part), "row": [i for i, _ in part]}
            if isinstance(text_file, AspectFile):  # pairs: their input row, and their place (what chunks count)
                columns = {**columns, "pair": columns["row"], "row": [p.row for _, p in part],
                           "aspect": [p.aspect for _, p in part]}
            refs.append(ray.put(pa.table({**columns, "text": [p.text if isinstance(p, Pair) else p
                                                              for _, p in part]})))
    return refs


class Labeller:
    """One per Ray worker: the model loads once, in __init__, then labels every block the worker is given."""

    def __init__(self, model: str, base: str | None, backend: str, threads: int, batch_size: int, chunk: int,
                 neutralise_csv: bool):
        from qlora_sentiment.core.runtime import configure_environment, setup_torch

        configure_environment()  # a remote node's worker has not run the CLI's setup
        # as predict_command.load_analyzer: torch's threads (ONNX Runtime gets `threads` below)
        setup_torch(threads, seed=None)  # scoring draws no random number
        from qlora_sentiment.api.analyzer import SentimentAnalyzer

        self.analyzer = SentimentAnalyzer.from_pretrained(model, base=base, backend=backend, threads=threads)
        self.batch_size, self.chunk, self.neutralise_csv = batch_size, chunk, neutralise_csv

    def __call__(self, batch):
        import pyarrow as pa

        files, rows, texts = (batch[c].to_pylist() for c in ("file", "row", "text"))
        aspects = batch["aspect"].to_pylist() if "aspect" in batch.column_names else None
        place = batch["pair"].to_pylist() if aspects else rows  # where in its file's pairs (or texts) a row is
        items = [Pair(*item) for item in zip(rows, texts, aspects)] if aspects else texts
        predictions = []
        # one call per CLI chunk of a file (predict, or predict_pairs): the same forward passes as single-process
        for _, group in itertools.groupby(range(len(rows)), key=lambda i: (files[i], place[i] // self.chunk)):
            group = list(group)
            predictions += label_chunk(self.analyzer, items[group[0]:group[-1] + 1], self.batch_size)
        labels = [p["label"] for p in predictions]
        if self.neutralise_csv:  # as predict's CSV: a cell a spreadsheet would run as a formula gets a '
            texts, labels = [neutralise(t) for t in texts], [neutralise(lab) for lab in labels]
            aspects = aspects and [neutralise(a) for a in aspects]
        columns = {"file": batch["file"], "row": batch["row"], "text": texts,
                   **({"aspect": aspects} if aspects else {}), "label": labels}
        for name in self.analyzer.labels:
            columns[f"p_{name}"] = pa.array([p["probabilities"][name] for p in predictions], pa.float64())
        return pa.table(columns)


def _shard_names(fmt: str):
    from ray.data.datasource import FilenameProvider

    class Names(FilenameProvider):
        """part-00000.parquet, ...: write tasks follow input order (preserve_order), so do the names."""

        def get_filename_for_task(self, write_uuid, task_index):
            return f"part-{task_index:05d}.{fmt}"

    return Names(file_format=fmt)


def label_with_ray(inputs: list[Path], model: str | Path, out_dir: Path, *, base: str | Path | None = None,
                   backend: str = "auto", fmt: str = "parquet", address: str | None = None, workers: int = 2,
                   batch_size: int = 16, threads_per_worker: int = 1, column: str = "text",
                   rows_per_shard: int = 100_000, raw_csv: bool = False, aspect_column: str | None = None,
                   listed: bool = False) -> RayRun:
    """Label every row of `inputs` (files, or folders of files) into `fmt` shards in `out_dir`: columns file, row,
    text, label, p_<label>. `address`: an existing cluster; None: a local one (or the connection already open).
    `aspect_column` (an aspect model; `listed`: each cell a list): one row per (text, aspect), an aspect column."""
    from qlora_sentiment.cli_inputs import check_model_folder

    if fmt not in FORMATS:
        raise DataError(f"--format {fmt}: with --ray use {' or '.join(FORMATS)}")
    out_dir = Path(out_dir).absolute()  # workers run in another folder, maybe on another machine
    check_output_dir(out_dir)
    record = aspect_record(model) if aspect_column else None
    # every input error before Ray starts
    texts = [AspectFile.open_pairs(path, column, aspect_column, listed, record) if record else
             TextFile.open(path, column) for path in input_files(inputs)]
    try:
        check_model_folder(model, whole_texts=None if record else "predict --ray without --aspect-column")
        ray = import_ray()
        started = time.perf_counter()
        connected = connect(ray, address, workers * threads_per_worker)
        options = ray.data.DataContext.get_current().execution_options
        ordered, options.preserve_order = options.preserve_order, True  # blocks leave each stage in input order
        try:
            cpus = ray.cluster_resources().get("CPU", 0)
            if workers * threads_per_worker > cpus:  # a pool that cannot be placed would wait forever
                raise QloraError(f"--ray-workers {workers} x --threads {threads_per_worker} need "
                                 f"{workers * threads_per_worker} CPUs; the Ray cluster has {cpus:g}")
            chunk, rows = batch_size * CHUNK_BATCHES, sum(t.rows for t in texts)
            # 4+ blocks a worker when the input allows: a small job is shared out too, and evenly at its end
            refs = _blocks(ray, texts, chunk * max(1, min(BLOCK_ROWS, rows // (4 * workers)) // chunk))
            settings = {"model": str(Path(model).absolute()), "base": str(Path(base).absolute()) if base else None,
                        "backend": backend, "threads": threads_per_worker, "batch_size": batch_size, "chunk": chunk,
                        "neutralise_csv": fmt == "csv" and not raw_csv}
            labelled = ray.data.from_arrow_refs(refs).map_batches(
                Labeller, batch_size=None, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=threads_per_worker, fn_constructor_kwargs=settings)
            shards = _write(ray, labelled, fmt, out_dir, workers, rows_per_shard)
            return RayRun(rows, len(texts), shards, time.perf_counter() - started, workers)
        finally:
            options.preserve_order = ordered  # the caller's context (a notebook's, a test's) as it was
            if connected:
                ray.shutdown()
    finally:
        for text_file in texts:
            text_file.close()


def _write(ray, labelled, fmt: str, out_dir: Path, workers: int, rows_per_shard: int) -> int:
    """Shards into a hidden sibling folder, renamed to `out_dir` once all are written; how many there are."""
    partial = out_dir.with_name(f".{out_dir.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        # OVERWRITE: the names need no write id (the folder is this run's own); no CPU: writing is light next to
        # labelling, and a writer waiting behind the workers for a CPU would hold every labelled block in memory
        getattr(labelled, f"write_{fmt}")(str(partial), filename_provider=_shard_names(fmt),
                                          min_rows_per_file=rows_per_shard, ray_remote_args={"num_cpus": 0},
                                          concurrency=workers, mode=ray.data.SaveMode.OVERWRITE)
        shards = sum(1 for p in partial.iterdir() if p.suffix == f".{fmt}")
        if out_dir.is_dir():
            out_dir.rmdir()  # empty (checked), and os.replace needs it gone
        os.replace(partial, out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return shards

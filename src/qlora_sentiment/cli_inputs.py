"""What `predict` and `serve` check before any model loads: argument values, the texts (arguments, --file or
stdin) and the model folder. Every problem is one line naming the argument, file and line."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Iterator

from qlora_sentiment.core.errors import DataError, ModelError
from qlora_sentiment.problems.predict import bad_input
from qlora_sentiment.api.validation import MAX_TEXT_CHARS, text_problem
from qlora_sentiment.labelling.textfiles import TextFile


class OneLineParser(argparse.ArgumentParser):
    """argparse, keeping the CLI's error contract: one line `error: <command>: <message>`, exit code 2."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def _number(text: str, kind):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def at_least(minimum, kind=int, maximum=None):
    """An argparse `type`: a number in [minimum, maximum]."""
    def parse(text: str):
        value = _number(text, kind)
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"in {minimum}..{maximum}" if maximum is not None else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value
    return parse


port_number = at_least(1, int, 65535)
max_chars = at_least(1, int, MAX_TEXT_CHARS)


def positive_seconds(text: str) -> float:
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def warn_about_threads(threads: int | None) -> None:
    cores = os.cpu_count() or 1
    if threads is not None and threads > cores:
        print(f"warning: --threads {threads} is more than the {cores} CPU cores here; torch threads will compete "
              f"for them (slower, not faster)", file=sys.stderr, flush=True)


_ARGV_ESCAPE = re.compile("[\udc80-\udcff]")  # bytes that are not UTF-8, as Python decodes argv (surrogateescape)


class TextArguments:
    """Texts given as arguments, checked: the same interface as textfiles.TextFile."""

    name, path = "arguments", None

    def __init__(self, texts: list[str]):
        for i, text in enumerate(texts, 1):
            bad = _ARGV_ESCAPE.search(text)
            if bad:
                raise DataError(bad_input("predict-argv-not-utf8").format(index=i, byte=ord(bad.group()) - 0xDC00,
                                                                             position=bad.start() + 1))
            problem = text_problem(text.strip())
            if problem:
                raise DataError(f"argument {i}: {problem}")
        self._texts = [text.strip() for text in texts]  # scored without surrounding whitespace, as a file's rows
        self.rows = len(self._texts)
        self.sha256 = hashlib.sha256(json.dumps(self._texts).encode()).hexdigest()

    def texts(self, skip: int = 0) -> Iterator[str]:
        return iter(self._texts[skip:])

    def unchanged(self) -> bool:
        return True  # held in memory

    def close(self) -> None:
        pass


def predict_texts(texts: list[str], file: str | None, column: str) -> TextFile | TextArguments:
    """The texts to label, from the arguments, --file or stdin, each row one text, in order: every row checked
    and counted now (nothing kept in memory but arguments), read lazily by `.texts()`."""
    if file and texts:
        raise DataError("give texts as arguments or --file, not both")
    if file:
        return TextFile.open(file, column)
    if texts:
        return TextArguments(texts)
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None or sys.stdin.closed:
        raise DataError(bad_input("predict-stdin-closed").format())
    return TextFile.from_stream(stream, "stdin")


def check_model_folder(folder: str | Path, whole_texts: str | None = None) -> None:
    """An adapter or export folder that can load: its weights are there and its record reads. `whole_texts`: what
    labels texts without aspects here (`--file`), which an aspect-task model cannot."""
    from qlora_sentiment.model.record import RECORD_FILE, read_record

    folder = Path(folder)
    if (folder / RECORD_FILE).is_file():
        if (folder / "adapter_config.json").is_file():
            kind, wanted = "adapter", "adapter_model.safetensors"
            weights = [p for p in (folder / wanted, folder / "adapter_model.bin") if p.is_file()]
        else:
            kind, wanted = "export", "model.safetensors"
            weights = [*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")]
        if not weights:
            raise ModelError(f"{folder}: the {kind} has no weights ({wanted} is missing); copy the whole folder, "
                             "or rebuild it with dvc repro")
    task = read_record(folder).task
    if whole_texts and task != "sentence":
        raise DataError(bad_input("aspect-model-without-aspects").format(folder=folder, task=task,
                                                                           whole_texts=whole_texts))

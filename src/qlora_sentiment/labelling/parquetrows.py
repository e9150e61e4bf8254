"""The rows of a Parquet input to `predict --file`: only the columns asked for, a batch at a time (pyarrow, which
`datasets` brings), so memory does not grow with the file. Parquet has no lines: errors name the data row, counted
from 1, where the other formats name the line."""

from __future__ import annotations

from typing import IO, Iterator

from qlora_sentiment.api.validation import describe
from qlora_sentiment.core.errors import DataError
from qlora_sentiment.problems.predict import bad_input

BATCH_ROWS = 1024


def parquet_rows(stream: IO[bytes], name: str, column: str, extra=None, no_column=None) -> Iterator[tuple]:
    """(row number from 1, text, the `extra` column's value as pyarrow gives it: a str, a list, None) of each row.
    `extra`: (column, flag); `no_column(name, column, columns, flag)`: the message for a missing extra column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    stream.seek(0)
    try:
        parquet = pq.ParquetFile(stream)
        columns = parquet.schema_arrow.names
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{name}: not a Parquet file ({str(exc).splitlines()[0]})") from None
    if column not in columns:
        raise DataError(f"{name}: no column '{column}' (columns: {columns}); use --text-column")
    if extra and extra[0] not in columns:
        raise DataError(no_column(name, extra[0], columns, extra[1]))
    number = 0
    try:
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=[column, *([extra[0]] if extra else [])]):
            texts = batch.column(0).to_pylist()
            values = batch.column(1).to_pylist() if extra else [None] * len(texts)
            for text, value in zip(texts, values):
                number += 1
                if not isinstance(text, str):
                    raise DataError(bad_input("predict-nan-text").format(name=name, line=number, column=column,
                                                                         what=describe(text)))
                yield number, text, value
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{name}: row {number + 1}: cannot read it as Parquet ({str(exc).splitlines()[0]})") from None

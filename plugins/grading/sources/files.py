"""The files of a drop: finding them (a local folder or a URL), and reading one into a frame.

Every row read keeps where it came from (``__file``, ``__row``), so errors name the file and row.
"""

from __future__ import annotations

import codecs
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grading import yamlfile
from grading.convert import SourceDataError
from grading.sources.model import PERIOD, PERIOD_DIRECTIVES, ReadOptions

log = logging.getLogger(__name__)

_PERIOD_STEPS = {"year": pd.DateOffset(years=1), "month": pd.DateOffset(months=1),
                 "day": pd.DateOffset(days=1), "hour": pd.DateOffset(hours=1)}
_COMPRESSION = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".zst": "zstd", ".lz4": "lz4"}


@dataclass(frozen=True)
class File:
    """One file of a drop, with the period its name says it holds (a {period:...} pattern)."""

    name: str  # relative to the location, with forward slashes
    path: Any  # pathlib.Path or ObjectStoragePath
    period: tuple[pd.Timestamp, pd.Timestamp] | None


class FileStore:
    """The files of a drop: a local folder (pathlib) or a URL through Airflow's ObjectStoragePath."""

    def __init__(self, location: str, connection: str | None):
        self.location = location
        if "://" in location:
            from airflow.sdk import ObjectStoragePath  # only remote drops pay for the import

            self.root = ObjectStoragePath(location, conn_id=connection)
            self.remote = True
        else:
            self.root = Path(location)
            self.remote = False
            if not self.root.is_dir():
                raise SourceDataError(f"source location {location} is not a folder")

    def _name(self, path: Any) -> str:
        if self.remote:
            return path.path[len(self.root.path):].lstrip("/")
        return path.relative_to(self.root).as_posix()

    def files(self, pattern: str) -> list[File]:
        """Every file matching ``pattern`` (a glob, optionally with one {period:FORMAT}), sorted by name."""
        match = PERIOD.search(pattern)
        glob = PERIOD.sub("*", pattern)
        regex, fmt = None, None
        if match:
            fmt = match.group(1)
            piece = re.sub(r"%.", lambda d: PERIOD_DIRECTIVES[d.group(0)][0], re.escape(fmt))
            regex = re.compile(_glob_regex(pattern[:match.start()]) + f"(?P<period>{piece})"
                               + _glob_regex(pattern[match.end():]) + r"\Z")
            unit = min((PERIOD_DIRECTIVES[d][1] for d in re.findall(r"%.", fmt)),
                       key=("hour", "day", "month", "year").index)
        if yamlfile.escapes(pattern):
            raise SourceDataError(f"file pattern {pattern!r} leaves the source location {self.location}")
        found = []
        for path in self.root.glob(glob):
            if not self.remote and not path.resolve().is_relative_to(self.root.resolve()):
                raise SourceDataError(f"{self._name(path)} leads outside the source location {self.location} "
                                      "(a link?): files are read from inside it only")
            name = self._name(path)
            period = None
            if regex is not None:
                hit = regex.match(name)
                if not hit:
                    continue
                try:
                    begin = pd.Timestamp(datetime.strptime(hit.group("period"), fmt))
                except ValueError:
                    log.warning("skipping %s: %r does not match {period:%s}", name, hit.group("period"), fmt)
                    continue
                period = (begin, begin + _PERIOD_STEPS[unit])
            found.append(File(name, path, period))
        return sorted(found, key=lambda f: f.name)

    def open(self, file: File) -> Any:
        """A readable binary stream, decompressed by the file name's suffix."""
        import pyarrow as pa

        compression = _COMPRESSION.get(Path(file.name).suffix.lower())
        if not self.remote:
            return pa.input_stream(str(file.path), compression=compression)
        return pa.input_stream(file.path.open("rb"), compression=compression)


def _glob_regex(glob: str) -> str:
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append(r"(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return "".join(out)


def _arrow_encoding(encoding: str) -> str:
    """Arrow reads UTF-8 natively and skips a byte-order mark itself; other encodings are transcoded."""
    name = codecs.lookup(encoding).name
    return "utf8" if name in ("utf-8", "utf-8-sig") else name


def _encoding_problem(store: FileStore, file: File, encoding: str) -> str:
    """Find where a file stops being ``encoding``: the line and the offending bytes."""
    if codecs.lookup(encoding).name == "utf-8-sig":  # a byte-order mark is valid UTF-8; keep offsets exact
        encoding = "utf-8"
    decoder = codecs.getincrementaldecoder(encoding)()
    newline = b"\n"
    line, offset = 1, 0
    with store.open(file) as stream:
        while chunk := stream.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                bad = chunk[exc.start:exc.start + 4].hex(" ")
                at = line + chunk[:exc.start].count(newline)
                return f"line {at} (byte offset {offset + exc.start}, bytes {bad}) is not valid {encoding}"
            line += chunk.count(newline)
            offset += len(chunk)
    return f"it is not valid {encoding}"


def read_file(store: FileStore, file: File, columns: list[str], options: ReadOptions,
               lines: dict[str, str]) -> pd.DataFrame:
    """The named columns of one CSV or Parquet file as text (CSV) or native types (Parquet)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if options.format == "parquet":
            with store.open(file) as stream:
                names = pq.read_schema(stream).names
                check_columns(file.name, names, columns, lines)
            with store.open(file) as stream:
                frame = pq.read_table(stream, columns=columns).to_pandas()
        else:
            read = pacsv.ReadOptions(encoding=_arrow_encoding(options.encoding))
            parse = pacsv.ParseOptions(delimiter=options.delimiter, quote_char=options.quote, newlines_in_values=True)
            convert = pacsv.ConvertOptions(
                include_columns=columns, column_types={c: pa.string() for c in columns},
                null_values=list(options.null_values), strings_can_be_null=True, quoted_strings_can_be_null=True,
            )
            with store.open(file) as stream:
                table = pacsv.read_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
            frame = table.to_pandas()
    except KeyError:  # pyarrow: a column in include_columns is not in the file
        with store.open(file) as stream:
            names = pacsv.open_csv(stream, read_options=pacsv.ReadOptions(
                encoding=_arrow_encoding(options.encoding)), parse_options=pacsv.ParseOptions(
                delimiter=options.delimiter, quote_char=options.quote, newlines_in_values=True)).schema.names
        check_columns(file.name, names, columns, lines)
        raise
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        if "UTF8" in str(exc) or isinstance(exc, UnicodeDecodeError) or "decode" in str(exc):
            where = _encoding_problem(store, file, options.encoding)
            raise SourceDataError(
                f"{file.name}: declared encoding {options.encoding}, but {where}. Declare the file's real "
                "encoding in the mapping (encoding: latin-1, cp1252, utf-16, ...)") from exc
        raise SourceDataError(f"{file.name}: not a {options.format.upper()} file the mapping can read "
                              f"(delimiter {options.delimiter!r}): {exc}") from exc
    if options.format == "csv":
        for column in columns:  # exports pad values with blanks; an all-blank value is missing
            stripped = frame[column].str.strip()
            frame[column] = stripped.where(stripped != "")
    frame["__file"] = file.name
    frame["__row"] = np.arange(1, len(frame) + 1, dtype="int64")
    return frame


def check_columns(where: str, names: list[str], wanted: Iterable[str], lines: dict[str, str]) -> None:
    """Raise SourceDataError naming the first ``wanted`` column not among ``names`` (and the mapping line)."""
    missing = [c for c in wanted if c not in names]
    if not missing:
        return
    column = missing[0]
    near = [n for n in names if n.strip().lower() == column.strip().lower()]
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    bom = " The first header starts with a byte-order mark: declare encoding: utf-8-sig." \
        if names and names[0].startswith("\ufeff") else ""
    raise SourceDataError(f"{where}: the mapping names column {column!r}{hint} ({lines.get(column, 'mapping')}), "
                          f"which it does not have. Its columns: {', '.join(names)}.{bom}")

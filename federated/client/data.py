"""A partner's local dataset: the manifest that describes it and the loader that checks it.

The manifest names the feature columns, the label column, an optional subgroup column and
the SHA-256 of the data file. The file is read with pyarrow in batches (`scan_partner_data`),
so a caller that only needs sums (evaluation) holds one batch at a time, never the file:
every batch is checked (columns, numbers, labels) before it is yielded, and the SHA-256 of
the file's bytes is checked in the same pass, after the last batch. A consumer must finish
the pass before it uses what it computed: a file that does not match its manifest raises
`DataError` at the end. An evaluation task uses a `PartnerFile` (`open_partner_file`: the record
count from a cheap pre-pass, needed by the contract and the privacy plan before the task runs; the
pass checks it again). `load_partner_data` gathers the batches into arrays for callers that need
the whole dataset (training); `check_partner_file` checks a file in one bounded pass (the node's
start-up check). Nothing here ever sends data anywhere.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

import numpy as np
from pydantic import Field, field_validator

from accord.config_files import load_toml_model
from accord.models import Strict
from federated.errors import ConfigError, DataFileError

if TYPE_CHECKING:
    import pyarrow as pa

# A batch holds up to BATCH_RECORDS records (8 MB of float32 features at 30 features). pyarrow's
# streaming CSV reader reads up to 32 blocks ahead, so the block stays small: 32 x 1 MiB.
# Memory is bounded by the batch and the read-ahead, not by the file.
BATCH_RECORDS = 65_536
CSV_BLOCK_BYTES = 1 << 20
_CHUNK = 1 << 20


class DataSnapshot(Strict):
    """A later snapshot of the same dataset (same columns), declared for monitoring studies: its number
    (1, 2, ... in the order declared), its file (relative to the manifest) and that file's own SHA-256."""

    number: int = Field(ge=1)
    path: Path
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    declared: str = ""  # when it was taken, for people (e.g. "2026-11-01")


class DataManifest(Strict):
    """What a partner declares about one data file (TOML)."""

    dataset_id: str
    features: list[str] = Field(min_length=1)
    label: str
    # "class": non-negative integer class labels; "number": any finite number (a regression study's outcome).
    label_type: Literal["class", "number"] = "class"
    subgroup: str | None = None
    sha256: str
    release_per_partner: bool = False
    description: str = ""
    snapshots: list[DataSnapshot] = Field(default_factory=list)

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("must be 64 lowercase hex characters")
        return value

    @field_validator("features")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("feature columns must be distinct")
        return value

    def columns(self) -> list[str]:
        """Every column the manifest names: features, label, then the subgroup if any."""
        return [*self.features, self.label, *([self.subgroup] if self.subgroup else [])]


@dataclass(frozen=True)
class DataBatch:
    """Consecutive checked records: features float32 [n, f], labels (integer classes, or float64 numbers
    when the manifest's label_type is "number"), optional subgroups."""

    features: np.ndarray
    labels: np.ndarray
    subgroups: np.ndarray | None
    first_record: int  # index in the file of the batch's first record (0-based)

    @property
    def size(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class PartnerData:
    """A loaded, checked dataset: features float32 [n, f], integer labels, optional subgroups."""

    features: np.ndarray
    labels: np.ndarray
    subgroups: np.ndarray | None
    manifest: DataManifest
    data_sha256: str

    @property
    def size(self) -> int:
        return int(self.labels.shape[0])


def load_manifest(path: Path) -> DataManifest:
    """Validate a manifest file; raise `ConfigError` naming the file and field."""
    return load_toml_model(Path(path), DataManifest, error=ConfigError)


class _HashingReader(io.RawIOBase):
    """A read-only stream that hashes every byte pyarrow reads through it, in order."""

    def __init__(self, handle: BinaryIO) -> None:
        super().__init__()
        self._handle = handle
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self.digest.update(chunk)
        return chunk

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def finish(self) -> str:
        """Hash what nobody read yet (after an early stop) and return the file's SHA-256."""
        while self.read(_CHUNK):
            pass
        return self.digest.hexdigest()


def _where(path: Path, record: int) -> str:
    # CSV: the line as a spreadsheet shows it (header is line 1); Parquet: the 0-based record.
    return f"line {record + 2}" if path.suffix.lower() == ".csv" else f"record {record}"


def _not_finite(path: Path, name: str, values: np.ndarray, first_record: int) -> DataFileError:
    row = first_record + int(np.flatnonzero(~np.isfinite(values))[0])
    return DataFileError(f"{path}: column {name!r} holds NaN or infinite values ({_where(path, row)})")


def _float_column(path: Path, name: str, column: pa.ChunkedArray, first_record: int) -> np.ndarray:
    """The column as float64 (not yet checked for NaN and infinity)."""
    import pyarrow as pa

    if column.null_count:
        row = first_record + int(np.flatnonzero(np.asarray(column.is_null()))[0])
        raise DataFileError(f"{path}: column {name!r} holds NaN or missing values ({_where(path, row)})")
    try:
        if column.type != pa.float64():  # CSV columns are read as float64 already; Parquet may hold others
            column = column.cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataFileError(f"{path}: column {name!r} holds non-numeric values") from None
    return _float64_values(column)


# pyarrow's own `to_numpy` imports pandas (~0.7 s of CPU), and a node pays its imports in every
# ClientApp process, once per task: these two read the columns' buffers instead.
def _float64_values(column: pa.ChunkedArray) -> np.ndarray:
    """A float64 column without nulls as one (writable) numpy array, copied from its chunks' data buffers."""
    parts = [np.frombuffer(chunk.buffers()[1], dtype=np.float64, count=len(chunk), offset=chunk.offset * 8)
             for chunk in column.chunks if len(chunk)]
    return np.concatenate(parts) if parts else np.empty(0)


def _string_values(column: pa.ChunkedArray) -> np.ndarray:
    """A string column as a numpy object array of Python strings (None where null)."""
    import pyarrow.compute as pc

    if column.null_count or not len(column):
        return np.asarray(column.to_pylist(), dtype=object)
    encoded = pc.dictionary_encode(column.combine_chunks())
    indices = encoded.indices
    codes = np.frombuffer(indices.buffers()[1], dtype=indices.type.to_pandas_dtype(), count=len(indices),
                          offset=indices.offset * indices.type.bit_width // 8)
    return np.asarray(encoded.dictionary.to_pylist(), dtype=object)[codes]


def _batch(path: Path, manifest: DataManifest, batch: pa.Table, first_record: int) -> DataBatch:
    import pyarrow as pa

    features = np.empty((batch.num_rows, len(manifest.features)), dtype=np.float32)
    for j, name in enumerate(manifest.features):
        features[:, j] = _float_column(path, name, batch.column(name), first_record)
    if not np.isfinite(features).all():  # one check for all columns (a float64 beyond float32's range too)
        column = int(np.flatnonzero(~np.isfinite(features).all(axis=0))[0])
        raise _not_finite(path, manifest.features[column], features[:, column], first_record)
    labels_float = _float_column(path, manifest.label, batch.column(manifest.label), first_record)
    if not np.isfinite(labels_float).all():
        raise _not_finite(path, manifest.label, labels_float, first_record)
    labels = labels_float if manifest.label_type == "number" else labels_float.astype(np.int64)
    bad = (labels != labels_float) | (labels < 0) if manifest.label_type == "class" else np.zeros(0, bool)
    if bad.any():
        row = first_record + int(np.flatnonzero(bad)[0])
        raise DataFileError(
            f"{path}: label column {manifest.label!r} must hold non-negative integers ({_where(path, row)})"
        )
    subgroups = None
    if manifest.subgroup:
        column = batch.column(manifest.subgroup)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            subgroups = _string_values(column)
        else:  # e.g. integer codes in Parquet: named as Python writes them, as before
            subgroups = np.asarray([str(value) for value in column.to_pylist()], dtype=object)
    return DataBatch(features, labels, subgroups, first_record)


def _csv_problem(path: Path, wanted: list[str]) -> str | None:
    """The first ragged row or non-numeric value, located (the slow reader, only after pyarrow refused)."""
    numeric = set(wanted)
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            numeric_index = [(i, name) for i, name in enumerate(header) if name in numeric]
            for line_number, row in enumerate(reader, start=2):
                if len(row) != len(header):
                    return f"line {line_number}: {len(row)} fields, header has {len(header)}"
                for i, name in numeric_index:
                    try:
                        float(row[i])
                    except ValueError:
                        return f"column {name!r} holds non-numeric values (line {line_number}: {row[i]!r})"
    except (UnicodeDecodeError, StopIteration):
        return "not a CSV file with a header row"
    return None


def _csv_batches(path: Path, manifest: DataManifest, stream: _HashingReader) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    wanted = manifest.columns()
    types = {name: pa.float64() for name in [*manifest.features, manifest.label]}
    if manifest.subgroup:
        types[manifest.subgroup] = pa.string()
    # Quoted values may hold line breaks, as the csv module allowed before.
    parse = pcsv.ParseOptions(newlines_in_values=True)
    convert = pcsv.ConvertOptions(
        column_types=types, include_columns=wanted, null_values=[], strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    try:
        reader = pcsv.open_csv(stream, read_options=pcsv.ReadOptions(block_size=CSV_BLOCK_BYTES), parse_options=parse,
                                 convert_options=convert)
    except pa.ArrowKeyError:  # pyarrow names one column missing from include_columns; name them all
        header = _csv_header(path)
        missing = [name for name in wanted if name not in header]
        raise DataFileError(f"{path}: columns named in the manifest are missing: {missing}") from None
    except pa.ArrowInvalid as exc:
        raise _csv_error(path, manifest, exc) from None
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            raise _csv_error(path, manifest, exc) from None
        yield batch


def _csv_error(path: Path, manifest: DataManifest, exc: Exception) -> DataFileError:
    if "Empty CSV file" in str(exc):
        return DataFileError(f"{path}: not a CSV file with a header row")
    located = _csv_problem(path, [*manifest.features, manifest.label])
    return DataFileError(f"{path}: {located or exc}")


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return next(csv.reader(handle))
    except (UnicodeDecodeError, StopIteration):
        return []


def _parquet_batches(path: Path, manifest: DataManifest, handle: BinaryIO, batch_records: int) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa
    import pyarrow.parquet as pq  # only partners with Parquet data pay for the import

    try:
        parquet = pq.ParquetFile(handle)
    except pa.ArrowException as exc:
        raise DataFileError(f"{path}: not a readable Parquet file: {exc}") from None
    missing = [name for name in manifest.columns() if name not in parquet.schema_arrow.names]
    if missing:
        raise DataFileError(f"{path}: columns named in the manifest are missing: {missing}")
    try:
        yield from parquet.iter_batches(batch_size=batch_records, columns=manifest.columns())
    except pa.ArrowException as exc:  # a damaged row group: the hash matched, so the file was written so
        raise DataFileError(f"{path}: not a readable Parquet file: {exc}") from None


def _check_hash(path: Path, digest: str, manifest: DataManifest) -> None:
    if digest != manifest.sha256:
        raise DataFileError(f"{path}: SHA-256 {digest} does not match the manifest's sha256 {manifest.sha256}")


def _tables(batches: Iterator[pa.RecordBatch], records: int) -> Iterator[pa.Table]:
    """Record batches regrouped, without copying, into tables of `records` rows (the last one shorter)."""
    import pyarrow as pa

    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        while rows >= records:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, records)
            rest = table.slice(records)
            pending, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(pending)


def scan_partner_data(
    data_path: Path, manifest: DataManifest, *, batch_records: int = BATCH_RECORDS
) -> Generator[DataBatch, None, int]:
    """Checked batches of `data_path`; `DataError` saying what is wrong, the hash checked by the end.
    The generator returns the number of records it read (`yield from` hands it over).

    A wrong hash takes precedence over every other error: after a bad value the rest of the
    file is still hashed, so a file that was changed is reported as changed. CSV bytes are
    hashed as pyarrow reads them; a Parquet file (read out of order by design) is hashed
    through the same open handle just before its batches are read.
    """
    data_path = Path(data_path)
    suffix = data_path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise DataFileError(f"{data_path}: unsupported data format {data_path.suffix!r} (use .csv or .parquet)")
    try:
        handle = open(data_path, "rb", buffering=0)  # noqa: SIM115 (the generator owns it: closed below)
    except FileNotFoundError:
        raise DataFileError(f"{data_path}: data file not found") from None
    except OSError as exc:
        raise DataFileError(f"{data_path}: cannot read: {exc.strerror}") from None
    with handle:
        stream = _HashingReader(handle)
        if suffix == ".parquet":
            _check_hash(data_path, stream.finish(), manifest)
            handle.seek(0)
            batches = _parquet_batches(data_path, manifest, handle, batch_records)
        else:
            batches = _csv_batches(data_path, manifest, stream)
        records = 0
        try:
            for table in _tables(batches, batch_records):
                if table.num_rows:
                    checked = _batch(data_path, manifest, table, records)
                    records += checked.size
                    yield checked
        except Exception:
            if suffix == ".csv":
                _check_hash(data_path, stream.finish(), manifest)  # a changed file is named as such first
            raise
        if suffix == ".csv":
            _check_hash(data_path, stream.finish(), manifest)
        if records == 0:
            raise DataFileError(f"{data_path}: no rows")
        return records


def load_partner_data(data_path: Path, manifest: DataManifest) -> PartnerData:
    """Read `data_path` whole, check it against `manifest`; raise `DataError` saying what is wrong."""
    batches = list(scan_partner_data(data_path, manifest))
    subgroups = np.concatenate([b.subgroups for b in batches]) if manifest.subgroup else None
    return PartnerData(
        features=np.concatenate([b.features for b in batches]),
        labels=np.concatenate([b.labels for b in batches]),
        subgroups=subgroups,
        manifest=manifest,
        data_sha256=manifest.sha256,  # scan_partner_data checked the file's bytes against it
    )


@dataclass(frozen=True)
class PartnerFile:
    """A partner's data file that is read as it is used: one streaming pass, never whole in memory.

    `records` comes from a cheap pre-pass (`open_partner_file`) because the contract and the
    privacy plan need the count before the task runs; `batches` is the checked, hashed pass, and
    it checks that count again at its end, after the hash.
    """

    path: Path
    manifest: DataManifest
    records: int

    @property
    def size(self) -> int:
        return self.records

    @property
    def data_sha256(self) -> str:
        return self.manifest.sha256  # what `batches` checks the file's bytes against by its end

    def batches(self, *, batch_records: int = BATCH_RECORDS) -> Generator[DataBatch, None, int]:
        """`scan_partner_data` of the file, and then `DataError` if it read another count than the pre-pass.

        `yield from` passes a consumer's `throw` on to the scan, so a failure caused by a changed
        file is still reported as the change (see `federated.client.evaluation.evaluate_batches`).
        """
        read = yield from scan_partner_data(self.path, self.manifest, batch_records=batch_records)
        if read != self.records:
            raise DataFileError(
                f"{self.path}: {read} records read, but {self.records} were counted before the pass "
                "(the file was replaced in between)"
            )
        return read


def _count_csv(path: Path, manifest: DataManifest) -> int:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    # The pass's parser settings, one column, no conversion: the same rows, counted at a fraction of the cost.
    convert = pcsv.ConvertOptions(column_types={manifest.label: pa.string()}, include_columns=[manifest.label])
    try:
        reader = pcsv.open_csv(
            path, read_options=pcsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            parse_options=pcsv.ParseOptions(newlines_in_values=True), convert_options=convert,
        )
        return sum(batch.num_rows for batch in reader)
    except pa.ArrowKeyError:
        header = _csv_header(path)
        raise DataFileError(f"{path}: columns named in the manifest are missing: {[n for n in manifest.columns() if n not in header]}") from None
    except pa.ArrowInvalid as exc:
        raise _csv_error(path, manifest, exc) from None


def _count_parquet(path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(path).metadata.num_rows)  # the footer's count, no data read
    except pa.ArrowException as exc:
        raise DataFileError(f"{path}: not a readable Parquet file: {exc}") from None


def open_partner_file(data_path: Path, manifest: DataManifest) -> PartnerFile:
    """The file with its record count from a pre-pass; `DataError` if it cannot even be counted.

    The pre-pass neither hashes nor checks values: the pass (`PartnerFile.batches`) does both, and
    nothing computed from the data may leave before that pass has ended. If counting fails, the
    hash is checked first, so that a changed file is named as changed, as the pass would.
    """
    from accord.hashing import sha256_file

    data_path = Path(data_path)
    suffix = data_path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise DataFileError(f"{data_path}: unsupported data format {data_path.suffix!r} (use .csv or .parquet)")
    if not data_path.is_file():
        raise DataFileError(f"{data_path}: data file not found")
    try:
        records = _count_csv(data_path, manifest) if suffix == ".csv" else _count_parquet(data_path)
        if records == 0:
            raise DataFileError(f"{data_path}: no rows")
    except DataFileError:
        try:
            _check_hash(data_path, sha256_file(data_path), manifest)
        except OSError as exc:
            raise DataFileError(f"{data_path}: cannot read: {exc.strerror}") from None
        raise
    except OSError as exc:
        raise DataFileError(f"{data_path}: cannot read: {exc.strerror}") from None
    return PartnerFile(data_path, manifest, records)


def check_partner_file(data_path: Path, manifest: DataManifest) -> PartnerFile:
    """Read `data_path` once, checking every value and the hash as a task would; memory bounded by a batch."""
    records = sum(batch.size for batch in scan_partner_data(data_path, manifest))
    return PartnerFile(Path(data_path), manifest, records)

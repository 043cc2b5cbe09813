"""A partner's local dataset: the manifest that describes it and the loader that checks it.

The manifest names the feature columns, the label column, an optional subgroup column and
the SHA-256 of the data file. Loading verifies the hash and every column before a single
value is used; nothing here ever sends data anywhere.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from accord.config_files import load_toml_model
from accord.hashing import sha256_bytes
from accord.models import Strict
from federated.errors import ConfigError, DataError


class DataManifest(Strict):
    """What a partner declares about one data file (TOML)."""

    dataset_id: str
    features: list[str] = Field(min_length=1)
    label: str
    subgroup: str | None = None
    sha256: str
    release_per_partner: bool = False
    description: str = ""

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


def _read_table(path: Path, raw: bytes) -> dict[str, list]:
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq  # only partners with Parquet data pay for the import

        table = pq.read_table(io.BytesIO(raw))
        return {name: table.column(name).to_pylist() for name in table.column_names}
    if path.suffix.lower() != ".csv":
        raise DataError(f"{path}: unsupported data format {path.suffix!r} (use .csv or .parquet)")
    try:
        reader = csv.reader(io.StringIO(raw.decode("utf-8")))
        header = next(reader)
    except (UnicodeDecodeError, StopIteration):
        raise DataError(f"{path}: not a CSV file with a header row") from None
    columns: dict[str, list] = {name: [] for name in header}
    for line_number, row in enumerate(reader, start=2):
        if len(row) != len(header):
            raise DataError(f"{path}: line {line_number}: {len(row)} fields, header has {len(header)}")
        for name, value in zip(header, row):
            columns[name].append(value)
    return columns


def _numeric(path: Path, name: str, values: list) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except ValueError:
        raise DataError(f"{path}: column {name!r} holds non-numeric values") from None
    if not np.all(np.isfinite(array)):
        raise DataError(f"{path}: column {name!r} holds NaN or infinite values")
    return array


def load_partner_data(data_path: Path, manifest: DataManifest) -> PartnerData:
    """Read `data_path`, check it against `manifest`; raise `DataError` saying what is wrong."""
    data_path = Path(data_path)
    try:
        raw = data_path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{data_path}: data file not found") from None
    except OSError as exc:
        raise DataError(f"{data_path}: cannot read: {exc.strerror}") from None
    digest = sha256_bytes(raw)
    if digest != manifest.sha256:
        raise DataError(
            f"{data_path}: SHA-256 {digest} does not match the manifest's sha256 {manifest.sha256}"
        )
    columns = _read_table(data_path, raw)
    wanted = [*manifest.features, manifest.label, *([manifest.subgroup] if manifest.subgroup else [])]
    missing = [name for name in wanted if name not in columns]
    if missing:
        raise DataError(f"{data_path}: columns named in the manifest are missing: {missing}")
    features = np.column_stack([_numeric(data_path, name, columns[name]) for name in manifest.features])
    labels_float = _numeric(data_path, manifest.label, columns[manifest.label])
    labels = labels_float.astype(np.int64)
    if not np.array_equal(labels, labels_float) or labels.min(initial=0) < 0:
        raise DataError(f"{data_path}: label column {manifest.label!r} must hold non-negative integers")
    if labels.size == 0:
        raise DataError(f"{data_path}: no rows")
    subgroups = None
    if manifest.subgroup:
        subgroups = np.asarray([str(value) for value in columns[manifest.subgroup]], dtype=object)
    return PartnerData(
        features=features.astype(np.float32),
        labels=labels,
        subgroups=subgroups,
        manifest=manifest,
        data_sha256=digest,
    )

"""Partner data loading: the manifest is checked before any value is used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from accord.hashing import sha256_file
from federated.client.data import load_manifest, load_partner_data
from federated.errors import ConfigError, DataError


def _dataset(tmp_path: Path, csv_text: str, **overrides: str) -> tuple[Path, Path]:
    data = tmp_path / "d.csv"
    data.write_text(csv_text, encoding="utf-8")
    fields = {
        "dataset_id": '"site"',
        "features": '["x1", "x2"]',
        "label": '"y"',
        "subgroup": '"g"',
        "sha256": f'"{sha256_file(data)}"',
    } | overrides
    manifest = tmp_path / "d.toml"
    manifest.write_text("\n".join(f"{k} = {v}" for k, v in fields.items()), encoding="utf-8")
    return data, manifest


GOOD = "x1,x2,y,g\n1.5,2,1,a\n0,-1,0,b\n"


def test_loads_features_labels_and_subgroups(tmp_path):
    data, manifest = _dataset(tmp_path, GOOD)
    loaded = load_partner_data(data, load_manifest(manifest))
    np.testing.assert_array_equal(loaded.features, np.array([[1.5, 2], [0, -1]], dtype=np.float32))
    np.testing.assert_array_equal(loaded.labels, [1, 0])
    assert list(loaded.subgroups) == ["a", "b"]


def test_parquet_is_read_like_csv(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "d.parquet"
    pq.write_table(pa.table({"x1": [1.5, 0.0], "x2": [2.0, -1.0], "y": [1, 0], "g": ["a", "b"]}), data)
    _, manifest = _dataset(tmp_path, GOOD, sha256=f'"{sha256_file(data)}"')
    loaded = load_partner_data(data, load_manifest(manifest))
    np.testing.assert_array_equal(loaded.labels, [1, 0])


def test_hash_mismatch_is_refused(tmp_path):
    data, manifest = _dataset(tmp_path, GOOD)
    data.write_text(GOOD + "3,3,1,a\n", encoding="utf-8")
    with pytest.raises(DataError, match="does not match the manifest"):
        load_partner_data(data, load_manifest(manifest))


def test_missing_column_is_named(tmp_path):
    data, manifest = _dataset(tmp_path, GOOD, features='["x1", "x3"]')
    with pytest.raises(DataError, match=r"missing: \['x3'\]"):
        load_partner_data(data, load_manifest(manifest))


def test_non_numeric_feature_is_named(tmp_path):
    data, manifest = _dataset(tmp_path, "x1,x2,y,g\n1,abc,1,a\n")
    with pytest.raises(DataError, match="'x2' holds non-numeric"):
        load_partner_data(data, load_manifest(manifest))


def test_nan_feature_is_refused(tmp_path):
    data, manifest = _dataset(tmp_path, "x1,x2,y,g\n1,nan,1,a\n")
    with pytest.raises(DataError, match="NaN"):
        load_partner_data(data, load_manifest(manifest))


def test_fractional_label_is_refused(tmp_path):
    data, manifest = _dataset(tmp_path, "x1,x2,y,g\n1,2,0.5,a\n")
    with pytest.raises(DataError, match="non-negative integers"):
        load_partner_data(data, load_manifest(manifest))


def test_ragged_row_is_located(tmp_path):
    data, manifest = _dataset(tmp_path, "x1,x2,y,g\n1,2,1\n")
    with pytest.raises(DataError, match="line 2: 3 fields"):
        load_partner_data(data, load_manifest(manifest))


def test_missing_data_file(tmp_path):
    data, manifest = _dataset(tmp_path, GOOD)
    data.unlink()
    with pytest.raises(DataError, match="data file not found"):
        load_partner_data(data, load_manifest(manifest))


def test_manifest_unknown_field_is_named(tmp_path):
    _, manifest = _dataset(tmp_path, GOOD, colour='"red"')
    with pytest.raises(ConfigError, match=r"d\.toml: colour: unknown field"):
        load_manifest(manifest)

"""Partner data loading: the manifest is checked before any value is used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from accord.hashing import sha256_file
from federated.client.data import load_manifest, load_partner_data, scan_partner_data
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


# Streaming: batches are checked one by one and the file's hash is checked in the same pass.

def _rows(count: int) -> str:
    return "x1,x2,y,g\n" + "".join(f"{i}.5,{-i},{i % 2},{'ab'[i % 2]}\n" for i in range(count))


def test_batches_hold_every_record_once_in_file_order(tmp_path):
    data, manifest = _dataset(tmp_path, _rows(7))
    batches = list(scan_partner_data(data, load_manifest(manifest), batch_records=3))
    whole = load_partner_data(data, load_manifest(manifest))
    assert [b.first_record for b in batches] == [0, 3, 6]
    np.testing.assert_array_equal(np.concatenate([b.features for b in batches]), whole.features)
    np.testing.assert_array_equal(np.concatenate([b.labels for b in batches]), whole.labels)
    assert list(np.concatenate([b.subgroups for b in batches])) == list(whole.subgroups)


def test_wrong_hash_is_refused_at_the_end_of_the_pass(tmp_path):
    data, manifest = _dataset(tmp_path, _rows(7))
    data.write_text(_rows(7).replace("6.5", "6.25"), encoding="utf-8")  # the last record changed
    batches = scan_partner_data(data, load_manifest(manifest), batch_records=3)
    assert next(batches).size == 3  # earlier records read fine; the verdict comes with the last
    with pytest.raises(DataError, match="does not match the manifest"):
        list(batches)


def test_a_changed_file_is_named_as_changed_before_its_bad_value(tmp_path):
    data, manifest = _dataset(tmp_path, GOOD)
    data.write_text("x1,x2,y,g\n1,abc,1,a\n", encoding="utf-8")
    with pytest.raises(DataError, match="does not match the manifest"):
        load_partner_data(data, load_manifest(manifest))


def test_non_numeric_value_is_located_by_line(tmp_path):
    data, manifest = _dataset(tmp_path, "x1,x2,y,g\n1,2,1,a\n1,abc,1,a\n")
    with pytest.raises(DataError, match=r"d\.csv: column 'x2' holds non-numeric values \(line 3: 'abc'\)"):
        load_partner_data(data, load_manifest(manifest))


def test_nan_is_located_by_line(tmp_path):
    data, manifest = _dataset(tmp_path, _rows(5).replace("3.5", "nan"))
    with pytest.raises(DataError, match=r"column 'x1' holds NaN or infinite values \(line 5\)"):
        load_partner_data(data, load_manifest(manifest))


def test_every_missing_column_is_named(tmp_path):
    data, manifest = _dataset(tmp_path, GOOD, features='["x1", "x3", "x4"]')
    with pytest.raises(DataError, match=r"missing: \['x3', 'x4'\]"):
        load_partner_data(data, load_manifest(manifest))


def test_header_without_records_is_refused(tmp_path):
    data, manifest = _dataset(tmp_path, "x1,x2,y,g\n")
    with pytest.raises(DataError, match="no rows"):
        load_partner_data(data, load_manifest(manifest))


def test_empty_file_is_refused(tmp_path):
    data, manifest = _dataset(tmp_path, "")
    with pytest.raises(DataError, match="not a CSV file with a header row"):
        load_partner_data(data, load_manifest(manifest))


def test_unsupported_format_is_named(tmp_path):
    data, manifest = _dataset(tmp_path, GOOD)
    renamed = data.rename(tmp_path / "d.xlsx")
    with pytest.raises(DataError, match="unsupported data format '.xlsx'"):
        load_partner_data(renamed, load_manifest(manifest))


def _parquet(tmp_path: Path, columns: dict) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "d.parquet"
    pq.write_table(pa.table(columns), data)
    _, manifest = _dataset(tmp_path, GOOD, sha256=f'"{sha256_file(data)}"')
    return data, manifest


def test_parquet_is_read_in_batches(tmp_path):
    data, manifest = _parquet(tmp_path, {"x1": [1.5, 0.0, 2.0], "x2": [2.0, -1.0, 0.5], "y": [1, 0, 1], "g": ["a", "b", "a"]})
    batches = list(scan_partner_data(data, load_manifest(manifest), batch_records=2))
    assert [b.size for b in batches] == [2, 1]
    np.testing.assert_array_equal(batches[1].features, [[2.0, 0.5]])


def test_parquet_null_is_located(tmp_path):
    data, manifest = _parquet(tmp_path, {"x1": [1.5, None], "x2": [2.0, -1.0], "y": [1, 0], "g": ["a", "b"]})
    with pytest.raises(DataError, match=r"column 'x1' holds NaN or missing values \(record 1\)"):
        load_partner_data(data, load_manifest(manifest))


def test_parquet_missing_column_is_named(tmp_path):
    data, manifest = _parquet(tmp_path, {"x1": [1.5], "y": [1], "g": ["a"]})
    with pytest.raises(DataError, match=r"missing: \['x2'\]"):
        load_partner_data(data, load_manifest(manifest))


def test_parquet_hash_mismatch_is_refused(tmp_path):
    data, manifest = _parquet(tmp_path, {"x1": [1.5], "x2": [2.0], "y": [1], "g": ["a"]})
    data.write_bytes(data.read_bytes() + b"\0")
    with pytest.raises(DataError, match="does not match the manifest"):
        load_partner_data(data, load_manifest(manifest))


def test_quoted_values_may_hold_commas_and_line_breaks(tmp_path):
    data, manifest = _dataset(tmp_path, 'x1,x2,y,g\n1,2,1,"north, old"\n3,4,0,"south\nnew"\n')
    loaded = load_partner_data(data, load_manifest(manifest))
    assert list(loaded.subgroups) == ["north, old", "south\nnew"]

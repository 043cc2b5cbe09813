"""Study files: valid ones load, every error names the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from accord.hashing import sha256_file
from federated.errors import ConfigError
from federated.study import load_study, resolve_models


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"not really onnx, only hashed here")
    return path


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(body, encoding="utf-8")
    return path


BASE = """
id = "s1"
purpose = "evaluation"
output_dir = "out"
[[models]]
name = "m"
path = "m.onnx"
"""


def test_valid_study_resolves_paths_relative_to_the_file(tmp_path, model_file):
    study = load_study(_write(tmp_path, BASE))
    assert study.models[0].path == model_file
    assert study.output_dir == tmp_path / "out"
    assert resolve_models(study, tmp_path / "study.toml")[0].sha256 == sha256_file(model_file)


def test_unknown_field_is_named(tmp_path, model_file):
    path = _write(tmp_path, BASE + '\n[evaluation]\nbinz = 3\n')
    with pytest.raises(ConfigError, match=r"study\.toml: evaluation\.binz: unknown field"):
        load_study(path)


def test_wrong_type_is_named_with_the_value(tmp_path, model_file):
    path = _write(tmp_path, BASE.replace('output_dir = "out"', 'output_dir = "out"\nmin_cohort = "three"'))
    with pytest.raises(ConfigError, match=r"min_cohort: .*'three'"):
        load_study(path)


def test_missing_model_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"models\.0\.path: .*model file not found"):
        load_study(_write(tmp_path, BASE))


def test_declared_hash_must_match(tmp_path, model_file):
    path = _write(tmp_path, BASE + f'sha256 = "{"0" * 64}"\n')
    with pytest.raises(ConfigError, match=r"models\.0\.sha256: .* hashes to"):
        resolve_models(load_study(path), path)


def test_bins_must_nest(tmp_path, model_file):
    path = _write(tmp_path, BASE + "\n[evaluation]\nscore_bins = 95\ncalibration_bins = 10\n")
    with pytest.raises(ConfigError, match="multiple of calibration_bins"):
        load_study(path)


def test_invalid_toml_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"study\.toml: invalid TOML"):
        load_study(_write(tmp_path, "id = \n"))


def test_missing_study_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_study(tmp_path / "nope.toml")


def test_demo_study_is_valid(tmp_path):
    from examples.hospitals.prepare import prepare

    (tmp_path / "configs").mkdir()
    config = Path(__file__).parents[2] / "configs" / "demo-evaluation.toml"
    (tmp_path / "configs" / config.name).write_text(config.read_text(encoding="utf-8"), encoding="utf-8")
    prepare(tmp_path / "demo")
    study = load_study(tmp_path / "configs" / config.name)
    assert [m.name for m in study.models] == ["logreg", "mlp"]
    assert study.output_dir == tmp_path / "demo" / "output"


def test_privacy_settings_without_distributed_noise_dump_only_the_v1_fields() -> None:
    # Schema evolution: a spec that does not use distributed noise hashes exactly as before the fields existed.
    from federated.study import EvaluationPrivacy

    assert set(EvaluationPrivacy(enabled=True).model_dump(mode="json")) == {"enabled", "epsilon", "delta", "loss_bound"}
    distributed = EvaluationPrivacy(enabled=True, noise="distributed", honest_required=3).model_dump(mode="json")
    assert distributed["noise"] == "distributed" and distributed["honest_required"] == 3
    assert EvaluationPrivacy.model_validate(distributed) == EvaluationPrivacy(enabled=True, noise="distributed", honest_required=3)

"""Data contracts: each clause refuses with its name and the failing value; parsing never crashes."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privacy.contract import (
    ContractError,
    ContractViolation,
    TaskRequest,
    load_contract,
)

COORDINATOR = "c" * 64
CONTRACT = {
    "dataset_id": "hospital-a",
    "data_sha256": "a" * 64,
    "licence": "accord-research-1.0",
    "provenance": "EHR extract 2025",
    "sensitivity": "special_category",
    "jurisdictions": ["EU"],
    "legal_bases": ["consent"],
    "consent_scope": "secondary research on tumour diagnosis",
    "allowed_purposes": ["evaluation"],
    "allowed_coordinators": [COORDINATOR],
    "release_per_partner": False,
    "protections": {"require_dp": True, "max_epsilon_per_release": 1.0, "require_encryption": False},
    "budget": {"max_epsilon_per_study": 3.0, "max_epsilon_total": 10.0},
    "min_cohort": 3,
    "retention_days": 365,
    "expires": date(2027, 12, 31),
}
REQUEST = TaskRequest(
    purpose="evaluation", coordinator_key=COORDINATOR, jurisdiction="EU", legal_basis="consent",
    accepted_licences=("accord-research-1.0",), retention_days=180, min_cohort=3, dp_enabled=True,
    epsilon_per_release=1.0, encrypted=False, today=date(2026, 11, 27),
)


def _write(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "contract.toml"
    path.write_bytes(tomli_w.dumps(document).encode())
    return path


def test_a_request_within_every_clause_is_accepted(tmp_path):
    contract = load_contract(_write(tmp_path, CONTRACT))
    contract.check(REQUEST)
    assert all(result.ok for result in contract.evaluate(REQUEST))


@pytest.mark.parametrize(
    ("change", "clause", "named"),
    [
        ({"today": date(2028, 1, 1)}, "expires", "2027-12-31"),
        ({"purpose": "training"}, "allowed_purposes", "'training'"),
        ({"coordinator_key": "d" * 64}, "allowed_coordinators", "d" * 64),
        ({"coordinator_key": None}, "allowed_coordinators", "unknown"),
        ({"jurisdiction": "US"}, "jurisdictions", "'US'"),
        ({"jurisdiction": None}, "jurisdictions", "None"),
        ({"legal_basis": "legitimate_interest"}, "legal_bases", "'legitimate_interest'"),
        ({"accepted_licences": ()}, "licence", "accord-research-1.0"),
        ({"retention_days": 400}, "retention_days", "400 days"),
        ({"retention_days": None}, "retention_days", "None"),
        ({"min_cohort": 2}, "min_cohort", "2 is below the contract's 3"),
        ({"dp_enabled": False, "epsilon_per_release": None}, "protections.require_dp", "without differential privacy"),
        ({"epsilon_per_release": 1.5}, "protections.max_epsilon_per_release", "1.5 exceeds the contract's 1.0"),
    ],
)
def test_each_clause_refuses_naming_itself_and_the_value(tmp_path, change, clause, named):
    contract = load_contract(_write(tmp_path, CONTRACT))
    with pytest.raises(ContractViolation, match=named) as refused:
        contract.check(dataclasses.replace(REQUEST, **change))
    assert refused.value.clause == clause


def test_encryption_clause(tmp_path):
    contract = load_contract(_write(tmp_path, CONTRACT | {"protections": {"require_encryption": True}}))
    with pytest.raises(ContractViolation) as refused:
        contract.check(REQUEST)
    assert refused.value.clause == "protections.require_encryption"
    contract.check(dataclasses.replace(REQUEST, encrypted=True))


def test_contract_must_match_its_data_and_be_current(tmp_path):
    contract = load_contract(_write(tmp_path, CONTRACT))
    with pytest.raises(ContractError, match="does not match the data"):
        contract.check_data("b" * 64, today=date(2026, 1, 1))
    with pytest.raises(ContractError, match="expired on 2027-12-31"):
        contract.check_data("a" * 64, today=date(2028, 1, 1))
    contract.check_data("a" * 64, today=date(2026, 1, 1))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, "colour: unknown field"),
        ({"allowed_coordinators": ["not-a-fingerprint"]}, "allowed_coordinators: .*fingerprints"),
        ({"allowed_purposes": ["marketing"]}, r"allowed_purposes\.0"),
        ({"jurisdictions": []}, "jurisdictions"),
        ({"budget": {"max_epsilon_per_study": -1, "max_epsilon_total": 1}}, r"budget\.max_epsilon_per_study"),
        ({"expires": "soon"}, "expires"),
    ],
)
def test_malformed_contracts_name_the_file_and_field(tmp_path, change, message):
    with pytest.raises(ContractError, match=rf"contract\.toml: .*{message}"):
        load_contract(_write(tmp_path, CONTRACT | change))


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True) | st.text(max_size=20) | st.dates(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(sorted(CONTRACT)), value=_VALUES)
def test_any_field_value_either_parses_or_is_a_contract_error(tmp_path, field, value):
    document = {k: v for k, v in CONTRACT.items() if k != field} | ({field: value} if value is not None else {})
    try:
        path = _write(tmp_path, document)
    except (TypeError, ValueError):
        return  # not representable in TOML: no file to parse
    try:
        load_contract(path)
    except ContractError as exc:
        assert "contract.toml" in str(exc)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_parser(tmp_path, raw):
    path = tmp_path / "contract.toml"
    path.write_bytes(raw)
    with pytest.raises(ContractError, match="contract.toml"):
        load_contract(path)

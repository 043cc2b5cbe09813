"""Contracts without DP: exact statistics only when the contract says so, and then `[disclosure]` caps each task."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import tomli_w

from privacy.contract import ContractError, Disclosure, ReleaseShape, load_contract
from tests.privacy.test_contract import CONTRACT, REQUEST

EXACT_CONTRACT = CONTRACT | {"protections": {"allow_exact_statistics": True}}
SHAPE = ReleaseShape(score_bins=20, models=("m1", "m2"), subgroup_levels=2)
EXACT_REQUEST = dataclasses.replace(REQUEST, dp_enabled=False, epsilon_per_release=None, records=200, release=SHAPE)


def _load(tmp_path: Path, document: dict):
    path = tmp_path / "contract.toml"
    path.write_bytes(tomli_w.dumps(document).encode())
    return load_contract(path)


def test_a_contract_that_says_nothing_about_dp_requires_it(tmp_path):
    document = CONTRACT | {"protections": {}}
    contract = _load(tmp_path, document)
    assert contract.protections.require_dp and not contract.protections.allow_exact_statistics
    verdicts = {r.clause: r for r in contract.evaluate(EXACT_REQUEST)}
    assert not verdicts["protections.require_dp"].ok


def test_allow_exact_statistics_alone_lifts_the_dp_requirement(tmp_path):
    contract = _load(tmp_path, EXACT_CONTRACT)
    assert not contract.protections.require_dp
    contract.check(EXACT_REQUEST)


def test_require_dp_false_without_allow_exact_statistics_is_refused_naming_file_and_field(tmp_path):
    with pytest.raises(ContractError, match=r"contract\.toml: protections: .*allow_exact_statistics = true"):
        _load(tmp_path, CONTRACT | {"protections": {"require_dp": False}})


def test_allow_exact_statistics_contradicting_require_dp_is_refused(tmp_path):
    with pytest.raises(ContractError, match=r"protections: .*contradicts require_dp = true"):
        _load(tmp_path, CONTRACT | {"protections": {"require_dp": True, "allow_exact_statistics": True}})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, r"disclosure\.colour: unknown field"),
        ({"min_cell_count": 0}, r"disclosure\.min_cell_count"),
        ({"min_cell_count": 20}, r"disclosure: .*min_subgroup_size \(10\) is below min_cell_count \(20\)"),
        ({"max_models_per_study": 2}, r"disclosure: .*max_models_per_study \(2\) is below max_models_per_task \(5\)"),
    ],
)
def test_malformed_disclosure_terms_name_the_file_and_field(tmp_path, change, message):
    with pytest.raises(ContractError, match=rf"contract\.toml: .*{message}"):
        _load(tmp_path, EXACT_CONTRACT | {"disclosure": change})


def test_the_defaults_are_the_documented_safe_ones():
    terms = Disclosure()
    assert (terms.enabled, terms.min_cell_count, terms.min_records_per_score_bin) == (True, 5, 5)
    assert (terms.max_models_per_task, terms.max_models_per_study, terms.max_tasks_per_study) == (5, 10, 10)
    assert (terms.max_subgroup_levels, terms.min_subgroup_size) == (10, 10)


@pytest.mark.parametrize(
    ("shape", "records", "clause", "named"),
    [
        (dataclasses.replace(SHAPE, models=tuple(f"m{i}" for i in range(6))), 200, "disclosure.max_models_per_task",
         "6 models, the contract allows 5 per task"),
        (dataclasses.replace(SHAPE, study_models=frozenset(f"old{i}" for i in range(9))), 200,
         "disclosure.max_models_per_study", "11 distinct models here, the contract allows 10"),
        (dataclasses.replace(SHAPE, study_tasks=10), 200, "disclosure.max_tasks_per_study", "already answered 10 tasks"),
        (dataclasses.replace(SHAPE, subgroup_levels=11), 200, "disclosure.max_subgroup_levels", "11 subgroup levels"),
        (SHAPE, 4, "disclosure.min_cell_count", "minimum cell count 5"),
        (dataclasses.replace(SHAPE, score_bins=50), 200, "disclosure.min_records_per_score_bin",
         "50 score bins exceed this partner's cap of one bin per 5 records"),
    ],
)
def test_each_disclosure_cap_refuses_naming_itself(tmp_path, shape, records, clause, named):
    contract = _load(tmp_path, EXACT_CONTRACT)
    verdict = {r.clause: r for r in contract.evaluate(dataclasses.replace(EXACT_REQUEST, release=shape, records=records))}
    assert not verdict[clause].ok and named in verdict[clause].detail


def test_a_record_dependent_refusal_does_not_name_the_record_count(tmp_path):
    contract = _load(tmp_path, EXACT_CONTRACT)
    request = dataclasses.replace(EXACT_REQUEST, records=199, release=dataclasses.replace(SHAPE, score_bins=40))
    (failed,) = [r for r in contract.evaluate(request) if not r.ok]
    assert failed.clause == "disclosure.min_records_per_score_bin" and "199" not in failed.detail


def test_models_already_run_in_the_study_do_not_count_twice(tmp_path):
    contract = _load(tmp_path, EXACT_CONTRACT)
    again = dataclasses.replace(SHAPE, study_models=frozenset({"m1", "m2"} | {f"old{i}" for i in range(8)}), study_tasks=3)
    contract.check(dataclasses.replace(EXACT_REQUEST, release=again))


def test_under_dp_the_caps_do_not_apply(tmp_path):
    contract = _load(tmp_path, CONTRACT)
    huge = ReleaseShape(score_bins=10_000, models=tuple(f"m{i}" for i in range(30)), subgroup_levels=50, study_tasks=99)
    verdict = {r.clause: r for r in contract.evaluate(dataclasses.replace(REQUEST, records=10, release=huge))}
    assert verdict["disclosure"].ok and "DP on" in verdict["disclosure"].detail


def test_disclosure_control_disabled_by_the_contract_lets_any_shape_through(tmp_path):
    contract = _load(tmp_path, EXACT_CONTRACT | {"disclosure": {"enabled": False}})
    huge = ReleaseShape(score_bins=10_000, models=tuple(f"m{i}" for i in range(30)), subgroup_levels=50)
    contract.check(dataclasses.replace(EXACT_REQUEST, release=huge))


def test_an_exact_release_of_unknown_shape_or_size_fails_the_clause(tmp_path):
    contract = _load(tmp_path, EXACT_CONTRACT)
    for request in (dataclasses.replace(EXACT_REQUEST, release=None), dataclasses.replace(EXACT_REQUEST, records=None)):
        verdict = {r.clause: r for r in contract.evaluate(request)}
        assert not verdict["disclosure"].ok and "unknown" in verdict["disclosure"].detail


def test_the_example_contract_in_configs_loads_with_its_disclosure_terms():
    contract = load_contract(Path(__file__).resolve().parents[2] / "configs" / "contract-example.toml")
    assert contract.protections.allow_exact_statistics and not contract.protections.require_dp
    assert contract.disclosure == Disclosure()


def _exact_study(tmp_path: Path, *, rounds: int) -> Path:
    (tmp_path / "m.onnx").write_bytes(b"a model's bytes")
    path = tmp_path / "study.toml"
    path.write_text(
        f'id = "exact"\npurpose = "evaluation"\noutput_dir = "out"\nrounds = {rounds}\nmin_cohort = 3\n'
        '[[models]]\nname = "m"\npath = "m.onnx"\n[evaluation]\nscore_bins = 10\n'
        '[governance]\njurisdiction = "EU"\nlegal_basis = "consent"\naccepted_licences = ["accord-research-1.0"]\n'
        "retention_days = 30\n"
    )
    return path


def test_the_dry_run_refuses_the_round_past_the_task_cap_as_the_node_would(tmp_path):
    from federated.client.check import check_study_tasks

    contract = tmp_path / "contract.toml"
    contract.write_bytes(tomli_w.dumps(EXACT_CONTRACT | {"expires": CONTRACT["expires"].replace(year=2099)}).encode())
    _, tasks = check_study_tasks(contract, _exact_study(tmp_path, rounds=11), coordinator_key=CONTRACT["allowed_coordinators"][0],
                                 data=None, manifest=None, records=200)
    refused = [(t.label, [c.clause for c in t.clauses if not c.ok]) for t in tasks if not t.accepted]
    assert refused == [("round 11", ["disclosure.max_tasks_per_study"])]


def test_the_dry_run_asks_for_the_dataset_size_when_caps_depend_on_it(tmp_path):
    from federated.client.check import check_study

    contract = tmp_path / "contract.toml"
    contract.write_bytes(tomli_w.dumps(EXACT_CONTRACT | {"expires": CONTRACT["expires"].replace(year=2099)}).encode())
    verdicts = {r.clause: r for r in check_study(contract, _exact_study(tmp_path, rounds=1),
                                                 coordinator_key=CONTRACT["allowed_coordinators"][0], data=None,
                                                 manifest=None, records=None)}
    assert not verdicts["records"].ok and "disclosure caps" in verdicts["records"].detail

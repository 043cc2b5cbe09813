"""Distributed noise under encryption: each partner adds a share N(0, σ²/t), the decrypted sum of n shares
carries n·σ²/t (at least one central release's σ² while t are honest), the partner's contract must opt in,
and both guarantees (under the assumption, and on the partner's own share) are recorded and reported."""

from __future__ import annotations

import math
import sqlite3
from datetime import date

import numpy as np
import pytest

from federated.client.contract_gate import charge, distributed_cost, open_ledger
from federated.client.costs import round_cost
from federated.evaluation.dp_release import calibrate, privatize
from federated.evaluation.statistics import StatisticsLayout, compute_statistics
from federated.messages.common import DistributedNoise, NoiseInfo
from federated.reporting.privacy_report import reported_privacy, spent_report
from federated.study import EvaluationPrivacy, EvaluationSettings, Study
from privacy import BudgetLedger, gaussian_epsilon
from privacy.contract import DataContract, TaskRequest
from privacy.errors import LedgerError
from privacy.release import calibrate_release, noise_share

LAYOUT = StatisticsLayout(num_classes=2, score_bins=10, subgroup_levels=(), loss_bound=10.0)
DISTRIBUTED = EvaluationPrivacy(enabled=True, epsilon=1.0, noise="distributed")


def _statistics(seed: int = 0, n: int = 200):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    score = np.clip(rng.normal(0.3 + 0.4 * labels, 0.2), 0, 1)
    return compute_statistics(np.column_stack([1 - score, score]), labels, None, LAYOUT)


# -- the share -------------------------------------------------------------------------------------------------


def test_a_share_has_variance_sigma_squared_over_t_and_its_own_larger_epsilon():
    central = calibrate_release(epsilon=1.0, delta=1e-6, coordinates_per_record=6)
    share = noise_share(central, honest_required=5)
    assert share.sigma == pytest.approx(central.sigma / math.sqrt(5), rel=1e-12)
    assert share.l2_sensitivity == central.l2_sensitivity and share.delta == central.delta
    # The share alone: the analytic Gaussian ε of μ = Δ/(σ/√t), rounded up, and never below the central ε.
    assert share.epsilon >= gaussian_epsilon(mu=central.l2_sensitivity / share.sigma, delta=1e-6) > central.epsilon
    assert noise_share(central, honest_required=1) is central


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_a_share_needs_a_whole_number_of_honest_contributors(bad):
    with pytest.raises(ValueError, match="honest_required"):
        noise_share(calibrate_release(epsilon=1.0, delta=1e-6, coordinates_per_record=4), honest_required=bad)


def test_the_sum_of_n_shares_carries_n_over_t_central_variances():
    """10 partners, t = 5: every coordinate of the summed noise has variance 10·σ²/5 = 2σ² (measured on 400 rounds),
    and the 5 honest partners' shares alone already carry σ², one central release's noise."""
    stats, partners, t, rounds = _statistics(), 10, 5, 400
    central = calibrate(LAYOUT, DISTRIBUTED, 1)
    rng = np.random.default_rng(20261130)
    sums = []
    for _ in range(rounds):
        noisy = [privatize({"m": stats}, DISTRIBUTED, rng=rng, honest_required=t)[0]["m"] for _ in range(partners)]
        sums.append(sum(n["hist_pos"] - stats["hist_pos"] for n in noisy).ravel())
    variance = np.var(np.concatenate(sums))
    assert variance == pytest.approx(partners * central.sigma**2 / t, rel=0.05)
    honest = 5  # the guarantee's assumption: what the honest contributors' shares carry at least
    assert honest * (central.sigma / math.sqrt(t)) ** 2 == pytest.approx(central.sigma**2)


def test_the_coordinator_s_variance_of_the_sum_is_the_sum_of_the_sigmas_partners_added():
    from federated.server.pooling import _noise_variance

    central = calibrate(LAYOUT, DISTRIBUTED, 1)
    share = noise_share(central, honest_required=2)
    distributed = NoiseInfo(**share.as_record() | {"epsilon": 1.0}, distributed=DistributedNoise(
        honest_required=2, cohort=3, central_sigma=central.sigma, share_epsilon=share.epsilon))
    local = NoiseInfo(**central.as_record())

    class Reply:  # what `_noise_variance` reads of a reply
        def __init__(self, noise: NoiseInfo) -> None:
            self.info = type("Info", (), {"noise": noise})()

    variance = _noise_variance([Reply(distributed), Reply(distributed), Reply(local)], LAYOUT)  # type: ignore[list-item]
    assert variance is not None
    assert variance["hist_pos"] == pytest.approx(2 * central.sigma**2 / 2 + central.sigma**2, rel=1e-12)


def test_a_noise_record_never_claims_a_share_protects_more_than_the_release():
    with pytest.raises(ValueError, match="share's ε is at least"):
        NoiseInfo(epsilon=2.0, delta=1e-6, l2_sensitivity=2.0, sigma=1.0,
                  distributed=DistributedNoise(honest_required=2, cohort=3, central_sigma=1.5, share_epsilon=1.0))


# -- the study ---------------------------------------------------------------------------------------------------


def test_t_defaults_to_an_honest_majority_of_the_cohort():
    assert [DISTRIBUTED.honest_required_of(n) for n in (2, 3, 10, 11)] == [1, 2, 5, 6]
    assert EvaluationPrivacy(enabled=True, noise="distributed", honest_required=3).honest_required_of(10) == 3


def test_a_study_without_encryption_cannot_ask_for_distributed_noise(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx")
    with pytest.raises(ValueError, match="only a share of a release, safe only inside an encrypted sum"):
        Study.model_validate({"id": "s", "purpose": "evaluation", "output_dir": str(tmp_path),
                              "models": [{"name": "m", "path": str(model)}],
                              "evaluation": {"privacy": {"enabled": True, "noise": "distributed"}}})
    with pytest.raises(ValueError, match="honest_required: only used with noise"):
        EvaluationPrivacy(enabled=True, honest_required=3)
    with pytest.raises(ValueError, match="needs enabled = true"):
        EvaluationPrivacy(noise="distributed")


# -- the partner's contract ----------------------------------------------------------------------------------------


def _contract(**protections: object) -> DataContract:
    return DataContract.model_validate({
        "dataset_id": "d", "data_sha256": "0" * 64, "licence": "l", "provenance": "p", "sensitivity": "internal",
        "jurisdictions": ["EU"], "legal_bases": ["consent"], "allowed_purposes": ["evaluation"],
        "allowed_coordinators": ["1" * 64], "protections": protections,
        "budget": {"max_epsilon_per_study": 10.0, "max_epsilon_total": 10.0}, "retention_days": 30,
        "expires": date(2099, 1, 1),
    })


def _request(*, noise: str = "distributed", honest_required: int | None = 5, cohort: int | None = 10) -> TaskRequest:
    return TaskRequest(purpose="evaluation", coordinator_key="1" * 64, jurisdiction="EU", legal_basis="consent",
                       accepted_licences=("l",), retention_days=30, min_cohort=2, dp_enabled=True, epsilon_per_release=1.0,
                       encrypted=cohort is not None, noise=noise, honest_required=honest_required, cohort=cohort)


def _verdict(contract: DataContract, request: TaskRequest):
    return next(r for r in contract.evaluate(request) if r.clause == "protections.allow_distributed_noise")


def test_without_the_contract_s_opt_in_the_node_adds_the_full_local_noise():
    contract = _contract()
    assert contract.noise_shares(_request()) == 1
    verdict = _verdict(contract, _request())
    assert verdict.ok and "full local noise: the contract does not allow distributed noise" in verdict.detail


def test_an_opted_in_node_adds_a_share_when_the_study_s_t_is_within_its_contract():
    contract = _contract(allow_distributed_noise=True, max_honest_required=5)
    assert contract.noise_shares(_request(honest_required=5)) == 5
    assert contract.noise_shares(_request(honest_required=3)) == 3
    assert "holds while at least 5 of the 10 contributors are honest" in _verdict(contract, _request()).detail


def test_a_study_relying_on_more_honest_contributors_than_the_contract_accepts_gets_local_noise():
    contract = _contract(allow_distributed_noise=True, max_honest_required=4)
    assert contract.noise_shares(_request(honest_required=5)) == 1
    verdict = _verdict(contract, _request(honest_required=5))
    assert verdict.ok and "more than the contract's max_honest_required 4" in verdict.detail


def test_an_opted_in_node_refuses_a_share_outside_an_encrypted_sum_of_at_least_t():
    contract = _contract(allow_distributed_noise=True, max_honest_required=5)
    plaintext = _verdict(contract, _request(cohort=None))
    assert not plaintext.ok and "not encrypted" in plaintext.detail
    small = _verdict(contract, _request(honest_required=5, cohort=4))
    assert not small.ok and "cohort has 4 contributors, fewer than the 5 honest" in small.detail
    assert contract.noise_shares(_request(cohort=None)) == contract.noise_shares(_request(cohort=4)) == 1


def test_the_opt_in_names_its_bound_and_nothing_else():
    with pytest.raises(ValueError, match="allow_distributed_noise = true needs max_honest_required"):
        _contract(allow_distributed_noise=True)
    with pytest.raises(ValueError, match="max_honest_required is only used with allow_distributed_noise"):
        _contract(max_honest_required=3)


# -- the ledger and the privacy report -----------------------------------------------------------------------------


class _Spec:
    """The parts of an encrypted evaluation task's spec the cost reads."""

    def __init__(self, cohort: int) -> None:
        self.evaluation = EvaluationSettings(score_bins=10, calibration_bins=5, privacy=DISTRIBUTED)
        self.encryption = type("Encryption", (), {"cohort": [f"p{i}" for i in range(cohort)]})()
        self.models = ["m"]

    def layout(self) -> StatisticsLayout:
        return LAYOUT


def test_the_ledger_charges_the_release_s_epsilon_and_records_the_share_s_beside_it(tmp_path):
    spent: list[dict] = []
    cost = distributed_cost(round_cost(evaluation=_Spec(10).evaluation, training=None, round_number=1, num_examples=500),
                            _Spec(10), shares=5)
    ledger = open_ledger(tmp_path / "budget.sqlite", max_epsilon_total=10.0, max_epsilon_per_study=10.0,
                         on_spend=spent.append)
    charge(ledger, cost, study="s")
    (spend,) = ledger.spends(study_id="s")
    share = noise_share(calibrate(LAYOUT, DISTRIBUTED, 1), honest_required=5)
    assert spend.epsilon == 1.0 and ledger.spent(study_id="s") == 1.0  # charged per the contract: under the assumption
    assert spend.share_epsilon == pytest.approx(share.epsilon) and spend.share_epsilon > spend.epsilon
    assert (spend.honest_required, spend.cohort) == (5, 10)
    assert spent[0]["share_epsilon"] == spend.share_epsilon  # what the partner's trail records (`privacy_spent`)


def test_the_ledger_refuses_a_share_recorded_as_safer_than_the_release(tmp_path):
    ledger = BudgetLedger(tmp_path / "b.sqlite", max_epsilon_total=10.0, max_epsilon_per_study=10.0)
    with pytest.raises(LedgerError, match="below the release's epsilon"):
        ledger.spend(study_id="s", release="r", epsilon=1.0, delta=1e-6, share_epsilon=0.5, honest_required=2, cohort=3)
    with pytest.raises(LedgerError, match="together"):
        ledger.spend(study_id="s", release="r", epsilon=1.0, delta=1e-6, share_epsilon=2.0)
    with pytest.raises(LedgerError, match="cohort must be an integer of at least honest_required"):
        ledger.spend(study_id="s", release="r", epsilon=1.0, delta=1e-6, share_epsilon=2.0, honest_required=4, cohort=3)
    assert ledger.spends() == []


def test_a_schema_1_ledger_is_upgraded_in_place_and_keeps_its_spends(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript("""
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE spends (seq INTEGER PRIMARY KEY AUTOINCREMENT, study_id TEXT NOT NULL, release TEXT NOT NULL,
                epsilon REAL NOT NULL, delta REAL NOT NULL, noise_multiplier REAL, sample_rate REAL, steps INTEGER,
                spent_at TEXT NOT NULL, UNIQUE (study_id, release));
            INSERT INTO meta VALUES ('schema_version', '1'), ('max_epsilon_total', '10.0'), ('max_epsilon_per_study', '5.0');
            INSERT INTO spends (study_id, release, epsilon, delta, spent_at) VALUES ('s', 'r1', 1.0, 1e-6, '2026-01-01');
        """)
    (old,) = BudgetLedger.open_existing(path).spends()
    assert (old.release, old.epsilon, old.share_epsilon) == ("r1", 1.0, None)
    ledger = BudgetLedger(path, max_epsilon_total=10.0, max_epsilon_per_study=5.0)
    ledger.spend(study_id="s", release="r2", epsilon=1.0, delta=1e-6, share_epsilon=2.5, honest_required=2, cohort=3)
    assert [s.share_epsilon for s in ledger.spends()] == [None, 2.5] and ledger.spent(study_id="s") == 2.0


def _results() -> dict:
    central = calibrate(LAYOUT, DISTRIBUTED, 1)
    share = noise_share(central, honest_required=2)
    distributed = NoiseInfo(**share.as_record() | {"epsilon": 1.0}, distributed=DistributedNoise(
        honest_required=2, cohort=3, central_sigma=central.sigma, share_epsilon=share.epsilon)).model_dump()
    local = NoiseInfo(**central.as_record()).model_dump()
    return {"study": "s", "rounds": [{"round": r, "privacy": {"a": distributed, "c": local}} for r in (1, 2)]}


def test_the_privacy_report_gives_the_guarantee_under_the_assumption_and_the_one_that_holds_alone():
    report = reported_privacy(_results())
    a, c = report["a"], report["c"]
    assert a["basic_composition"]["epsilon"] == c["basic_composition"]["epsilon"] == 2.0
    assert a["prv_composition"]["epsilon"] == pytest.approx(c["prv_composition"]["epsilon"])
    assert a["assumption"]["releases"] == [{"round": 1, "honest_required": 2, "cohort": 3},
                                           {"round": 2, "honest_required": 2, "cohort": 3}]
    alone = a["own_share"]
    assert alone["basic_composition"]["epsilon"] > 2.0 and alone["prv_composition"]["epsilon"] > a["prv_composition"]["epsilon"]
    assert alone["prv_composition"]["epsilon"] <= alone["basic_composition"]["epsilon"]
    assert "own_share" not in c and "assumption" not in c  # local noise: one guarantee, on its own noise


def test_the_evidence_pack_s_report_shows_what_the_partner_s_own_share_gives():
    from federated.audit.evidence.documents import privacy_report_markdown

    results = _results() | {"privacy": reported_privacy(_results())}
    trail = [{"kind": "privacy_spent", "study": "s", "round": r, "details": {
        "release": f"round-{r}/evaluation", "epsilon": 1.0, "delta": 1e-6, "share_epsilon": 2.5, "honest_required": 2,
        "cohort": 3}} for r in (1, 2)]
    spent = spent_report(results, {"a": trail})
    assert spent["partners"]["a"]["spent"]["epsilon"] == 2.0
    assert spent["partners"]["a"]["spent_own_share"]["epsilon"] == 5.0
    text = privacy_report_markdown(results, spent)
    assert "Distributed noise" in text and "| a | 1: 2 of 3, 2: 2 of 3 | 5 |" in text

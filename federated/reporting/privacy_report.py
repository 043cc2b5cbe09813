"""The study's privacy report: ε spent per partner per release, and in total.

Two views. `reported_privacy(results)` is the coordinator's, written into results.json when the study
ends. `spent_report` is the evidence pack's, built from the partners' own trails (`privacy_spent`,
one entry per release their ledgers charged), so it counts what was really spent — repeated and
failed tasks included — and names the partners whose trails are not in the pack.

`reported_privacy` is built from what partners reported with their results: the Gaussian releases of evaluation
statistics (σ, L2 sensitivity, ε, δ) and the DP-SGD runs of training rounds (noise
multiplier, sampling rate, steps, ε, δ). Two totals per partner: basic composition (the sum
of ε and of δ — what partners' ledgers count, always valid) and the tighter composition of
the same releases by the PRV accountant at δ = the sum of δ. Neither is ever below the true
value of the composition it describes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from privacy import PrivacyAccount


def _partner_releases(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    releases: dict[str, list[dict[str, Any]]] = {}
    rounds = list(results.get("rounds", []))
    if results.get("final_evaluation"):
        rounds.append(results["final_evaluation"])
    for entry in rounds:
        # Training rounds release DP-SGD weights ("privacy") and noisy statistics of the
        # incoming model ("evaluation_privacy"); evaluation rounds only the latter ("privacy").
        for key in ("privacy", "evaluation_privacy"):
            for partner, spent in entry.get(key, {}).items():
                releases.setdefault(partner, []).append({"round": entry["round"], **spent})
    return releases


def _prv_epsilon(releases: list[dict[str, Any]], *, delta: float, own_share: bool) -> float:
    """PRV composition of the releases; a distributed release counts with the central σ (its guarantee under the
    assumption) or, with `own_share`, with the σ the partner really added (what holds whatever the others do)."""
    account = PrivacyAccount(accountant="prv")
    for release in releases:
        if "sigma" in release:  # Gaussian release of evaluation statistics
            shared = release.get("distributed")
            sigma = release["sigma"] if own_share or not shared else shared["central_sigma"]
            account.add_gaussian_release(sigma=sigma, l2_sensitivity=release["l2_sensitivity"])
        else:  # DP-SGD
            account.add_dpsgd(
                noise_multiplier=release["noise_multiplier"], sample_rate=release["sample_rate"], steps=release["steps"]
            )
    return account.epsilon(delta=delta)


def reported_privacy(results: dict[str, Any]) -> dict[str, Any]:
    """Per partner: every release and the composed totals; empty when no DP was used.

    With distributed noise (a partner added only a share of a release's noise inside an encrypted sum) the
    totals are the guarantee under the stated assumption (each such release's ε holds while at least t of its
    n contributors are honest, listed under `assumption`), what the partner's ledger charges; `own_share` gives
    the totals that hold on the partner's own noise alone, never smaller.
    """
    report: dict[str, Any] = {}
    for partner, releases in sorted(_partner_releases(results).items()):
        total_delta = sum(release["delta"] for release in releases)
        entry: dict[str, Any] = {
            "releases": releases,
            "basic_composition": {"epsilon": sum(r["epsilon"] for r in releases), "delta": total_delta},
            "prv_composition": {"epsilon": _prv_epsilon(releases, delta=total_delta, own_share=False), "delta": total_delta},
        }
        distributed = [r for r in releases if r.get("distributed")]
        if distributed:
            alone = sum(r["distributed"]["share_epsilon"] if r.get("distributed") else r["epsilon"] for r in releases)
            entry["assumption"] = {
                "statement": "the totals above hold if, in each release listed here, at least honest_required of its "
                             "cohort contributors were honest (they added their share of the noise and did not collude)",
                "releases": [{"round": r["round"], "honest_required": r["distributed"]["honest_required"],
                              "cohort": r["distributed"]["cohort"]} for r in distributed],
            }
            entry["own_share"] = {
                "statement": "what holds on this partner's own noise alone, whatever the other contributors do",
                "basic_composition": {"epsilon": alone, "delta": total_delta},
                "prv_composition": {"epsilon": _prv_epsilon(releases, delta=total_delta, own_share=True),
                                    "delta": total_delta},
            }
        report[partner] = entry
    return report


def _partner_trail_releases(entries: Sequence[Mapping[str, Any]], study_id: str) -> list[dict[str, Any]]:
    releases = []
    for entry in entries:
        if entry.get("kind") == "privacy_spent" and entry.get("study") == study_id:
            details = entry.get("details", {})
            releases.append({"round": entry.get("round"), "release": details.get("release"),
                             "epsilon": float(details.get("epsilon", 0.0)), "delta": float(details.get("delta", 0.0)),
                             **({"outcome": details["outcome"]} if "outcome" in details else {}),
                             **({key: details[key] for key in ("share_epsilon", "honest_required", "cohort")}
                                if details.get("share_epsilon") is not None else {})})
    return releases


def spent_report(
    results: Mapping[str, Any], partner_trails: Mapping[str, Sequence[Mapping[str, Any]]], *, partners: Sequence[str] = ()
) -> dict[str, Any]:
    """The evidence pack's privacy report: what each partner's own trail says it spent (`privacy_spent`).

    A partner's ledger writes one `privacy_spent` entry per release it charged, failed tasks included,
    so the sums here count what was really spent, whatever the coordinator claims. `results["privacy"]`
    (what partners reported with their replies, as the coordinator recorded it) is shown beside it, and a
    difference is listed. Partners named in `partners` (those the coordinator's trail names) whose trails
    are not at hand are listed under `partners_without_trail`: for them only the coordinator's claim exists.
    """
    study_id = str(results.get("study", ""))
    claimed = results.get("privacy") or {}
    report: dict[str, Any] = {}
    differences = []
    for partner, entries in sorted(partner_trails.items()):
        releases = _partner_trail_releases(entries, study_id)
        spent = {"epsilon": math.fsum(r["epsilon"] for r in releases), "delta": math.fsum(r["delta"] for r in releases)}
        claim = claimed.get(partner, {}).get("basic_composition", {"epsilon": 0.0, "delta": 0.0})
        report[partner] = {"releases": releases, "spent": spent, "claimed_by_coordinator": claim}
        if any("share_epsilon" in r for r in releases):  # distributed noise: ε under the assumption, and alone
            report[partner]["spent_own_share"] = {
                "epsilon": math.fsum(float(r.get("share_epsilon", r["epsilon"])) for r in releases), "delta": spent["delta"]}
        if not math.isclose(spent["epsilon"], float(claim.get("epsilon", 0.0)), rel_tol=1e-9, abs_tol=1e-12):
            differences.append(partner)
    missing = sorted((set(partners) | set(claimed)) - set(partner_trails))
    return {
        "study": study_id,
        "source": "partner trails (privacy_spent entries)" if partner_trails else "none: no partner trail in the pack",
        "partners": report,
        "partners_without_trail": {p: {"claimed_by_coordinator": claimed.get(p, {}).get("basic_composition")} for p in missing},
        "differs_from_coordinator_claim": differences,
    }

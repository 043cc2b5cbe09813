"""The study's privacy report: ε spent per partner per release, and in total.

Built from what partners reported with their results: the Gaussian releases of evaluation
statistics (σ, L2 sensitivity, ε, δ) and the DP-SGD runs of training rounds (noise
multiplier, sampling rate, steps, ε, δ). Two totals per partner: basic composition (the sum
of ε and of δ — what partners' ledgers count, always valid) and the tighter composition of
the same releases by the PRV accountant at δ = the sum of δ. Neither is ever below the true
value of the composition it describes.
"""

from __future__ import annotations

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


def privacy_report(results: dict[str, Any]) -> dict[str, Any]:
    """Per partner: every release and the composed totals; empty when no DP was used."""
    report: dict[str, Any] = {}
    for partner, releases in sorted(_partner_releases(results).items()):
        account = PrivacyAccount(accountant="prv")
        for release in releases:
            if "sigma" in release:  # Gaussian release of evaluation statistics
                account.add_gaussian_release(sigma=release["sigma"], l2_sensitivity=release["l2_sensitivity"])
            else:  # DP-SGD
                account.add_dpsgd(
                    noise_multiplier=release["noise_multiplier"], sample_rate=release["sample_rate"], steps=release["steps"]
                )
        total_delta = sum(release["delta"] for release in releases)
        report[partner] = {
            "releases": releases,
            "basic_composition": {"epsilon": sum(r["epsilon"] for r in releases), "delta": total_delta},
            "prv_composition": {"epsilon": account.epsilon(delta=total_delta), "delta": total_delta},
        }
    return report

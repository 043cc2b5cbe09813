"""The shift part of the report: each partner's PSI and Jensen–Shannon distance per feature and for the
label, against the study's reference, flagged above its thresholds; the pooled distributions when no
partner's own histograms are known. Read from the round entry's `shift` (what results.json holds)."""

from __future__ import annotations

from typing import Any

from federated.reporting.formatting import format_value

_REFERENCE = {"pooled": "all partners pooled", "others": "the other partners pooled"}


def _flag(row: dict[str, Any]) -> str:
    """⚠ above the study's thresholds; said so when the PSI is within what sampling and DP noise alone reach."""
    if not row.get("flagged"):
        return ""
    return "⚠" if row.get("beyond_noise", True) else "⚠ (within noise)"


def shift_lines(final: dict[str, Any]) -> list[str]:
    shift = final.get("shift") or {}
    if not shift:
        return []
    reference = _REFERENCE.get(shift["reference"], f"partner {shift['reference']}")
    lines = ["", "## Shift between partners", "",
             f"Reference: {reference}. Flagged (⚠) where PSI > {format_value(shift['psi_threshold'])} or Jensen–Shannon "
             f"distance > {format_value(shift['js_threshold'])}; \"within noise\" where the PSI is below the null PSI. Null PSI (95 %): the PSI sampling"
             + (" and the partners' DP noise" if shift.get("dp") else "") + " alone would reach for a partner of that "
             "size drawn from the reference (a PSI below it is no evidence of shift)."]
    partners = shift.get("partners") or {}
    if partners:
        lines += ["", "| partner | records | feature | PSI | JS distance | null PSI (95 %) | flag |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for partner, rows in partners.items():
            count = float(shift.get("records", {}).get(partner, float("nan")))
            records = f"≈{count:.0f}" if shift.get("dp") else f"{count:.0f}"
            for feature, row in rows.items():
                lines.append(f"| {partner} | {records} | {feature} | {format_value(row['psi'])} | {format_value(row['js'])} | "
                             f"{format_value(row['null_psi_95'])} | {_flag(row)} |")
    if shift.get("note"):
        lines += ["", shift["note"]]
    prevalence = shift.get("label_prevalence", {})
    lines += ["", "| label prevalence | " + " | ".join(f"class {i}" for i in range(len(prevalence.get("pooled", [])))) + " |",
              "| --- |" + " --- |" * len(prevalence.get("pooled", []))]
    lines.append("| pooled | " + " | ".join(format_value(v) for v in prevalence.get("pooled", [])) + " |")
    for partner, values in prevalence.get("partners", {}).items():
        lines.append(f"| {partner} | " + " | ".join(format_value(v) for v in values) + " |")
    lines += ["", "| feature | bin edges | pooled share per bin |", "| --- | --- | --- |"]
    for feature, entry in (shift.get("features") or {}).items():
        lines.append(f"| {feature} | {', '.join(f'{e:g}' for e in entry['edges'])} | "
                     + ", ".join(format_value(v) for v in entry["pooled_proportions"]) + " |")
    if shift.get("dp"):
        lines += ["", "Under DP the histograms are noisy sums (negative cells read as 0): PSI and JS carry the noise; "
                  "compare them with the null PSI."]
    return lines

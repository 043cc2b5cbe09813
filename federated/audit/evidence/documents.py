"""The human-readable documents of an evidence pack, derived from what the study recorded.

Model cards (one per model), the record of processing (GDPR Art. 30(1) headings), the
privacy section and the chronological timeline are rendered from `results.json`, the study
file, partners' manifests and the trail: nothing here is typed by hand, so a document says
no more than the study declared. Where the study declares nothing (controller contact,
retention), the documents say so rather than invent it.

This module must never read partner data, only what the trail and manifests declare about it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from federated.reporting.formatting import format_value
from federated.reporting.validation_section import validation_lines

_CARD_METRICS = ("count", "accuracy", "precision", "recall", "f1", "auroc", "auroc_bound", "brier", "ece", "log_loss")


def _final_round(results: dict[str, Any]) -> dict[str, Any] | None:
    rounds = [r for r in results.get("rounds", []) if r.get("pooled")]
    return rounds[-1] if rounds else None


def model_card(model: dict[str, Any], results: dict[str, Any], study: dict[str, Any]) -> str:
    """A Markdown model card: identity, intended use, results from this study, privacy, limits."""
    name = model["name"]
    final, key = _final_round(results), name
    lineage = results.get("lineage") or []
    if lineage and model.get("sha256") == lineage[-1].get("sha256") and results.get("final_evaluation"):
        final, key = results["final_evaluation"], "global"  # a training study's released model
    trained = key == "global"
    identity = (
        [f"- Weights SHA-256: `{model['sha256']}` (the trail's `model_aggregated` entry of round {lineage[-1]['round']})",
         f"- Format: safetensors weights `{Path(str(lineage[-1].get('file', ''))).name}` (SHA-256 "
         f"`{lineage[-1].get('file_sha256', '')}`), evaluated as ONNX"]
        if trained else
        [f"- SHA-256: `{model['sha256']}` (the hash every task of study `{results['study']}` named; see the trail)",
         f"- Format: ONNX, output `{model.get('output', 'probabilities')}`"]
    )
    lines = [
        f"# Model card — `{name}`",
        "",
        *identity,
        f"- Study: `{results['study']}` ({results.get('purpose', 'evaluation')}), status **{results.get('status', '?')}**",
        "",
        "## Intended use",
        "",
        ("Global model trained in this study" if trained else "Candidate model evaluated in this study")
        + f": {study.get('title') or 'no title declared in the study file'}. "
        "Use beyond what the study's purpose declares is not covered by this evidence.",
        "",
        "## Evaluation results (pooled across partners)",
        "",
    ]
    if final is None or key not in final.get("pooled", {}):
        lines += ["No pooled results were released (the study stopped before a round reached the minimum cohort).", ""]
    else:
        metrics = final["pooled"][key]
        lines += [
            f"Round {final['round']}, {len(final['contributors'])} partners ({', '.join(final['contributors'])}).",
            "",
            "| " + " | ".join(_CARD_METRICS) + " |",
            "|" + " --- |" * len(_CARD_METRICS),
            "| " + " | ".join(format_value(metrics.get(k)) for k in _CARD_METRICS) + " |",
            "",
        ]
        row = final.get("matrix", {}).get(key, {})
        if row:
            lines += ["Per partner (accuracy / AUROC), where the partner allowed release:", ""]
            lines += [
                f"- {partner}: " + ("withheld by the partner" if cell is None else f"{format_value(cell.get('accuracy'))} / {format_value(cell.get('auroc'))}")
                for partner, cell in row.items()
            ]
            lines.append("")
        groups = final.get("subgroups", {}).get(key, {})
        if groups.get("gaps"):
            lines += ["Subgroup gaps (largest difference between levels): "
                      + ", ".join(f"{k} {format_value(v)}" for k, v in sorted(groups["gaps"].items())), ""]
        if key in final.get("validation", {}):
            card_round = {**final, "validation": {key: final["validation"][key]}, "pooled": {key: metrics}}
            lines += [line.replace(f"## Validation — {key}", "## Uncertainty and validation metrics", 1)
                      for line in validation_lines(card_round)] + [""]
    if lineage and model.get("sha256") == lineage[-1].get("sha256"):
        lines += ["## Lineage", "", "| round | SHA-256 (weights) | parent | contributors |", "| --- | --- | --- | --- |"]
        lines += [f"| {e['round']} | `{e['sha256']}` | `{e.get('parent_sha256') or '—'}` | {', '.join(e.get('contributors', [])) or '—'} |"
                  for e in lineage]
        lines.append("")
    lines += [
        "## Privacy parameters",
        "",
        "Differential privacy was "
        + ("on in this study; ε per partner per release is in `privacy/privacy-report.md`." if dp_enabled(results) else
           "**off** in this study: partners released exact sufficient statistics (counts, sums, histograms) or model "
           "updates to the coordinator, never records."),
        "",
        "## Known limits",
        "",
        "- AUROC comes from binned score histograms; the exact AUROC lies within ± `auroc_bound` of it.",
        "- Results describe the contributing partners' data only; refused or missing partners are listed in the report.",
    ]
    if final is not None and final.get("validation"):
        lines += [
            "- Intervals are 95 % (Wilson for proportions, Wilson on DeLong's effective pairs for AUROC) and cover "
            "sampling variation of the pooled records, plus the DP noise when DP was on; they do not cover "
            "differences between these partners and other populations.",
            "- Operating points at thresholds other than the study's own are read at the nearest score-bin edge; "
            "the calibration slope and intercept are fitted on binned scores (an approximation).",
        ]
    else:
        lines.append("- Metrics are point estimates without confidence intervals (this study's results predate them).")
    if final is not None and len(final.get("contributors", [])) < 5:
        lines.append(f"- Small cohort ({len(final['contributors'])} partners): pooled figures may not generalise.")
    return "\n".join(lines) + "\n"


def record_of_processing(
    results: dict[str, Any],
    study: dict[str, Any],
    manifests: dict[str, dict[str, Any]],
    partners: dict[str, dict[str, Any]],
    coordinator_fingerprint: str,
) -> dict[str, Any]:
    """A record of processing with the headings of GDPR Art. 30(1), from what the study declared.

    `manifests` are the partners' manifests handed over with the pack (partner -> fields);
    `partners` are what the trail records per partner (manifest and data hashes, counts).
    """
    categories = {
        partner: {
            "dataset": manifest.get("dataset_id"),
            "description": manifest.get("description", ""),
            "features": manifest.get("features", []),
            "label": manifest.get("label"),
            "special_or_sensitive_attribute": manifest.get("subgroup"),
        }
        for partner, manifest in sorted(manifests.items())
    }
    return {
        "shape": "GDPR Art. 30(1) record of processing activities",
        "controller": {
            "declared": None,
            "note": "The study file declares no controller name or contact; the coordinator is identified by its "
                    f"signing key {coordinator_fingerprint}. Each partner remains controller of its own data.",
        },
        "purposes": {
            "purpose": results.get("purpose"),
            "study": results.get("study"),
            "title": study.get("title", ""),
            "models": [m["name"] for m in results.get("models", [])],
        },
        "categories_of_data_subjects_and_personal_data": categories or {
            "note": "No partner manifest was handed over; the trail names each dataset by hash only.",
        },
        "partners": partners,
        "recipients": [
            "the coordinator: per-partner " + (
                "model updates (clipped weights after local training) and evaluation statistics"
                if results.get("purpose") == "training" else
                "sufficient statistics (counts, sums, histograms), per the study's metrics"),
            "partners allowing per-partner release: none beyond the coordinator's report",
            "readers of the report: pooled metrics only, and per-partner rows where the partner's manifest allows it",
        ],
        "transfers_to_third_countries": "No record-level data leaves any partner; where the coordinator is located "
                                        "is not declared by the study file.",
        "retention": "Not declared by the study or the manifests (data contracts with retention clauses come later); "
                     "partners keep their data where it was; the coordinator keeps aggregates, report and trail.",
        "technical_and_organisational_measures": [
            "computation brought to the data: partners run the evaluation locally and send sufficient statistics",
            "append-only, hash-chained, fsynced audit trails on both sides (RFC 8785 canonical JSON entries)",
            "RFC 9162 Merkle checkpoints signed with Ed25519 (C2SP signed notes), cosigned by every partner each round",
            "task specs signed by the coordinator, naming every model by SHA-256; partners refuse anything else",
            "differential privacy: " + ("on (see the privacy report)" if dp_enabled(results) else "off in this study"),
        ],
    }


def record_of_processing_markdown(record: dict[str, Any]) -> str:
    lines = [f"# Record of processing — study `{record['purposes']['study']}`", "", f"_{record['shape']}_", ""]
    for heading, value in record.items():
        if heading == "shape":
            continue
        lines += [f"## {heading.replace('_', ' ').capitalize()}", ""]
        if isinstance(value, list):
            lines += [f"- {item}" for item in value]
        elif isinstance(value, dict):
            for key, item in value.items():
                shown = f"`{json.dumps(item, sort_keys=True)}`" if isinstance(item, (dict, list)) else item
                lines.append(f"- **{key}**: {shown}")
        else:
            lines.append(str(value))
        lines.append("")
    return "\n".join(lines)


def dp_enabled(results: dict[str, Any]) -> bool:
    """Whether any partner reported a differentially private release in this study."""
    return bool(results.get("privacy"))


def privacy_report_markdown(results: dict[str, Any], spent: dict[str, Any] | None = None) -> str:
    """The privacy section: ε per partner as the partners' own trails record it (`spent`, from
    `federated.reporting.privacy_report.spent_report`), beside what the coordinator's results claim."""
    report = results.get("privacy") or {}
    spent = spent or {"partners": {}, "partners_without_trail": {}, "differs_from_coordinator_claim": []}
    lines = [f"# Privacy report — study `{results['study']}`", ""]
    if not report and not any(p["releases"] for p in spent["partners"].values()):
        lines += [
            "Differential privacy was **off** in this study: no noise was added and no privacy budget (ε, δ) was "
            "spent. Partners released exact sufficient statistics (confusion counts, loss sums, score histograms, "
            "subgroup counts) or model updates to the coordinator; no record left a partner.",
            "",
        ]
    if spent["partners"]:
        lines += [
            "ε each partner really spent in this study, from the `privacy_spent` entries of its own trail (one per "
            "release its ledger charged, failed tasks included; basic composition, as the ledgers count), beside what "
            "the coordinator's results claim.",
            "",
            "| partner | releases (round: ε) | ε spent | δ spent | ε claimed by the coordinator |",
            "| --- | --- | --- | --- | --- |",
        ]
        for partner, entry in spent["partners"].items():
            releases = ", ".join(f"{format_value(r['round'])}: {format_value(r['epsilon'])}" + (" (failed task)" if r.get("outcome") else "")
                                 for r in entry["releases"]) or "none"
            lines.append(f"| {partner} | {releases} | {format_value(entry['spent']['epsilon'])} | {entry['spent']['delta']:.1e} | "
                         f"{format_value(entry['claimed_by_coordinator'].get('epsilon'))} |")
        lines.append("")
    if spent["differs_from_coordinator_claim"]:
        lines += [f"**The coordinator's claim differs from the partner's trail for: {', '.join(spent['differs_from_coordinator_claim'])}.**", ""]
    missing = spent["partners_without_trail"]
    if missing:
        lines += [f"No trail of {', '.join(sorted(missing))} is in this pack: for them only the coordinator's claim below "
                  "exists, which nothing here confirms.", ""]
    if report and (missing or not spent["partners"]):
        lines += [
            "ε per partner per release as partners reported them with their results (the coordinator's record); totals by "
            "basic composition and by the PRV accountant.",
            "",
            "| partner | releases (round: ε) | total ε (basic) | total ε (PRV) | total δ |",
            "| --- | --- | --- | --- | --- |",
        ]
        for partner, entry in sorted(report.items()):
            if spent["partners"] and partner not in missing:
                continue
            releases = ", ".join(f"{r['round']}: {format_value(r.get('epsilon'))}" for r in entry.get("releases", []))
            basic, prv = entry.get("basic_composition", {}), entry.get("prv_composition", {})
            lines.append(f"| {partner} | {releases} | {format_value(basic.get('epsilon'))} | {format_value(prv.get('epsilon'))} | "
                         f"{basic.get('delta', 0):.1e} |")
    return "\n".join(lines).rstrip("\n") + "\n"


def partners_from_trail(entries: list[dict[str, Any]], study_id: str) -> dict[str, dict[str, Any]]:
    """Per partner: the manifest and data hashes and record counts its results declared, by round."""
    partners: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"manifest_sha256": set(), "data_sha256": set(), "contract_sha256": set(), "rounds": {}}
    )
    for entry in entries:
        if entry["kind"] == "result_received" and entry.get("study") == study_id:
            details = entry["details"]
            record = partners[details["partner"]]
            for field in ("manifest_sha256", "data_sha256", "contract_sha256"):  # contract hashes where recorded
                if details.get(field):
                    record[field].add(details[field])
            record["rounds"][str(entry.get("round"))] = details.get("count")
    return {
        name: {"manifest_sha256": sorted(r["manifest_sha256"]), "data_sha256": sorted(r["data_sha256"]),
               "contract_sha256": sorted(r["contract_sha256"]), "records_per_round": r["rounds"]}
        for name, r in sorted(partners.items())
    }


def describe_entry(entry: dict[str, Any]) -> str:
    """One line saying what an entry records, for timelines."""
    details = entry.get("details", {})
    kind = entry["kind"]
    who = details.get("partner") or (f"node {details['node']}" if "node" in details else "")
    if kind == "task_sent":
        extra = f", carrying checkpoint size {details['checkpoint_size']}" if "checkpoint_size" in details else ""
        return f"task {details.get('task_sha256', '')[:12]}… sent to {who}{extra}"
    if kind == "task_received":
        cosigned = details.get("cosigned")
        extra = f"; cosigned coordinator checkpoint size {cosigned['size']}" if cosigned else ""
        return f"task {details.get('task_sha256', '')[:12]}… received{extra}"
    if kind == "result_received":
        return f"result from {who}: {details.get('count')} records, payload {details.get('payload_sha256', '')[:12]}…"
    if kind == "task_refused":
        return f"{who or 'task'} refused ({details.get('clause')}): {details.get('reason')}"
    if kind == "cosignature_received":
        return f"{who} cosigned coordinator checkpoint size {details.get('size')}"
    if kind == "partner_checkpoint_countersigned":
        return f"countersigned {who}'s checkpoint size {details.get('size')}"
    if kind == "round_completed":
        return f"round done: contributors {', '.join(details.get('contributors', [])) or 'none'}"
    if kind == "report_written":
        return "report written: " + ", ".join(sorted(details.get("files", {})))
    shown = ", ".join(f"{k}={v}" for k, v in details.items() if isinstance(v, (str, int, float)) and len(str(v)) < 70)
    return shown


def timeline_markdown(study_id: str, rows: list[dict[str, Any]]) -> str:
    """The chronological narrative: one line per entry and checkpoint, in time order."""
    lines = [f"# Timeline — study `{study_id}`", "", "| time (UTC) | who | what | round | detail |", "| --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['time']} | {row['actor']} | {row['kind']} | {format_value(row.get('round'))} | {row['detail']} |")
    return "\n".join(lines) + "\n"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")

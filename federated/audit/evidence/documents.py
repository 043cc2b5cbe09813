"""The human-readable documents of an evidence pack, derived from what the study recorded.

Model cards (one per model), the record of processing (GDPR Art. 30(1) headings), the
privacy section and the chronological timeline are rendered from `results.json`, the study
file, partners' manifests and the trail: nothing here is typed by hand, so a document says
no more than the study declared. Where the study declares nothing (controller contact,
retention), the documents say so rather than invent it. The Markdown is rendered from the
Jinja2 templates in `templates/` (this module gathers the facts, the templates word them).

This module must never read partner data, only what the trail, manifests and contracts declare about it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

from federated.reporting.formatting import format_count, format_value, not_estimable
from federated.reporting.regression_section import CARD_METRICS as REGRESSION_CARD_METRICS, regression_lines
from federated.reporting.shift_section import shift_lines
from federated.reporting.validation_section import validation_lines

_CARD_METRICS = ("count", "accuracy", "precision", "recall", "f1", "auroc", "auroc_bound", "brier", "ece", "log_loss")


def _final_round(results: dict[str, Any]) -> dict[str, Any] | None:
    rounds = [r for r in results.get("rounds", []) if r.get("pooled")]
    return rounds[-1] if rounds else None


@cache
def _templates() -> Any:
    import jinja2  # the `audit` extra; only writing a pack's documents needs it, verifying does not

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("federated.audit.evidence", "templates"),
        autoescape=False,  # Markdown, not HTML; table cells go through `cell`
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined,
    )
    environment.filters.update(
        value=lambda v: format_value(None if isinstance(v, jinja2.Undefined) else v),
        cell=lambda v: str(v).replace("|", "\\|").replace("\n", " "),
        code=lambda v: f"`{v}`",
        pairs=lambda mapping, sep=": ": ", ".join(f"{k}{sep}{format_value(v)}" for k, v in dict(mapping).items()
                                                  if k not in (None, "None")),  # the closing seal has no round
    )
    return environment


def render(template: str, **context: Any) -> str:
    """One document from `templates/<template>.md.j2`, with runs of blank lines folded to one."""
    text = _templates().get_template(f"{template}.md.j2").render(**context)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"


def model_card(model: dict[str, Any], results: dict[str, Any], study: dict[str, Any]) -> str:
    """A Markdown model card: identity, intended use, results from this study, privacy, limits."""
    name = model["name"]
    final, key = _final_round(results), name
    lineage = results.get("lineage") or []
    released = lineage[-1] if lineage and model.get("sha256") == lineage[-1].get("sha256") else None
    if released is not None and results.get("final_evaluation"):
        final, key = results["final_evaluation"], "global"  # a training study's released model
    metrics = None if final is None else final.get("pooled", {}).get(key)
    validation: list[str] = []
    regression = results.get("task") == "regression"
    card_metrics = REGRESSION_CARD_METRICS if regression else _CARD_METRICS
    if final is not None and metrics is not None and key in final.get("validation", {}):
        card_round = {**final, "validation": {key: final["validation"][key]}, "pooled": {key: metrics}}
        if regression:  # the errors with their intervals, residual histogram and subgroup errors
            validation = ["## Uncertainty and validation metrics", ""] + regression_lines(card_round)[3:]
        else:
            validation = [line.replace(f"## Validation — {key}", "## Uncertainty and validation metrics", 1)
                          for line in validation_lines(card_round)]
    return render(
        "model-card",
        name=name, sha256=model["sha256"], output=model.get("output", "probabilities"), trained=key == "global",
        released=None if released is None else {**released, "file_name": Path(str(released.get("file", ""))).name,
                                                "file_sha256": released.get("file_sha256", "")},
        study=results["study"], purpose=results.get("purpose", "evaluation"), status=results.get("status", "?"),
        title=study.get("title") or "", final=final, metrics=metrics, card_metrics=card_metrics, regression=regression,
        metric_cells=[] if metrics is None else [  # a DP count is noisy, and says so; a swamped ECE, too
            format_count(metrics.get(k), noisy=dp_enabled(results)) if k == "count" else
            not_estimable(k, (final or {}).get("validation", {}).get(key)) or format_value(metrics.get(k))
            for k in card_metrics],
        matrix={} if metrics is None or final is None else final.get("matrix", {}).get(key, {}),
        gaps=sorted(((final or {}).get("subgroups", {}).get(key, {}).get("gaps") or {}).items()) if metrics is not None else [],
        validation=validation, lineage=lineage if released is not None else [], dp_on=dp_enabled(results),
        has_intervals=final is not None and bool(final.get("validation")),
        shift=shift_lines(final) if final is not None and metrics is not None else [],
        monitoring=_monitoring(results.get("monitoring"), name),
    )


def _monitoring(monitoring: dict[str, Any] | None, model: str) -> dict[str, Any] | None:
    """A monitoring study's periods (the thresholded metrics' pooled values for `model`), its alerts on `model`
    and why it stopped, for the model card; None for other studies."""
    if not monitoring:
        return None
    metrics = list(monitoring.get("thresholds") or {})
    alerts = [a for a in monitoring.get("alerts") or [] if a.get("model") == model]
    periods = [{"period": p.get("period"), "status": p.get("status", "?"), "contributors": p.get("contributors") or [],
                "values": [(p.get("pooled") or {}).get(model, {}).get(m) for m in metrics],
                "alerts": sum(1 for a in alerts if a.get("period") == p.get("period"))}
               for p in monitoring.get("periods") or []]
    return {"schedule": monitoring.get("schedule") or {}, "baseline": monitoring.get("baseline") or {},
            "thresholds": monitoring.get("thresholds") or {}, "metrics": metrics, "periods": periods,
            "alerts": alerts, "stopped": monitoring.get("stopped")}


def record_of_processing(
    results: dict[str, Any],
    study: dict[str, Any],
    manifests: dict[str, dict[str, Any]],
    partners: dict[str, dict[str, Any]],
    coordinator_fingerprint: str,
    contracts: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A record of processing with the headings of GDPR Art. 30(1), from what the study declared.

    `study` is the study file as parsed TOML (its `[governance]` names the controller, legal basis,
    jurisdiction, retention and recipients); `manifests` and `contracts` are what partners handed
    over with the pack (partner -> fields); `partners` is what the trail records per partner.
    """
    governance = study.get("governance") or {}
    contracts = contracts or {}
    categories: dict[str, Any] = {
        partner: {
            "dataset": manifest.get("dataset_id"),
            "description": manifest.get("description", ""),
            "features": list(manifest.get("features", [])),
            "label": manifest.get("label"),
            "special_or_sensitive_attribute": manifest.get("subgroup"),
            **({"contract": _contract_terms(contracts[partner])} if partner in contracts else {}),
        }
        for partner, manifest in sorted(manifests.items())
    }
    controller = governance.get("controller") or None
    return {
        "shape": "GDPR Art. 30(1) record of processing activities",
        "controller": {
            "declared": controller,
            "coordinator_key": coordinator_fingerprint,
            "note": (f"{controller}, as the study's [governance] declares" if controller else
                     "The study's [governance] declares no controller")
                    + f"; the coordinator is identified by its signing key {coordinator_fingerprint or '(not in this pack)'}. "
                    "Each partner remains controller of its own data.",
        },
        "purposes": {
            "purpose": results.get("purpose"),
            "study": results.get("study"),
            "title": study.get("title", ""),
            "models": [m["name"] for m in results.get("models", [])],
            "legal_basis": governance.get("legal_basis"),
            "accepted_licences": list(governance.get("accepted_licences", [])),
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
            *(f"{recipient} (declared by the study's [governance])" for recipient in governance.get("recipients", [])),
        ],
        "transfers_to_third_countries": _transfers(governance.get("jurisdiction"), contracts),
        "retention": _retention(governance.get("retention_days"), contracts),
        "technical_and_organisational_measures": [
            "computation brought to the data: partners run the evaluation locally and send sufficient statistics",
            "append-only, hash-chained, fsynced audit trails on both sides (RFC 8785 canonical JSON entries)",
            "RFC 9162 Merkle checkpoints signed with Ed25519 (C2SP signed notes), cosigned by every partner each round",
            "task specs signed by the coordinator, naming every model by SHA-256; partners refuse anything else",
            "data contracts checked by each partner's node before any task touches data"
            + (f" (contracts handed over: {', '.join(sorted(contracts))})" if contracts else ""),
            "differential privacy: " + ("on (see the privacy report)" if dp_enabled(results) else "off in this study"),
        ],
    }


def _contract_terms(contract: dict[str, Any]) -> dict[str, Any]:
    """What a record of processing repeats from a partner's data contract (never its keys or caps)."""
    return {field: contract.get(field) for field in
            ("sensitivity", "provenance", "licence", "legal_bases", "jurisdictions", "consent_scope", "retention_days")}


def _transfers(jurisdiction: str | None, contracts: dict[str, dict[str, Any]]) -> str:
    said = (f"The study declares jurisdiction {jurisdiction}" if jurisdiction else
            "The study's [governance] declares no jurisdiction")
    allowed = "; ".join(f"{partner}'s contract permits {', '.join(c.get('jurisdictions', []))}"
                        for partner, c in sorted(contracts.items()))
    return f"No record-level data leaves any partner. {said}" + (f"; {allowed}." if allowed else ".")


def _retention(days: int | None, contracts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    allowed = {partner: c["retention_days"] for partner, c in sorted(contracts.items()) if c.get("retention_days") is not None}
    if days is not None:
        summary = f"The coordinator keeps the study's results for {days} days, as the study's [governance] declares (retention_days)."
    elif allowed:
        summary = "The study's [governance] declares no retention period; partners' contracts set the limits below."
    else:
        summary = "Not declared: neither the study's [governance] (retention_days) nor a contract handed over sets one."
    summary += " Partners keep their data where it was; the coordinator keeps aggregates, report and trail."
    if allowed:
        summary += " A partner's node accepts the study's tasks only while the study's retention is within its contract's limit:"
    return {"days": days, "contracts": allowed, "summary": summary}


def record_of_processing_markdown(record: dict[str, Any]) -> str:
    return render("record-of-processing", record=record)


def dp_enabled(results: dict[str, Any]) -> bool:
    """Whether any partner reported a differentially private release in this study."""
    return bool(results.get("privacy"))


def privacy_report_markdown(results: dict[str, Any], spent: dict[str, Any] | None = None) -> str:
    """The privacy section: ε per partner as the partners' own trails record it (`spent`, from
    `federated.reporting.privacy_report.spent_report`), beside what the coordinator's results claim."""
    report = results.get("privacy") or {}
    spent = spent or {"partners": {}, "partners_without_trail": {}, "differs_from_coordinator_claim": []}
    missing = sorted(spent["partners_without_trail"])
    claimed = {}
    if report and (missing or not spent["partners"]):  # the coordinator's claim, where no partner trail confirms it
        for partner, entry in sorted(report.items()):
            if spent["partners"] and partner not in missing:
                continue
            claimed[partner] = {"releases": entry.get("releases", []),
                                "basic_composition": {"epsilon": None, "delta": 0, **entry.get("basic_composition", {})},
                                "prv_composition": {"epsilon": None, **entry.get("prv_composition", {})}}
    partners = {name: {**entry, "releases": [{"outcome": None, **r} for r in entry["releases"]],
                       "claimed_by_coordinator": {"epsilon": None, **entry.get("claimed_by_coordinator", {})}}
                for name, entry in spent["partners"].items()}
    shared = {name: entry for name, entry in partners.items() if entry.get("spent_own_share")}  # distributed noise
    return render("privacy-report", study=results["study"],
                  dp_on=bool(report) or any(p["releases"] for p in spent["partners"].values()),
                  spent={**spent, "partners": partners}, missing=missing, claimed=claimed, shared=shared)


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
        # A DP release withholds its exact record count (sent as 0): "withheld", never "0 records".
        size = f"{details['count']} records" if details.get("count") else "record count withheld"
        return f"result from {who}: {size}, payload {details.get('payload_sha256', '')[:12]}…"
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
    return render("timeline", study=study_id, rows=[{"round": None, **row} for row in rows])


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")

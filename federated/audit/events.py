"""The audit event schema: one entry per action, hashes and counts only, never raw data.

Evolution rule (as in dp_accounting's dp_event.py): a field, once released, is never
removed or given a new meaning; new fields are optional and readers ignore what they do
not know; a change that cannot follow this rule bumps `SCHEMA_VERSION`, and verifiers keep
accepting every older version. Event kinds are only ever added, never renamed.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

# Every kind an Accord trail may hold, with what its `details` carry.
EVENT_KINDS: dict[str, str] = {
    "trail_opened": "a new trail file was created (actor)",
    "trail_repaired": "a torn final record was cut off on open (bytes_dropped, sha256 of the dropped bytes)",
    "study_submitted": "coordinator CLI: study hash, model hashes, Flower run id",
    "study_started": "ServerApp: study hash, model hashes, rounds, minimum cohort",
    "cohort_ready": "connected nodes reached the minimum cohort (node count)",
    "task_sent": "a task for one node (node id, task hash)",
    "task_received": "partner: a task arrived (task hash, study, round)",
    "task_accepted": "partner: checks passed (data hash, manifest hash, example count)",
    "task_refused": "a task was refused (clause, reason) — logged by the partner and the coordinator",
    "result_sent": "partner: statistics left the node (hash of the reply payload)",
    "result_received": "coordinator: a partner's reply (partner, payload hash, example count)",
    "partner_missing": "coordinator: no reply from a node before the round timeout, or a Flower error",
    "aggregate_computed": "coordinator: sums over contributing partners (hash of the aggregate)",
    # Added with encrypted aggregation (issue 5): `aggregate_computed` may carry `encrypted`, the
    # ciphertext aggregate's SHA-256 and each partner's bundle SHA-256; `study_submitted`,
    # `study_started`, `task_received` may carry `he_fingerprint`; all optional.
    "aggregate_decrypted": "coordinator: a partner decrypted an encrypted aggregate (partner, aggregate and plaintext hashes, contributors)",
    "round_completed": "coordinator: a round ended (contributors, duration)",
    "privacy_spent": "partner: ε, δ, noise multiplier, sample rate and steps of one local DP-SGD run",
    "update_flagged": "coordinator: an accepted update's norm is a statistical outlier this round (partner, reason)",
    "update_rejected": "coordinator: a partner's update was left out (reason: shape, NaN/Inf, norm bound)",
    "model_aggregated": "coordinator: a new global model (hash, parent hash, round, contributors, aggregator, file)",
    "report_written": "coordinator: results and report files with their hashes",
    "study_completed": "coordinator: the study ended normally",
    "study_failed": "coordinator: the study stopped (reason)",
    # Added with signed checkpoints (issue 6). `task_sent` may now carry `checkpoint_size` (the
    # coordinator checkpoint the task carried) and `task_received` may carry `coordinator_key`,
    # `cosigned` (origin, size, root of the coordinator checkpoint the partner cosigned) and
    # `countersigned_size` (its own checkpoint the coordinator countersigned); both optional.
    "cosignature_received": "coordinator: a partner cosigned a coordinator checkpoint (partner, origin, size, key)",
    "partner_checkpoint_countersigned": "coordinator: it cosigned a partner's checkpoint (partner, origin, size, root)",
    # Added with secure mode (issue 7). `task_sent` and `task_received` may now carry `nonce` (the
    # 128-bit hex nonce the task signature covers; a partner refuses a nonce it saw before, clause
    # "replay"); optional.
    "nodes_authorized": "coordinator CLI: SuperNode public keys registered with the SuperLink (name, node id, key fingerprint)",
    # Added with expected partners (issue 15). `cohort_ready` may now carry `expected` (how many partners
    # the study waited for) and `round_completed` may carry `pooled` (the round's pooled metrics per model,
    # as released in results.json); both optional.
    "partner_joined_late": "coordinator: a node connected after the study started (node, before_round: the first round it could take, or null)",
    "expected_partners_missing": "coordinator: partners the study expected by name that never answered (names)",
    # The closing seal (`federated.messages.seal`): its task_sent / task_received / task_accepted /
    # result_sent / result_received / cosignature_received / partner_missing entries carry round
    # null; the partner's task_received and result_sent carry `step: "seal"`. No new kind.
    # Added with monitoring studies (issue 16, `federated.server.monitoring`); `round` is the period's round.
    "monitoring_period_started": "coordinator: a monitoring period began (period; its round)",
    "monitoring_period_completed": "coordinator: a monitoring period was compared with its baseline (period, contributors, alerts)",
    "monitoring_alert": "coordinator: a period's metric degraded beyond the study's threshold (period, model, partner or null, metric, baseline, value, difference, p_value, threshold, message)",
    "monitoring_alert_sink_failed": "coordinator: an alert could not be written to its file or posted to its webhook (period, sink, target, error)",
    "monitoring_stopped": "coordinator: a partner refused a period for its budget, monitoring terms or a missing snapshot (period, partner, clause, resumable)",
    "monitoring_resumed": "coordinator: a restarted monitoring study resumes (periods_done, next_period, next_round)",
}


def check_kind(kind: str) -> None:
    """Raise ValueError for an event kind that the schema does not define."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown audit event kind {kind!r}; known kinds: {sorted(EVENT_KINDS)}")

"""The audit trail: append-only, hash-chained, fsynced JSON Lines on both sides of a study, and what
makes it verifiable by others.

- `trail` — the trail itself (`AuditTrail`, `verify_trail`); `events` — the event schema;
- `log`, `store`, `witness` — the RFC 9162 Merkle log over a trail, its C2SP signed checkpoints kept
  beside it, and the checks before cosigning a peer's checkpoint;
- `exchange`, `coordinator_audit`, `partner_audit` — checkpoints and cosignatures carried by the
  tasks and replies a study sends anyway;
- `pack`, `verify`, `evidence`, `documents` — the evidence pack and its offline verification
  (`python -m federated.audit export|verify|show|prove`).
"""

from federated.audit.events import EVENT_KINDS, SCHEMA_VERSION
from federated.audit.trail import AuditTrail, TrailError, read_entries, verify_trail

__all__ = ["EVENT_KINDS", "SCHEMA_VERSION", "AuditTrail", "TrailError", "read_entries", "verify_trail"]

"""The audit trail: append-only, hash-chained, fsynced JSON Lines on both sides of a study."""

from federated.audit.events import EVENT_KINDS, SCHEMA_VERSION
from federated.audit.trail import AuditTrail, TrailError, read_entries, verify_trail

__all__ = ["EVENT_KINDS", "SCHEMA_VERSION", "AuditTrail", "TrailError", "read_entries", "verify_trail"]

"""Errors of the audit layer: a peer's log that cannot be trusted, a pack that does not verify.

Both map to `ExitCode.VERIFICATION_FAILED`. `TrailError` (a damaged trail file) lives in
`federated.audit.trail` beside the code that raises it.
"""

from __future__ import annotations

from accord.errors import ExitCode
from federated.errors import FederatedError, NamedClauseRefusal


class AuditError(FederatedError):
    """A checkpoint, cosignature, key or evidence pack does not verify; the message says which and why."""

    exit_code = ExitCode.VERIFICATION_FAILED


class AuditRefusal(AuditError, NamedClauseRefusal):
    """A peer's log went backwards or forked, its key changed, or its signature fails: stop dealing with it.

    On a partner this becomes a refusal with clause "audit"; on the coordinator, a refused reply.
    """

    clause = "audit"


class KeyMismatchError(AuditError):
    """A log's checkpoints are signed with another key than the one given to continue it."""

"""Refusals particular to a partner's node; every one is a `federated.errors.RefusalError`."""

from __future__ import annotations

from federated.errors import NamedClauseRefusal


class ReplayRefusal(NamedClauseRefusal):
    """The task's nonce was seen before, or the task carries none."""

    clause = "replay"

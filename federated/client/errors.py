"""Refusals particular to a partner's node; every one is a `federated.errors.RefusalError`."""

from __future__ import annotations

from federated.errors import NamedClauseRefusal


class ReplayRefusal(NamedClauseRefusal):
    """The task's nonce was seen before, or the task carries none."""

    clause = "replay"


class StudyRefusal(NamedClauseRefusal):
    """The node's own study state forbids the task: a sealed study, a repeated or earlier round, or a
    study this node stopped serving after a task of it failed on its data."""

    clause = "study"

"""Errors raised by the orchestration layer; each message names the file, field or partner."""

from __future__ import annotations

from accord.errors import AccordError, ExitCode


class FederatedError(AccordError):
    """Base of every error the `federated` package raises on purpose."""


class ConfigError(FederatedError):
    """A study file, manifest or command-line value is malformed or inconsistent."""

    exit_code = ExitCode.INVALID_INPUT


class DataError(FederatedError):
    """A partner's data does not match its manifest or the model it is asked to run."""

    exit_code = ExitCode.INVALID_INPUT


class DataFileError(DataError):
    """A partner's data file does not match its manifest (format, columns, values, SHA-256, record count).

    Apart from `DataError` because a node refuses it as its own state ("data"), never as the failure
    of a model the task sent: a streaming evaluation meets both kinds in the same pass."""


class MessageError(FederatedError):
    """A task or reply message is malformed, truncated or inconsistent."""

    exit_code = ExitCode.INVALID_INPUT


class CohortTooSmallError(FederatedError):
    """Fewer partners than the study's minimum cohort took part."""

    exit_code = ExitCode.COHORT_TOO_SMALL
    status = "cohort_too_small"  # the study status results.json records


class FlowerRuntimeError(FederatedError):
    """Flower's own runtime (SuperLink, SuperNode, a run) failed or could not start."""

    exit_code = ExitCode.FLOWER


class RefusalError(FederatedError):
    """A partner refuses a task. `clause` names the check that failed; the message is the detail.

    Every refusal in Accord is one of these (a contract clause, the budget, a replay, the audit
    check, an encryption check, the data or the model); the node answers with the clause and logs
    the detail, so one `except RefusalError` handles them all.
    """

    exit_code = ExitCode.REFUSED
    clause: str = "task"

    def __init__(self, clause: str, reason: str) -> None:
        super().__init__(reason)
        self.clause = clause


class NamedClauseRefusal(RefusalError):
    """A refusal whose class fixes the clause: raise it with the reason alone."""

    def __init__(self, reason: str) -> None:
        super().__init__(type(self).clause, reason)


class EncryptionMessageError(MessageError, NamedClauseRefusal):
    """An encrypted reply or decryption message does not check out; refusals name the clause "encryption"."""

    clause = "encryption"


class ResultsError(FederatedError):
    """A results.json does not fit the results document (`federated.reporting.results`): names the file and field."""

    exit_code = ExitCode.INVALID_INPUT

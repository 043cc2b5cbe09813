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


class MessageError(FederatedError):
    """A task or reply message is malformed, truncated or inconsistent."""

    exit_code = ExitCode.INVALID_INPUT


class CohortTooSmallError(FederatedError):
    """Fewer partners than the study's minimum cohort took part."""

    exit_code = ExitCode.COHORT_TOO_SMALL


class FlowerRuntimeError(FederatedError):
    """Flower's own runtime (SuperLink, SuperNode, a run) failed or could not start."""

    exit_code = ExitCode.FLOWER

"""The root of Accord's exception hierarchy and the exit codes the CLIs document.

Every package has one base exception deriving from `AccordError`; each error
carries the exit code a CLI maps it to, so `python -m ...` never guesses.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes shared by every Accord command line (documented in docs/exit-codes.md)."""

    OK = 0
    FAILURE = 1  # an unexpected error: a bug, reported with its traceback
    USAGE = 2  # bad command-line usage (typer's own code)
    INVALID_INPUT = 3  # a config, contract, manifest, key or data file is malformed
    COHORT_TOO_SMALL = 4  # fewer partners than the minimum cohort answered
    REFUSED = 5  # a partner-side check refused the task (contract, budget, hash)
    VERIFICATION_FAILED = 6  # an audit trail, signature or proof did not verify
    FLOWER = 7  # Flower's runtime (SuperLink, SuperNode, run) failed
    VERIFIED_WITH_GAPS = 8  # verify: all checks held, but the auditor allowed missing partner evidence (listed)


class AccordError(Exception):
    """Base of every error Accord raises on purpose; the message names what failed."""

    exit_code: ExitCode = ExitCode.FAILURE

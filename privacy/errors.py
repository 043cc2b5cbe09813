"""Errors raised by the `privacy` package; each message names the parameter, study, release or file.

The hierarchy is shallow on purpose (like opacus/validators/errors.py): a caller catches
`PrivacyError` for "anything privacy refused or could not do", or one precise subclass.
Errors that report a bad value also derive from `ValueError`, so code written against
Opacus-style accountants (which raise `ValueError`) keeps working.

This module must never import `federated`, torch or opacus: partner processes import it first.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from accord.errors import AccordError, ExitCode


class PrivacyError(AccordError):
    """Base of every error the `privacy` package raises on purpose."""


class AccountingError(PrivacyError, ValueError):
    """A privacy parameter, accountant name or accountant state is invalid, or ε cannot be computed."""

    exit_code = ExitCode.INVALID_INPUT


class LedgerError(PrivacyError):
    """A budget ledger file is missing, not a ledger, of an unknown schema, or a spend is malformed."""

    exit_code = ExitCode.INVALID_INPUT


class ReleaseConflictError(LedgerError, ValueError):
    """A release id already in the ledger was spent again with different parameters."""


class BudgetExceededError(PrivacyError):
    """A spend would take a study's or the dataset's total ε past its cap; nothing was spent.

    The message states the cap, what was requested and the budget that remains; the same
    numbers are attributes so a caller can log them without parsing the message.
    """

    exit_code = ExitCode.REFUSED

    def __init__(
        self,
        *,
        scope: str,
        study_id: str,
        release: str,
        requested_epsilon: float,
        cap_epsilon: float,
        spent_epsilon: float,
        remaining_epsilon: float,
    ) -> None:
        self._fields: dict[str, Any] = dict(
            scope=scope,
            study_id=study_id,
            release=release,
            requested_epsilon=requested_epsilon,
            cap_epsilon=cap_epsilon,
            spent_epsilon=spent_epsilon,
            remaining_epsilon=remaining_epsilon,
        )
        self.scope = scope
        self.study_id = study_id
        self.release = release
        self.requested_epsilon = requested_epsilon
        self.cap_epsilon = cap_epsilon
        self.spent_epsilon = spent_epsilon
        self.remaining_epsilon = remaining_epsilon
        where = f"study {study_id!r}" if scope == "study" else "this dataset (all studies)"
        super().__init__(
            f"privacy budget exceeded: release {release!r} of study {study_id!r} requests "
            f"ε={requested_epsilon:.6g}, but the {scope} cap for {where} is ε={cap_epsilon:.6g} "
            f"with ε={spent_epsilon:.6g} already spent; remaining budget ε={remaining_epsilon:.6g}"
        )

    def __reduce__(self) -> tuple[object, tuple[()]]:
        # keyword-only __init__: rebuild from the fields so the error survives pickling
        # (multiprocessing, concurrent.futures) with its numbers intact.
        return partial(type(self), **self._fields), ()

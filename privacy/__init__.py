"""What may leave a partner and how: privacy accounting, calibrated noise, the budget ledger.

Public names only; the modules behind them are internals. Importing this package must stay
cheap (no torch, no opacus: those load inside the accounting computations that need them) and
must never import `federated`.
"""

from privacy.composition import Accountant, Segment, accountant_names, create_accountant
from privacy.accounting import PrivacyAccount, epsilon, noise_multiplier
from privacy.dp_sgd_plan import DPSGDPlan, DPSGDSettings, plan_dp_sgd
from privacy.errors import (
    AccountingError,
    BudgetExceededError,
    LedgerError,
    PrivacyError,
    ReleaseConflictError,
)
from privacy.gaussian import gaussian_delta, gaussian_epsilon, gaussian_sigma
from privacy.ledger import BudgetLedger, Spend

__all__ = [
    "Accountant",
    "AccountingError",
    "BudgetExceededError",
    "BudgetLedger",
    "DPSGDPlan",
    "DPSGDSettings",
    "LedgerError",
    "PrivacyAccount",
    "PrivacyError",
    "ReleaseConflictError",
    "Segment",
    "Spend",
    "accountant_names",
    "create_accountant",
    "epsilon",
    "gaussian_delta",
    "gaussian_epsilon",
    "gaussian_sigma",
    "noise_multiplier",
    "plan_dp_sgd",
]

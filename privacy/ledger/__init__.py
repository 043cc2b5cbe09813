"""The partner's persistent privacy budget ledger (one SQLite file per dataset) and its CLI.

`BudgetLedger` (in `privacy.ledger.budget`) enforces the ε caps atomically; `python -m
privacy.ledger show FILE [--json]` (in `__main__.py`) prints what was spent. Must never
import `federated`.
"""

from privacy.ledger.budget import BudgetLedger, Spend

__all__ = ["BudgetLedger", "Spend"]

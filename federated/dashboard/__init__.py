"""A read-only web page over a coordinator's outputs (`python -m federated.dashboard --output DIR`) and over a
partner's node (`python -m federated.dashboard partner --trail T`): server-rendered, no JavaScript, loopback
unless a token guards it. The dashboard sits above every other layer: it reads what they write and changes
nothing."""

from federated.dashboard.app import coordinator_app, partner_app
from federated.dashboard.partner import PartnerSources
from federated.dashboard.security import check_bind
from federated.dashboard.studies import Sources

__all__ = ["PartnerSources", "Sources", "check_bind", "coordinator_app", "partner_app"]

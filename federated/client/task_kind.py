"""What a kind of task is, for the partner's pipeline: how it is parsed, described, costed and run,
and which keys it may use. The kinds themselves are in `federated.client.tasks`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from flwr.app import RecordDict

from federated.client.costs import TaskCost
from federated.client.data import PartnerData, PartnerFile
from federated.messages.common import PartnerInfo

if TYPE_CHECKING:
    from crypto import Identity
    from crypto.he_keys import SecretContext
    from federated.evaluation.disclosure import CellSuppression

TaskT = TypeVar("TaskT")


@dataclass(frozen=True)
class NodeKeys:
    """The keys a task may use: the node's Ed25519 identity (signs its encrypted bundles) and the
    study's HE secret context (None unless the task is encrypted); and the small-cell suppression its
    contract holds a release without DP to (`federated.client.contract_gate.suppression`)."""

    identity: Identity
    he: SecretContext | None = None
    suppression: CellSuppression | None = None
    # Distributed noise: the node adds a share N(0, σ²/t) of the evaluation noise, t = `noise_shares`
    # (`federated.client.contract_gate.noise_shares`); 1: the full local noise.
    noise_shares: int = 1


def task_purpose(kind: TaskKind[Any], spec: Any) -> str:
    """What a task uses the data for, as data contracts name it: the kind's purpose, or for an evaluation
    task its spec's (a monitoring study's period is an evaluation task with purpose "monitoring")."""
    return str(getattr(spec, "purpose", kind.purpose)) if kind.purpose == "evaluation" else kind.purpose


def _not_encrypted(task: Any) -> str | None:
    return None


@dataclass(frozen=True)
class TaskKind(Generic[TaskT]):
    """How one kind of task is parsed, described, costed and run."""

    message_type: str  # the Flower message type that carries it ("train", "query.evaluate", ...)
    parse: Callable[[RecordDict], TaskT]
    task_sha256: Callable[[TaskT], str]
    where: Callable[[TaskT], dict[str, Any]]
    received: Callable[[TaskT], dict[str, Any]]
    # Privacy cost of a task with this signed spec (`task.spec`), given the data's size; the spec alone
    # decides it, so that `federated.client.check` costs a study's tasks before they exist.
    cost: Callable[[Any, int], TaskCost]
    # Runs the task; returns (reply content given the partner's info, details for the trail).
    # The data is None for a kind that does not use data, a `PartnerFile` for one that `streams`.
    run: Callable[[TaskT, PartnerData | PartnerFile | None, PartnerInfo, NodeKeys], tuple[RecordDict, dict[str, Any]]]
    # The fingerprint of the study key the task is encrypted under (None: not encrypted).
    encryption: Callable[[TaskT], str | None] = _not_encrypted
    uses_data: bool = True  # False: no data, no budget (decryption of an aggregate)
    purpose: str = "evaluation"  # what the data is used for, as data contracts name it
    # True: the kind reads the data in one streaming, hashed pass as it runs (memory bounded by a
    # batch); False: the pipeline loads and checks the whole file first (training needs the arrays).
    streams: bool = False

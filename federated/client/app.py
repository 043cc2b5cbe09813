"""Accord's ClientApp: what a partner's node runs for each task the coordinator sends.

It runs from the partner's own installed Accord (the run's app bundle carries no code).
Every task goes through `federated.client.pipeline.serve`: checked before data is used,
refused with a named clause when a check fails, logged in the partner's trail. One handler
per kind in `federated.client.tasks.TASK_KINDS`, registered with Flower's own decorators.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from federated.client.pipeline import serve
from federated.client.task_kind import TaskKind
from federated.client.tasks import TASK_KINDS

app = ClientApp()


def _handler(kind: TaskKind[Any]) -> Callable[[Message, Context], Message]:
    def handle(message: Message, context: Context) -> Message:
        return serve(kind, message, context)

    return handle


# "train" → @app.train(), "query.evaluate" → @app.query("evaluate"), and so on for every kind.
for _message_type, _kind in TASK_KINDS.items():
    _category, _, _action = _message_type.partition(".")
    _decorator = {"train": app.train, "evaluate": app.evaluate, "query": app.query}[_category]
    (_decorator(_action) if _action else _decorator())(_handler(_kind))

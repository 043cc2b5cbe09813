"""The registry of task kinds: the ClientApp, the in-process grid and `client check` see the same kinds."""

from __future__ import annotations

from federated.client.app import app
from federated.client.tasks import TASK_KINDS
from federated.messages.study_tasks import study_tasks
from federated.study import Study


def _flower_name(message_type: str) -> str:
    return message_type if "." in message_type else f"{message_type}.default"


def test_the_client_app_handles_exactly_the_registered_kinds():
    assert sorted(app._registered_funcs) == sorted(_flower_name(t) for t in TASK_KINDS)


def test_every_task_a_study_sends_has_a_registered_kind(tmp_path):
    study = Study.model_validate(
        {"id": "s", "purpose": "training", "output_dir": str(tmp_path), "rounds": 2,
         "training": {"architecture": "mlp", "num_features": 4}}
    )
    for planned in study_tasks(study, study_sha256="0" * 64):
        assert planned.message_type in TASK_KINDS, planned

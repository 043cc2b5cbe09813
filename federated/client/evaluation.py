"""The partner's side of an evaluation task: run each candidate model, keep only sums."""

from __future__ import annotations

from federated.client.data import PartnerData
from federated.evaluation.onnx_model import predict_probabilities
from federated.evaluation.statistics import EvaluationStatistics, compute_statistics
from federated.messages.evaluation import EvaluationTask


def evaluate_task(task: EvaluationTask, data: PartnerData) -> dict[str, EvaluationStatistics]:
    """Sufficient statistics per candidate model on this partner's data."""
    layout = task.spec.layout()
    results = {}
    for ref in task.spec.models:
        probabilities = predict_probabilities(ref.name, task.model_bytes[ref.name], ref.output, data.features)
        results[ref.name] = compute_statistics(probabilities, data.labels, data.subgroups, layout)
    return results

"""The partner's side of an evaluation task: run each candidate model, keep only sums.

Data arrives in batches (`federated.client.data.scan_partner_data` reads a file that way):
each model runs on a batch, the batch's sufficient statistics are added to the running
totals, and the batch is dropped, so memory follows the batch, not the dataset.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from federated.client.data import (
    DataBatch,
    DataManifest,
    PartnerData,
    scan_partner_data,
)
from federated.evaluation.onnx_model import OnnxModel
from federated.evaluation.statistics import EvaluationStatistics, compute_statistics
from federated.messages.evaluation import EvaluationTask

IN_MEMORY_BATCH = 65_536  # records per model call on loaded data: bounds the temporaries


def evaluate_batches(
    task: EvaluationTask, batches: Iterable[DataBatch], *, num_features: int
) -> dict[str, EvaluationStatistics]:
    """Sufficient statistics per candidate model, summed over `batches`.

    Every model is loaded (and checked against `num_features`) before the first batch is read.
    If a batch fails, the error goes back into a generator source (`throw`), so a data file
    that does not match its manifest is reported as that rather than as the failure it caused.
    """
    layout = task.spec.layout()
    models = [OnnxModel(ref.name, task.model_bytes[ref.name], ref.output, num_features) for ref in task.spec.models]
    totals: dict[str, EvaluationStatistics] = {}
    source: Iterator[DataBatch] = iter(batches)
    for batch in source:
        try:
            for model in models:
                part = compute_statistics(model.predict(batch.features), batch.labels, batch.subgroups, layout)
                totals[model.name] = totals[model.name] + part if model.name in totals else part
        except Exception as exc:
            throw = getattr(source, "throw", None)
            if throw is not None:
                throw(exc)
            raise
    return totals


def _slices(data: PartnerData, size: int) -> Iterator[DataBatch]:
    for start in range(0, data.size, size):
        part = slice(start, start + size)
        subgroups = data.subgroups[part] if data.subgroups is not None else None
        yield DataBatch(data.features[part], data.labels[part], subgroups, start)


def evaluate_task(task: EvaluationTask, data: PartnerData) -> dict[str, EvaluationStatistics]:
    """Sufficient statistics per candidate model on this partner's loaded data."""
    return evaluate_batches(task, _slices(data, IN_MEMORY_BATCH), num_features=data.features.shape[1])


def evaluate_file(task: EvaluationTask, data_path: Path, manifest: DataManifest) -> dict[str, EvaluationStatistics]:
    """Sufficient statistics per candidate model, reading `data_path` in one checked, hashed pass."""
    return evaluate_batches(task, scan_partner_data(data_path, manifest), num_features=len(manifest.features))

"""The partner's side of an evaluation task: run each candidate model, keep only sums.

Data arrives in batches (`federated.client.data.scan_partner_data` reads a file that way):
each model runs on a batch, the batch's sufficient statistics are added to the running
totals, and the batch is dropped, so memory follows the batch, not the dataset. A regression
study's models give one number per record, summed into `federated.evaluation.regression` statistics.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from federated.client.data import (
    DataBatch,
    DataManifest,
    PartnerData,
    PartnerFile,
    scan_partner_data,
)
from federated.errors import MessageError
from federated.evaluation.onnx_model import OnnxModel
from federated.evaluation.regression import (
    RegressionLayout,
    compute_regression_statistics,
)
from federated.evaluation.statistics import (
    StatisticsLayout,
    compute_statistics,
)
from federated.messages.evaluation import EvaluationTask, ModelStatistics

IN_MEMORY_BATCH = 65_536  # records per model call on loaded data: bounds the temporaries


def evaluate_batches(
    task: EvaluationTask, batches: Iterable[DataBatch], *, num_features: int, feature_names: Sequence[str] | None = None
) -> dict[str, ModelStatistics]:
    """Sufficient statistics per candidate model, summed over `batches`.

    Every model is loaded (and checked against `num_features`) before the first batch is read.
    If a batch fails, the error goes back into a generator source (`throw`), so a data file
    that does not match its manifest is reported as that rather than as the failure it caused.
    `feature_names`: the manifest's feature columns, where a shift study finds its features.
    """
    layout, regression = task.spec.layout(), task.spec.regression_layout()
    shift_columns = _shift_columns(layout, feature_names)
    models = [OnnxModel(ref.name, task.model_bytes[ref.name], ref.output, num_features) for ref in task.spec.models]
    totals: dict[str, ModelStatistics] = {}
    source: Iterator[DataBatch] = iter(batches)
    for batch in source:
        try:
            for model in models:
                part = _batch_statistics(model, batch, layout, regression, shift_columns)
                totals[model.name] = totals[model.name] + part if model.name in totals else part  # type: ignore[operator]
        except Exception as exc:
            throw = getattr(source, "throw", None)
            if throw is not None:
                throw(exc)
            raise
    return totals


def _shift_columns(layout: StatisticsLayout, feature_names: Sequence[str] | None) -> list[int]:
    """Where the study's shift features are among the manifest's feature columns."""
    if not layout.shift_features:
        return []
    names = list(feature_names or [])
    missing = [name for name in layout.shift_features if name not in names]
    if missing:
        raise MessageError(f"the study's shift features {missing} are not among this partner's manifest features {names}")
    return [names.index(name) for name in layout.shift_features]


def _batch_statistics(model: OnnxModel, batch: DataBatch, layout: StatisticsLayout,
                      regression: RegressionLayout | None, shift_columns: list[int] | None = None) -> ModelStatistics:
    """One batch's sums for one model: regression sums of its numbers, else classification statistics."""
    if regression is not None:
        return compute_regression_statistics(model.predict_values(batch.features), batch.labels, batch.subgroups,
                                             regression)
    if batch.labels.dtype.kind == "f":
        raise MessageError("the study evaluates classifiers, but this partner's manifest declares its label column "
                           'as numbers (label_type = "number")')
    columns = batch.features[:, shift_columns] if shift_columns else None
    return compute_statistics(model.predict(batch.features), batch.labels, batch.subgroups, layout, shift_columns=columns)


def _slices(data: PartnerData, size: int) -> Iterator[DataBatch]:
    for start in range(0, data.size, size):
        part = slice(start, start + size)
        subgroups = data.subgroups[part] if data.subgroups is not None else None
        yield DataBatch(data.features[part], data.labels[part], subgroups, start)


def evaluate_task(task: EvaluationTask, data: PartnerData) -> dict[str, ModelStatistics]:
    """Sufficient statistics per candidate model on this partner's loaded data."""
    return evaluate_batches(task, _slices(data, IN_MEMORY_BATCH), num_features=data.features.shape[1],
                            feature_names=data.manifest.features)


def evaluate_file(task: EvaluationTask, data_path: Path, manifest: DataManifest) -> dict[str, ModelStatistics]:
    """Sufficient statistics per candidate model, reading `data_path` in one checked, hashed pass."""
    return evaluate_batches(task, scan_partner_data(data_path, manifest), num_features=len(manifest.features),
                            feature_names=manifest.features)


def evaluate_partner_file(task: EvaluationTask, data: PartnerFile) -> dict[str, ModelStatistics]:
    """Sufficient statistics per candidate model in the node's one streaming pass over its file: by the
    pass's end the values, the hash and the pre-pass record count are checked (`PartnerFile.batches`)."""
    return evaluate_batches(task, data.batches(), num_features=len(data.manifest.features),
                            feature_names=data.manifest.features)

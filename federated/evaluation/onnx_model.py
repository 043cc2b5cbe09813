"""Running a candidate ONNX model on a partner's features, with checks that name the mismatch.

Models arrive as bytes and are loaded by onnxruntime only (no pickles, no Python code from
the coordinator). A model must take float32 [n, features] and give probabilities
[n, classes] (classification) or one number per record, [n] or [n, 1] (regression), under the
output name the study declares.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from federated.errors import DataError

_PROBABILITY_TOLERANCE = 1e-3


class OnnxModel:
    """One candidate model loaded once, run on as many batches of features as the data has."""

    def __init__(self, model_name: str, model_bytes: bytes, output: str, num_features: int) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for malformed models
            raise DataError(f"model {model_name!r} is not a loadable ONNX model: {exc}") from None
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise DataError(f"model {model_name!r} has {len(inputs)} inputs; Accord models take exactly one")
        expected = inputs[0].shape[1] if len(inputs[0].shape) == 2 else None
        if isinstance(expected, int) and expected != num_features:
            raise DataError(
                f"model {model_name!r} expects {expected} features, this partner's data has {num_features}"
            )
        names = [item.name for item in session.get_outputs()]
        if output not in names:
            raise DataError(f"model {model_name!r} has no output {output!r} (its outputs: {names})")
        self.name, self.output, self._session, self._input = model_name, output, session, inputs[0].name

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Probabilities [n, classes] in float64; `DataError` if the output is not probabilities."""
        name, output = self.name, self.output
        try:
            (probabilities,) = self._session.run([output], {self._input: features.astype(np.float32, copy=False)})
        except Exception as exc:  # shape and type errors surface here
            raise DataError(f"model {name!r} failed on this partner's data: {exc}") from None
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if probabilities.ndim != 2 or probabilities.shape[0] != features.shape[0]:
            raise DataError(f"model {name!r} output {output!r} has shape {probabilities.shape}, expected [n, classes]")
        if not np.all(np.isfinite(probabilities)):
            raise DataError(f"model {name!r} produced NaN or infinite probabilities")
        if probabilities.min() < -_PROBABILITY_TOLERANCE or probabilities.max() > 1 + _PROBABILITY_TOLERANCE:
            raise DataError(f"model {name!r} output {output!r} is not a probability (values outside [0, 1])")
        if np.abs(probabilities.sum(axis=1) - 1).max() > _PROBABILITY_TOLERANCE:
            raise DataError(f"model {name!r} output {output!r} rows do not sum to 1")
        return np.clip(probabilities, 0.0, 1.0)


    def predict_values(self, features: np.ndarray) -> np.ndarray:
        """A regression model's numbers [n] in float64 (output [n] or [n, 1]); `DataError` otherwise."""
        try:
            (values,) = self._session.run([self.output], {self._input: features.astype(np.float32, copy=False)})
        except Exception as exc:  # shape and type errors surface here
            raise DataError(f"model {self.name!r} failed on this partner's data: {exc}") from None
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1 or values.shape[0] != features.shape[0]:
            raise DataError(f"model {self.name!r} output {self.output!r} has shape {values.shape}, expected [n] or [n, 1]")
        if not np.all(np.isfinite(values)):
            raise DataError(f"model {self.name!r} produced NaN or infinite values")
        return values


def predict_probabilities(model_name: str, model_bytes: bytes, output: str, features: np.ndarray) -> np.ndarray:
    """Probabilities [n, classes] from one ONNX model; `DataError` if the model does not fit."""
    return OnnxModel(model_name, model_bytes, output, features.shape[1]).predict(features)

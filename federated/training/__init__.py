"""Models a training study can name and the weights they exchange (safetensors, ONNX, hashes).

Public names only; `federated.training.models` and `federated.training.weights` are internals.
Local DP-SGD itself lives in `privacy.dp_sgd` (it must not depend on `federated`).
"""

from federated.training.errors import ModelConfigError, WeightsError
from federated.training.models import ARCHITECTURES, create_model
from federated.training.weights import (
    ONNX_INPUT,
    ONNX_OUTPUT,
    arrays_sha256,
    export_onnx,
    load_arrays,
    load_safetensors,
    model_arrays,
    save_safetensors,
)

__all__ = [
    "ARCHITECTURES",
    "ModelConfigError",
    "ONNX_INPUT",
    "ONNX_OUTPUT",
    "WeightsError",
    "arrays_sha256",
    "create_model",
    "export_onnx",
    "load_arrays",
    "load_safetensors",
    "model_arrays",
    "save_safetensors",
]

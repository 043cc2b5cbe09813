"""Model weights as named float32 arrays: extract, load strictly, store as safetensors, hash, export to ONNX.

Weights travel between partners and the coordinator as safetensors (a JSON header plus raw bytes)
and models as ONNX: this module must never unpickle anything (no `torch.load`, no `pickle`), and
never load weights into a model partially: `load_arrays` checks every tensor first, then copies.
`arrays_sha256` is the model hash recorded in lineage; it depends only on names, dtypes, shapes and
bytes, never on dict order or file layout, so the same weights always hash the same.
"""

from __future__ import annotations

import io
import json
import struct
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from accord.durable import write_durably
from accord.hashing import arrays_sha256  # noqa: F401 (re-exported: part of this module's API)
from federated.training.errors import WeightsError

__all__ = [
    "ONNX_INPUT",
    "ONNX_OUTPUT",
    "arrays_sha256",
    "export_onnx",
    "load_arrays",
    "load_safetensors",
    "model_arrays",
    "save_safetensors",
]

ONNX_INPUT = "input"
ONNX_OUTPUT = "probabilities"
_ONNX_OPSET = 17
_ONNX_TOLERANCE = 1e-5


def model_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's state dict as float32 numpy arrays (copies), in the state dict's order."""
    return {
        name: tensor.detach().cpu().to(torch.float32).numpy().copy() for name, tensor in model.state_dict().items()
    }


def load_arrays(model: nn.Module, arrays: Mapping[str, np.ndarray]) -> None:
    """Copy `arrays` into `model`'s parameters and buffers, all or nothing.

    Raises `WeightsError` naming every missing and unexpected key, every shape mismatch, and every
    tensor that is not floating point or holds NaN/Inf; the model is unchanged on error.
    """
    state = model.state_dict()
    missing = [name for name in state if name not in arrays]
    unexpected = [name for name in arrays if name not in state]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    for name, target in state.items():
        if name not in arrays:
            continue
        array = np.asarray(arrays[name])
        if array.dtype.kind != "f":
            problems.append(f"{name!r} has dtype {array.dtype}, expected a floating-point dtype")
        elif tuple(array.shape) != tuple(target.shape):
            problems.append(f"{name!r} has shape {list(array.shape)}, the model expects {list(target.shape)}")
        elif not np.all(np.isfinite(array)):
            problems.append(f"{name!r} holds NaN or infinite values")
    if problems:
        raise WeightsError(f"weights do not fit {type(model).__name__}: " + "; ".join(problems))
    with torch.no_grad():
        for name, target in state.items():
            target.copy_(torch.from_numpy(np.ascontiguousarray(arrays[name])).to(target.dtype))


def save_safetensors(path: Path | str, arrays: Mapping[str, np.ndarray], *, metadata: Mapping[str, str]) -> None:
    """Write `arrays` and `metadata` to `path` as safetensors, atomically (temp file, fsync, rename)."""
    from safetensors.numpy import save

    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise WeightsError(f"safetensors metadata must map str to str, got {dict(metadata)!r}")
    payload = save({name: np.ascontiguousarray(a) for name, a in arrays.items()}, metadata=dict(metadata))
    write_durably(Path(path), payload)


def load_safetensors(path: Path | str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The arrays and metadata of a safetensors file; `WeightsError` naming the file if it is not one."""
    from safetensors.numpy import load

    data = Path(path).read_bytes()
    try:
        (header_length,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + header_length])
        arrays = load(data)
    except Exception as error:  # struct, JSON and safetensors each raise their own types
        raise WeightsError(f"{path} is not a valid safetensors file: {error}") from None
    metadata = header.get("__metadata__") or {}
    return arrays, dict(metadata)


class _WithSoftmax(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(features), dim=1)


def export_onnx(model: nn.Module, *, num_features: int) -> bytes:
    """ONNX bytes: input "input" float32 [n, num_features] (any n), output "probabilities" = softmax(logits).

    The exported graph is run with onnxruntime on fixed probe batches of 3 and 1 rows and must match
    torch within 1e-5, so a model that leaves here computes what was trained; `WeightsError` otherwise.
    """
    import onnxruntime as ort

    was_training = model.training
    wrapped = _WithSoftmax(model).eval()
    probe = torch.from_numpy(np.random.default_rng(0).standard_normal((3, num_features)).astype(np.float32))
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # the legacy (TorchScript) exporter is deprecated but fast and exact for these models; its
            # tracer warns about shape checks (GroupNorm's), which the onnxruntime check below covers
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]  # not re-exported
            torch.onnx.export(
                wrapped,
                (probe,),
                buffer,  # type: ignore[arg-type]  # a file-like object is documented; the annotation says path
                input_names=[ONNX_INPUT],
                output_names=[ONNX_OUTPUT],
                dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
                opset_version=_ONNX_OPSET,
                dynamo=False,
            )
            expected = wrapped(probe).numpy()
            expected_one = wrapped(probe[:1]).numpy()
    finally:
        model.train(was_training)
    onnx_bytes = buffer.getvalue()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"])
    for rows, wanted in ((probe, expected), (probe[:1], expected_one)):  # and the batch is dynamic
        (actual,) = session.run([ONNX_OUTPUT], {ONNX_INPUT: rows.numpy()})
        if actual.shape != wanted.shape or not np.allclose(actual, wanted, rtol=0, atol=_ONNX_TOLERANCE):
            raise WeightsError(
                f"ONNX export of {type(model).__name__} does not reproduce torch within {_ONNX_TOLERANCE:g} "
                f"on a batch of {len(rows)}"
            )
    return onnx_bytes

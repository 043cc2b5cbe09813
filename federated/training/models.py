"""The registry of model architectures a training study may name, and the architectures themselves.

Every model takes float32 features [n, num_features] and returns logits [n, num_classes]; softmax is
applied only at export (`federated.training.weights.export_onnx`). Every layer has an exact Opacus
per-sample-gradient rule (Linear, Conv2d, GroupNorm; no BatchNorm, whose statistics mix examples
and so break per-example clipping), so each model can be trained with DP-SGD.

Adding an architecture is one `nn.Module` class taking `num_features`, `num_classes` and keyword
options, plus one line in `ARCHITECTURES`. Models must never hold buffers or state that depend on
training data beyond their parameters: the weights are everything a partner sends.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from torch import nn

from federated.training.errors import ModelConfigError

__all__ = ["ARCHITECTURES", "DigitsCNN", "LogisticRegression", "MLP", "create_model"]


class LogisticRegression(nn.Module):
    """Multinomial logistic regression: one affine map to the class logits."""

    def __init__(self, *, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(num_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


class MLP(nn.Module):
    """A fully connected network with ReLU between layers; `hidden` gives the hidden layer widths."""

    def __init__(self, *, num_features: int, num_classes: int, hidden: Sequence[int] = (64,)) -> None:
        super().__init__()
        if not _positive_ints(hidden):
            raise ModelConfigError(f"mlp option 'hidden' must be a sequence of positive integers, got {hidden!r}")
        hidden = tuple(hidden)
        layers: list[nn.Module] = []
        width_in = num_features
        for width in hidden:
            layers += [nn.Linear(width_in, width), nn.ReLU()]
            width_in = width
        layers.append(nn.Linear(width_in, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class DigitsCNN(nn.Module):
    """A small CNN for 8×8 greyscale digits given as 64 flat features (scikit-learn's `load_digits`).

    Two 3×3 conv blocks (conv → GroupNorm → ReLU → 2×2 max-pool) and a linear head. GroupNorm
    normalises within each example, so per-example gradients stay exact under DP-SGD.
    """

    side = 8

    def __init__(
        self, *, num_features: int, num_classes: int, channels: Sequence[int] = (16, 32), groups: int = 4
    ) -> None:
        super().__init__()
        if num_features != self.side * self.side:
            raise ModelConfigError(
                f"cnn takes {self.side}x{self.side} images as {self.side * self.side} features, "
                f"got num_features={num_features}"
            )
        if not _positive_ints(channels) or len(channels) != 2:
            raise ModelConfigError(f"cnn option 'channels' must be two positive integers, got {channels!r}")
        if not _positive_ints((groups,)) or any(c % groups for c in channels):
            raise ModelConfigError(
                f"cnn option 'groups'={groups!r} must be a positive integer that divides "
                f"every channel count {list(channels)}"
            )
        blocks: list[nn.Module] = []
        width_in = 1
        for width in channels:
            blocks += [
                nn.Conv2d(width_in, width, kernel_size=3, padding=1),
                nn.GroupNorm(groups, width),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            width_in = width
        self.features = nn.Sequential(*blocks)
        pooled = self.side // 4  # two 2×2 pools
        self.head = nn.Linear(width_in * pooled * pooled, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        images = features.reshape(-1, 1, self.side, self.side)
        return self.head(self.features(images).flatten(1))


def _positive_ints(values: object) -> bool:
    return isinstance(values, Sequence) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values
    )


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "logistic_regression": LogisticRegression,
    "mlp": MLP,
    "cnn": DigitsCNN,
}


def create_model(architecture: str, *, num_features: int, num_classes: int, **options: object) -> nn.Module:
    """A freshly initialised model of the registered `architecture` (weights from torch's global RNG).

    Raises `ModelConfigError` naming the known architectures for an unknown name, and naming the
    option for options the architecture does not take.
    """
    try:
        cls = ARCHITECTURES[architecture]
    except (KeyError, TypeError):
        known = ", ".join(map(repr, ARCHITECTURES))
        raise ModelConfigError(
            f"unknown model architecture {architecture!r}; known architectures: {known}"
        ) from None
    for name, value in (("num_features", num_features), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelConfigError(f"{architecture} needs {name} as a positive integer, got {value!r}")
    if num_classes < 2:
        raise ModelConfigError(f"{architecture} needs num_classes ≥ 2, got {num_classes}")
    accepted = [name for name in inspect.signature(cls).parameters if name not in ("num_features", "num_classes")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ModelConfigError(
            f"{architecture} has no option(s) {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(map(repr, accepted)) or 'none'}"
        )
    return cls(num_features=num_features, num_classes=num_classes, **options)

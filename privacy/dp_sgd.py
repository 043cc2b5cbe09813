"""One partner's local training run, optionally with DP-SGD (Opacus), and the ε that run spent.

`train_locally` takes a torch module and numpy arrays and returns the trained weights with what a
partner must know to account for them: steps, Poisson sampling rate q, noise multiplier σ, δ and ε.
With `DPSGDSettings` it uses Opacus's `PrivacyEngine.make_private`: Poisson sampling, per-example
clipping at `max_grad_norm` (flat), Gaussian noise σ·max_grad_norm on the clipped sum.
`LocalTrainer` is the same run stepped one epoch at a time (`benchmarks/dp_training.py` times it).
Its (q, steps, σ) are `privacy.dp_sgd_plan.plan_dp_sgd`'s, the plan a partner's node charges its
budget from before the data is used.

What it must never do:
- report an ε smaller than the true one: ε comes from `privacy.accounting.epsilon` (certified PRV
  upper bound, or RDP) over the (σ, q, steps) that the Opacus optimizer actually recorded;
- import `federated` (dependencies point one way) or change the caller's model (it trains a copy);
- pick a grad-sample mode that is not exact for the model (see `auto_grad_sample_mode`).

Determinism: a fixed `seed` fixes the data order, Poisson batches and DP noise. Anyone who knows the
seed can regenerate the noise and subtract it, so in deployment a partner passes `seed=None` (a
secret seed from the OS) or its own secret; never a seed chosen or seen by the coordinator. The
noise comes from torch's Mersenne Twister, not a CSPRNG (Opacus's secure_mode needs torchcsprng,
which is not installed), and floating-point attacks on Gaussian sampling are not defended against.

`mean_loss` and `num_examples` are computed from the private data without noise: ε does not cover
them.
"""

from __future__ import annotations

import copy
import math
import secrets
import warnings
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np
import torch
from torch import nn

from privacy.dp_sgd_plan import GRAD_SAMPLE_MODES, DPSGDPlan, DPSGDSettings, LocalTrainingError, plan_dp_sgd
from privacy.errors import PrivacyError

__all__ = [
    "DPSGDSettings",
    "GRAD_SAMPLE_MODES",
    "LocalTrainer",
    "LocalTrainingError",
    "LocalTrainingResult",
    "auto_grad_sample_mode",
    "train_locally",
]

OPTIMIZERS = ("sgd", "adam")
# modes whose forward pass fails on a zero-row batch (torch's ExpandedWeights; vmap over GroupNorm)
_MODES_WITHOUT_EMPTY_BATCHES = ("ew", "functorch")
# layers with an Opacus 1.6 ghost-norm rule, and layers torch's ExpandedWeights (mode "ew") supports
_GHOST_NORM_LAYERS = (nn.Linear, nn.Embedding)
_EXPANDED_WEIGHTS_LAYERS = (
    *_GHOST_NORM_LAYERS,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)


@dataclass(frozen=True, kw_only=True)
class LocalTrainingResult:
    """The trained weights of one local run and its privacy cost (ε is None without DP)."""

    arrays: dict[str, np.ndarray]
    num_examples: int
    mean_loss: float  # per-example mean over the last epoch; not covered by ε
    steps: int
    sample_rate: float
    noise_multiplier: float
    epsilon: float | None
    delta: float | None
    accountant: str | None
    grad_sample_mode: str | None
    epoch_losses: tuple[float, ...] = ()


def train_locally(
    model: nn.Module,
    features: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    optimizer: str = "sgd",
    momentum: float = 0.0,
    dp: DPSGDSettings | None = None,
    seed: int | None = 0,
    num_threads: int = 1,
) -> LocalTrainingResult:
    """Train a copy of `model` on (features, labels) with cross-entropy; DP-SGD when `dp` is given.

    Batches are `batch_size` examples (shuffled) without DP, and Poisson samples with rate
    q = 1/ceil(n/batch_size) with DP; an epoch is ceil(n/batch_size) steps either way. torch runs on
    `num_threads` threads during the call (one is fastest per partner on small models).
    Raises `LocalTrainingError` for invalid hyperparameters, settings or data.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise LocalTrainingError(f"epochs must be an integer ≥ 1, got {epochs!r}")
    if seed is None:
        seed = secrets.randbits(62)
    elif isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise LocalTrainingError(f"seed must be None or an integer in [0, 2**63), got {seed!r}")
    threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # for models that draw from the global RNG (dropout)
            trainer = LocalTrainer(
                model,
                features,
                labels,
                batch_size=batch_size,
                learning_rate=learning_rate,
                optimizer=optimizer,
                momentum=momentum,
                dp=dp,
                seed=seed,
                planned_epochs=epochs,
            )
            for _ in range(epochs):
                trainer.run_epoch()
            return trainer.result()
    finally:
        torch.set_num_threads(threads)


class LocalTrainer:
    """The objects of one local run, stepped one epoch at a time (what `train_locally` and benchmarks use).

    Trains a deep copy of `model`. `planned_epochs` sizes σ when the settings give a target ε; running
    more epochs than planned is refused, since ε would exceed the target.
    """

    def __init__(
        self,
        model: nn.Module,
        features: np.ndarray,
        labels: np.ndarray,
        *,
        batch_size: int,
        learning_rate: float,
        optimizer: str = "sgd",
        momentum: float = 0.0,
        dp: DPSGDSettings | None = None,
        seed: int = 0,
        planned_epochs: int = 1,
    ) -> None:
        x, y = _check_data(model, features, labels)
        _check_hyperparameters(planned_epochs, batch_size, learning_rate, optimizer, momentum)
        dp = dp if dp is not None and dp.enabled else None
        self.dp = dp
        self.num_examples = len(x)
        self.planned_epochs = planned_epochs
        self.model = copy.deepcopy(model).train()
        self.loader: Any = torch.utils.data.DataLoader(
            _Examples(x, y),
            batch_size=batch_size,
            shuffle=dp is None,
            generator=torch.Generator().manual_seed(seed),
            collate_fn=_already_batched,  # type: ignore[arg-type]  # `__getitems__` hands it the batch, not a list
        )
        batches_per_epoch = len(self.loader)
        self.sample_rate = 1 / batches_per_epoch
        self.grad_sample_mode: str | None = None
        if dp is not None:
            self.grad_sample_mode = auto_grad_sample_mode(self.model) if dp.grad_sample_mode == "auto" else dp.grad_sample_mode
        summed = dp is not None and self.grad_sample_mode != "ghost"  # why: `_make_optimizer`
        self.optimizer: Any = _make_optimizer(
            self.model.parameters(),
            optimizer=optimizer,
            learning_rate=learning_rate,
            momentum=momentum,
            summed_batch=_expected_batch_size(self.num_examples, self.sample_rate) if summed else None,
        )
        self.loss_reduction = "sum" if summed else "mean"
        self.criterion: Any = nn.CrossEntropyLoss(reduction=self.loss_reduction)
        self.network: nn.Module = self.model
        self.noise_multiplier = 0.0
        self.engine: Any = None
        self.steps = 0
        self.epoch_losses: list[float] = []
        if dp is not None:
            plan = plan_dp_sgd(dp, num_examples=self.num_examples, batch_size=batch_size, epochs=planned_epochs)
            if plan.sample_rate != self.sample_rate:  # the plan's q is the q Opacus takes from this loader
                raise PrivacyError(f"planned q={plan.sample_rate} but the data loader gives q={self.sample_rate}")
            self._make_private(dp, seed, plan)

    def _make_private(self, dp: DPSGDSettings, seed: int, plan: DPSGDPlan) -> None:
        from opacus import PrivacyEngine

        mode = self.grad_sample_mode
        sigma = plan.noise_multiplier
        with warnings.catch_warnings():
            # Opacus warns that secure_mode is off; the module docstring says what the seed means
            warnings.filterwarnings("ignore", message="Secure RNG turned off")
            self.engine = PrivacyEngine(accountant=dp.accountant)
            private = self.engine.make_private(
                module=self.model,
                optimizer=self.optimizer,
                criterion=self.criterion,
                data_loader=self.loader,
                noise_multiplier=sigma,
                max_grad_norm=dp.max_grad_norm,
                poisson_sampling=True,
                noise_generator=torch.Generator().manual_seed(seed ^ 0x5EED),
                grad_sample_mode=mode,
                loss_reduction=self.loss_reduction,
            )
        if mode == "ghost":  # ghost clipping wraps the loss too: its backward runs both passes
            self.network, self.optimizer, self.criterion, self.loader = private
        else:
            self.network, self.optimizer, self.loader = private
        self.noise_multiplier = sigma

    def run_epoch(self) -> float:
        """One pass of `len(loader)` steps; returns the per-example mean loss (NaN if all batches were empty)."""
        target = self.dp.target_epsilon if self.dp is not None else None
        if target is not None and len(self.epoch_losses) >= self.planned_epochs:
            raise LocalTrainingError(
                f"σ was sized for {self.planned_epochs} epoch(s) at target ε={target}; "
                "another epoch would exceed it"
            )
        loss_sum, seen = 0.0, 0
        with warnings.catch_warnings():
            # the input batch needs no gradient, so Opacus's full backward hooks warn on every step
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            for batch_x, batch_y in self.loader:
                self.optimizer.zero_grad(set_to_none=True)
                self.steps += 1
                if len(batch_y) == 0 and self.grad_sample_mode in _MODES_WITHOUT_EMPTY_BATCHES:
                    self._noise_only_step()
                    continue
                loss = self.criterion(self.network(batch_x), batch_y)
                loss.backward()
                self.optimizer.step()
                if len(batch_y):
                    loss_sum += float(loss.item()) * (len(batch_y) if self.loss_reduction == "mean" else 1)
                    seen += len(batch_y)
        self.epoch_losses.append(loss_sum / seen if seen else math.nan)
        return self.epoch_losses[-1]

    def _noise_only_step(self) -> None:
        """The DP step for an empty Poisson batch: zero clipped sum plus noise, recorded by the accountant.

        Skipping the step instead would break the guarantee (an empty batch would then be visible as
        "no update"). hooks and ghost take this step through Opacus; ew and functorch cannot run
        a zero-row forward pass, so they are given the zero-row per-sample gradients hooks would give.
        """
        for parameter in self.model.parameters():
            if parameter.requires_grad:
                parameter.grad_sample = parameter.new_zeros((0, *parameter.shape))  # type: ignore[attr-defined]  # read by Opacus
        self.optimizer.step()

    def result(self) -> LocalTrainingResult:
        """The trained weights and, with DP, the ε of every step taken so far."""
        arrays = {
            name: t.detach().cpu().to(torch.float32).numpy().copy() for name, t in self.model.state_dict().items()
        }
        common: dict[str, Any] = dict(
            arrays=arrays,
            num_examples=self.num_examples,
            mean_loss=self.epoch_losses[-1] if self.epoch_losses else math.nan,
            steps=self.steps,
            epoch_losses=tuple(self.epoch_losses),
        )
        if self.dp is None:
            return LocalTrainingResult(
                **common,
                sample_rate=self.sample_rate,
                noise_multiplier=0.0,
                epsilon=None,
                delta=None,
                accountant=None,
                grad_sample_mode=None,
            )
        from privacy.accounting import epsilon

        # Account for what the DP optimizer recorded, not for what we meant to do.
        history = self.engine.accountant.history
        if len({(s, q) for s, q, _ in history}) > 1 or sum(n for _, _, n in history) != self.steps:
            raise PrivacyError(f"Opacus recorded {history!r} for {self.steps} steps; cannot account for this run")
        sigma, sample_rate, _ = history[0] if history else (self.noise_multiplier, self.sample_rate, 0)
        eps = 0.0
        if self.steps:
            eps = epsilon(
                noise_multiplier=sigma,
                sample_rate=sample_rate,
                steps=self.steps,
                delta=self.dp.delta,
                accountant=self.dp.accountant,
            )
        return LocalTrainingResult(
            **common,
            sample_rate=sample_rate,
            noise_multiplier=sigma,
            epsilon=eps,
            delta=self.dp.delta,
            accountant=self.dp.accountant,
            grad_sample_mode=self.grad_sample_mode,
        )


_ADAM_EPS = 1e-8  # torch's default


def _expected_batch_size(num_examples: int, sample_rate: float) -> int:
    """The divisor Opacus uses for a mean loss under Poisson sampling (`PrivacyEngine.make_private`)."""
    return max(1, int(num_examples * sample_rate))


def _make_optimizer(
    parameters: Any, *, optimizer: str, learning_rate: float, momentum: float, summed_batch: int | None
) -> torch.optim.Optimizer:
    """The torch optimizer; `summed_batch` = B when the loss is summed over a Poisson batch of expected size B.

    Why DP runs other than ghost sum the loss: with a mean loss, torch's ExpandedWeights and Opacus's
    hooks multiply every per-example gradient by the batch size to undo the 1/B of the mean, a full
    pass over the largest tensors of the step (about 8 % of a digits CNN DP epoch). With
    loss_reduction="sum" Opacus hands the optimizer Σ clip(g_i) + N(0, σ²C²) undivided, so the
    division by B moves here: SGD's learning rate becomes lr/B (SGD, with or without momentum, is
    linear in the gradient) and Adam's eps becomes eps·B (Adam is invariant to a gradient scale but
    for eps). The update, clipping and noise are those of the mean loss; tests/training compare the
    modes' weights. Ghost clipping keeps the mean: its loss wrapper already works per example.
    """
    scale = 1 / summed_batch if summed_batch else 1.0
    if optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=learning_rate * scale, momentum=momentum)
    return torch.optim.Adam(parameters, lr=learning_rate, eps=_ADAM_EPS / scale)


class _Examples(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """(features, label) pairs that the DataLoader fetches a whole batch at a time.

    `__getitems__` gathers a batch with one index operation instead of one Python call and a
    collate per example, which took most of a non-private epoch on small models. An empty index
    list (an empty Poisson batch) gives tensors with zero rows, which Opacus handles.
    """

    def __init__(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.as_tensor(indices, dtype=torch.long)
        return self.features[rows], self.labels[rows]


def _already_batched(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch


def auto_grad_sample_mode(model: nn.Module) -> str:
    """The fastest grad-sample mode that is exact for every trainable layer of `model`.

    All four modes compute exact per-example gradients (or their norms) for the layers below: a
    fixed-seed run gives the same weights in each (tests/training check it). Measured by
    `python -m benchmarks.dp_training` (digits, batch 256, one thread; per-epoch time DP /
    non-private, three runs, with the summed loss of `_make_optimizer`):
    - several Linear/Embedding layers → "ghost": Opacus computes their per-example norms from
      activations and backprops without materialising per-example gradients, so its cost grows with
      batch × (in + out) rather than batch × in × out, for a second backward pass (MLP
      64-256-128-10: ghost 3.1×, ew 10×, hooks 20×; MLP 64-64-10: ghost 3.6×, ew 4.2-4.3×, hooks 6.2-6.6×);
    - a single Linear/Embedding layer (logistic regression) → "ew": its per-example gradient is the
      only one, and ghost's second backward costs more than materialising it (ew 2.8×, ghost 3.7×,
      hooks 3.4×);
    - otherwise, if every layer has an ExpandedWeights rule → "ew" (torch computes per-example
      conv gradients inside autograd, one backward pass; ghost has no conv norm rule in Opacus 1.6
      and runs two backward passes with per-example gradients anyway). Digits CNN: ew 2.0-2.1×,
      hooks 2.5-2.6×, ghost 3.0×, functorch 3.5-3.8×;
    - anything else → "hooks", which falls back to functorch per layer and stays exact.
    """
    layers = [m for m in model.modules() if any(p.requires_grad for p in m.parameters(recurse=False))]
    if len(layers) > 1 and all(type(m) in _GHOST_NORM_LAYERS for m in layers):
        return "ghost"
    if layers and all(type(m) in _EXPANDED_WEIGHTS_LAYERS for m in layers):
        return "ew"
    return "hooks"


def _check_data(model: nn.Module, features: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    features = np.asarray(features)
    labels = np.asarray(labels)
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
        raise LocalTrainingError(
            f"features must be a non-empty 2-D array [n, features], got shape {features.shape}"
        )
    if features.dtype.kind not in "fiu" or not np.all(np.isfinite(features)):
        raise LocalTrainingError("features must be finite numbers (found NaN, Inf or a non-numeric dtype)")
    if labels.shape != (features.shape[0],):
        raise LocalTrainingError(
            f"labels must have shape ({features.shape[0]},) to match features, got {labels.shape}"
        )
    if labels.dtype.kind not in "iu":
        raise LocalTrainingError(f"labels must be integers, got dtype {labels.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    try:
        with torch.no_grad():
            num_classes = model(x[:1]).shape[-1]
    except RuntimeError as error:
        raise LocalTrainingError(f"the model cannot take features of shape [n, {x.shape[1]}]: {error}") from None
    if labels.min() < 0 or labels.max() >= num_classes:
        raise LocalTrainingError(
            f"labels must lie in [0, {num_classes - 1}] for this {num_classes}-class model, "
            f"found {int(labels.min())}..{int(labels.max())}"
        )
    return x, torch.from_numpy(labels.astype(np.int64))


def _check_hyperparameters(
    epochs: int, batch_size: int, learning_rate: float, optimizer: str, momentum: float
) -> None:
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LocalTrainingError(f"{name} must be an integer ≥ 1, got {value!r}")
    if not _positive_number(learning_rate):
        raise LocalTrainingError(f"learning_rate must be a finite number > 0, got {learning_rate!r}")
    if optimizer not in OPTIMIZERS:
        raise LocalTrainingError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    if not (_number(momentum) and 0 <= momentum < 1):
        raise LocalTrainingError(f"momentum must be a number in [0, 1), got {momentum!r}")
    if optimizer == "adam" and momentum:
        raise LocalTrainingError("momentum applies to optimizer 'sgd' only; Adam has its own betas")


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_number(value: object) -> bool:
    return _number(value) and value > 0

"""The model registry: names, shapes, options, and that every model can be trained with DP-SGD."""

from __future__ import annotations

import pytest
import torch
from opacus.validators import ModuleValidator

from federated.errors import ConfigError
from federated.training import ARCHITECTURES, ModelConfigError, create_model


def test_registry_holds_the_three_study_architectures():
    assert set(ARCHITECTURES) == {"logistic_regression", "mlp", "cnn"}


def test_unknown_architecture_is_refused_with_the_known_names():
    with pytest.raises(ModelConfigError) as caught:
        create_model("resnet", num_features=64, num_classes=10)
    message = str(caught.value)
    assert "'resnet'" in message
    for name in ARCHITECTURES:
        assert repr(name) in message
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, ValueError)


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_every_model_maps_float32_features_to_class_logits(architecture):
    model = create_model(architecture, num_features=64, num_classes=10)
    logits = model(torch.rand(5, 64))
    assert logits.shape == (5, 10) and logits.dtype == torch.float32


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_every_model_is_exactly_supported_by_opacus(architecture):
    model = create_model(architecture, num_features=64, num_classes=10)
    assert ModuleValidator.validate(model, strict=False) == []
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_mlp_hidden_option_sets_the_layer_widths():
    model = create_model("mlp", num_features=64, num_classes=3, hidden=[32, 16])
    widths = [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [32, 16, 3]


def test_mlp_defaults_to_one_hidden_layer_of_64():
    model = create_model("mlp", num_features=20, num_classes=4)
    assert [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)] == [64, 4]


def test_cnn_refuses_features_that_are_not_8x8_images():
    with pytest.raises(ModelConfigError, match="64 features, got num_features=30"):
        create_model("cnn", num_features=30, num_classes=10)


@pytest.mark.parametrize(
    ("architecture", "options", "fragment"),
    [
        ("mlp", {"depth": 3}, "no option(s) 'depth'; its options: 'hidden'"),
        ("logistic_regression", {"hidden": [8]}, "its options: none"),
        ("mlp", {"hidden": 5}, "'hidden' must be a sequence of positive integers"),
        ("mlp", {"hidden": [8, 0]}, "'hidden' must be a sequence of positive integers"),
        ("cnn", {"channels": [8]}, "'channels' must be two positive integers"),
        ("cnn", {"groups": 3}, "'groups'=3 must be a positive integer that divides"),
    ],
)
def test_bad_options_are_refused_naming_the_option(architecture, options, fragment):
    with pytest.raises(ModelConfigError) as caught:
        create_model(architecture, num_features=64, num_classes=10, **options)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(("num_features", "num_classes"), [(0, 10), (64, 1), (64, True), (6.4, 10)])
def test_sizes_must_be_positive_integers_and_at_least_two_classes(num_features, num_classes):
    with pytest.raises(ModelConfigError, match="num_"):
        create_model("mlp", num_features=num_features, num_classes=num_classes)

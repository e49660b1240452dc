"""Built-in architectures: exact parameter counts derived by hand, and the parameter-matched MLP."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlens.models import MODELS, count_params, create_model
from cnnlens.models.mlp import match_hidden, mlp_params


def conv(cin: int, cout: int, k: int) -> int:
    return k * k * cin * cout + cout  # weights + bias


def bn(c: int) -> int:
    return 2 * c  # gamma + beta (running statistics are buffers, not parameters)


def dense(a: int, b: int) -> int:
    return a * b + b


def test_wide_matches_the_reports_breakdown_exactly():
    # the report's own line: (5*5*1)*64 + 64 + 64*2 + (3*3*64)*128 + 128 + 128*2 + ...
    by_hand = ((5 * 5 * 1) * 64 + 64 + 64 * 2 + (3 * 3 * 64) * 128 + 128 + 128 * 2
               + (3 * 3 * 128) * 256 + 256 + 256 * 2 + (3 * 3 * 256) * 512 + 512 + 512 * 2
               + (512 * 4 * 4) * 512 + 512 + 512 * 2 + 512 * 512 + 512 + 512 * 2 + 512 * 7 + 7)
    assert by_hand == 6_015_879
    m = create_model("wide", in_channels=1, num_classes=7, input_size=48)
    assert count_params(m) == 6_015_879
    assert count_params(m, trainable_only=True) == 6_015_879


@pytest.mark.parametrize("size", [48, 64, 28, (48, 40)])
def test_wide_brings_features_to_512x4x4_for_any_input(size):
    m = create_model("wide", in_channels=1, num_classes=7, input_size=size).eval()
    h, w = (size, size) if isinstance(size, int) else size
    with torch.no_grad():
        feats = m.cnn(torch.randn(2, 1, h, w))
        assert feats.shape == (2, 512, 4, 4)
        assert m(torch.randn(2, 1, h, w)).shape == (2, 7)
    assert count_params(m) == 6_015_879  # the count does not depend on the input size


def test_wide_layer_types_and_count_for_three_channels():
    m = create_model("wide", in_channels=3, num_classes=11, input_size=48)
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(5, 5), (3, 3), (3, 3), (3, 3)]
    assert all(c.bias is not None for c in convs)
    assert sum(isinstance(x, nn.BatchNorm1d) for x in m.modules()) == 2
    expected = (conv(3, 64, 5) + bn(64) + conv(64, 128, 3) + bn(128) + conv(128, 256, 3) + bn(256)
                + conv(256, 512, 3) + bn(512) + dense(8192, 512) + bn(512) + dense(512, 512) + bn(512)
                + dense(512, 11))
    assert count_params(m) == expected


def test_vgg_count_from_the_layer_list():
    # 1x48x48, 7 classes; three stages of three conv3x3 + BN, pooled 48 -> 24 -> 12 -> 6
    stage1 = conv(1, 32, 3) + conv(32, 32, 3) * 2 + bn(32) * 3        # 320 + 2*9248 + 192 = 19,008
    stage2 = conv(32, 64, 3) + conv(64, 64, 3) * 2 + bn(64) * 3       # 18,496 + 2*36,928 + 384 = 92,736
    stage3 = conv(64, 128, 3) + conv(128, 128, 3) * 2 + bn(128) * 3   # 73,856 + 2*147,584 + 768 = 369,792
    head = dense(128 * 6 * 6, 1024) + bn(1024) + dense(1024, 7)      # 4,719,616 + 2,048 + 7,175
    assert (stage1, stage2, stage3) == (19_008, 92_736, 369_792)
    assert stage1 + stage2 + stage3 + head == 5_210_375
    m = create_model("vgg", in_channels=1, num_classes=7, input_size=48)
    assert count_params(m) == 5_210_375
    # the Keras table's conv rows that do not depend on its pooling bug agree with ours
    assert conv(1, 32, 3) == 320 and conv(32, 32, 3) == 9248 and conv(64, 64, 3) == 36928
    assert conv(64, 128, 3) == 73856 and conv(128, 128, 3) == 147584 and dense(1024, 7) == 7175


def test_vgg_structure():
    m = create_model("vgg", in_channels=3, num_classes=5, input_size=32).train()
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32] * 3 + [64] * 3 + [128] * 3
    assert sum(isinstance(x, nn.MaxPool2d) for x in m.modules()) == 3
    assert any(isinstance(x, nn.Dropout) and x.p > 0 for x in m.modules())
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_compact_count_by_hand():
    by_hand = (conv(3, 24, 3) + bn(24) + conv(24, 48, 3) + bn(48) + conv(48, 96, 3) + bn(96)
               + conv(96, 96, 3) + bn(96) + dense(96 * 3 * 3, 192) + dense(192, 96) + dense(96, 7))
    assert by_hand == 321_511
    assert count_params(create_model("compact", in_channels=3, num_classes=7, input_size=48)) == 321_511


def test_mlp_explicit_hidden_is_the_reports_dnn():
    assert 48 * 48 * 1800 + 1800 + 1800 * 1050 + 1050 + 1050 * 7 + 7 == 6_047_407
    for hidden in ("1800,1050", (1800, 1050), [1800, 1050]):
        m = create_model("mlp", in_channels=1, num_classes=7, input_size=48, hidden=hidden)
        assert count_params(m) == 6_047_407
    assert [x.out_features for x in m.modules() if isinstance(x, nn.Linear)] == [1800, 1050, 7]


@pytest.mark.parametrize("target", ["wide", "compact", "vgg"])
@pytest.mark.parametrize("c,size", [(1, 48), (3, 48), (1, 28), (3, (32, 24))])
def test_mlp_match_params_model_within_one_percent(target, c, size):
    ref = create_model(target, in_channels=c, num_classes=7, input_size=size)
    for spec in (ref, target):  # the model itself, or its registered name
        m = create_model("mlp", in_channels=c, num_classes=7, input_size=size, match_params=spec)
        assert abs(count_params(m) - count_params(ref)) <= 0.01 * count_params(ref)
        assert len(m.hidden) == 2 and m.hidden[0] >= m.hidden[1]  # widths never grow


@pytest.mark.parametrize("target", [20_000, 100_000, 321_511, 1_000_000, 6_015_879, 25_000_000])
@pytest.mark.parametrize("n_in", [64, 784, 2304, 6912])
def test_match_hidden_over_targets(target, n_in):
    if target <= mlp_params(n_in, 7, [1, 1]):
        with pytest.raises(ValueError, match="too small"):
            match_hidden(n_in, 7, target)
        return
    ws = match_hidden(n_in, 7, target)
    got = mlp_params(n_in, 7, ws)
    assert abs(got - target) <= 0.01 * target, (ws, got)
    assert mlp_params(n_in, 7, ws) == count_params(nn.Sequential(
        *[nn.Linear(a, b) for a, b in zip([n_in, *ws], [*ws, 7])]))  # the formula is the real count


def test_mlp_match_params_count_strings_and_errors():
    m = create_model("mlp", in_channels=1, num_classes=7, input_size=48, match_params="6,015,879")
    assert abs(count_params(m) - 6_015_879) <= 60_159
    with pytest.raises(ValueError, match="either hidden"):
        create_model("mlp", in_channels=1, num_classes=7, input_size=48, hidden="10", match_params=1000)
    with pytest.raises(ValueError, match="neither a parameter count nor a model"):
        create_model("mlp", in_channels=1, num_classes=7, input_size=48, match_params="nosuchnet")
    with pytest.raises(ValueError, match="comma-separated"):
        create_model("mlp", in_channels=1, num_classes=7, input_size=48, hidden="12,abc")
    with pytest.raises(ValueError, match="within 1%"):
        create_model("mlp", in_channels=3, num_classes=7, input_size=48, match_params=20_000, depth=1)


def test_registry_lists_the_new_models_and_resolver_forms():
    for name in ("compact", "wide", "vgg", "mlp"):
        assert name in MODELS
    with pytest.raises(ValueError) as e:
        create_model("nosuchnet", in_channels=1, num_classes=3)
    msg = str(e.value)
    assert "wide" in msg and "vgg" in msg and "torchvision:<name>" in msg and ".py:ClassName" in msg


@pytest.mark.parametrize("name,size", [("wide", 3), ("vgg", 7), ("compact", 15)])
def test_too_small_inputs_are_refused_with_the_minimum(name, size):
    with pytest.raises(ValueError, match="at least"):
        create_model(name, in_channels=1, num_classes=3, input_size=size)

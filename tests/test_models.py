"""fastload.models: BVLC AlexNet's size and layer names, torchvision compatibility, checkpoints, small inputs."""
import pytest
import torch
import torch.nn.functional as F

from fastload.errors import FastloadError, UsageError
from fastload.models import alexnet as A
from fastload.models.alexnet import extract_features
from fastload.models.build import build_model, count_parameters
from fastload.models.checkpoint import load_checkpoint_model
from fastload.models.networks import NETWORKS


def bvlc_alexnet_parameter_count(num_classes):
    """Caffe's own arithmetic over bvlc_alexnet/deploy.prototxt: weights (in/groups x k x k x out) + biases."""
    layers = [(3, 96, 11, 1), (96, 256, 5, 2), (256, 384, 3, 1), (384, 384, 3, 2), (384, 256, 3, 2)]
    conv = sum(cin // g * k * k * cout + cout for cin, cout, k, g in layers)
    fc = (9216 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * num_classes + num_classes)
    return conv + fc


def test_caffe_parameter_count_is_bvlc():
    assert bvlc_alexnet_parameter_count(1000) == 60_965_224
    assert count_parameters(build_model("alexnet_caffe", 1000)) == 60_965_224
    assert count_parameters(build_model("alexnet_caffe", 127)) == bvlc_alexnet_parameter_count(127)


def test_caffe_layer_names_and_shapes():
    m = build_model("alexnet_caffe", 10)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {
        "conv1.weight": (96, 3, 11, 11), "conv1.bias": (96,), "conv2.weight": (256, 48, 5, 5), "conv2.bias": (256,),
        "conv3.weight": (384, 256, 3, 3), "conv3.bias": (384,), "conv4.weight": (384, 192, 3, 3),
        "conv4.bias": (384,), "conv5.weight": (256, 192, 3, 3), "conv5.bias": (256,),
        "fc6.weight": (4096, 9216), "fc6.bias": (4096,), "fc7.weight": (4096, 4096), "fc7.bias": (4096,),
        "fc8.weight": (10, 4096), "fc8.bias": (10,)}
    assert [m.conv2.groups, m.conv4.groups, m.conv5.groups, m.conv3.groups] == [2, 2, 2, 1]
    m.eval()
    x = torch.randn(2, 3, 227, 227)
    assert extract_features(m, x, "conv1").shape == (2, 96, 27, 27)
    assert extract_features(m, x, "conv5").shape == (2, 256, 13, 13)
    assert extract_features(m, x, "pool5").shape == (2, 9216)
    assert extract_features(m, x, "fc7").shape == (2, 4096)


def test_caffe_forward_matches_layer_by_layer_reference():
    """conv -> relu -> LRN -> pool (AlexNet's order), written out with torch.nn.functional."""
    torch.manual_seed(0)
    m = build_model("alexnet_caffe", 7, init="kaiming").eval()
    x = torch.randn(2, 3, 227, 227)

    def lrn(t):  # Caffe ACROSS_CHANNELS: t / (1 + alpha/n * sum over 5 channels of t^2)^beta
        sq = F.pad(t.pow(2).unsqueeze(1), (0, 0, 0, 0, 2, 2)).squeeze(1)
        s = sum(sq[:, i:i + t.shape[1]] for i in range(5))
        return t / (1 + 1e-4 / 5 * s) ** 0.75

    y = F.max_pool2d(lrn(F.relu(m.conv1(x))), 3, 2)
    y = F.max_pool2d(lrn(F.relu(m.conv2(y))), 3, 2)
    y = F.relu(m.conv5(F.relu(m.conv4(F.relu(m.conv3(y))))))
    y = F.max_pool2d(y, 3, 2).flatten(1)
    y = m.fc8(F.relu(m.fc7(F.relu(m.fc6(y)))))
    with torch.no_grad():
        assert torch.allclose(m(x), y, atol=1e-4, rtol=1e-4)


def test_caffe_accepts_small_inputs_without_changing_parameters():
    m = build_model("alexnet_caffe", 5).eval()
    n = count_parameters(m)
    for side in (NETWORKS["alexnet_caffe"].min_input, 64, 160, 192, 256):
        assert m(torch.randn(1, 3, side, side)).shape == (1, 5)
    assert count_parameters(m) == n
    # at the standard 13x13 conv5 output the adaptive pool picks the same windows as MaxPool2d(3, 2)
    t = torch.randn(2, 256, 13, 13)
    assert torch.equal(F.adaptive_max_pool2d(t, 6), F.max_pool2d(t, 3, 2))


def test_tv_state_dict_loads_into_torchvision():
    from torchvision.models import alexnet
    m = build_model("alexnet_tv", 20)
    ref = alexnet(weights=None, num_classes=20)
    ref.load_state_dict(m.state_dict())  # strict: same keys and shapes
    ref.eval(), m.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(ref(x), m(x))
        assert extract_features(m, x, "fc8").shape == (1, 20)
        assert torch.allclose(extract_features(m, x, "fc8"), m(x))
    assert m(torch.randn(1, 3, NETWORKS["alexnet_tv"].min_input, NETWORKS["alexnet_tv"].min_input)).shape == (1, 20)


def test_caffe_init_follows_bvlc():
    torch.manual_seed(0)
    m = build_model("alexnet_caffe", 1000, init="caffe")
    assert abs(m.fc6.weight.std().item() - 0.005) < 2e-4
    assert abs(m.conv3.weight.std().item() - 0.01) < 5e-4
    assert m.conv2.bias.eq(0.1).all() and m.conv1.bias.eq(0).all() and m.fc8.bias.eq(0).all()


def test_bad_arguments_name_allowed_values():
    with pytest.raises(UsageError, match="alexnet_caffe, alexnet_tv, resnet18, resnet50"):
        build_model("vgg16", 10)
    with pytest.raises(UsageError, match="init"):
        build_model("alexnet_tv", 10, init="caffe")
    with pytest.raises(UsageError, match="fc7"):
        extract_features(build_model("alexnet_tv", 3), torch.zeros(1, 3, 64, 64), "fc9")


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    m = build_model("alexnet_tv", 3)
    path = tmp_path / "last.pt"
    torch.save({"model": m.state_dict(), "arch": "alexnet_tv", "num_classes": 3, "label_wnids": ["a", "b", "c"],
                "epoch": 2, "recipe": {"lr": 0.1}}, path)
    model, meta = load_checkpoint_model(path)
    assert meta["label_wnids"] == ["a", "b", "c"] and meta["epoch"] == 2 and "model" not in meta
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), m.state_dict().values()))
    with pytest.raises(FastloadError, match="does not exist"):
        load_checkpoint_model(tmp_path / "missing.pt")
    torch.save({"model": {}}, tmp_path / "bad.pt")
    with pytest.raises(FastloadError, match="arch"):
        load_checkpoint_model(tmp_path / "bad.pt")


def test_checkpoints_record_the_run_s_inputs_under_inputs_and_older_ones_under_args_still_read(tmp_path):
    m = build_model("alexnet_tv", 3)
    for key in ("inputs", "args"):  # 'args': checkpoints written before the key was named 'inputs'
        path = tmp_path / f"{key}.pt"
        torch.save({"model": m.state_dict(), "arch": "alexnet_tv", "num_classes": 3, key: {"seed": 3}}, path)
        _, meta = load_checkpoint_model(path)
        assert meta["inputs"] == {"seed": 3} and "args" not in meta


def test_damaged_or_foreign_checkpoints_are_one_line_naming_the_file(tmp_path):
    import os
    path = tmp_path / "last.pt"
    torch.save({"model": build_model("alexnet_tv", 3).state_dict(), "arch": "alexnet_tv", "num_classes": 3}, path)
    data = path.read_bytes()
    damaged = {"truncated": data[:len(data) // 3], "empty": b"", "garbage": os.urandom(4096)}
    for name, content in damaged.items():
        path.write_bytes(content)
        with pytest.raises(FastloadError, match="cannot read checkpoint .*last.pt") as err:
            load_checkpoint_model(path)
        assert "\n" not in str(err.value), name
    torch.save([1, 2, 3], path)
    with pytest.raises(FastloadError, match="holds a list"):
        load_checkpoint_model(path)
    torch.save({"x": torch.nn.Linear(2, 2)}, path)  # a pickled module: weights_only refuses to run it
    with pytest.raises(FastloadError, match="cannot read checkpoint"):
        load_checkpoint_model(path)

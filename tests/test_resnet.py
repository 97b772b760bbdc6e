"""ResNet-18/50 pre-training: torchvision's definitions, BlurPool, the FFCV recipes, optimizer groups,
test-time flip. CPU only, tiny inputs."""
import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from fastload import pretrain, recipe
from fastload.errors import UsageError
from fastload.models.build import build_model
from fastload.models.checkpoint import load_checkpoint_model
from fastload.models.networks import NETWORKS, archs_of
from fastload.models.resnet import BLUR_KERNEL, BlurPoolConv2d, apply_blurpool

REPO = Path(__file__).resolve().parent.parent
FFCV_RECIPES = ("resnet18_16", "resnet18_88", "resnet50_16", "resnet50_88")
# FFCV's configs (libffcv/ffcv-imagenet rn*_configs/*.yaml): epochs, start_ramp, end_ramp, per-GPU batch x GPUs, lr,
# weight decay; and the README table's top-1 / top-5 for them
FFCV = {"resnet18_16": (16, 11, 13, 1024 * 1, 0.5, 5e-5, "66.9%", "86.8%"),
        "resnet18_88": (88, 65, 76, 1024 * 1, 0.5, 5e-5, "72.4%", "90.3%"),
        "resnet50_16": (16, 11, 13, 512 * 8, 1.7, 1e-4, "73.8%", "90.8%"),
        "resnet50_88": (88, 65, 76, 512 * 8, 1.7, 1e-4, "78.4%", "94.1%")}


@pytest.mark.parametrize("arch", archs_of("resnet"))
def test_state_dict_loads_strict_into_torchvision(arch):
    torch.manual_seed(0)
    ours = build_model(arch, 7).eval()
    theirs = getattr(torchvision.models, arch)(num_classes=7).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 3, NETWORKS[arch].min_input, NETWORKS[arch].min_input)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x)) and ours(x).shape == (2, 7)


def test_blurpool_wraps_ffcv_s_convs_and_keeps_torchvision_keys():
    expected = {"resnet18": ["layer2.0.conv1", "layer2.0.downsample.0", "layer3.0.conv1", "layer3.0.downsample.0",
                             "layer4.0.conv1", "layer4.0.downsample.0"],  # BasicBlock strides its conv1
                "resnet50": ["layer2.0.conv2", "layer2.0.downsample.0", "layer3.0.conv2", "layer3.0.downsample.0",
                             "layer4.0.conv2", "layer4.0.downsample.0"]}  # torchvision's v1.5: conv2 strides
    for arch, names in expected.items():
        plain = getattr(torchvision.models, arch)(num_classes=3)
        assert sorted(apply_blurpool(plain)) == sorted(names)  # conv1 (3 input channels) stays plain
        torch.manual_seed(1)
        blurred = build_model(arch, 3, blurpool=True)
        torch.manual_seed(1)
        unblurred = build_model(arch, 3)
        assert {n for n, m in blurred.named_modules() if isinstance(m, BlurPoolConv2d)} == set(names)
        state = blurred.state_dict()
        assert list(state) == list(unblurred.state_dict())  # the filter is not saved
        assert all(torch.equal(state[k], v) for k, v in unblurred.state_dict().items())  # same seeded init
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            assert not torch.allclose(blurred.eval()(x), unblurred.eval()(x))  # the blur is really there


def test_blurpool_conv_blurs_then_convolves():
    torch.manual_seed(0)
    conv = BlurPoolConv2d(16, 4, 3, stride=2, padding=1, bias=False)
    x = torch.randn(2, 16, 9, 9)
    kernel = BLUR_KERNEL.view(1, 1, 3, 3).repeat(16, 1, 1, 1)
    by_hand = F.conv2d(F.conv2d(x, kernel, padding=1, groups=16), conv.weight, stride=2, padding=1)
    assert torch.allclose(conv(x), by_hand, atol=1e-6)
    assert torch.allclose(BLUR_KERNEL.sum(), torch.tensor(1.0))  # a low-pass filter: keeps the mean


def test_resnet_checkpoint_loads_back_with_its_blurpool(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18", 5, blurpool=True).eval()
    path = tmp_path / "last.pt"
    torch.save({"model": model.state_dict(), "arch": "resnet18", "num_classes": 5, "label_wnids": list("abcde"),
                "recipe": {**recipe.load_recipe("smoke_resnet18"), "blurpool": True}}, path)
    loaded, meta = load_checkpoint_model(path)
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x)) and meta["arch"] == "resnet18"
    assert any(isinstance(m, BlurPoolConv2d) for m in loaded.modules())


@pytest.mark.skipif(importlib.util.find_spec("mmdet") is None,
                    reason="mmdet is not installed (setup.sh builds mmcv, then installs mmdet)")
@pytest.mark.parametrize("arch, depth", [("resnet18", 18), ("resnet50", 50)])
def test_state_dict_loads_into_mmdet_resnet_backbone(arch, depth):
    from mmdet.models.backbones import ResNet
    torch.manual_seed(0)
    ours = build_model(arch, 4).eval()
    backbone = ResNet(depth=depth, out_indices=(3,), norm_eval=True)
    backbone.eval()  # mmdet's ResNet.train() returns None, so .eval() cannot be chained
    result = backbone.load_state_dict(ours.state_dict(), strict=False)
    assert result.missing_keys == [] and sorted(result.unexpected_keys) == ["fc.bias", "fc.weight"]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        trunk = torch.nn.Sequential(*list(ours.children())[:-2])  # up to layer4
        assert torch.allclose(backbone(x)[-1], trunk(x), atol=1e-5)


def test_resnets_refuse_settings_they_do_not_have():
    cfg = recipe.load_recipe("smoke_resnet18")
    recipe.check_config(cfg, 1)
    for name, value, message in (("init", "kaiming", "torchvision's own initialisation"),
                                 ("dropout", "0.5", "has no dropout"), ("min_res", "31", "must be >= 32")):
        with pytest.raises(UsageError, match=message):
            recipe.check_config(recipe.apply_overrides(cfg, [(name, value)]), 1)
    with pytest.raises(UsageError, match="blurpool is defined for the ResNets"):
        recipe.check_config(recipe.apply_overrides(recipe.load_recipe("smoke"), [("blurpool", "true")]), 1)
    with pytest.raises(UsageError, match="has no dropout"):
        build_model("resnet50", 3, dropout=0.5)


def ffcv_resolution(epoch, min_res, max_res, start_ramp, end_ramp):
    """ffcv-imagenet train_imagenet.py get_resolution, verbatim in effect."""
    if epoch <= start_ramp:
        return min_res
    if epoch >= end_ramp:
        return max_res
    interp = np.interp([epoch], [start_ramp, end_ramp], [min_res, max_res])
    return int(np.round(interp[0] / 32)) * 32


def ffcv_lr(epoch, lr, epochs, lr_peak_epoch=2):
    """ffcv-imagenet get_cyclic_lr (its per-iteration lr interpolates this between epoch boundaries)."""
    return np.interp([epoch], [0, lr_peak_epoch, epochs], [1e-4 * lr, lr, 0])[0]


@pytest.mark.parametrize("name", FFCV_RECIPES)
def test_ffcv_recipes_match_ffcv_s_schedule_settings_and_figures(name):
    epochs, start, end, batch, lr, wd, top1, top5 = FFCV[name]
    cfg = recipe.load_recipe(name)
    recipe.check_config(cfg, world_size=8 if name.startswith("resnet50") else 1)
    assert (cfg["epochs"], cfg["batch_size"], cfg["lr"], cfg["weight_decay"]) == (epochs, batch, lr, wd)
    assert (cfg["label_smoothing"], cfg["momentum"], cfg["val_res"]) == (0.1, 0.9, 256)
    assert cfg["val_flip"] and cfg["blurpool"] and not cfg["norm_decay"] and cfg["bias_decay"]
    assert cfg["arch"] == name.split("_")[0] and cfg["crop"] == "rrc"
    assert [pretrain.get_resolution(cfg, e) for e in range(epochs)] == \
        [ffcv_resolution(e, 160, 192, start, end) for e in range(epochs)]
    for epoch in np.linspace(0, epochs - 1e-6, 97):
        assert pretrain.get_lr(cfg, epoch) == pytest.approx(ffcv_lr(epoch, lr, epochs), rel=1e-9, abs=1e-12)
    header = (REPO / "train" / f"{name}.yaml").read_text()
    assert f"{top1} top-1 / {top5} top-5" in header and re.search(r"Expected \(FFCV's README", header)


def test_batchnorm_gets_its_own_group_without_decay():
    cfg = recipe.load_recipe("resnet50_16")
    model = build_model("resnet18", 3)
    groups = pretrain.create_optimizer(cfg, model).param_groups
    norm = [p for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()]
    assert len(groups) == 3 and {id(p) for p in groups[2]["params"]} == {id(p) for p in norm}
    assert groups[2]["weight_decay"] == 0.0 and groups[0]["weight_decay"] == groups[1]["weight_decay"] == 1e-4
    assert [id(p) for p in groups[1]["params"]] == [id(model.fc.bias)]  # the only bias outside BatchNorm
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    alexnet = pretrain.create_optimizer(recipe.load_recipe("paper"), build_model("alexnet_caffe", 3))
    assert len(alexnet.param_groups) == 2  # no BatchNorm: the two Caffe groups, as before


def test_val_flip_averages_the_logits_of_the_mirror_image():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 5, 6))  # not mirror-symmetric
    images = torch.randn(2, 3, 4, 5)
    run = SimpleNamespace(model=model, amp_dtype=None, dist=SimpleNamespace(device=torch.device("cpu")),
                          cfg={"val_flip": True})
    with torch.no_grad():
        flipped = (model(images) + model(images.flip(3))) / 2
        assert torch.allclose(pretrain.val_logits(run, images), flipped)
        run.cfg["val_flip"] = False
        assert torch.equal(pretrain.val_logits(run, images), model(images))
        assert not torch.allclose(model(images), flipped)


def test_resnet18_trains_a_step_at_its_minimum_input():
    torch.manual_seed(0)
    model = build_model("resnet18", 4)
    cfg = recipe.load_recipe("smoke_resnet18")
    optimizer = pretrain.create_optimizer(cfg, model)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    before = model.conv1.weight.detach().clone()
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    loss = pretrain.train_step(model, optimizer, scaler, images, labels, lr=0.05)
    assert torch.isfinite(loss) and not torch.equal(before, model.conv1.weight)

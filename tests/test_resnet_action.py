"""R*CNN (PASCAL-ACT-CLS) on a pre-trained ResNet: the C4 split (trunk conv1..layer3, RoI pool 14x14,
layer4 + global average pool per region), strict loading of fastload ResNet checkpoints (BlurPool included), frozen
BatchNorm, and the ResNet-18 config trained and validated on CPU on the synthetic VOC action data.
"""
import json

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmcv.ops")

from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import fastload.mmdet  # noqa: E402,F401  (registrations)
from fastload.errors import FastloadError, UsageError  # noqa: E402
from fastload.voc import VOC_ACTIONS  # noqa: E402
from fastload.mmdet.action import RESNET_RES5, RESNET_TRUNK  # noqa: E402
from fastload.models.build import build_model  # noqa: E402
from fastload.models.checkpoint import load_checkpoint_model  # noqa: E402
from fastload.models.resnet import BlurPoolConv2d  # noqa: E402
from fastload.resources import TRANSFER_CONFIGS_DIR  # noqa: E402
from fastload.transfer import load_checkpoint_file, set_checkpoint, transfer  # noqa: E402

R18 = TRANSFER_CONFIGS_DIR / "rstarcnn_r18-c4_70k_voc12-action.py"
R50 = TRANSFER_CONFIGS_DIR / "rstarcnn_r50-c4_70k_voc12-action.py"
ALEXNET = TRANSFER_CONFIGS_DIR / "rstarcnn_alexnet-caffe_70k_voc12-action.py"


def _save_checkpoint(path, arch, blurpool=False, drop=()):
    """A fastload checkpoint of `arch` whose BatchNorm weights and statistics are random too (a fresh network's are
    1/0 and 0/1, which a loader that skipped them would reproduce)."""
    torch.manual_seed(0)
    model = build_model(arch, num_classes=5, blurpool=blurpool)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0.0, 0.1)
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    state = {k: v for k, v in model.state_dict().items() if k not in drop}
    torch.save(dict(model=state, arch=arch, num_classes=5, label_wnids=[f"n{i:08d}" for i in range(5)], epoch=1,
                    recipe={"arch": arch, "blurpool": blurpool}), path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    return {"resnet18": _save_checkpoint(d / "resnet18.pt", "resnet18"),
            "resnet18_blurpool": _save_checkpoint(d / "resnet18_blurpool.pt", "resnet18", blurpool=True),
            "alexnet_caffe": _save_checkpoint(d / "alexnet_caffe.pt", "alexnet_caffe")}


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    """`fastload synth voc`: VOC2012 Action train 4 / val 4 images (and a little VOC2007, which this file ignores)."""
    from fastload.synth.voc import write_voc
    out = tmp_path_factory.mktemp("voc") / "synth"
    write_voc(out, trainval=2, test=2, action_train=4, action_val=4, seed=0)
    return out / "VOCdevkit"


def _build(config, checkpoint, blurpool=None):
    """The config's model; `blurpool` None leaves it as shipped (as the checkpoint records it)."""
    from mmdet.registry import MODELS
    cfg = Config.fromfile(str(config))
    if blurpool is not None:
        cfg.model.backbone.blurpool = blurpool
    assert set_checkpoint(cfg.model, str(checkpoint)) == 2  # the trunk's and the region head's
    init_default_scope("mmdet")
    return MODELS.build(cfg.model)


# ---------------------------------------------------------------- checkpoint loading

@pytest.mark.parametrize("name", ["resnet18", "resnet18_blurpool"])
def test_resnet18_checkpoint_loads_into_trunk_and_region_head(checkpoints, name):
    model = _build(R18, checkpoints[name])  # the shipped config: BlurPool as the checkpoint records it
    model.init_weights()
    reference = torch.load(checkpoints[name], weights_only=True)["model"]
    loaded = {**model.backbone.state_dict(), **model.res5.state_dict()}
    assert set(loaded) == {k for k in reference if not k.startswith("fc.")}  # every key but the classifier
    assert all(torch.equal(loaded[k], reference[k]) for k in loaded)
    assert {k.split(".")[0] for k in model.backbone.state_dict()} == set(RESNET_TRUNK) - {"relu", "maxpool"}
    assert {k.split(".")[0] for k in model.res5.state_dict()} == set(RESNET_RES5)
    # the network is built as it was pre-trained: with BlurPool where the recipe had it (trunk and head alike)
    blurred = [m for m in model.modules() if isinstance(m, BlurPoolConv2d)]
    assert len(blurred) == (6 if name == "resnet18_blurpool" else 0)
    # trunk, then layer4 + average pool, over the whole image = the pre-trained network up to its fc
    network, _ = load_checkpoint_model(checkpoints[name])
    network.fc = torch.nn.Identity()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        trunk = model.backbone.eval()(x)[0]
        assert trunk.shape == (2, 256, 4, 6)  # stride 16
        assert torch.allclose(model.res5.eval()(trunk), network(x), atol=1e-5)


def test_frozen_batchnorm_and_stages(checkpoints):
    model = _build(R18, checkpoints["resnet18_blurpool"])
    model.train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 20 and not any(m.training for m in norms)  # eval even in train mode: pre-trained stats
    assert not any(p.requires_grad for m in norms for p in m.parameters())
    trainable = {n.split(".")[1] for n, p in model.backbone.named_parameters(prefix="b") if p.requires_grad}
    assert trainable == {"layer2", "layer3"}  # stem and layer1 frozen (frozen_stages=1)
    assert model.res5.layer4[0].conv1.weight.requires_grad and model.primary_cls.weight.requires_grad


def test_wrong_or_incomplete_checkpoint_is_an_error_naming_it(checkpoints, tmp_path):
    alexnet = str(checkpoints["alexnet_caffe"])
    with pytest.raises(FastloadError) as e:
        _build(R18, alexnet).init_weights()
    assert alexnet in str(e.value) and "alexnet_caffe" in str(e.value)
    # a BlurPool setting unlike the checkpoint's says what to set
    with pytest.raises(FastloadError, match="model.backbone.blurpool=False") as e:
        _build(R18, checkpoints["resnet18"], blurpool=True).init_weights()
    assert str(checkpoints["resnet18"]) in str(e.value)
    bad = _save_checkpoint(tmp_path / "bad.pt", "resnet18", drop=("layer4.1.conv2.weight", "layer2.0.bn1.running_var"))
    model = _build(R18, bad, blurpool=False)
    with pytest.raises(FastloadError, match=r"missing keys: layer2\.0\.bn1\.running_var") as e:
        model.backbone.init_weights()
    assert str(bad) in str(e.value)
    with pytest.raises(FastloadError, match=r"missing keys: layer4\.1\.conv2\.weight"):
        model.res5.init_weights()
    with pytest.raises(FastloadError, match="no pre-trained checkpoint"):
        _unfilled(R18).init_weights()  # checkpoint=None: `fastload transfer --checkpoint` did not fill it in


def _unfilled(config):
    from mmdet.registry import MODELS
    init_default_scope("mmdet")
    return MODELS.build(Config.fromfile(str(config)).model)


def test_inconsistent_model_settings_are_refused():
    from mmdet.registry import MODELS
    cfg = Config.fromfile(str(R18))
    init_default_scope("mmdet")
    with pytest.raises(UsageError, match="no dropout"):
        MODELS.build({**cfg.model, "dropout": 0.5})
    with pytest.raises(UsageError, match="differs from the backbone"):
        MODELS.build({**cfg.model, "arch": "resnet50"})
    with pytest.raises(UsageError, match="out_channels 1024 must be the backbone's 256"):
        MODELS.build({**cfg.model, "roi_extractor": {**cfg.model.roi_extractor, "out_channels": 1024}})


# ---------------------------------------------------------------- the configs

def test_resnet_configs_are_the_alexnet_one_but_network_and_optimiser():
    def flat(node, prefix=""):
        if isinstance(node, dict):
            return {k: v for key, val in node.items() for k, v in flat(val, f"{prefix}{key}.").items()}
        return {prefix[:-1]: list(node) if isinstance(node, tuple) else node}
    alexnet, r50, r18 = (flat(Config.fromfile(str(c)).to_dict()) for c in (ALEXNET, R50, R18))
    differ = {k for k in alexnet.keys() | r50.keys() if alexnet.get(k) != r50.get(k)}
    assert {k for k in differ if not k.startswith(("model.backbone.", "model.roi_extractor.", "optim_wrapper.",
                                                   "param_scheduler"))} == {"arch", "model.arch", "model.dropout"}
    assert {k for k in r18.keys() | r50.keys() if r18.get(k) != r50.get(k)} == {
        "arch", "model.arch", "model.backbone.arch", "model.roi_extractor.out_channels"}
    cfg = Config.fromfile(str(R50))
    assert cfg.primary_metric == "voc_action/mAP" and cfg.model.roi_extractor.roi_layer.output_size == 14
    assert cfg.optim_wrapper.optimizer.lr == 0.0025 and cfg.optim_wrapper.optimizer.weight_decay == 0.0001
    assert cfg.param_scheduler[0].type == "MultiStepLR" and cfg.param_scheduler[0].milestones == [40000]
    assert cfg.train_cfg.max_iters == 70000 and cfg.train_dataloader.batch_size == 2


def test_r50_config_builds():
    from mmdet.registry import MODELS
    cfg = Config.fromfile(str(R50))
    set_checkpoint(cfg.model, "random")
    init_default_scope("mmdet")
    model = MODELS.build(cfg.model)
    model.init_weights()  # 'random': torchvision's own initialisation, nothing read
    assert model.backbone.out_channels == 1024 and model.res5.out_channels == 2048
    assert model.primary_cls.in_features == model.secondary_cls.in_features == 2048
    with torch.no_grad():
        trunk = model.backbone.eval()(torch.zeros(1, 3, 48, 64))[0]
        assert trunk.shape == (1, 1024, 3, 4)
        assert model.res5.eval()(torch.zeros(3, 1024, 14, 14)).shape == (3, 2048)


def test_optimizer_groups_of_the_resnet_config():
    from mmdet.registry import MODELS
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(str(R18))
    set_checkpoint(cfg.model, "random")
    init_default_scope("mmdet")
    model = MODELS.build(cfg.model)
    optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {names[id(g["params"][0])]: (g["lr"], g["weight_decay"]) for g in optimizer.param_groups}
    lr, wd = 0.0025, 0.0001
    assert groups["backbone.layer2.0.conv1.weight"] == pytest.approx((lr, wd))
    assert groups["res5.layer4.0.conv1.weight"] == pytest.approx((lr, wd))
    assert groups["primary_cls.weight"] == pytest.approx((lr, wd))
    assert groups["secondary_cls.bias"] == groups["bbox_pred.bias"] == pytest.approx((2 * lr, 0.0))
    # the ResNet's convolutions have no biases: R*CNN's bias rule reaches the new layers only
    biased = {n for n in groups if n.endswith(".bias") and "bn" not in n and "downsample.1" not in n}
    assert biased == {"primary_cls.bias", "secondary_cls.bias", "bbox_pred.bias"}


# ---------------------------------------------------------------- training on CPU

def test_r18_config_trains_and_validates(voc_root, checkpoints, tmp_path):
    iters = 2
    options = {
        "data_root": f"{voc_root}/", "img_scale": (128, 96),
        "train_cfg.max_iters": iters, "train_cfg.val_interval": iters, "param_scheduler.0.end": iters,
        "param_scheduler.0.milestones": [iters], "param_scheduler.1.end": iters,  # warm-up: the first iteration
        "train_dataloader.num_workers": 0, "train_dataloader.persistent_workers": False,
        "val_dataloader.num_workers": 0, "val_dataloader.persistent_workers": False,
        "default_hooks.logger.interval": 1, "default_hooks.checkpoint.interval": iters,
        # few regions through layer4 on 2 CPU cores
        "model.primary_per_image": 3, "model.num_secondary_train": 2, "model.max_secondary_test": 4,
    }
    checkpoint = checkpoints["resnet18_blurpool"]
    summary = transfer(R18, checkpoint, tmp_path, options, seeds=[0])
    assert summary["metric"] == "voc_action/mAP" and 0.0 <= summary["mean"] <= 1.0
    result = json.loads((tmp_path / "seed_0" / "result.json").read_text())
    aps = {k[len("voc_action/AP_"):]: v for k, v in result["metrics"].items() if k.startswith("voc_action/AP_")}
    assert result["metrics"]["iter"] == iters and aps and set(aps) <= set(VOC_ACTIONS)  # the actions val has
    assert result["value"] == pytest.approx(sum(aps.values()) / len(aps))
    trained = load_checkpoint_file(tmp_path / "seed_0" / f"iter_{iters}.pth")["state_dict"]
    reference = torch.load(checkpoint, weights_only=True)["model"]
    # frozen: the stem, layer1 and every BatchNorm (statistics included); trained: layer2..layer4
    for key in ("conv1.weight", "layer1.0.conv1.weight", "bn1.running_mean", "layer3.1.bn2.running_var",
                "layer3.1.bn2.weight"):
        assert torch.equal(trained[f"backbone.{key}"], reference[key]), key
    assert torch.equal(trained["res5.layer4.0.bn1.running_mean"], reference["layer4.0.bn1.running_mean"])
    assert not torch.equal(trained["backbone.layer2.0.conv1.weight"], reference["layer2.0.conv1.weight"])
    assert not torch.equal(trained["res5.layer4.1.conv2.weight"], reference["layer4.1.conv2.weight"])

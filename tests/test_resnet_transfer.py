"""ResNet transfer: fastload ResNet checkpoints in mmdet (fastload/mmdet/resnet.py), the Faster R-CNN + FPN
configs (mmdet 3.3's VOC recipe on VOC 2007) and the SUN-CLS configs, on CPU with tiny synthetic VOC and SUN397.
Only ResNet-18 trains here; ResNet-50 is built and loaded, not trained (CPU time)."""
import json

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmcv.ops")

from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import fastload.mmdet  # noqa: E402,F401  (registrations)
import fastload.mmdet.classification  # noqa: E402,F401
from fastload.errors import FastloadError, UsageError  # noqa: E402
from fastload.mmdet.resnet import blurpool_convs, resnet_state_dict  # noqa: E402
from fastload.models.build import build_model  # noqa: E402
from fastload.models.resnet import BlurPoolConv2d, apply_blurpool  # noqa: E402
from fastload.recipe import load_recipe  # noqa: E402
from fastload.resources import TRANSFER_CONFIGS_DIR  # noqa: E402
from fastload.transfer import load_checkpoint_file, set_checkpoint, transfer  # noqa: E402

DET = {depth: TRANSFER_CONFIGS_DIR / f"faster-rcnn_r{depth}_fpn_1x_voc07.py" for depth in (18, 50)}
SUN = {depth: TRANSFER_CONFIGS_DIR / f"resnet{depth}_50k_sun397.py" for depth in (18, 50)}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread beats two contended ones on the shared CPUs
    yield
    torch.set_num_threads(threads)


def save_checkpoint(path, arch, blurpool=True, edit=None, prefix=""):
    """A checkpoint as fastload/pretrain.py writes it (its resume-only keys left out)."""
    torch.manual_seed(0)
    model = build_model(arch, num_classes=7, blurpool=blurpool if arch.startswith("resnet") else False)
    state = {prefix + k: v for k, v in model.state_dict().items()}
    if edit:
        edit(state)
    recipe = {**load_recipe("smoke_resnet18"), "arch": arch, "blurpool": blurpool} if arch.startswith("resnet") \
        else load_recipe("smoke")
    torch.save(dict(model=state, arch=arch, num_classes=7, label_wnids=[f"n{i:08d}" for i in range(7)], epoch=1,
                    recipe=recipe), path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    return {"resnet18": save_checkpoint(d / "resnet18.pt", "resnet18"),
            "resnet50": save_checkpoint(d / "resnet50.pt", "resnet50"),
            "resnet18_noblur": save_checkpoint(d / "resnet18_noblur.pt", "resnet18", blurpool=False),
            "alexnet_caffe": save_checkpoint(d / "alexnet_caffe.pt", "alexnet_caffe")}


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    from fastload.synth.voc import write_voc
    out = tmp_path_factory.mktemp("voc") / "synth"
    write_voc(out, trainval=4, test=3, action_train=2, action_val=2, seed=0)
    return out / "VOCdevkit"


@pytest.fixture(scope="module")
def sun_root(tmp_path_factory):
    from fastload.synth.sun import write_sun
    root = tmp_path_factory.mktemp("sun") / "data"
    write_sun(root, classes=3, train_per_class=2, test_per_class=1, size="64x48", seed=0)
    return root


def build(config, checkpoint, **overrides):
    """The config's model, built and initialised with `checkpoint` (fastload.transfer.set_checkpoint fills it)."""
    from mmdet.registry import MODELS
    cfg = Config.fromfile(str(config))
    cfg.merge_from_dict(overrides)
    assert set_checkpoint(cfg.model, str(checkpoint)) == 1
    init_default_scope("mmdet")
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def flat(node, prefix=""):
    """{dotted key: value}; lists of dicts (pipelines) by index, other lists as values."""
    if isinstance(node, (list, tuple)) and any(isinstance(v, dict) for v in node):
        node = dict(enumerate(node))
    if isinstance(node, dict):
        return {k: v for key, val in node.items() for k, v in flat(val, f"{prefix}{key}.").items()}
    return {prefix[:-1]: list(node) if isinstance(node, (list, tuple)) else node}


# ---------------------------------------------------------------- the checkpoint reader and loader

def test_resnet_state_dict_reads_strips_and_refuses(checkpoints, tmp_path):
    state, meta = resnet_state_dict(checkpoints["resnet18"], "resnet18")
    reference = torch.load(checkpoints["resnet18"], weights_only=True)["model"]
    assert state.keys() == reference.keys() and meta["arch"] == "resnet18" and meta["recipe"]["blurpool"] is True
    assert "model" not in meta
    wrapped = save_checkpoint(tmp_path / "ddp.pt", "resnet18", prefix="module._orig_mod.")
    assert resnet_state_dict(wrapped)[0].keys() == reference.keys()
    with pytest.raises(FastloadError, match=r"alexnet_caffe\.pt holds an 'alexnet_caffe' model, not a ResNet"):
        resnet_state_dict(checkpoints["alexnet_caffe"])
    with pytest.raises(FastloadError, match=r"resnet50\.pt holds a 'resnet50' model but the config builds 'resnet18'"):
        resnet_state_dict(checkpoints["resnet50"], "resnet18")


def test_detector_backbone_holds_the_checkpoint_weights(checkpoints):
    model = build(DET[18], checkpoints["resnet18"])
    reference = torch.load(checkpoints["resnet18"], weights_only=True)["model"]
    backbone = model.backbone.state_dict()
    assert backbone.keys() == {k for k in reference if not k.startswith("fc.")}
    for key, value in backbone.items():  # weights and BatchNorm statistics alike
        assert torch.equal(value, reference[key]), key
    # BlurPool where the pre-trained torchvision ResNet-18 has it, nowhere else
    blurred = sorted(name for name, on in blurpool_convs(model.backbone).items() if on)
    assert blurred == sorted(apply_blurpool(build_model("resnet18", 7)))
    assert all(blurpool_convs(model.backbone).values())
    # mmdet's frozen BN: stem and layer1 fixed, every BN layer in eval mode while training, BN affine trained
    model.train()
    frozen = {n for n, p in model.backbone.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.backbone.named_parameters() if n.startswith(("conv1.", "bn1.", "layer1."))}
    assert all(not m.training for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert model.backbone.layer4[0].bn1.weight.requires_grad


def test_loader_refuses_other_networks_with_a_clear_error(checkpoints):
    with pytest.raises(FastloadError, match=r"alexnet_caffe\.pt holds an 'alexnet_caffe' model, not a ResNet.*"
                                            r"transfer/\*alexnet-caffe\*"):
        build(DET[18], checkpoints["alexnet_caffe"])
    with pytest.raises(FastloadError, match=r"resnet50\.pt holds a 'resnet50' model but the config builds "
                                            r"'resnet18': use the resnet50 transfer configs \(transfer/\*_r50_\*"):
        build(DET[18], checkpoints["resnet50"])
    with pytest.raises(FastloadError, match=r"resnet18\.pt holds a 'resnet18' model but the config builds 'resnet50'"):
        build(SUN[50], checkpoints["resnet18"])
    with pytest.raises(FastloadError, match=r"alexnet_caffe\.pt holds an 'alexnet_caffe' model, not a ResNet"):
        build(SUN[18], checkpoints["alexnet_caffe"])


def test_missing_keys_shapes_blurpool_and_no_checkpoint_are_errors(checkpoints, tmp_path):
    def drop(state):
        del state["layer3.1.bn2.running_var"], state["conv1.weight"]

    def reshape(state):
        state["layer2.0.conv1.weight"] = state["layer2.0.conv1.weight"][:, :32]
    missing = save_checkpoint(tmp_path / "missing.pt", "resnet18", edit=drop)
    with pytest.raises(FastloadError, match=r"missing\.pt: missing keys: conv1\.weight, layer3\.1\.bn2\.running_var"):
        build(DET[18], missing)
    with pytest.raises(FastloadError, match=r"shape mismatches: layer2\.0\.conv1\.weight \(128, 32, 3, 3\) != "
                                            r"expected \(128, 64, 3, 3\)"):
        build(DET[18], save_checkpoint(tmp_path / "shape.pt", "resnet18", edit=reshape))
    # the blur is not in the state dict: a setting unlike the checkpoint's would run the weights on another network
    with pytest.raises(FastloadError, match=r"without BlurPool .* model\.backbone\.blurpool=False"):
        build(DET[18], checkpoints["resnet18_noblur"], **{"model.backbone.blurpool": True})
    with pytest.raises(FastloadError, match=r"with BlurPool .* blurpool=True"):
        build(DET[18], checkpoints["resnet18"], **{"model.backbone.blurpool": False})
    with pytest.raises(FastloadError, match=r"without BlurPool .* model\.blurpool=False"):
        build(SUN[18], checkpoints["resnet18_noblur"], **{"model.blurpool": True})
    plain = build(DET[18], checkpoints["resnet18_noblur"], **{"model.backbone.blurpool": False})
    assert not any(isinstance(m, BlurPoolConv2d) for m in plain.modules())
    # the shipped configs leave blurpool unset: the network blurs as the checkpoint's recipe did
    for config in (DET[18], SUN[18]):
        for name, blurs in (("resnet18_noblur", False), ("resnet18", True)):
            model = build(config, checkpoints[name])
            assert any(isinstance(m, BlurPoolConv2d) for m in model.modules()) == blurs, (config, name)
    from mmdet.registry import MODELS
    cfg = Config.fromfile(str(DET[18]))
    init_default_scope("mmdet")
    with pytest.raises(FastloadError, match="no pre-trained checkpoint given"):
        MODELS.build(cfg.model).init_weights()


def test_random_starts_from_torchvisions_initialisation(checkpoints):
    reference = torch.load(checkpoints["resnet18"], weights_only=True)["model"]
    torch.manual_seed(3)
    scratch = build(DET[18], "random").backbone
    assert not torch.equal(scratch.conv1.weight, reference["conv1.weight"])
    # torchvision's init (He fan-out convs, BN weight 1 / bias 0); mmdet's would zero the last BN of each block
    assert torch.all(scratch.layer1[0].bn2.weight == 1) and torch.all(scratch.bn1.bias == 0)
    fan_out = 64 * 7 * 7
    assert scratch.conv1.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.1)


def test_resnet50_configs_build_with_the_checkpoint(checkpoints):
    reference = torch.load(checkpoints["resnet50"], weights_only=True)["model"]
    det = build(DET[50], checkpoints["resnet50"])
    assert torch.equal(det.backbone.layer4[2].conv3.weight, reference["layer4.2.conv3.weight"])
    assert torch.equal(det.backbone.layer3[5].bn3.running_mean, reference["layer3.5.bn3.running_mean"])
    feats = det.neck(det.backbone(torch.zeros(1, 3, 96, 128)))
    assert [f.shape[1] for f in feats] == [256] * 5 and feats[0].shape[-2:] == (24, 32)
    sun = build(SUN[50], checkpoints["resnet50"])
    assert torch.equal(sun.net.layer4[2].conv3.weight, reference["layer4.2.conv3.weight"])
    assert sun.fc.weight.shape == (397, 2048) and torch.all(sun.fc.bias == 0)
    assert abs(sun.fc.weight.std().item() - 0.01) < 0.001


# ---------------------------------------------------------------- the configs

def test_detection_config_is_mmdets_voc_recipe_on_voc07():
    cfg = Config.fromfile(str(DET[50]))
    assert cfg.primary_metric == "pascal_voc/mAP"
    assert cfg.val_evaluator.type == "VOCMetric" and cfg.val_evaluator.eval_mode == "11points"
    assert cfg.train_dataloader.dataset.ann_file == "VOC2007/ImageSets/Main/trainval.txt"
    assert cfg.val_dataloader.dataset.ann_file == "VOC2007/ImageSets/Main/test.txt"
    assert cfg.train_dataloader.dataset.filter_cfg == dict(filter_empty_gt=True, min_size=32, bbox_min_size=32)
    # lr 0.01 for 16 images per update: 2 per iteration, 8 accumulated; 12 passes over 5011 images, step after 9
    opt = cfg.optim_wrapper
    assert opt.optimizer == dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=0.0001) and "paramwise_cfg" not in opt
    images_per_update = cfg.train_dataloader.batch_size * opt.accumulative_counts
    assert images_per_update == cfg.auto_scale_lr.base_batch_size == 16 and cfg.auto_scale_lr.enable is False
    updates = cfg.train_cfg.max_iters // opt.accumulative_counts
    assert updates == 4 * round(3 * 5011 / 16 + 0.5) == 3760 and cfg.train_cfg.val_interval == cfg.train_cfg.max_iters
    assert cfg.param_scheduler == [dict(type="MultiStepLR", begin=0, end=30080, by_epoch=False,
                                        milestones=[3 * 940 * 8], gamma=0.1)]
    backbone = cfg.model.backbone
    assert (backbone.norm_eval, backbone.frozen_stages, backbone.style, backbone.depth) == (True, 1, "pytorch", 50)
    assert backbone.init_cfg == dict(type="FastloadPretrained", checkpoint=None)
    assert cfg.model.roi_head.bbox_head.num_classes == 20 and cfg.img_scale == (1000, 600)


def test_resnet18_configs_differ_only_in_depth():
    def diff(a, b):
        a, b = flat(Config.fromfile(str(a)).to_dict()), flat(Config.fromfile(str(b)).to_dict())
        return {k: (a.get(k), b.get(k)) for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    assert diff(DET[50], DET[18]) == {"model.backbone.depth": (50, 18),
                                      "model.neck.in_channels": ([256, 512, 1024, 2048], [64, 128, 256, 512])}
    assert diff(SUN[50], SUN[18]) == {"model.arch": ("resnet50", "resnet18")}
    # the SUN configs differ from the AlexNet one in the network, its new layer's name and the crop only; BlurPool
    # is read from the checkpoint, not set
    alexnet = flat(Config.fromfile(str(TRANSFER_CONFIGS_DIR / "alexnet-caffe_50k_sun397.py")).to_dict())
    resnet = flat(Config.fromfile(str(SUN[50])).to_dict())
    differ = {k for k in alexnet.keys() | resnet.keys() if alexnet.get(k) != resnet.get(k)}
    assert differ == {"model.arch", "crop_size", "train_pipeline.2.crop_size",
                      "test_pipeline.2.crop_size", "train_dataloader.dataset.pipeline.2.crop_size",
                      "val_dataloader.dataset.pipeline.2.crop_size", "test_dataloader.dataset.pipeline.2.crop_size",
                      *(f"optim_wrapper.paramwise_cfg.custom_keys.{layer}.{p}.{m}" for layer in ("fc8", "fc")
                        for p in ("weight", "bias") for m in ("lr_mult", "decay_mult"))}, differ
    assert resnet["crop_size"] == 224


def test_sun_new_layer_gets_the_fine_tuning_lr_multipliers(checkpoints):
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(str(SUN[18]))
    model = build(SUN[18], checkpoints["resnet18"])
    groups = build_optim_wrapper(model, cfg.optim_wrapper).optimizer.param_groups
    by_param = {id(p): g for g in groups for p in g["params"]}
    assert by_param[id(model.fc.weight)]["lr"] == pytest.approx(0.01)
    assert by_param[id(model.fc.bias)]["lr"] == pytest.approx(0.02) and by_param[id(model.fc.bias)]["weight_decay"] == 0
    others = [by_param[id(p)]["lr"] for n, p in model.named_parameters() if not n.startswith("fc.")]
    assert others and all(lr == pytest.approx(0.001) for lr in others)  # BN included: no bias rule for norm layers
    assert all(p.requires_grad for p in model.parameters())  # the whole network is fine-tuned


# ---------------------------------------------------------------- training through fastload transfer

def tiny_options(data_root, iters):
    options = {"data_root": f"{data_root}/", "train_cfg.max_iters": iters, "train_cfg.val_interval": iters,
               "param_scheduler.0.end": iters, "param_scheduler.0.milestones": [iters - 1],
               "default_hooks.logger.interval": 1, "default_hooks.checkpoint.interval": iters}
    for loader in ("train_dataloader", "val_dataloader"):
        options.update({f"{loader}.num_workers": 0, f"{loader}.persistent_workers": False})
    return options


def test_resnet18_detection_trains_and_validates(voc_root, checkpoints, tmp_path):
    iters = 2
    options = {**tiny_options(voc_root, iters), "img_scale": (128, 96), "optim_wrapper.accumulative_counts": 2,
               "model.test_cfg.rpn.max_per_img": 50, "model.train_cfg.rcnn.sampler.num": 32}
    summary = transfer(DET[18], checkpoints["resnet18"], tmp_path / "det", options, seeds=[0])
    assert summary["metric"] == "pascal_voc/mAP" and 0.0 <= summary["mean"] <= 1.0
    result = json.loads((tmp_path / "det" / "seed_0" / "result.json").read_text())
    assert result["metrics"]["iter"] == iters
    state = load_checkpoint_file(tmp_path / "det" / "seed_0" / f"iter_{iters}.pth", "cpu")["state_dict"]
    reference = torch.load(checkpoints["resnet18"], weights_only=True)["model"]
    # one update of 2 accumulated iterations: the frozen stages and every BN statistic unchanged, layer4 moved
    for key in ("conv1.weight", "bn1.weight", "layer1.1.conv2.weight", "layer4.1.bn2.running_var",
                "layer2.0.bn1.running_mean"):
        assert torch.equal(state[f"backbone.{key}"], reference[key]), key
    delta = (state["backbone.layer4.1.conv2.weight"] - reference["layer4.1.conv2.weight"]).abs().max().item()
    assert 0 < delta < 0.05


def test_resnet18_sun_fine_tunes_and_validates(sun_root, checkpoints, tmp_path):
    iters = 2
    options = {**tiny_options(sun_root, iters), "model.num_classes": 3, "train_dataloader.batch_size": 3,
               "val_dataloader.batch_size": 3}
    summary = transfer(SUN[18], checkpoints["resnet18"], tmp_path / "sun", options, seeds=[0])
    assert summary["metric"] == "sun397/mean_class_acc" and 0.0 <= summary["mean"] <= 1.0
    state = load_checkpoint_file(tmp_path / "sun" / "seed_0" / f"iter_{iters}.pth", "cpu")["state_dict"]
    reference = torch.load(checkpoints["resnet18"], weights_only=True)["model"]
    assert state["fc.weight"].shape == (3, 512) and "net.fc.weight" not in state
    for key in ("conv1.weight", "layer4.1.conv2.weight"):  # everything fine-tuned, nothing far from its start
        delta = (state[f"net.{key}"] - reference[key]).abs().max().item()
        assert 0 < delta < 0.05, key


@pytest.mark.parametrize("arch", ["resnet18", "alexnet_caffe"])
def test_frozen_layers_keep_their_values_and_get_no_gradient(arch, checkpoints):
    from mmdet.registry import MODELS
    init_default_scope("mmdet")
    frozen = ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"] if arch == "resnet18" else \
        ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]
    model = MODELS.build(dict(type="FastloadImageClassifier", arch=arch, num_classes=3,
                              checkpoint=str(checkpoints[arch]), blurpool=arch == "resnet18", frozen_layers=frozen))
    model.init_weights()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    for _ in range(2):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 64, 64)), torch.tensor([0, 1, 2, 0])).backward()
        optimizer.step()
    assert all(p.grad is None for p in model.net.parameters())
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items() if k.startswith("net.")), \
        [k for k, v in before.items() if k.startswith("net.") and not torch.equal(after[k], v)]  # BN statistics too
    assert not torch.equal(after[f"{model.new_fc_name}.weight"], before[f"{model.new_fc_name}.weight"])
    with pytest.raises(UsageError, match=r"'layer5', 'fc8' are not layers of resnet18: choose from conv1, bn1"):
        MODELS.build(dict(type="FastloadImageClassifier", arch="resnet18", frozen_layers=["layer1", "layer5", "fc8"]))


def test_a_new_resnet_depth_is_one_record(monkeypatch, tmp_path):
    """A network is its record: with a ResNet-34 record added to the table (and nothing else), fastload builds it,
    reads its checkpoint back, gives the analyses its feature layer, and mmdet's backbone and the SUN-CLS classifier
    load it, with the BlurPool its checkpoint records."""
    from dataclasses import replace

    from fastload.analysis.features import feature_layer
    from fastload.mmdet.classification import FastloadImageClassifier
    from fastload.models import networks
    from fastload.models.checkpoint import load_checkpoint_model
    from mmdet.registry import MODELS
    monkeypatch.setitem(networks.NETWORKS, "resnet34",
                        replace(networks.NETWORKS["resnet18"], name="resnet34", label="ResNet-34", config_tag="r34",
                                plan=None))
    path = save_checkpoint(tmp_path / "r34.pt", "resnet34", blurpool=True)
    network, meta = load_checkpoint_model(path)
    assert meta["arch"] == "resnet34" and sum(p.numel() for p in network.parameters()) == 21_288_263
    assert feature_layer("resnet34") == "flatten"
    init_default_scope("mmdet")
    backbone = MODELS.build(dict(type="FastloadResNet", depth=34, out_indices=(0, 1, 2, 3),
                                 init_cfg=dict(type="FastloadPretrained", checkpoint=str(path))))
    backbone.init_weights()
    assert backbone.blurpool and torch.equal(backbone.layer3[5].conv2.weight, network.layer3[5].conv2.weight)
    classifier = FastloadImageClassifier(arch="resnet34", num_classes=5, checkpoint=str(path))
    classifier.init_weights()
    assert torch.equal(classifier.net.layer4[2].conv2.weight, network.layer4[2].conv2.weight)

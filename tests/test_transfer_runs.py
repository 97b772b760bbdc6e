"""fastload.transfer runs that cannot lie and cannot be steered: results reused only for the same inputs, one process
per work dir, registered `type`s only, one-line errors for bad overrides, weights-only loading of mmengine's own
checkpoints, the shipped configs built through FastloadRunner (mmdet's tools' path) and --eval-only.
"""
import json

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmcv.ops")

from mmengine.config import Config  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402

import fastload.mmdet  # noqa: E402,F401  (registrations, the weights-only allow-list)
from fastload.errors import FastloadError, UsageError  # noqa: E402
from fastload.files import OutputLock  # noqa: E402
from fastload.models.build import build_model  # noqa: E402
from fastload.resources import TRANSFER_CONFIGS_DIR  # noqa: E402
from fastload.transfer import (check_types, fingerprint_file, load_config, run_inputs,  # noqa: E402
                               transfer)

CONFIGS = sorted(TRANSFER_CONFIGS_DIR.glob("*.py"))
DET_CONFIG = TRANSFER_CONFIGS_DIR / "faster-rcnn_alexnet-caffe_70k_voc07.py"
# anchors of 32 and 64 pixels (the real ones do not fit a 128x96 image), fewer RoIs through fc6
TINY = {"img_scale": (128, 96), "model.rpn_head.anchor_generator.scales": [2, 4], "model.test_cfg.rpn.max_per_img": 50,
        "model.train_cfg.rcnn.sampler.num": 32, "train_dataloader.num_workers": 0,
        "train_dataloader.persistent_workers": False, "val_dataloader.num_workers": 0,
        "val_dataloader.persistent_workers": False, "test_dataloader.num_workers": 0,
        "test_dataloader.persistent_workers": False}


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    from fastload.synth.voc import write_voc
    out = tmp_path_factory.mktemp("voc") / "synth"
    write_voc(out, trainval=4, test=3, action_train=2, action_val=2, seed=0)
    return out / "VOCdevkit"


def _checkpoint(path, seed):
    torch.manual_seed(seed)
    model = build_model("alexnet_caffe", num_classes=7)
    torch.save(dict(model=model.state_dict(), arch="alexnet_caffe", num_classes=7,
                    label_wnids=[f"n{i:08d}" for i in range(7)], epoch=1), path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    return [_checkpoint(d / f"run{i}.pt", i) for i in range(2)]


def _options(voc_root, **more):
    return {"data_root": f"{voc_root}/", **TINY, **more}


def _finished_seed(work, checkpoint, options, seed=0, value=0.5):
    """A seed result.json as transfer() writes it, without the training (its value is made up)."""
    seed_dir = work / f"seed_{seed}"
    cfg = load_config(DET_CONFIG, checkpoint, seed_dir, options, seed)
    inputs = run_inputs(cfg, fingerprint_file(checkpoint), seed)
    seed_dir.mkdir(parents=True)
    (seed_dir / "result.json").write_text(json.dumps(dict(
        seed=seed, metric="pascal_voc/mAP", value=value, metrics={"pascal_voc/mAP": value}, config=str(DET_CONFIG),
        checkpoint=str(checkpoint), inputs=inputs)))


# ---------------------------------------------------------------- results reused only for the same inputs

def test_a_result_is_reused_for_the_same_inputs(voc_root, checkpoints, tmp_path):
    _finished_seed(tmp_path, checkpoints[0], _options(voc_root))
    summary = transfer(DET_CONFIG, checkpoints[0], tmp_path, _options(voc_root), seeds=[0])
    assert summary["runs"] == [dict(seed=0, value=0.5)] and summary["checkpoint"] == str(checkpoints[0])


@pytest.mark.parametrize("change, named", [
    ("checkpoint", r"another checkpoint \(sha256 [0-9a-f]{12} -> sha256 [0-9a-f]{12}\)"),
    ("data_root", "another data_root"),
    ("config", "another resolved config"),
])
def test_a_result_of_other_inputs_is_refused_naming_the_difference(voc_root, checkpoints, tmp_path, change, named):
    _finished_seed(tmp_path, checkpoints[0], _options(voc_root))
    checkpoint, options = checkpoints[0], _options(voc_root)
    if change == "checkpoint":
        checkpoint = checkpoints[1]
    elif change == "data_root":
        moved = tmp_path / "elsewhere" / "VOCdevkit"
        moved.parent.mkdir()
        moved.symlink_to(voc_root, target_is_directory=True)
        options = _options(moved)
    else:
        options = _options(voc_root, **{"train_cfg.max_iters": 7})
    with pytest.raises(FastloadError, match=named) as error:
        transfer(DET_CONFIG, checkpoint, tmp_path, options, seeds=[0])
    assert "\n" not in str(error.value) and "seed_0" in str(error.value)
    assert not (tmp_path / "summary.json").exists()


def test_a_copied_checkpoint_is_the_same_checkpoint(voc_root, checkpoints, tmp_path):
    _finished_seed(tmp_path / "w", checkpoints[0], _options(voc_root))
    copy = tmp_path / "copy.pt"
    copy.write_bytes(checkpoints[0].read_bytes())
    assert transfer(DET_CONFIG, copy, tmp_path / "w", _options(voc_root), seeds=[0])["runs"][0]["value"] == 0.5


def test_an_unfinished_run_of_other_inputs_is_not_resumed(voc_root, checkpoints, tmp_path):
    seed_dir = tmp_path / "seed_0"
    cfg = load_config(DET_CONFIG, checkpoints[0], seed_dir, _options(voc_root), 0)
    seed_dir.mkdir()
    (seed_dir / "inputs.json").write_text(json.dumps(run_inputs(cfg, fingerprint_file(checkpoints[0]), 0)))
    (seed_dir / "last_checkpoint").write_text(str(seed_dir / "iter_1.pth"))
    with pytest.raises(FastloadError, match="unfinished run .* another checkpoint"):
        transfer(DET_CONFIG, checkpoints[1], tmp_path, _options(voc_root), seeds=[0])


# ---------------------------------------------------------------- one process per work dir

def test_a_second_transfer_on_a_held_work_dir_is_refused(cli, voc_root, checkpoints, tmp_path):
    with OutputLock(tmp_path / "w", "fastload transfer"):
        proc = cli("transfer", DET_CONFIG, "--checkpoint", checkpoints[0], "--work-dir", tmp_path / "w",
                   "--cfg-options", f"data_root={voc_root}/")
    assert proc.returncode == 1, proc.stderr
    assert "in use by fastload transfer (pid" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "w" / "seed_0").exists()


# ---------------------------------------------------------------- registered types only, one-line errors

@pytest.mark.parametrize("config", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_names_registered_types_only(config):
    check_types(Config.fromfile(str(config)), config)


@pytest.mark.parametrize("config", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_takes_one_top_level_checkpoint(config):
    """mmdet's tools build every shipped config through FastloadRunner, and one `checkpoint=` fills its model."""
    from fastload.transfer import apply_checkpoint, checkpoint_keys
    cfg = Config.fromfile(str(config))
    assert cfg.runner_type == "FastloadRunner" and cfg.checkpoint is None
    cfg.merge_from_dict({"checkpoint": "runs/x/last.pt"})
    apply_checkpoint(cfg, config)
    keys = checkpoint_keys(cfg.model)
    assert keys and set(keys.values()) == {"runs/x/last.pt"}


def test_an_import_path_as_type_is_refused_not_run(cli, voc_root, checkpoints, tmp_path):
    marker = tmp_path / "ran"
    proc = cli("transfer", DET_CONFIG, "--checkpoint", checkpoints[0], "--work-dir", tmp_path / "w",
               "--cfg-options", f"data_root={voc_root}/", "custom_hooks.0.type=os.system",
               f"custom_hooks.0.command=touch {marker}")
    assert proc.returncode == 2 and "custom_hooks.0.type='os.system' is not a class registered" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not marker.exists()
    # mmdet's tools build the runner through FastloadRunner, which checks the same
    cfg = Config.fromfile(str(DET_CONFIG))
    cfg.merge_from_dict({**_options(voc_root), "checkpoint": str(checkpoints[0]), "work_dir": str(tmp_path / "m"),
                         "model.test_cfg.rcnn.nms.type": "__import__('os').system('touch " + str(marker) + "')"})
    with pytest.raises(UsageError, match=r"model\.test_cfg\.rcnn\.nms\.type=.* is not a class registered"):
        RUNNERS.build(cfg)
    assert not marker.exists()


@pytest.mark.parametrize("option, named", [
    ("train_cfg.max_iters.x=3", "--cfg-options train_cfg.max_iters.x=3 does not fit config"),
    ("param_scheduler.9.end=3", "--cfg-options param_scheduler.9.end=3 does not fit config"),
    ("model..backbone=1", "key 'model..backbone' is not a dotted config key"),
    ("img_scale=abc", "img_scale 'abc' (config"),
    ("img_scale=(100,0)", "img_scale (100, 0) (config"),
])
def test_a_bad_override_is_one_line(cli, voc_root, checkpoints, tmp_path, option, named):
    proc = cli("transfer", DET_CONFIG, "--checkpoint", checkpoints[0], "--work-dir", tmp_path / "w",
               "--cfg-options", f"data_root={voc_root}/", option)
    assert proc.returncode == 2 and named in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- mmdet's tools' path: FastloadRunner

def test_overrides_reach_the_run_when_it_is_built(voc_root, checkpoints, tmp_path):
    """What mmdet's tools/train.py does with `--cfg-options data_root=... checkpoint=... img_scale=...`."""
    cfg = Config.fromfile(str(DET_CONFIG))
    cfg.merge_from_dict({**_options(voc_root), "checkpoint": str(checkpoints[0]), "work_dir": str(tmp_path)})
    runner = RUNNERS.build(cfg)
    assert type(runner).__name__ == "FastloadRunner"
    for loader in (runner._train_dataloader, runner._val_dataloader, runner._test_dataloader):
        assert loader["dataset"]["data_root"] == f"{voc_root}/"
        assert [s["scale"] for s in loader["dataset"]["pipeline"] if s["type"] == "Resize"] == [(128, 96)]
    assert runner.model.backbone.checkpoint == runner.model.roi_head.bbox_head.checkpoint == str(checkpoints[0])
    assert cfg.train_dataloader.dataset.data_root == "data/VOCdevkit/"  # the caller's config is left as it was


def test_a_missing_data_root_or_checkpoint_names_the_one_key(voc_root, checkpoints, tmp_path):
    cfg = Config.fromfile(str(DET_CONFIG))
    cfg.merge_from_dict({"checkpoint": str(checkpoints[0]), "work_dir": str(tmp_path)})
    with pytest.raises(FastloadError, match=r"data_root data/VOCdevkit .*--cfg-options data_root=DIR/"):
        RUNNERS.build(cfg)
    cfg = Config.fromfile(str(DET_CONFIG))
    cfg.merge_from_dict({**_options(voc_root), "work_dir": str(tmp_path)})
    with pytest.raises(UsageError, match=r"model\.backbone\.checkpoint, model\.roi_head\.bbox_head\.checkpoint: "
                                         r"set it with `--cfg-options checkpoint=RUN/last.pt`"):
        RUNNERS.build(cfg)


def test_mmengine_checkpoints_load_weights_only_and_nothing_else_does(tmp_path):
    """mmengine calls torch.load without weights_only (True since torch 2.6): its checkpoints' HistoryBuffers load
    through fastload.mmdet's allow-list, and a pickle that would run code is still refused."""
    import numpy as np
    from mmengine.logging import MessageHub

    hub = MessageHub.get_instance("test_transfer_runs")
    hub.update_scalar("train/loss", 1.5)
    hub.update_scalar("train/loss", np.float64(2.5))
    torch.save({"meta": {"iter": 2, "seed": np.int64(0)}, "state_dict": {"w": torch.ones(2)},
                "message_hub": hub.state_dict()}, tmp_path / "iter_2.pth")
    loaded = torch.load(tmp_path / "iter_2.pth")  # torch's default, as mmengine calls it
    assert loaded["message_hub"]["log_scalars"]["train/loss"].mean() == 2.0

    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    torch.save({"state_dict": {}, "message_hub": Exploit()}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(tmp_path / "evil.pth")
    assert not marker.exists()


# ---------------------------------------------------------------- --eval-only

def _trained_model(path, voc_root, checkpoint, drop=()):
    """A transfer model as a run saves it (state_dict, meta, message_hub), built from the shipped config."""
    from mmengine.logging import MessageHub
    from mmengine.registry import init_default_scope

    from fastload.transfer import prepare_config
    cfg = Config.fromfile(str(DET_CONFIG))
    cfg.merge_from_dict({**_options(voc_root), "checkpoint": str(checkpoint)})
    prepare_config(cfg, DET_CONFIG)
    init_default_scope("mmdet")
    from mmdet.registry import MODELS
    model = MODELS.build(cfg.model)
    model.init_weights()
    state = {k: v for k, v in model.state_dict().items() if k not in drop}
    torch.save({"meta": {"iter": 2}, "state_dict": state,
                "message_hub": MessageHub.get_instance("eval_only").state_dict()}, path)
    return path


def test_eval_only_scores_a_trained_model_and_loads_it_strictly(cli, voc_root, checkpoints, tmp_path):
    model = _trained_model(tmp_path / "iter_2.pth", voc_root, checkpoints[0])
    options = [f"{k}={v}".replace(" ", "") for k, v in _options(voc_root).items()]
    proc = cli("transfer", DET_CONFIG, "--eval-only", model, "--work-dir", tmp_path / "w", "--cfg-options", *options)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "w" / "eval" / "result.json").read_text())
    assert result["metric"] == "pascal_voc/mAP" and result["value"] == result["metrics"]["pascal_voc/mAP"]
    assert 0.0 <= result["value"] <= 1.0 and result["model"] == str(model)
    assert result["model_fingerprint"] == fingerprint_file(model) and result["data_root"] == f"{voc_root}/"
    # a model without its box head is an error, not a silently random layer
    partial = _trained_model(tmp_path / "partial.pth", voc_root, checkpoints[0],
                             drop=("roi_head.bbox_head.fc_cls.weight",))
    proc = cli("transfer", DET_CONFIG, "--eval-only", partial, "--work-dir", tmp_path / "w2", "--cfg-options",
               *options)
    assert proc.returncode == 1 and "partial.pth does not fit the config's model" in proc.stderr
    assert "missing keys" in proc.stderr and "fc_cls.weight" in proc.stderr


def test_eval_only_or_checkpoint_is_required_not_both(cli, checkpoints, tmp_path):
    proc = cli("transfer", DET_CONFIG, "--work-dir", tmp_path / "w")
    assert proc.returncode == 2 and "--checkpoint is required" in proc.stderr
    proc = cli("transfer", DET_CONFIG, "--work-dir", tmp_path / "w", "--eval-only", checkpoints[0],
               "--checkpoint", checkpoints[0])
    assert proc.returncode == 2 and "--checkpoint does not apply" in proc.stderr


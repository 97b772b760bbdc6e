"""A shipped config under MMDetection's own tools/train.py and tools/test.py, as the installed mmdet ships them
(mmdet/.mim/tools/, the scripts `mim train mmdet` runs): one --cfg-options line for the data root, one for the
checkpoint; resume and test read the work dir's checkpoints under torch's weights-only loading; the same model scores
the same through `fastload transfer --eval-only`."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

mmdet = pytest.importorskip("mmdet")
pytest.importorskip("mmcv.ops")

from fastload.models.build import build_model  # noqa: E402
from fastload.resources import TRANSFER_CONFIGS_DIR  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TOOLS = Path(mmdet.__file__).parent / ".mim" / "tools"
DET_CONFIG = TRANSFER_CONFIGS_DIR / "faster-rcnn_alexnet-caffe_70k_voc07.py"


def _tool(name, *args, cwd):
    """Run mmdet's tools/NAME.py as a user would (the repository importable, as after `pip install -e .`)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(TOOLS / f"{name}.py"), *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=900)


def _tiny(iters):
    """Small images and anchors, `iters` iterations, no loader processes: a CPU run of seconds."""
    return ["img_scale=(128,96)", "model.rpn_head.anchor_generator.scales=[2,4]",
            "model.test_cfg.rpn.max_per_img=50", "model.train_cfg.rcnn.sampler.num=32",
            f"train_cfg.max_iters={iters}", f"train_cfg.val_interval={iters}", f"param_scheduler.0.end={iters}",
            "param_scheduler.0.milestones=[1]", "default_hooks.checkpoint.interval=1",
            "default_hooks.logger.interval=1",
            *(f"{split}_dataloader.{k}" for split in ("train", "val", "test")
              for k in ("num_workers=0", "persistent_workers=False"))]


@pytest.mark.slow  # three real runs of mmdet's tools and one of fastload transfer --eval-only
def test_mmdet_tools_train_resume_and_test_a_shipped_config(tmp_path):
    assert (TOOLS / "train.py").is_file() and (TOOLS / "test.py").is_file(), f"mmdet {mmdet.__version__} ships no {TOOLS}"
    from fastload.synth.voc import write_voc
    write_voc(tmp_path / "synth", trainval=4, test=3, action_train=1, action_val=1, seed=0)
    data_root = tmp_path / "synth" / "VOCdevkit"
    checkpoint = tmp_path / "last.pt"
    torch.save(dict(model=build_model("alexnet_caffe", num_classes=7).state_dict(), arch="alexnet_caffe",
                    num_classes=7, label_wnids=[f"n{i:08d}" for i in range(7)], epoch=1), checkpoint)
    work = tmp_path / "work"

    # the documented lines: data_root=DIR/ and checkpoint=RUN/last.pt
    proc = _tool("train", DET_CONFIG, "--work-dir", work, "--cfg-options", f"data_root={data_root}/",
                 f"checkpoint={checkpoint}", *_tiny(2), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "iter_2.pth").is_file()
    rows = [json.loads(line) for line in (work / "val_metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["iter"] == 2 and 0.0 <= rows[-1]["pascal_voc/mAP"] <= 1.0

    # --resume reads iter_2.pth (its MessageHub's HistoryBuffers) with weights-only loading and trains on
    proc = _tool("train", DET_CONFIG, "--work-dir", work, "--resume", "--cfg-options", f"data_root={data_root}/",
                 f"checkpoint={checkpoint}", *_tiny(3), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "resumed epoch: 0, iter: 2" in log and "Weights only load failed" not in log
    assert json.loads((work / "val_metrics.jsonl").read_text().splitlines()[-1])["iter"] == 3

    # tools/test.py on the work dir's checkpoint: no pre-trained checkpoint needed, the model loaded strictly
    proc = _tool("test", DET_CONFIG, work / "iter_3.pth", "--work-dir", tmp_path / "test",
                 "--cfg-options", f"data_root={data_root}/", *_tiny(3), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tested = json.loads((tmp_path / "test" / "test_metrics.jsonl").read_text().splitlines()[-1])

    # fastload transfer --eval-only scores the same model the same
    proc = subprocess.run([sys.executable, "-m", "fastload.cli", "transfer", str(DET_CONFIG), "--eval-only",
                           str(work / "iter_3.pth"), "--work-dir", str(tmp_path / "eval"), "--cfg-options",
                           f"data_root={data_root}/", *_tiny(3)], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "eval" / "eval" / "result.json").read_text())
    assert result["value"] == pytest.approx(tested["pascal_voc/mAP"])

"""Fine-tune a fastload checkpoint with an MMDetection/MMEngine config, over one or several seeds.

Layout of WORK_DIR (one run per seed; reruns skip seeds that have a result and resume unfinished ones):

    WORK_DIR/seed_<s>/            mmengine's work dir: logs, resolved config, checkpoints, val_metrics.jsonl
    WORK_DIR/seed_<s>/result.json {seed, metric, value, metrics, config, checkpoint}
    WORK_DIR/summary.json         {config, checkpoint, metric, runs: [{seed, value}], mean, std, n}

Config variables that mmengine resolves while reading the file (so a --cfg-options override would not reach the
dicts that use them) are applied here after the overrides: `data_root` to every dataloader's dataset and
`img_scale` to every Resize; `--checkpoint` fills every `checkpoint` key under `model` (nested ones too, e.g. in a
backbone's init_cfg). The config's `primary_metric` names the validation result that goes into result.json and
summary.json.
"""
import contextlib
import json
import math
import os
import time
import zipfile
from pathlib import Path

from .errors import FastloadError, UsageError
from .files import write_json

RESULT_FILE = "result.json"
SUMMARY_FILE = "summary.json"
# The PASCAL VOC 2012 actions, in the devkit's order: the 10 that VOCevalaction.m scores, then 'other' (no scored
# action), R*CNN's 11th softmax class. Here, outside fastload.mmdet, so that `fastload synth voc` needs no mmdet.
VOC_ACTIONS = ("jumping", "phoning", "playinginstrument", "reading", "ridingbike", "ridinghorse", "running",
               "takingphoto", "usingcomputer", "walking")
OTHER_ACTION = "other"
# What `data_root` must be for each dataset type of the shipped configs: (task, what the folder holds);
# `fastload transfer --help` prints this too
DATA_ROOT_CONTENTS = {
    "CheckedVOCDataset": ("PASCAL-DET", "the folder that holds VOC2007/ (JPEGImages, Annotations, ImageSets/Main), "
                                        "i.e. VOCdevkit/"),
    "VOCActionDataset": ("PASCAL-ACT-CLS", "the folder that holds VOC2012/ (JPEGImages, Annotations, "
                                           "ImageSets/Action), i.e. VOCdevkit/"),
    "SUN397Dataset": ("SUN-CLS", "the folder that holds SUN397/ (the images, SUN397/a/abbey/...) and Partitions/ "
                                 "(Training_01.txt, Testing_01.txt, ...)"),
    "ClsBetonBatches": ("SUN-CLS (betons)", "the folder `fastload compile cls LAYOUT ROOT OUT` wrote (train.beton, "
                                            "test.beton, classes.txt)"),
}


def load_config(config, checkpoint, work_dir, cfg_options=None, seed=0, launcher="none"):
    """The mmengine Config of one run: file + overrides, config variables applied, checkpoint and seed set."""
    from mmengine.config import Config

    path = Path(config)
    if not path.is_file():
        raise FastloadError(f"config {config} does not exist (the shipped ones are in transfer/)")
    cfg = Config.fromfile(str(path))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if "model" not in cfg:
        raise UsageError(f"config {config} has no `model`")
    if not isinstance(cfg.get("primary_metric"), str):  # checked now, not after hours of training
        raise UsageError(f"config {config} sets no `primary_metric` (the validation result to report, "
                         "e.g. primary_metric = 'pascal_voc/mAP')")
    apply_config_variables(cfg)
    check_data_roots(cfg, config)
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise FastloadError(f"checkpoint {checkpoint} does not exist")
        if set_checkpoint(cfg.model, str(checkpoint)) == 0:
            raise UsageError(f"config {config} has no `checkpoint` key under `model` to receive {checkpoint}")
    cfg.work_dir = str(work_dir)
    cfg.randomness = dict(seed=int(seed), deterministic=False)
    cfg.launcher = launcher
    cfg.experiment_name = f"{path.stem}_seed{seed}_{time.strftime('%Y%m%d_%H%M%S')}"
    return cfg


def apply_config_variables(cfg) -> None:
    """Copy the config variables `data_root` (to every dataloader's dataset) and `img_scale` (to every Resize)."""
    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        loader = cfg.get(name)
        if loader:
            for dataset in _datasets(loader["dataset"]):
                if "data_root" in cfg:
                    dataset["data_root"] = cfg.data_root
                if "img_scale" in cfg:
                    for step in dataset.get("pipeline", []):
                        if step.get("type") == "Resize":
                            step["scale"] = tuple(cfg.img_scale)


def expected_folders(dataset) -> list:
    """The folders a dataset of a shipped type needs under its data_root."""
    if dataset.get("type") == "SUN397Dataset":
        return ["SUN397", "Partitions"]
    sub = (dataset.get("data_prefix") or {}).get("sub_data_root")
    return [sub.rstrip("/")] if dataset.get("type") in DATA_ROOT_CONTENTS and sub else []


def check_data_roots(cfg, config) -> None:
    """Before training: every dataset's data_root holds what its type reads (DATA_ROOT_CONTENTS), or an error
    names the folder, what is missing and what data_root must be."""
    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        loader = cfg.get(name)
        for dataset in _datasets(loader["dataset"]) if loader else []:
            root = Path(str(dataset.get("data_root", "")))
            missing = [f for f in expected_folders(dataset) if not (root / f).is_dir()]
            if missing:
                raise FastloadError(
                    f"data_root {root} (config {config}, {name}) has no {', '.join(missing)}/: data_root must be "
                    f"{DATA_ROOT_CONTENTS[dataset['type']][1]} (set it with --cfg-options data_root=DIR/)")


def _datasets(dataset):
    """The leaf dataset dicts under dataset wrappers (RepeatDataset's `dataset`, ConcatDataset's `datasets`)."""
    if "dataset" in dataset:
        return _datasets(dataset["dataset"])
    if "datasets" in dataset:
        return [leaf for d in dataset["datasets"] for leaf in _datasets(d)]
    return [dataset]


def set_checkpoint(node, checkpoint: str) -> int:
    """Set every `checkpoint` key in the (nested) model config; the number set.

    The AlexNet configs name it on their modules (FastloadAlexNet, AlexNetBBoxHead, FastloadImageClassifier, ...);
    the ResNet detection configs in the backbone's init_cfg (dict(type='FastloadPretrained', checkpoint=None),
    fastload/mmdet/resnet.py), which may be one dict or a list of them.
    """
    count = 0
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "checkpoint":
                node[key] = checkpoint
                count += 1
            else:
                count += set_checkpoint(value, checkpoint)
    elif isinstance(node, (list, tuple)):
        count += sum(set_checkpoint(v, checkpoint) for v in node)
    return count


# What mmengine's resumable checkpoints hold besides tensors and plain containers: the MessageHub's HistoryBuffer
# objects (numpy arrays, and their statistics methods, which pickle as getattr(HistoryBuffer, 'mean')) and numpy
# scalars in the runtime info. Nothing else is let through (torch's weights-only unpickler refuses the rest).
HISTORY_STATISTICS = ("min", "max", "current", "mean")
NUMPY_DTYPES = ("f8", "f4", "f2", "i8", "i4", "i2", "i1", "u8", "u4", "u2", "u1", "?")


def history_buffer_method(owner, name: str):
    """Stands in for `getattr` while unpickling: resolves a statistics method of mmengine's HistoryBuffer, and
    refuses anything else (a general getattr would let a pickle reach any function)."""
    import pickle

    from mmengine.logging import HistoryBuffer

    if owner is not HistoryBuffer or name not in HISTORY_STATISTICS:
        raise pickle.UnpicklingError(f"getattr({owner!r}, {name!r}) is not allowed: only HistoryBuffer's "
                                     f"{', '.join(HISTORY_STATISTICS)}")
    return getattr(HistoryBuffer, name)


def checkpoint_safe_globals() -> list:
    """The allow-list for torch.serialization.safe_globals: what an mmengine checkpoint of a transfer run holds."""
    import numpy as np
    from mmengine.logging import HistoryBuffer

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    return [(multiarray._reconstruct, "numpy._core.multiarray._reconstruct"),
            (multiarray.scalar, "numpy._core.multiarray.scalar"),
            (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
            (multiarray.scalar, "numpy.core.multiarray.scalar"),
            np.ndarray, np.dtype, *(type(np.dtype(code)) for code in NUMPY_DTYPES),
            HistoryBuffer, (history_buffer_method, "builtins.getattr")]


def load_checkpoint_file(filename, map_location=None):
    """torch.load with weights_only=True and the allow-list above: a file in a work dir never runs code. A file
    holding anything else is a FastloadError naming it."""
    import pickle

    import torch

    path = Path(os.path.expanduser(str(filename)))
    if not path.is_file():
        raise FileNotFoundError(f"{filename} can not be found.")
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        reason = next((line for line in lines if any(w in line for w in ("Unsupported", "not allowed", "unrecognized"))),
                      lines[-1] if lines else "refused by the weights-only unpickler")
        reason = reason.split(". Please use")[0]  # torch's advice to allow-list it is not ours to give
        raise FastloadError(f"checkpoint {path} holds objects that a transfer checkpoint does not (refused, not "
                            f"run): {reason} - delete it (and its `last_checkpoint` entry) to start that seed "
                            "again") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as e:  # truncated, overwritten, not a torch file
        raise FastloadError(f"checkpoint {path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0]}): "
                            "delete it (and its `last_checkpoint` entry) to start that seed again") from None


@contextlib.contextmanager
def safe_checkpoint_loading():
    """While a run is going, mmengine reads every local checkpoint (resume, load_from) with `load_checkpoint_file`.

    mmengine 0.10.7 calls torch.load without weights_only, and its resume checkpoints hold objects that the plain
    weights-only unpickler refuses; loading them with weights_only=False would run whatever a pickle placed in the
    work dir (and named in its last_checkpoint) asks for. Pre-trained weights never take this path: fastload.mmdet
    reads them itself with weights_only=True.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    from mmengine.runner.checkpoint import load_from_local as mmengine_load_from_local

    def load_from_local(filename, map_location):  # same name: mmengine logs it as the 'local' backend
        return load_checkpoint_file(filename, map_location)

    CheckpointLoader.register_scheme(prefixes="", loader=load_from_local, force=True)
    try:
        yield
    finally:
        CheckpointLoader.register_scheme(prefixes="", loader=mmengine_load_from_local, force=True)


def run_seed(cfg) -> dict:
    """Train (resuming an unfinished run in the same work dir) and return the validation metrics at max_iters."""
    from mmengine.runner import Runner

    from .mmdet.hooks import RecordMetricsHook

    work_dir = Path(cfg.work_dir)
    if (work_dir / "last_checkpoint").is_file():
        cfg.resume = True  # mmengine resumes from the checkpoint named in WORK_DIR/last_checkpoint
    runner = Runner.from_cfg(cfg)
    recorders = [h for h in runner.hooks if isinstance(h, RecordMetricsHook)]
    if not recorders:
        raise UsageError(f"config {cfg.filename} lacks custom_hooks=[dict(type='RecordMetricsHook')] "
                         "(transfer/_base_/default_runtime.py has it)")
    with safe_checkpoint_loading():
        runner.train()
        if not [r for r in recorders[0].history if r["iter"] == runner.iter]:
            runner.val()  # resumed after the last iteration, before its validation had finished
    rows = [r for r in recorders[0].history if r["iter"] == runner.iter]
    if not rows:
        raise FastloadError(f"{work_dir}: training finished but validation at iteration {runner.iter} reported "
                            "no metrics")
    return rows[-1]


def primary_metric(cfg, metrics: dict) -> str:
    """The config's `primary_metric` (e.g. 'pascal_voc/mAP'), which the last validation must have reported."""
    name = cfg.primary_metric
    if name not in metrics:
        raise FastloadError(f"primary_metric '{name}' of {cfg.filename} is not among the validation results "
                            f"{sorted(k for k in metrics if k != 'iter')}")
    return name


def summarise(results: list, config, checkpoint) -> dict:
    """Mean and sample standard deviation (n-1; 0 for a single run) of the main metric over seeds."""
    values = [r["value"] for r in results]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return dict(config=str(config), checkpoint=str(checkpoint), metric=results[0]["metric"],
                runs=[dict(seed=r["seed"], value=r["value"]) for r in results], mean=mean, std=std, n=len(values))


def transfer(config, checkpoint, work_dir, cfg_options=None, seeds=(0,), launcher="none") -> dict:
    """Run `config` once per seed into WORK_DIR/seed_<s>/ (skipping seeds with a result.json), write and return
    WORK_DIR/summary.json."""
    from mmengine.dist import get_rank

    if len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds has repeats: {list(seeds)}")
    if not Path(checkpoint).is_file():  # before mmdet is imported and the config read
        raise FastloadError(f"checkpoint {checkpoint} does not exist")
    work_dir = Path(work_dir)
    results = []
    for seed in seeds:
        seed_dir = work_dir / f"seed_{seed}"
        result_path = seed_dir / RESULT_FILE
        if result_path.is_file():
            print(f"seed {seed}: result exists, skipped ({result_path})")
            results.append(json.loads(result_path.read_text()))
            continue
        cfg = load_config(config, checkpoint, seed_dir, cfg_options, seed, launcher)
        metrics = run_seed(cfg)
        metric = primary_metric(cfg, metrics)
        result = dict(seed=seed, metric=metric, value=metrics[metric], metrics=metrics, config=str(config),
                      checkpoint=str(checkpoint))
        if get_rank() == 0:
            write_json(result_path, result)
        results.append(result)
        print(f"seed {seed}: {metric} = {metrics[metric]:.4f}")
    summary = summarise(results, config, checkpoint)
    if get_rank() == 0:
        work_dir.mkdir(parents=True, exist_ok=True)
        write_json(work_dir / SUMMARY_FILE, summary)
        print(f"{summary['metric']}: {summary['mean']:.4f} +- {summary['std']:.4f} over {summary['n']} seed(s) "
              f"-> {work_dir / SUMMARY_FILE}")
    return summary

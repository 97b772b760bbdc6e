"""Fine-tune a fastload checkpoint with an MMDetection/MMEngine config, over one or several seeds; score a trained
transfer model again (`evaluate`, `fastload transfer --eval-only`).

Layout of WORK_DIR (held by one `fastload transfer` at a time; one run per seed):

    WORK_DIR/seed_<s>/             mmengine's work dir: logs, resolved config, checkpoints, val_metrics.jsonl
    WORK_DIR/seed_<s>/inputs.json  what made the run (run_inputs: checkpoint fingerprint, seed, data root, config hash)
    WORK_DIR/seed_<s>/result.json  {seed, metric, value, metrics, config, checkpoint, inputs}
    WORK_DIR/summary.json          {config, checkpoint, metric, runs: [{seed, value}], mean, std, n}
    WORK_DIR/eval/result.json      --eval-only: {metric, value, metrics, config, model, model_fingerprint, ...}

A rerun reuses a seed's result, or resumes its unfinished run, only if its inputs are the same; otherwise it stops
naming what differs. Config variables that mmengine resolves while reading the file (`data_root`, `img_scale`) and
the one top-level `checkpoint` are copied down by `prepare_config` when the run is built (FastloadRunner,
fastload/mmdet/runner.py, so mmdet's own tools/train.py and tools/test.py get the same). The config's
`primary_metric` names the validation result that goes into result.json and summary.json.
"""
import contextlib
import hashlib
import json
import math
import os
import time
import zipfile
from pathlib import Path

from .errors import FastloadError, UsageError
from .files import DiskFullError, OutputLock, is_disk_full, write_json

# the `checkpoint` value that means "no pre-trained weights": the network starts from its own initialisation
RANDOM_INIT = "random"

RESULT_FILE = "result.json"
# what made a seed's run (run_inputs), written before it trains: an unfinished run resumes only with the same
INPUTS_FILE = "inputs.json"
# `--eval-only`: WORK_DIR/eval/ (mmengine's logs) and WORK_DIR/eval/result.json
EVAL_DIR = "eval"
SUMMARY_FILE = "summary.json"
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


def load_config(config, checkpoint, work_dir, cfg_options=None, seed=0, launcher="none", load_from=None):
    """The mmengine Config of one run: file + overrides, checkpoint (or a whole trained model, `load_from`) and seed
    set, prepared (prepare_config)."""
    from mmengine.config import Config

    path = Path(config)
    if not path.is_file():
        raise FastloadError(f"config {config} does not exist (the shipped ones are in transfer/)")
    cfg = Config.fromfile(str(path))
    merge_options(cfg, cfg_options or {}, config)
    if "model" not in cfg:
        raise UsageError(f"config {config} has no `model`")
    if not isinstance(cfg.get("primary_metric"), str):  # checked now, not after hours of training
        raise UsageError(f"config {config} sets no `primary_metric` (the validation result to report, "
                         "e.g. primary_metric = 'pascal_voc/mAP')")
    if checkpoint is not None:
        if checkpoint != RANDOM_INIT and not Path(checkpoint).is_file():
            raise FastloadError(f"checkpoint {checkpoint} does not exist")
        if not checkpoint_keys(cfg.model):
            raise UsageError(f"config {config} has no `checkpoint` key under `model` to receive {checkpoint}")
        cfg.checkpoint = str(checkpoint)
    cfg.work_dir = str(work_dir)
    cfg.randomness = dict(seed=int(seed), deterministic=False)
    cfg.launcher = launcher
    if load_from is not None:
        cfg.load_from, cfg.resume = str(load_from), False
    prepare_config(cfg, config)
    cfg.experiment_name = f"{path.stem}_seed{seed}_{time.strftime('%Y%m%d_%H%M%S')}"
    return cfg


def merge_options(cfg, cfg_options: dict, config) -> None:
    """Merge --cfg-options into `cfg`; a key that does not fit the config is a UsageError naming it."""
    for key, value in cfg_options.items():
        try:
            cfg.merge_from_dict({key: value})
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            reason = str(e).strip("'\"").split(". You may set")[0]
            raise UsageError(f"--cfg-options {key}={value!r} does not fit config {config}: {reason}") from None


def prepare_config(cfg, config) -> None:
    """Copy the top-level variables down and check the run before anything is built (FastloadRunner.from_cfg and
    `fastload transfer` both call this; doing it twice changes nothing).

    Every `type` must be registered (check_types); `img_scale` must be a (width, height) pair; `data_root` and
    `img_scale` go to every dataloader (apply_config_variables), whose data roots must hold what their dataset
    type reads (check_data_roots); the top-level `checkpoint` goes to every `checkpoint` of the model
    (apply_checkpoint).
    """
    check_types(cfg, config)
    if "img_scale" in cfg:
        check_img_scale(cfg.img_scale, config)
    apply_config_variables(cfg)
    check_data_roots(cfg, config)
    if "model" in cfg:
        apply_checkpoint(cfg, config)


def check_img_scale(img_scale, config) -> None:
    """`img_scale` is (long side max, short side) for detection, (width, height) for SUN: two positive integers."""
    if not (isinstance(img_scale, (list, tuple)) and len(img_scale) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in img_scale)):
        raise UsageError(f"img_scale {img_scale!r} (config {config}) is not two positive integers, "
                         "e.g. --cfg-options img_scale=(1000,600)")


def apply_config_variables(cfg) -> None:
    """Copy the config variables `data_root` (to every dataloader's dataset) and `img_scale` (to every Resize)."""
    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        loader = cfg.get(name)
        if loader and loader.get("dataset"):  # a loader built another way (no `dataset` dict) is left as it is
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
        for dataset in _datasets(loader["dataset"]) if loader and loader.get("dataset") else []:
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


def checkpoint_keys(node, prefix: str = "model") -> dict:
    """{dotted key: value} of every `checkpoint` key in the (nested) model config."""
    found = {}
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, (list, tuple)) else ()
    for key, value in items:
        if key == "checkpoint":
            found[f"{prefix}.{key}"] = value
        else:
            found.update(checkpoint_keys(value, f"{prefix}.{key}"))
    return found


def apply_checkpoint(cfg, config) -> None:
    """The config's one top-level `checkpoint` (RUN/last.pt, or 'random') to every `checkpoint` key of the model.

    A model key already set to another checkpoint is an error (two checkpoints in one model). With no top-level
    `checkpoint`: a model whose weights all come from `load_from` (mmdet's tools/test.py CHECKPOINT; no resume) is
    built without pre-trained weights; otherwise an unset model key is an error naming the one key to set.
    """
    keys = checkpoint_keys(cfg.model)
    if not keys:
        return
    top = cfg.get("checkpoint")
    if top is not None:
        others = {k: v for k, v in keys.items() if v is not None and v != top}
        if others:
            key, value = next(iter(others.items()))
            raise UsageError(f"config {config}: {key}={value!r} differs from checkpoint={top!r}; set the pre-trained "
                             "checkpoint once, with the top-level `checkpoint` (it fills every model key)")
        set_checkpoint(cfg.model, str(top))
    elif cfg.get("load_from") and not cfg.get("resume"):
        for key, value in keys.items():  # every weight is loaded (strictly) from load_from
            if value is None:
                _set_dotted(cfg, key, RANDOM_INIT)
    else:
        unset = [k for k, v in keys.items() if v is None]
        if unset:
            raise UsageError(f"config {config}: no pre-trained checkpoint for {', '.join(unset)}: set it with "
                             "`--cfg-options checkpoint=RUN/last.pt` (fastload transfer: --checkpoint RUN/last.pt; "
                             f"'{RANDOM_INIT}' trains from a random initialisation)")


def _set_dotted(cfg, dotted: str, value) -> None:
    node = cfg
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, (list, tuple)) else node[part]
    node[last] = value


# A `type` that names no registered class is resolved by mmengine as an import path ('os.system' runs a shell
# command); these few are not registry names but are looked up safely by name: mmcv's batched_nms (which eval()s
# its nms type, so nothing else may reach it) and the RoI layers of mmcv.ops / torchvision.ops.
OP_TYPES = ("nms", "soft_nms", "RoIPool", "RoIAlign")


def registered_types() -> set:
    """Every name registered in mmengine's registries and their children (mmcv's, mmdet's, fastload's, which lives in
    mmdet's), also as 'scope.Name'; each registry's modules imported first, as a build would."""
    import mmengine.registry as registries

    names, pending = set(), [r for r in vars(registries).values() if isinstance(r, registries.Registry)]
    while pending:
        registry = pending.pop()
        registry.import_from_location()
        names.update(registry.module_dict)
        names.update(f"{registry.scope}.{name}" for name in registry.module_dict)
        pending.extend(registry.children.values())
    return names


def config_types(node, prefix: str = ""):
    """(dotted key, value) of every `type` (and `runner_type`) string in a config."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, (list, tuple)) else ()
    for key, value in items:
        path = f"{prefix}.{key}" if prefix else str(key)
        if key in ("type", "runner_type") and isinstance(value, str):
            yield path, value
        else:
            yield from config_types(value, path)


def check_types(cfg, config) -> None:
    """Every `type` string in the config names a registered class or function (or one of OP_TYPES): a UsageError
    names the first that does not."""
    allowed = None
    for key, value in config_types(cfg._cfg_dict if hasattr(cfg, "_cfg_dict") else cfg):
        if value in OP_TYPES:
            continue
        allowed = registered_types() if allowed is None else allowed
        if value not in allowed:
            raise UsageError(f"config {config}: {key}={value!r} is not a class registered with mmengine, mmdet or "
                             "fastload (a `type` must name one; import paths are refused)")


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


def allow_checkpoint_globals() -> None:
    """Add checkpoint_safe_globals to torch's weights-only allow-list, for the whole process (importing fastload.mmdet
    does this). Added for good, not in a `torch.serialization.safe_globals` block: leaving such a block removes its
    entries again even where they had been added before it."""
    import torch

    torch.serialization.add_safe_globals(checkpoint_safe_globals())


def load_checkpoint_file(filename, map_location=None):
    """torch.load with weights_only=True and the allow-list above: a file in a work dir never runs code. A file
    holding anything else is a FastloadError naming it."""
    import pickle

    import torch

    path = Path(os.path.expanduser(str(filename)))
    if not path.is_file():
        raise FileNotFoundError(f"{filename} can not be found.")
    try:
        allow_checkpoint_globals()
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


def build_runner(cfg):
    """The Runner of `cfg`: the config's `runner_type` (FastloadRunner in the shipped configs) or mmengine's."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    return RUNNERS.build(cfg) if "runner_type" in cfg else Runner.from_cfg(cfg)


def _recorder(runner, cfg):
    from .mmdet.hooks import RecordMetricsHook

    recorders = [h for h in runner.hooks if isinstance(h, RecordMetricsHook)]
    if not recorders:
        raise UsageError(f"config {cfg.filename} lacks custom_hooks=[dict(type='RecordMetricsHook')] "
                         "(transfer/_base_/default_runtime.py has it)")
    return recorders[0]


def run_seed(cfg) -> dict:
    """Train (resuming an unfinished run in the same work dir) and return the validation metrics at max_iters."""
    work_dir = Path(cfg.work_dir)
    if (work_dir / "last_checkpoint").is_file():
        cfg.resume = True  # mmengine resumes from the checkpoint named in WORK_DIR/last_checkpoint
    runner = build_runner(cfg)
    recorder = _recorder(runner, cfg)
    try:
        with safe_checkpoint_loading():
            runner.train()
            if not [r for r in recorder.history if r["iter"] == runner.iter]:
                runner.val()  # resumed after the last iteration, before its validation had finished
    except (OSError, RuntimeError) as e:
        # MMEngine's checkpoint and log writers fail deep inside a hook with torch.save's or the OS's error: say
        # which folder is full instead (its last whole checkpoint stays, and a rerun resumes from it)
        if is_disk_full(e, work_dir):
            raise DiskFullError(work_dir) from None
        raise
    rows = [r for r in recorder.history if r["iter"] == runner.iter]
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


def seed_summary(results: list, config, checkpoint) -> dict:
    """WORK_DIR/summary.json: the main metric of each seed's run, its mean and sample standard deviation (n-1; 0
    for a single run)."""
    values = [r["value"] for r in results]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return dict(config=str(config), checkpoint=str(checkpoint), metric=results[0]["metric"],
                runs=[dict(seed=r["seed"], value=r["value"]) for r in results], mean=mean, std=std, n=len(values))


# ---------------------------------------------------------------- what made a result

def fingerprint_file(path) -> dict:
    """A file's identity: its size and the sha256 of its whole content (a copy or a touched file is the same file;
    any changed byte is another)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return dict(size=Path(path).stat().st_size, sha256=digest.hexdigest())


# Not part of what a run computes: where it writes, when, how it is launched, how it logs and saves, the checkpoint's
# path (its content is compared by fingerprint) and the seed (compared by itself); likewise each dataloader's
# LOADER_ONLY_KEYS (how many processes read the same images)
RUN_ONLY_KEYS = ("work_dir", "experiment_name", "launcher", "randomness", "resume", "load_from", "checkpoint",
                 "default_hooks", "log_processor", "log_level", "visualizer", "vis_backends", "env_cfg")
LOADER_ONLY_KEYS = ("num_workers", "persistent_workers", "pin_memory")


def config_digest(cfg) -> str:
    """sha256 of the resolved config (after overrides and prepare_config), without RUN_ONLY_KEYS and the loaders'
    LOADER_ONLY_KEYS, with the model's checkpoint paths blanked."""
    resolved = {k: v for k, v in cfg.to_dict().items() if k not in RUN_ONLY_KEYS}
    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        if isinstance(resolved.get(name), dict):
            resolved[name] = {k: v for k, v in resolved[name].items() if k not in LOADER_ONLY_KEYS}
    for key in checkpoint_keys(resolved.get("model", {})):
        _set_dotted(resolved, key, "<checkpoint>")
    text = json.dumps(resolved, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def run_inputs(cfg, checkpoint_fingerprint: dict, seed: int) -> dict:
    """Everything that made a seed's result: checkpoint content, seed, data root, resolved config."""
    return dict(checkpoint=checkpoint_fingerprint, seed=int(seed), data_root=cfg.get("data_root"),
                config_sha256=config_digest(cfg))


def differing_input(recorded: dict, current: dict):
    """'what (recorded -> current)' for the first input that differs, or None when all are the same."""
    if not isinstance(recorded, dict):
        return "inputs (none recorded)"
    for name in ("checkpoint", "seed", "data_root", "config_sha256"):
        old, new = recorded.get(name), current[name]
        if old != new:
            if name == "checkpoint":
                old, new = (f"sha256 {v['sha256'][:12]}" if isinstance(v, dict) and "sha256" in v else v
                            for v in (old, new))
            label = "resolved config" if name == "config_sha256" else name
            return f"{label} ({str(old)[:12] if name == 'config_sha256' else old} -> " \
                   f"{str(new)[:12] if name == 'config_sha256' else new})"
    return None


def check_reusable(seed_dir: Path, inputs: dict) -> bool:
    """Whether seed_dir holds a result of exactly these inputs (True) or nothing yet (False). A result, or an
    unfinished run, made from other inputs is a FastloadError naming the first difference."""
    result_path, inputs_path = seed_dir / RESULT_FILE, seed_dir / INPUTS_FILE
    if result_path.is_file():
        recorded, what = json.loads(result_path.read_text()).get("inputs"), result_path
    elif (seed_dir / "last_checkpoint").is_file():
        recorded = json.loads(inputs_path.read_text()) if inputs_path.is_file() else None
        what = f"the unfinished run in {seed_dir}"
    else:
        return False
    difference = differing_input(recorded, inputs)
    if difference:
        raise FastloadError(f"{what} was made with another {difference}: delete {seed_dir} to redo that seed "
                            "with these inputs, or use another --work-dir")
    return result_path.is_file()


# ---------------------------------------------------------------- the command

def transfer(config, checkpoint, work_dir, cfg_options=None, seeds=(0,), launcher="none") -> dict:
    """Run `config` once per seed into WORK_DIR/seed_<s>/, write and return WORK_DIR/summary.json.

    A seed whose result.json was made from the same inputs (checkpoint content, seed, data root, resolved config:
    run_inputs) is reused; one made from other inputs is refused, naming the difference. WORK_DIR is held by one
    process at a time (fastload.files.OutputLock).
    """
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds has repeats: {list(seeds)}")
    if not Path(checkpoint).is_file():  # before mmdet is imported and the config read
        raise FastloadError(f"checkpoint {checkpoint} does not exist")
    with OutputLock(work_dir, "fastload transfer") if is_first_process() else contextlib.nullcontext():
        return _transfer_seeds(config, checkpoint, Path(work_dir), cfg_options, seeds, launcher)


def is_first_process() -> bool:
    """Rank 0 of a torchrun / srun launch (read from the environment: the process group does not exist yet)."""
    from .distributed import read_launch_env

    return read_launch_env()[0] == 0


def _transfer_seeds(config, checkpoint, work_dir: Path, cfg_options, seeds, launcher) -> dict:
    checkpoint_fingerprint = fingerprint_file(checkpoint)
    results = []
    for seed in seeds:
        seed_dir = work_dir / f"seed_{seed}"
        cfg = load_config(config, checkpoint, seed_dir, cfg_options, seed, launcher)
        inputs = run_inputs(cfg, checkpoint_fingerprint, seed)
        if check_reusable(seed_dir, inputs):
            print(f"seed {seed}: result of the same inputs exists, skipped ({seed_dir / RESULT_FILE})")
            results.append(json.loads((seed_dir / RESULT_FILE).read_text()))
            continue
        if is_first_process():
            write_json(seed_dir / INPUTS_FILE, inputs)
        metrics = run_seed(cfg)
        metric = primary_metric(cfg, metrics)
        result = dict(seed=seed, metric=metric, value=metrics[metric], metrics=metrics, config=str(config),
                      checkpoint=str(checkpoint), inputs=inputs)
        if is_first_process():
            write_json(seed_dir / RESULT_FILE, result)
        results.append(result)
        print(f"seed {seed}: {metric} = {metrics[metric]:.4f}")
    summary = seed_summary(results, config, checkpoint)
    if is_first_process():
        work_dir.mkdir(parents=True, exist_ok=True)
        write_json(work_dir / SUMMARY_FILE, summary)
        print(f"{summary['metric']}: {summary['mean']:.4f} +- {summary['std']:.4f} over {summary['n']} seed(s) "
              f"-> {work_dir / SUMMARY_FILE}")
    return summary


def evaluate(config, model, work_dir, cfg_options=None, launcher="none") -> dict:
    """Score a trained transfer model (a checkpoint a run wrote, e.g. WORK_DIR/seed_0/iter_140000.pth) on the
    config's test set again; write and return WORK_DIR/eval/result.json.

    The model is loaded strictly and whole, so no pre-trained checkpoint is needed; the result names the model by
    path and fingerprint, with the data root and resolved config it was scored with.
    """
    if not Path(model).is_file():
        raise FastloadError(f"model {model} does not exist")
    eval_dir = Path(work_dir) / EVAL_DIR
    with OutputLock(eval_dir, "fastload transfer --eval-only") if is_first_process() else contextlib.nullcontext():
        # with load_from set, the model's pre-trained checkpoints are not read: every weight comes from `model`
        cfg = load_config(config, None, eval_dir, cfg_options, 0, launcher, load_from=model)
        runner = build_runner(cfg)
        recorder = _recorder(runner, cfg)
        with safe_checkpoint_loading():
            runner.test()
        if not recorder.test_history:
            raise FastloadError(f"{model}: testing reported no metrics")
        metrics = recorder.test_history[-1]
        metric = primary_metric(cfg, metrics)
        result = dict(metric=metric, value=metrics[metric], metrics=metrics, config=str(config), model=str(model),
                      model_fingerprint=fingerprint_file(model), data_root=cfg.get("data_root"),
                      config_sha256=config_digest(cfg))
        if is_first_process():
            write_json(eval_dir / RESULT_FILE, result)
            print(f"{metric} = {metrics[metric]:.4f} ({model}) -> {eval_dir / RESULT_FILE}")
    return result

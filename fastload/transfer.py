"""Fine-tune a fastload checkpoint with an MMDetection/MMEngine config, over one or several seeds.

Layout of WORK_DIR (one run per seed; reruns skip seeds that have a result and resume unfinished ones):

    WORK_DIR/seed_<s>/            mmengine's work dir: logs, resolved config, checkpoints, val_metrics.jsonl
    WORK_DIR/seed_<s>/result.json {seed, metric, value, metrics, config, checkpoint}
    WORK_DIR/summary.json         {config, checkpoint, metric, runs: [{seed, value}], mean, std, n}

Config variables that mmengine resolves while reading the file (so a --cfg-options override would not reach the
dicts that use them) are applied here after the overrides: `data_root` to every dataloader's dataset and
`img_scale` to every Resize; `--checkpoint` fills every `checkpoint` key under `model`. The config's
`primary_metric` names the validation result that goes into result.json and summary.json.
"""
import contextlib
import json
import math
import os
import time
from pathlib import Path

from .errors import FastloadError, UsageError
from .files import write_json

RESULT_FILE = "result.json"
SUMMARY_FILE = "summary.json"


def load_config(config, checkpoint, work_dir, cfg_options=None, seed=0, launcher="none"):
    """The mmengine Config of one run: file + overrides, config variables applied, checkpoint and seed set."""
    from mmengine.config import Config

    path = Path(config)
    if not path.is_file():
        raise UsageError(f"config {config} does not exist (the shipped ones are in transfer/)")
    cfg = Config.fromfile(str(path))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if "model" not in cfg:
        raise UsageError(f"config {config} has no `model`")
    if not isinstance(cfg.get("primary_metric"), str):  # checked now, not after hours of training
        raise UsageError(f"config {config} sets no `primary_metric` (the validation result to report, "
                         "e.g. primary_metric = 'pascal_voc/mAP')")
    apply_config_variables(cfg)
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


def _datasets(dataset):
    """The leaf dataset dicts under dataset wrappers (RepeatDataset's `dataset`, ConcatDataset's `datasets`)."""
    if "dataset" in dataset:
        return _datasets(dataset["dataset"])
    if "datasets" in dataset:
        return [leaf for d in dataset["datasets"] for leaf in _datasets(d)]
    return [dataset]


def set_checkpoint(node, checkpoint: str) -> int:
    """Set every `checkpoint` key in the (nested) model config; the number set."""
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


@contextlib.contextmanager
def trust_own_checkpoints(work_dir):
    """While a run is going, let mmengine read back the checkpoints that this run's own Runner wrote in `work_dir`.

    torch >= 2.6 loads with weights_only=True by default, and mmengine 0.10.7 calls torch.load without the argument.
    Its resume checkpoints hold a MessageHub state (HistoryBuffer objects that pickle their statistics methods via
    `getattr`, numpy arrays), which the weights-only unpickler rejects; allow-listing `getattr` would open it to
    almost anything. So files under the run's own work dir (written by mmengine's CheckpointHook for this config and
    seed) load with weights_only=False, and every other path keeps weights_only=True. Pre-trained weights never take
    this path: fastload.mmdet reads them itself with weights_only=True.
    """
    import torch
    from mmengine.runner.checkpoint import CheckpointLoader
    from mmengine.runner.checkpoint import load_from_local as mmengine_load_from_local

    own = Path(work_dir).resolve()

    def load_from_local(filename, map_location):  # same name: mmengine logs it as the 'local' backend
        path = Path(os.path.expanduser(filename)).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"{filename} can not be found.")
        return torch.load(path, map_location=map_location, weights_only=own not in path.parents)

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
    with trust_own_checkpoints(work_dir):
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

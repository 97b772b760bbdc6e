"""A hook that keeps every validation result of a run: in memory (for `fastload transfer`) and in
WORK_DIR/val_metrics.jsonl (rank 0, for people and plots).

mmengine's evaluator broadcasts the metrics to every rank, so under torchrun each process can read its own copy
without touching the file another process is writing. The IterBasedTrainLoop always validates after the last
iteration, so the final row is the result at max_iters, with no second pass over the test set.
"""
import json
import os

from mmdet.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

METRICS_FILE = "val_metrics.jsonl"


@HOOKS.register_module()
class RecordMetricsHook(Hook):
    """After each validation: append {'iter': N, **metrics} to `self.history` and (rank 0) to the jsonl file."""
    priority = "LOW"

    def __init__(self):
        self.history = []

    def after_val_epoch(self, runner, metrics=None) -> None:
        if not metrics:
            return
        row = {"iter": runner.iter, **{k: float(v) for k, v in metrics.items()}}
        self.history.append(row)
        if is_main_process():
            with open(os.path.join(runner.work_dir, METRICS_FILE), "a") as f:
                f.write(json.dumps(row) + "\n")

"""A hook that keeps every validation and test result of a run: in memory (for `fastload transfer`) and in
WORK_DIR/val_metrics.jsonl and WORK_DIR/test_metrics.jsonl (rank 0, for people, plots, and runs of mmdet's own
tools/train.py and tools/test.py).

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
TEST_METRICS_FILE = "test_metrics.jsonl"


@HOOKS.register_module()
class RecordMetricsHook(Hook):
    """After each validation (test): append {'iter': N, **metrics} to `self.history` (`self.test_history`) and
    (rank 0) to WORK_DIR/val_metrics.jsonl (test_metrics.jsonl)."""
    priority = "LOW"

    def __init__(self):
        self.history = []
        self.test_history = []

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._record(runner, metrics, self.history, METRICS_FILE)

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._record(runner, metrics, self.test_history, TEST_METRICS_FILE)

    @staticmethod
    def _record(runner, metrics, history: list, filename: str) -> None:
        if not metrics:
            return
        row = {"iter": runner.iter, **{k: float(v) for k, v in metrics.items()}}
        history.append(row)
        if is_main_process():
            with open(os.path.join(runner.work_dir, filename), "a") as f:
                f.write(json.dumps(row) + "\n")

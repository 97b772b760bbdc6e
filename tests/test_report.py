"""The report: figures exist, tables hold the store's numbers next to the paper's, differences are paired by seed."""
import json
import math
import statistics
from dataclasses import asdict

import pytest

from fastload.errors import FastloadError
from fastload.plan import load_plan
from fastload.report import difference, stats, write_report
from fastload.store import ResultsStore

DET = {"full": [0.60, 0.61, 0.59], "bottom_up_486": [0.58, 0.60, 0.55], "top_down_127": [0.57, 0.56, 0.58],
       "pascal_removed": [0.59, 0.58, 0.60], "full_x500": [0.58, 0.58, 0.59]}


def fill_store(results):
    plan = load_plan("paper")
    results.mkdir(parents=True, exist_ok=True)
    (results / "plan.json").write_text(json.dumps({"plan": asdict(plan), "steps": []}, default=str))
    store = ResultsStore(results)
    for run in [r["id"] for r in plan.runs]:
        store.append({"step": f"pretrain/{run}", "kind": "pretrain", "status": "done", "run": run,
                      "metrics": {"top1": 40.0 + len(run), "top5": 70.0}})
        store.append({"step": f"imagenet_cls/{run}/seed0", "kind": "imagenet_cls", "status": "done", "run": run,
                      "evaluation": "imagenet_cls", "seed": 0, "metrics": {"top1": 0.3 + len(run) / 100}})
    for run, values in DET.items():
        for seed, v in enumerate(values):
            store.append({"step": f"pascal_det/{run}/seed{seed}", "kind": "transfer", "status": "done", "run": run,
                          "evaluation": "pascal_det", "seed": seed, "metrics": {"mean": v, "std": 0.0}})
    for run in ("top_down_127", "bottom_up_9"):
        store.append({"step": f"induction/{run}", "kind": "induction", "status": "done", "run": run,
                      "evaluation": "induction", "seed": None,
                      "metrics": {"model": {"top1": 0.4, "top5": 0.7}, "baseline": {"top1": 0.5, "top5": 0.8}}})
    store.append({"step": "coarse_fine/full", "kind": "coarse_fine", "status": "done", "run": "full",
                  "evaluation": "coarse_fine", "seed": None, "metrics": {"rows": [
                      {"coarse_wnid": "n02084071", "name": "dog", "subclasses": 5, "coarse_acc": 0.9,
                       "fine_acc": 0.5, "gap": 0.4},
                      {"coarse_wnid": "n01503061", "name": "bird", "subclasses": 6, "coarse_acc": 0.8,
                       "fine_acc": 0.7, "gap": 0.1}]}})
    # a failed later attempt and a torn line must not change anything
    store.append({"step": "pascal_det/full/seed0", "kind": "transfer", "status": "failed", "run": "full"})
    with open(store.path, "ab") as f:
        f.write(b'{"step": "pascal_det/full/seed1", "status": "done", "metr')


def cell(values):
    v = [x * 100 for x in values]
    return f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f} (3)"


def test_report_figures_tables_and_paper_numbers(tmp_path):
    results = tmp_path / "results"
    fill_store(results)
    report = write_report(results).read_text()
    for fig in ("fig1", "fig2", "fig4", "fig6", "fig9"):
        assert (results / "figures" / f"{fig}.png").stat().st_size > 2000, fig
        assert f"figures/{fig}.png" in report
    table1 = report.split("### Table 1")[1].split("###")[0]
    assert f"| PASCAL-DET mAP (%) | {cell(DET['full'])} | 58.3 | {cell(DET['top_down_127'])} | — |" in table1
    table3 = report.split("### Table 3")[1].split("###")[0]
    assert f"{cell(DET['pascal_removed'])} | 57.8 | 53.8 |" in table3
    diffs = report.split("### Differences")[1].split("###")[0]
    paired = [100 * (a - b) for a, b in zip(DET["bottom_up_486"], DET["full"])]
    assert (f"| PASCAL-DET mAP (%) | bottom_up_486 | full | {statistics.mean(paired):.3f} ± "
            f"{statistics.stdev(paired):.3f} (3) | -1.7 |") in diffs
    assert "| PASCAL-DET mAP (%) | top_down_127 | full |" in diffs and "| -2.8 |" in diffs
    assert "| dog (n02084071) | 5 | 0.900 | 0.500 | 0.400 |" in report
    assert "| 127 (top-down) | 0.500 | 0.800 | 0.400 | 0.700 |" in report   # baseline.top1/top5, model.top1/top5
    assert f"| random | {0.3 + len('random_split_a') / 100:.3f}" not in report  # scaled to %
    assert f"| random | {100 * (0.3 + len('random_split_a') / 100):.3f}" in report


def test_stats_and_differences():
    assert stats({0: 1.0, 1: 3.0}) == (2.0, pytest.approx(math.sqrt(2)), 2)
    assert stats({None: 5.0}) == (5.0, 0.0, 1)
    paired = difference({0: 2.0, 1: 5.0}, {0: 1.0, 1: 3.0})
    assert paired == (1.5, pytest.approx(math.sqrt(0.5)), 2)
    unpaired = difference({0: 2.0, 1: 4.0}, {5: 1.0, 6: 1.0})
    assert unpaired[0] == 2.0 and unpaired[1] == pytest.approx(math.sqrt(2 / 2))
    assert difference({}, {0: 1.0}) is None


def test_report_needs_a_results_folder(tmp_path):
    with pytest.raises(FastloadError, match="plan.json is missing: .* is not a folder written by `fastload reproduce`"):
        write_report(tmp_path)

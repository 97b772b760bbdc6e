"""The report's transfer-suite section: runs x datasets per protocol from the store's probe and fine-tuning
records, mean ± std over seeds, "within noise" against the control, the average over datasets, and its figure."""
import numpy as np

from fastload.plan import build_steps, load_plan, write_steps
from fastload.report import suite_average, write_report
from fastload.resources import DATASETS_DIR
from fastload.store import ResultsStore, base_record

SUITE_PLAN = str(DATASETS_DIR / "suite_plan.yaml")


def test_suite_section_of_the_report(tmp_path):
    plan = load_plan(SUITE_PLAN)
    roots = {k: tmp_path / "data" / k for k in plan.data}
    results = tmp_path / "results"
    steps = {s.id: s for s in build_steps(plan, roots, results)}
    write_steps(results, plan, list(steps.values()), roots)
    store = ResultsStore(results)
    # full: clearly above the control on cifar10, within noise on flowers102
    probe = {("full", "cifar10"): [0.80, 0.82, 0.81], ("random", "cifar10"): [0.50, 0.52, 0.51],
             ("full", "flowers102"): [0.60, 0.70, 0.50], ("random", "flowers102"): [0.58, 0.66, 0.55]}
    for (run, data), values in probe.items():
        runs = [{"seed": s, "value": v} for s, v in enumerate(values)]
        store.append(base_record(steps[f"probe_{data}/{run}"], "done",
                                 metrics={"mean": float(np.mean(values)), "runs": runs}))
    for run, v in (("full", 0.9), ("random", 0.3)):
        for seed in range(3):
            store.append(base_record(steps[f"finetune_cifar10/{run}/seed{seed}"], "done",
                                     metrics={"mean": v + seed / 100, "runs": [{"seed": seed, "value": v}]}))
    text = write_report(results).read_text()
    section = text[text.index("## Transfer suite"):]
    assert (results / "figures" / "suite.png").stat().st_size > 1000
    probe_table = section[section.index("linear probe"):section.index("fine-tuning (Kornblith")]
    assert "| run | cifar10 | flowers102 | average |" in probe_table
    full = next(line for line in probe_table.splitlines() if line.startswith("| full |"))
    cifar, flowers, average = full.split(" | ")[1:4]
    assert cifar == "81.00 ± 1.00 (3)" and "within noise" not in cifar
    assert flowers.startswith("60.00 ± 10.00 (3)") and "within noise" in flowers
    assert average.startswith("70.50 ±")
    assert "| random (control) |" in probe_table
    ft = section[section.index("fine-tuning (Kornblith"):]
    assert "| run | cifar10 | average |" in ft and "91.00 ± 1.00 (3)" in ft


def test_suite_average_needs_every_dataset():
    numbers = {("a", "p1"): {0: 0.5, 1: 0.7}, ("a", "p2"): {0: 0.1, 1: 0.3}}
    assert suite_average(numbers, "a", ["p1", "p2"]) == {0: 0.3, 1: 0.5}
    assert suite_average(numbers, "a", ["p1", "p3"]) is None

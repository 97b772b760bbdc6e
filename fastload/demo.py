"""`fastload demo`: the whole study on CPU in minutes. Generates synthetic ImageNet, VOC and SUN397, runs the demo
plan (datasets/demo_plan.yaml) and writes the report. With `--data` it runs the paper's plan on real data instead.
Run it again with the same --out to resume after an interruption: completed steps are skipped.
"""
import time
from pathlib import Path

from .report import write_report
from .reproduce import reproduce


def run_demo(out="demo_out", data=None, plan=None, launcher="local", jobs=1, log=print) -> Path:
    t0 = time.time()
    plan = plan or ("paper" if data else "demo")
    reproduce(plan, data, out, launcher=launcher, synth=not data, wait=True, jobs=jobs, log=log)
    report = write_report(out)
    log(f"report: {report} (figures in {report.parent / 'figures'}/); total {time.time() - t0:.0f} s")
    return report

"""The dry run's price of a step: the slower of its GPU time (a GPU shared by --jobs-per-gpu K steps runs each at
1/K speed) and its data path's CPU time on the cores it gets; transfers priced by their plan's config whatever
command runs them; compile_cls steps from a plan's data entries."""
import textwrap

import pytest

from fastload.errors import FastloadError
from fastload.launchers import DevicePool
from fastload.plan import build_steps, load_plan, parse_plan
from fastload.reproduce import (CONFIG_DATA_PATHS, DATA_RATES, ESTIMATES, PROTOCOL_IMAGES, bound_steps, dry_run,
                                price_steps)

ROOTS = {"imagenet": "/data/imagenet", "voc": "/data/voc", "sun": "/data/sun", "cifar10": "/data/cifar10",
         "flowers102": "/data/flowers102"}


def quiet(*_):
    pass


def test_sharing_a_gpu_adds_no_gpu():
    """K jobs per GPU: the same GPU-hours, and the makespan no shorter than GPU-hours / GPUs."""
    results = {k: dry_run("paper", gpus=[str(i) for i in range(8)], jobs_per_gpu=k, cpus=64, log=quiet)
               for k in (1, 4)}
    assert results[4]["gpu_hours"] == pytest.approx(results[1]["gpu_hours"])
    assert results[4]["makespan_h"] >= results[1]["gpu_hours"] / 8
    assert results[4]["makespan_h"] == pytest.approx(results[1]["makespan_h"], rel=0.15)


def test_a_shared_step_runs_at_one_kth_speed():
    steps = [s for s in build_steps(load_plan("paper"), ROOTS, "/r") if s.id == "pascal_det/full/seed0"]
    priced = price_steps(steps)
    alone = bound_steps(steps, priced, DevicePool(["0"], 1, 1), cpus=64)["pascal_det/full/seed0"]
    shared = bound_steps(steps, priced, DevicePool(["0"], 3, 1), cpus=64)["pascal_det/full/seed0"]
    assert shared[0] == pytest.approx(3 * alone[0]) and "1/3 speed" in shared[1] and alone[1].startswith("GPU")


def test_the_slower_of_gpu_and_data_path_bounds_a_step():
    """The file-based SUN config on one core is data bound; the beton config is not."""
    plan = load_plan("paper")
    files = parse_plan_with_sun_config("alexnet-caffe_50k_sun397.py", "{root}")
    for chosen, bound in ((plan, "GPU"), (files, "CPU data (sun397_files")):
        steps = [s for s in build_steps(chosen, ROOTS, "/r") if s.id == "sun_cls/full/seed0"]
        wall, label = bound_steps(steps, price_steps(steps), DevicePool(["0"], 1, 1), cpus=1)[steps[0].id]
        assert label.startswith(bound), label
        data = PROTOCOL_IMAGES["sun397_50k"] / DATA_RATES[CONFIG_DATA_PATHS[steps[0].config]]["per_core"]
        assert wall == pytest.approx(max(data, ESTIMATES[steps[0].config]["seconds"]))


def paper_plan_raw() -> dict:
    import yaml

    from fastload.resources import DATASETS_DIR
    return yaml.safe_load((DATASETS_DIR / "paper_plan.yaml").read_text())


def parse_plan_with_sun_config(config, data_root):
    raw = paper_plan_raw()
    raw["evaluations"]["sun_cls"].update(config=config, data_root=data_root)
    return parse_plan(raw, "paper_plan.yaml")


def test_an_overridden_transfer_command_is_priced_by_its_config(tmp_path):
    """A plan's own transfer command (argv of any shape) is priced by the evaluation's config, not its argv."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(textwrap.dedent("""\
        name: own-transfer
        data: {imagenet: {}, sun: {}}
        commands:
          transfer: [python, my_transfer.py, --weights, "{checkpoint}", "{config}", "{out}"]
        evaluations:
          sun: {kind: transfer, config: alexnet-caffe_50k_sun397.py, data: sun}
        runs:
          - {id: r, manifest: {labelset: full}, evals: [sun]}
        """))
    steps = [s for s in build_steps(load_plan(str(plan)), ROOTS, "/r") if s.kind == "transfer"]
    assert steps and steps[0].argv[2] == "--weights"
    for step in steps:
        wall, _, source = price_steps([step])[step.id]
        assert wall == ESTIMATES["alexnet-caffe_50k_sun397.py"]["seconds"], source
        assert source.startswith("estimated (alexnet-caffe_50k_sun397.py)")


def test_plans_compile_transfer_data_once_per_data_key():
    steps = {s.id: s for s in build_steps(load_plan("paper"), ROOTS, "/r")}
    compile_sun = steps["compile/sun"]
    assert compile_sun.kind == "compile_cls"
    assert compile_sun.argv[1:] == ["compile", "cls", "sun397", "/data/sun", "/r/compiled/sun", "--option",
                                    "partition=1"]
    sun_steps = [s for s in steps.values() if s.evaluation == "sun_cls"]
    assert len(sun_steps) == 54 and all("compile/sun" in s.deps for s in sun_steps)
    assert all("data_root=/r/compiled/sun" in s.argv for s in sun_steps)
    assert all(s.config == "alexnet-caffe_50k_sun397-beton.py" for s in sun_steps)
    demo = {s.id: s for s in build_steps(load_plan("demo"), ROOTS, "/r", synth=True)}
    assert demo["compile/sun"].deps == ["synth/sun"] and "--side" in demo["compile/sun"].argv


def test_compile_entries_are_checked():
    with pytest.raises(FastloadError, match=r"data.sun.compile.layout: 'caltech' is not a layout \(allowed: .*sun397"):
        parse_plan({"name": "x", "data": {"imagenet": {}, "sun": {"compile": {"layout": "caltech"}}},
                    "runs": [{"id": "r", "manifest": {"labelset": "full"}}]})
    raw = paper_plan_raw()
    raw["data"]["sun"] = {}
    with pytest.raises(FastloadError, match=r"evaluations.sun_cls.data_root: '\{compiled\}' needs data.sun.compile"):
        parse_plan(raw, "paper_plan.yaml")


def test_the_dry_run_prints_each_bound(cli):
    out = cli("reproduce", "--plan", "paper", "--dry-run", "--gpus", "8", "--cpus", "16", check=True).stdout
    assert "16 CPU core(s)" in out and "bound sun_cls" in out and "bound pascal_det" in out
    assert "data rate sun397_beton" in out

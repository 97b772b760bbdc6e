"""The dry run's price of a step: the slower of its GPU time (a GPU shared by --jobs-per-gpu K steps runs each at
1/K speed) and its data path's CPU time on the cores it gets; transfers priced by their plan's config whatever
command runs them; compile_cls steps from a plan's data entries."""
import json
import math
import textwrap

import pytest

from fastload.errors import FastloadError
from fastload.launchers import DevicePool
from fastload.plan import (KINDS, REPORT_SECTIONS, Step, build_steps, load_plan, parse_plan, read_steps_file,
                           write_steps)
from fastload.reproduce import (CONFIG_DATA_PATHS, CONFIG_PROTOCOLS, DATA_RATES, ESTIMATES, PRICERS, PROTOCOL_IMAGES,
                                bound_steps, dry_run, price_steps)
from fastload.store import ResultsStore, base_record

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


def test_every_kind_is_priced(tmp_path):
    """Each kind of plan.KINDS names a way to price it (Kind.price, a key of PRICERS), and a step of each kind gets
    a finite positive wall time and the bound it hits: a kind added without a price fails here. A kind priced by
    measurement alone (a user's command) is given one done step of its class in the store."""
    store = ResultsStore(tmp_path)
    steps = []
    for name, kind in KINDS.items():
        assert kind.price in PRICERS, name
        assert kind.report is None or kind.report in REPORT_SECTIONS, name
        step = Step(id=f"{name}/x", kind=name, argv=[], gpus=1, recipe="paper",
                    config=next(iter(CONFIG_PROTOCOLS)) if kind.price == "config" else None)
        if kind.price == "measured":
            store.append(base_record(step, "done", wall_s=42.0))
        steps.append(step)
    priced = price_steps(steps, store)
    bounds = bound_steps(steps, priced, DevicePool(["0"], 1, 1), cpus=4)
    for step in steps:
        wall, bound = bounds[step.id]
        assert wall is not None and math.isfinite(wall) and wall > 0, (step.kind, priced[step.id])
        assert bound.startswith(("GPU", "CPU data")), (step.kind, bound)


INLINE_SELECTIONS = {"name": "inline", "data": {"imagenet": {}}, "runs": [
    {"id": "few", "manifest": {"labelset": "full", "per_class": 100, "classes": 50}},
    {"id": "budget", "manifest": {"labelset": "full", "budget": 5000}, "pretrain_args": ["--epochs", "3"]}]}


@pytest.mark.parametrize("plan_name", ["paper", "demo", "inline"])
def test_a_steps_file_of_the_previous_version_still_prices(tmp_path, plan_name):
    """A steps.json written before steps carried epochs and selection: read_steps_file reads them from the argv
    once (a manifest-list entry or an inline selection), and the steps price as the freshly expanded ones do."""
    plan = parse_plan(INLINE_SELECTIONS, "inline.yaml") if plan_name == "inline" else load_plan(plan_name)
    steps = build_steps(plan, ROOTS, tmp_path, synth=plan_name == "demo")
    path = write_steps(tmp_path, plan, steps, ROOTS)
    doc = json.loads(path.read_text())
    for stored in doc["steps"]:
        del stored["epochs"], stored["selection"]
    path.write_text(json.dumps(doc))
    old = read_steps_file(tmp_path).steps
    assert old == steps
    assert any(s.epochs is not None for s in steps) == (plan_name != "paper")
    assert price_steps(old) == price_steps(steps)

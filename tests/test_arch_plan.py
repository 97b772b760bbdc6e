"""`fastload reproduce --arch resnet50|resnet18`: the paper's plan with a ResNet, derived from the same
plan entries through fastload.plan.ARCH_VARIANTS: every pre-training on the ResNet recipe, every transfer on the
mapped config, the analyses on the checkpoint's own network; refused where it cannot be mapped; priced from FFCV's
figures; one results folder per network."""
import json

import pytest

from conftest import run_cli
from fastload import plan as plan_module
from fastload.errors import FastloadError, UsageError
from fastload.plan import (ARCH_VARIANTS, TRANSFER_CONFIGS_DIR, build_steps, load_plan, option, read_steps_file,
                           write_steps)
from fastload.recipe import load_recipe
from fastload.reproduce import dry_run, prepare

ROOTS = {"imagenet": "/data/imagenet", "voc": "/data/voc", "sun": "/data/sun"}
ANALYSES = ("imagenet_cls", "induction", "coarse_fine")


def steps_of(arch, results="/r"):
    return {s.id: s for s in build_steps(load_plan("paper", arch), ROOTS, results)}


@pytest.mark.parametrize("arch", sorted(ARCH_VARIANTS))
def test_paper_plan_with_a_resnet(arch):
    variant = ARCH_VARIANTS[arch]
    alexnet, resnet = load_plan("paper"), load_plan("paper", arch)
    assert (resnet.name, resnet.arch, alexnet.arch) == (f"paper_{arch}", arch, None)
    assert variant.label in resnet.description and alexnet.description.strip() in resnet.description
    assert load_recipe(variant.plan.recipe)["arch"] == arch
    old, new = steps_of(None), steps_of(arch)
    assert list(new) == list(old) and len(new) == 235   # the same steps, ids and dependencies
    configs = {str(TRANSFER_CONFIGS_DIR / a): str(TRANSFER_CONFIGS_DIR / r) for a, r in variant.plan.configs.items()}
    kinds = set()
    for sid, step in new.items():
        before = old[sid]
        assert step.deps == before.deps and step.kind == before.kind
        kinds.add(step.kind)
        if step.kind in ("compile", "compile_cls", "manifest"):
            assert step.argv == before.argv and step.arch is None   # shared by every network
            continue
        assert step.arch == arch and before.arch == "alexnet_caffe", sid   # what the store and report read
        if step.kind == "pretrain":
            assert option(step.argv, "--recipe") == variant.plan.recipe and step.recipe == variant.plan.recipe
            assert step.gpus == variant.plan.gpus and before.gpus == 4
            expected = [variant.plan.recipe if t == "paper" else t for t in before.argv]
        elif step.kind == "transfer":
            assert step.argv[2] in configs.values(), sid
            expected = [configs.get(t, t) for t in before.argv]
        else:
            # induction / coarse-fine / ImageNet-CLS: the same arguments; no --layer or --resolution, so the
            # checkpoint's network picks its feature layer (its record's: 'flatten') and its crop (val_res)
            assert step.kind in ANALYSES and "--layer" not in step.argv and "--resolution" not in step.argv
            assert option(step.argv, "--checkpoint") == f"/r/runs/{step.run}/last.pt"
            expected = before.argv
        assert step.argv == expected, sid
    assert kinds == {"compile", "compile_cls", "manifest", "pretrain", "transfer", *ANALYSES}
    ind = new["induction/top_down_127"]
    assert option(ind.argv, "--baseline") == "/r/runs/full/last.pt" and option(ind.argv, "--labelset") == "top_down@127"
    assert option(new["coarse_fine/full"].argv, "--labelset") == "top_down@127"
    for name in variant.plan.configs.values():
        assert (TRANSFER_CONFIGS_DIR / name).is_file(), name


def test_the_analyses_read_the_resnet_s_own_features():
    features = pytest.importorskip("fastload.analysis.features")
    for arch, variant in ARCH_VARIANTS.items():
        recipe = load_recipe(variant.plan.recipe)
        assert features.feature_layer(arch) == "flatten"   # the pooled features before fc
        assert features.default_resolution({"arch": arch, "recipe": recipe}) == recipe["val_res"] == 256


def test_steps_file_keeps_the_arch(tmp_path):
    plan = load_plan("paper", "resnet18")
    steps = build_steps(plan, ROOTS, tmp_path)
    write_steps(tmp_path, plan, steps, ROOTS)
    stored = read_steps_file(tmp_path)
    assert stored.plan.arch == "resnet18" and stored.plan.name == "paper_resnet18"
    assert {s.arch for s in stored.steps if s.kind == "pretrain"} == {"resnet18"}
    assert [s.fingerprint() for s in stored.steps] == [s.fingerprint() for s in steps]
    from fastload.report import sources_of   # what the report calls its numbers
    src = sources_of(stored.plan, stored.steps)
    assert (src.reproduced, src.paper) == ("reproduced (ResNet-18)", "paper (AlexNet)")
    alexnet = load_plan("paper")
    assert sources_of(alexnet, build_steps(alexnet, ROOTS, tmp_path)).reproduced == "reproduced (AlexNet)"


def test_unknown_arch_is_refused_naming_the_choices(tmp_path):
    with pytest.raises(UsageError, match=r"--arch 'vgg16': .*allowed: resnet50, resnet18"):
        load_plan("paper", "vgg16")
    out = run_cli("reproduce", "--plan", "paper", "--dry-run", "--arch", "resnet34")
    assert out.returncode == 2 and "allowed: resnet50, resnet18" in out.stderr


def test_a_missing_mapped_config_is_named(tmp_path, monkeypatch):
    """The ResNet configs are other files: one that is not there stops the expansion, naming it."""
    for variant in ARCH_VARIANTS.values():
        for name in variant.plan.configs.values():
            (tmp_path / name).write_text("# present\n")
    (tmp_path / "resnet50_50k_sun397-beton.py").unlink()
    monkeypatch.setattr(plan_module, "TRANSFER_CONFIGS_DIR", tmp_path)
    with pytest.raises(FastloadError, match=rf"transfer config {tmp_path}/resnet50_50k_sun397-beton.py does not "
                                            r"exist \(the ResNet-50 counterpart of alexnet-caffe_50k_sun397-beton.py, "
                                            r"evaluation sun_cls"):
        load_plan("paper", "resnet50")
    assert load_plan("paper", "resnet18").arch == "resnet18"   # its own configs are all there


PLAN = """\
name: mine
data: {{imagenet: {{}}, sun: {{}}}}
defaults: {{recipe: {recipe}, gpus: 0}}
evaluations:
  sun: {{kind: transfer, config: {config}, data: sun}}
  induction: {{kind: induction, baseline: full, args: {args}}}
runs:
  - {{id: full, manifest: full, evals: [sun, induction]}}
"""


@pytest.mark.parametrize("recipe, config, args, message", [
    ("resnet18_16", "alexnet-caffe_50k_sun397.py", "[]", r"runs \(full\): --arch resnet50: its recipe "
                                                         r"'resnet18_16' trains resnet18, not AlexNet"),
    ("paper", "alexnet-tv_50k_sun397.py", "[]", r"evaluations.sun.config: --arch resnet50: "
                                                r"'alexnet-tv_50k_sun397.py' has no ResNet-50 counterpart"),
    ("paper", "alexnet-caffe_50k_sun397.py", "[--layer, fc7]", r"evaluations.induction.args: --arch resnet50: "
                                                               r"'--layer' names a part of AlexNet"),
    ("nosuch", "alexnet-caffe_50k_sun397.py", "[]", r"runs \(full\): unknown recipe 'nosuch'"),
])
def test_a_plan_that_cannot_be_mapped_is_refused(tmp_path, recipe, config, args, message):
    path = tmp_path / "mine.yaml"
    path.write_text(PLAN.format(recipe=recipe, config=config, args=args))
    load_plan(str(path))   # fine as written
    with pytest.raises(FastloadError, match=message):
        load_plan(str(path), "resnet50")


def dry_rows(stdout):
    lines = stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("steps ")) + 1
    return {line.split()[0]: line for line in lines[first:] if line and not line.startswith("GPU-hours")}


@pytest.mark.parametrize("arch, full_wall, figure", [
    ("resnet50", "14m54s", "ResNet-50, 16 epochs in 14.9 min on 8 A100s"),
    ("resnet18", "35m00s", "ResNet-18, 16 epochs in 35.0 min on 1 A100"),
])
def test_dry_run_prices_the_resnets_from_ffcv_s_figures(arch, full_wall, figure):
    out = run_cli("reproduce", "--plan", "paper", "--dry-run", "--arch", arch, "--gpus", "8", check=True)
    assert f"plan paper_{arch} " in out.stdout and "235 steps" in out.stdout
    pre = dry_rows(out.stdout)["pretrain"]
    assert f"-{full_wall}" in pre and "estimated [" in pre   # the full run: FFCV's own time for the recipe
    assert figure in out.stdout and "an estimate" in out.stdout
    assert "41,600 img/s" not in out.stdout   # not AlexNet's rate


def test_dry_run_recomputes_ffcv_s_time_for_the_full_run():
    """The full ImageNet run on the recipe as written costs FFCV's time: 14.9 min on 8 GPUs, 35.0 on 1."""
    logged = []
    for arch, gpus, minutes in (("resnet50", 8, 14.9), ("resnet18", 1, 35.0)):
        steps = [s for s in build_steps(load_plan("paper", arch), ROOTS, "/r") if s.id == "pretrain/full"]
        from fastload.reproduce import price_steps
        (wall, gpu_s, source), = price_steps(steps).values()
        # the full run's manifest is all 1,281,167 images (counted from the selection, no manifest built)
        assert wall == pytest.approx(minutes * 60, rel=1e-3) and gpu_s == pytest.approx(minutes * 60 * gpus, rel=1e-3)
        assert source.startswith("estimated: FFCV's README")
        logged.append(source)
    assert len(set(logged)) == 2


def test_a_bench_file_of_another_network_is_refused(tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"device": "cuda", "arch": "alexnet_caffe", "resolution": 224,
                                 "ffcv": {"images_per_s": 20800}}))
    with pytest.raises(FastloadError, match=r"bench.json: measured alexnet_caffe; the plan pre-trains resnet50"):
        dry_run("paper", gpus=[str(i) for i in range(8)], bench_json=[bench], arch="resnet50", log=lambda m: None)


FAKE = """\
import json, sys
from pathlib import Path
kind, out = sys.argv[1], Path(sys.argv[2])
if kind == "manifest":
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("m")
else:
    out.mkdir(parents=True, exist_ok=True)
    (out / "compile.json").write_text("{}")
    (out / "last.pt").write_text(sys.argv[3] if len(sys.argv) > 3 else "")
    (out / "summary.json").write_text(json.dumps({"top1": 0.5}))
"""
FAKE_PLAN = """\
name: fake
data: {{imagenet: {{}}}}
defaults: {{recipe: smoke, gpus: 0, seeds: [0]}}
commands:
  compile: [python, {fake}, compile, "{{out}}"]
  manifest: [python, {fake}, manifest, "{{out}}"]
  pretrain: [python, {fake}, pretrain, "{{out}}", "{{recipe}}"]
runs:
  - {{id: full, manifest: {{labelset: full}}}}
"""


def test_one_results_folder_holds_one_network(tmp_path):
    """The step ids are the same for every network: a second --arch on the same --out is refused, naming
    steps.json, before anything is run or rewritten; the same --arch resumes."""
    (tmp_path / "fake.py").write_text(FAKE)
    plan = tmp_path / "fake.yaml"
    plan.write_text(FAKE_PLAN.format(fake=tmp_path / "fake.py"))
    (tmp_path / "imagenet").mkdir()
    results = tmp_path / "results"
    base = ["reproduce", "--plan", plan, "--data", f"imagenet={tmp_path / 'imagenet'}", "--out", results]
    run_cli(*base, "--arch", "resnet18", check=True)
    assert (results / "runs" / "full" / "last.pt").read_text() == "resnet18_16"   # the variant's recipe ran
    steps_json = (results / "steps.json").read_text()
    for other in ([], ["--arch", "resnet50"]):
        out = run_cli(*base, *other)
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"{results / 'steps.json'}: {results} holds plan fake_resnet18, expanded with --arch resnet18" \
            in out.stderr and "give another --out" in out.stderr
        assert (results / "steps.json").read_text() == steps_json
    again = run_cli(*base, "--arch", "resnet18", check=True)
    assert "3 skipped" in again.stdout
    with pytest.raises(FastloadError, match="expanded with --arch resnet18; this run asks for no --arch"):
        dry_run(str(plan), data=[f"imagenet={tmp_path / 'imagenet'}"], results_dir=results, log=lambda m: None)
    # and the other way round: an AlexNet folder (as written) refuses a ResNet
    prepare(str(plan), [f"imagenet={tmp_path / 'imagenet'}"], tmp_path / "alexnet")
    with pytest.raises(FastloadError, match="expanded with no --arch .*; this run asks for --arch resnet50"):
        prepare(str(plan), [f"imagenet={tmp_path / 'imagenet'}"], tmp_path / "alexnet", arch="resnet50")

"""Plan files: the paper's plan covers the paper's experiments, validation errors name file and entry, and the
expansion into steps respects compile -> manifest -> pretrain -> evaluations."""
import json
import sys
import textwrap

import pytest
import yaml

from fastload.errors import FastloadError, UsageError
from fastload.launchers import launch_argv
from fastload import report
from fastload.plan import (EVAL_KEYS, EVAL_KINDS, KINDS, REPORT_SECTIONS, STEPS_FILE, TAGS, build_steps,
                           expand_template, load_plan, parse_data_roots, read_steps, read_steps_file, select_steps,
                           write_steps)
from fastload.resources import DATASETS_DIR, TRANSFER_CONFIGS_DIR

ROOTS = {"imagenet": "/data/imagenet", "voc": "/data/voc", "sun": "/data/sun"}


def tags(plan, tag):
    return {r.id: r.tags[tag] for r in plan.runs if tag in r.tags}


def test_paper_plan_covers_the_paper():
    plan = load_plan("paper")
    assert sorted(tags(plan, "fig1").values()) == [50, 125, 250, 500, 1000]
    assert sorted(tags(plan, "fig2").values()) == [9, 79, 127, 486, 753, 918, 1000]
    assert set(tags(plan, "table1").values()) == {"1000 classes", "127 classes"}
    table2 = tags(plan, "table2").values()
    assert sorted({row for row, _ in table2}) == ["125k images", "250k images", "500k images"] and len(table2) == 6
    assert "pascal_removed" in tags(plan, "table3")
    fig9 = tags(plan, "fig9")
    assert {"random_split_a", "random_split_b", "minimal_split_a", "minimal_split_b", "full"} == set(fig9)
    assert {"induction", "coarse_fine", "imagenet_cls", "pascal_det", "pascal_act", "sun_cls"} <= \
        {e for r in plan.runs for e in r.evals}
    manifests = {m["name"] for m in yaml.safe_load((DATASETS_DIR / "paper_manifests.yaml").read_text())["manifests"]}
    assert {r.manifest for r in plan.runs} <= manifests
    for ev in plan.evaluations.values():
        if ev.kind == "transfer":
            assert (TRANSFER_CONFIGS_DIR / ev.config).is_file(), f"{ev.config} is not in transfer/"
    # the number each evaluation shows is the one its kind declares
    assert {n: e.metric for n, e in plan.evaluations.items()} == {
        "pascal_det": "mean", "pascal_act": "mean", "sun_cls": "mean", "imagenet_cls": "top1",
        "induction": "model.top1", "coarse_fine": None}
    assert plan.run("bottom_up_486").labelset == "bottom_up@486"


def test_paper_steps_in_dependency_order():
    plan = load_plan("paper")
    steps = build_steps(plan, ROOTS, "/results")
    seen = set()
    for s in steps:
        assert set(s.deps) <= seen, f"{s.id} comes before its dependencies {s.deps}"
        seen.add(s.id)
    by_id = {s.id: s for s in steps}
    assert by_id["manifest/bottom_up_486"].deps == ["compile/imagenet"]
    assert by_id["pretrain/bottom_up_486"].deps == ["manifest/bottom_up_486"]
    ind = by_id["induction/top_down_127"]
    assert set(ind.deps) == {"pretrain/top_down_127", "pretrain/full"}
    assert ind.argv[ind.argv.index("--labelset") + 1] == "top_down@127"
    det = by_id["pascal_det/full_x500/seed2"]
    assert det.seed == 2 and "data_root=/data/voc/VOCdevkit/" in det.argv
    assert det.argv[det.argv.index("--seeds") + 1] == "2"
    assert sum(s.id.startswith("pascal_det/full/") for s in steps) == 3


def test_multi_gpu_pretraining_uses_torchrun(tmp_path):
    steps = {s.id: s for s in build_steps(load_plan("paper"), ROOTS, tmp_path)}
    pre = steps["pretrain/full"]
    assert pre.gpus == 4
    argv = launch_argv(pre)
    assert argv[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert "--resume" not in argv  # no checkpoint yet
    (tmp_path / "runs" / "full").mkdir(parents=True)
    (tmp_path / "runs" / "full" / "last.pt").write_bytes(b"")
    assert "--resume" in launch_argv(pre)
    det = steps["pascal_det/full/seed0"]
    assert launch_argv(det)[:3] == [sys.executable, "-m", "fastload.cli"]


def test_demo_plan_loads():
    plan = load_plan("demo")
    steps = build_steps(plan, {k: f"/d/{k}" for k in plan.data}, "/r", synth=True)
    assert steps[0].kind == "synth" and all(d in plan.data for d in ("imagenet", "voc", "sun"))
    assert plan.defaults.gpus == 0


def test_demo_plan_has_a_control_and_seeds_for_every_transfer():
    """A random-init control the report compares with, and mean ± std over >= 2 seeds per transfer."""
    plan = load_plan("demo")
    control = plan.control()
    assert control is not None and control.id == "random"
    # never trained: the seeded initial network (the last --epochs wins over the plan's default)
    epochs = [a for flag, a in zip(control.pretrain_args, control.pretrain_args[1:]) if flag == "--epochs"]
    assert epochs[-1] == "0"
    transfers = {n for n, e in plan.evaluations.items() if e.kind == "transfer"}
    assert {"pascal_det", "sun_cls"} <= transfers and transfers <= set(control.evals)
    for name in transfers:
        assert len(set(plan.evaluations[name].seeds)) >= 2, name
    for run in plan.runs:
        assert transfers & set(run.evals), f"{run.id} has no transfer to compare with the control"
    steps = {s.id: s for s in build_steps(plan, {k: f"/d/{k}" for k in plan.data}, "/r", synth=True)}
    pre = steps["pretrain/random"]
    assert pre.argv[pre.argv.index("--epochs", pre.argv.index("--epochs") + 1) + 1] == "0"
    # the control and the full run name the same manifest: one step builds it
    assert pre.deps == steps["pretrain/full"].deps == ["manifest/full"]
    assert not any(s.startswith("manifest/random") for s in steps)


def test_one_control_run_at_most(tmp_path):
    text = GOOD.replace("evals: [e]}", "evals: [e], tags: {control: a}}\n  - {id: b, manifest: {labelset: full}, "
                                       "tags: {control: b}}")
    with pytest.raises(FastloadError, match="more than one run is tagged 'control'"):
        load_plan(write(tmp_path, text))


def test_every_evaluation_kind_is_one_table_entry():
    """What the plan, the runner and the report know of a kind comes from KINDS alone."""
    for name, kind in KINDS.items():
        assert kind.required <= set(EVAL_KEYS) and kind.allowed <= set(EVAL_KEYS), name
        assert kind.command or name == "shell", name   # shell takes its command from the evaluation
        assert not (kind.evaluation and kind.seeded is False and "group_seeds" in kind.allowed), name
        assert kind.with_arch in ("config", "checkpoint", None), name
        assert kind.report in (None, *REPORT_SECTIONS), name
    assert set(EVAL_KINDS) == {"transfer", "imagenet_cls", "induction", "coarse_fine", "shell", "subpop", "probe",
                               "finetune"}
    assert set(report.FIGURES) | set(report.TABLES) | {"control"} == set(TAGS)


def test_steps_file_round_trip(tmp_path):
    plan = load_plan("paper")
    steps = build_steps(plan, ROOTS, tmp_path)
    path = write_steps(tmp_path, plan, steps, ROOTS)
    assert path == tmp_path / STEPS_FILE == tmp_path / "steps.json"
    back = read_steps_file(tmp_path)
    assert back.plan == plan and back.steps == steps == read_steps(tmp_path)
    assert [s.fingerprint() for s in back.steps] == [s.fingerprint() for s in steps]
    assert json.loads(path.read_text())["data_roots"]["voc"] == "/data/voc"


def test_steps_file_errors(tmp_path):
    with pytest.raises(FastloadError, match="steps.json is missing: .* not a folder written by `fastload reproduce`$"):
        read_steps(tmp_path)
    (tmp_path / "plan.json").write_text("{}")
    with pytest.raises(FastloadError, match="plan.json is from an older fastload"):
        read_steps(tmp_path)
    (tmp_path / "steps.json").write_text('{"steps": []}')
    with pytest.raises(FastloadError, match="steps.json: not a steps file written by this fastload"):
        read_steps_file(tmp_path)


def write(tmp_path, text):
    path = tmp_path / "plan.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


GOOD = """\
name: t
data: {imagenet: {}}
evaluations:
  e: {kind: shell, command: [echo, "{out}"]}
runs:
  - {id: a, manifest: {labelset: full}, evals: [e]}
"""


@pytest.mark.parametrize("change, message", [
    (("runs:\n", "runs:\n  - {id: a, manifest: full}\n"), r"runs\[1\] \(a\): id must be a unique"),
    (("evals: [e]", "evals: [nope]"), r"runs\[0\] \(a\)\.evals: 'nope' is not defined under 'evaluations'"),
    (("{labelset: full}", "{labelset: full, images: 3}"), r"runs\[0\] \(a\)\.manifest: unknown key\(s\) images"),
    (("{labelset: full}", "no_such_manifest"), r"'no_such_manifest' is not a manifest of the plan's manifest list "
                                               r".*known: .*bottom_up_486"),
    (("name: t\n", "name: t\nextra: 1\n"), r"top level: unknown key\(s\) extra"),
    (("kind: shell", "kind: magic"), r"evaluations\.e\.kind: 'magic' is not a known kind \(allowed: .*transfer"),
    ((", command: [echo, \"{out}\"]", ""), r"evaluations\.e: a shell evaluation needs 'command'"),
    (("kind: shell,", "kind: transfer, data: imagenet,"), r"evaluations\.e: unknown key\(s\) command .*data_root"),
    (("kind: shell,", "kind: shell, scale: 100,"), r"evaluations\.e\.scale: the key 'scale' was removed: every "),
    (("kind: shell,", "kind: shell, std: std,"), r"evaluations\.e\.std: the key 'std' was removed"),
    (("evals: [e]}", "evals: [e], tags: {fig7: 1}}"), r"runs\[0\] \(a\)\.tags\.fig7: not a figure or table"),
    (("evals: [e]}", "evals: [e], tags: {fig1: many}}"), r"tags\.fig1: must be a number"),
    (('evaluations:\n  e: {kind: shell, command: [echo, "{out}"]}', "evaluations: [e]"),
     r"evaluations: must map evaluation names"),
    (("evals: [e]}", "evals: [e], gpus: -1}"), r"gpus must be an integer in 0\.\.4096, got -1"),
    (("data: {imagenet: {}}", "data: {voc: {}}"), r"data: must include 'imagenet'"),
])
def test_validation_errors_name_file_and_entry(tmp_path, change, message):
    path = write(tmp_path, GOOD.replace(*change, 1))
    with pytest.raises(FastloadError, match=message) as err:
        load_plan(path)
    assert str(err.value).startswith(f"plan {path}: ")


@pytest.mark.parametrize("change, message", [
    (("name: t\n", "name: !!python/object/apply:os.system [echo pwned]\n"),
     r"not valid YAML at line 1, column 7: could not determine a constructor for the tag "),
    (("{labelset: full}", "{labelset: full, per_class: 99999999999999999999999}"),
     r"runs\[0\] \(a\)\.manifest: per_class must be a positive integer up to 2147483647 or unset, got 9999"),
    (("{labelset: full}", "{labelset: full, classes: -3}"), r"classes must be a positive integer"),
    (("evals: [e]}", "evals: [e], gpus: 99999999999999999999}"), r"gpus must be an integer in 0\.\.4096"),
    (("name: t\n", "name: t\ndefaults: {seeds: [-1]}\n"), r"defaults\.seeds: a seed must be an integer in 0\.\."),
    (("name: t\n", "name: t\ndefaults: {manifest_seed: abc}\n"), r"defaults\.manifest_seed: a seed must be"),
    (("{id: a,", "{id: '..',"), r"runs\[0\] \(\.\.\): run id '\.\.' starts with '\.'"),
    (("{id: a,", "{id: ../../x,"), r"run id '\.\./\.\./x' contains a path separator"),
    (("{id: a,", "{id: /abs,"), r"run id '/abs' contains a path separator"),
    (("  e: {kind", "  ../../x: {kind"), r"evaluations: evaluation name '\.\./\.\./x' contains a path separator"),
    (("evals: [e]", "evals: [e]"), None),
])
def test_hostile_plans_are_one_line_errors_and_run_nothing(tmp_path, change, message, capsys):
    path = write(tmp_path, GOOD.replace(*change, 1))
    if message is None:
        assert load_plan(path).runs[0].id == "a"
        return
    with pytest.raises(FastloadError, match=message) as err:
        load_plan(path)
    assert str(err.value).startswith(f"plan {path}: ") and "\n" not in str(err.value)
    assert "pwned" not in capsys.readouterr().out


def test_non_ascii_names_are_plain_names(tmp_path):
    plan = load_plan(write(tmp_path, GOOD.replace("{id: a,", "{id: caf\u00e9_\u6f22,", 1)))
    assert plan.runs[0].id == "caf\u00e9_\u6f22"


def test_not_yaml_and_unknown_plan(tmp_path):
    with pytest.raises(FastloadError, match="not valid YAML"):
        load_plan(write(tmp_path, "name: [unclosed"))
    with pytest.raises(UsageError, match="allowed: paper, demo or a YAML file"):
        load_plan("papr")


def test_data_roots(tmp_path):
    plan = load_plan("paper")
    for key in ROOTS:
        (tmp_path / key).mkdir()
    assert parse_data_roots([str(tmp_path)], plan)["voc"] == tmp_path / "voc"
    roots = parse_data_roots([str(tmp_path), f"sun={tmp_path / 'imagenet'}"], plan)
    assert roots["sun"] == tmp_path / "imagenet"
    with pytest.raises(UsageError, match="no root for voc, sun"):
        parse_data_roots([f"imagenet={tmp_path}"], plan)
    with pytest.raises(FastloadError, match="voc root .*/nothing does not exist"):
        parse_data_roots([str(tmp_path), f"voc={tmp_path / 'nothing'}"], plan)


def test_select_steps_pulls_in_dependencies():
    steps = build_steps(load_plan("paper"), ROOTS, "/r")
    picked = [s.id for s in select_steps(steps, ["sun_cls/top_down_127/seed1"])]
    assert picked == ["compile/imagenet", "compile/sun", "manifest/top_down_127", "pretrain/top_down_127",
                      "sun_cls/top_down_127/seed1"]   # SUN-CLS reads the compiled SUN397
    assert {s.id for s in select_steps(steps, ["pretrain/"])} == \
        {s.id for s in steps if s.kind in ("compile", "manifest", "pretrain")}
    with pytest.raises(UsageError, match="matches no step"):
        select_steps(steps, ["nothing"])


def test_expand_template():
    assert expand_template(["a", "{x}", "{y*}", "--z={x}"], {"x": 1, "y": ["p", "q"]}, "t") == \
        ["a", "1", "p", "q", "--z=1"]
    with pytest.raises(FastloadError, match=r"step s: unknown placeholder \{nope\}"):
        expand_template(["{nope}"], {"x": 1}, "step s")

"""Every step of the paper and demo plans parses with the real `fastload` command line (cli.build_parser), with
each flag spelled exactly as the CLI declares it: renaming a flag of any command a plan runs (imagenet-cls,
coarse-fine, transfer, ...) fails here instead of in the middle of `fastload reproduce`. The paper plan's ResNet
variants (`reproduce --arch`, fastload.plan.ARCH_VARIANTS) too."""
import argparse

import pytest

from fastload.cli import build_parser
from fastload.plan import ARCH_VARIANTS, KINDS, build_steps, load_plan
from fastload.resources import DATASETS_DIR

BREEDS_PLAN = str(DATASETS_DIR / "breeds_plan.yaml")  # coarse vs fine on BREEDS entity30, with the subpop kind
SUITE_PLAN = str(DATASETS_DIR / "suite_plan.yaml")
# (plan, --arch): the plans as written and the paper plan with each ResNet
PLANS = [("paper", None), ("demo", None)] + [("paper", arch) for arch in ARCH_VARIANTS]


@pytest.fixture(scope="module")
def parser():
    return build_parser()


def command_parser(parser, argv):
    """The (sub-)sub-parser that reads argv's options: `synth voc ...` goes two levels down."""
    p, i = parser, 0
    while i < len(argv):
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or argv[i] not in subs[0].choices:
            break
        p, i = subs[0].choices[argv[i]], i + 1
    return p


def cli_argv(step) -> list:
    """The step's command as the launcher runs it, with --resume (what {resume*} becomes after a crash)."""
    assert step.argv[0] == "fastload", f"{step.id} does not run the fastload CLI: {step.argv[:2]}"
    return ["--resume" if token == "{resume*}" else token for token in step.argv[1:]]


def problems(parser, step, capsys) -> list:
    """What is wrong with a step's command line: flags the command does not declare exactly (argparse would also
    accept an abbreviation of a renamed flag), or arguments it rejects."""
    argv = cli_argv(step)
    flags = {o for a in command_parser(parser, argv)._actions for o in a.option_strings}
    out = [f"{step.id}: {t} is not a flag of `fastload {argv[0]}`" for t in argv
           if t.startswith("--") and t.split("=")[0] not in flags]
    try:
        parser.parse_args(argv)
    except SystemExit:
        out.append(f"{step.id}: `fastload {' '.join(argv[:1])}` rejects its arguments: "
                   f"{capsys.readouterr().err.strip()}")
    return out


def plan_steps(name, tmp_path, arch=None):
    plan = load_plan(name, arch)
    return build_steps(plan, {k: tmp_path / k for k in plan.data}, tmp_path / "results", synth=name == "demo")


@pytest.mark.parametrize("plan_name, arch", PLANS)
def test_every_plan_step_parses_with_the_cli(plan_name, arch, parser, tmp_path, capsys):
    steps = plan_steps(plan_name, tmp_path, arch)
    found = [p for step in steps for p in problems(parser, step, capsys)]
    assert not found, "\n".join(found)
    kinds = {s.kind for s in steps}
    # every kind with a built-in command is exercised by the two plans together
    assert kinds >= {"compile", "manifest", "pretrain", "transfer", "imagenet_cls", "induction", "coarse_fine"} | \
        ({"synth"} if plan_name == "demo" else set())


def test_both_plans_cover_every_builtin_command(tmp_path, synthetic_breeds):
    kinds = {s.kind for name in ("paper", "demo", BREEDS_PLAN) for s in plan_steps(name, tmp_path)}
    assert kinds == {name for name, kind in KINDS.items() if kind.command}


def test_suite_plan_steps_parse_with_the_cli(parser, tmp_path, capsys):
    """datasets/suite_plan.yaml: each of the 12 datasets compiled once, then a probe (seeds grouped) and a
    fine-tuning per seed for every run, each reading its dataset's compiled folder."""
    from collections import Counter
    steps = plan_steps(SUITE_PLAN, tmp_path)
    found = [p for step in steps for p in problems(parser, step, capsys)]
    assert not found, "\n".join(found)
    runs = len(load_plan(SUITE_PLAN).runs)
    assert Counter(s.kind for s in steps) >= Counter(compile_cls=12, probe=12 * runs, finetune=3 * 12 * runs)
    probe = next(s for s in steps if s.id == "probe_voc07/random")
    beton_dir = probe.argv[probe.argv.index("--beton-dir") + 1]
    assert beton_dir.endswith("compiled/voc07") and "compile/voc07" in probe.deps
    assert probe.argv[probe.argv.index("--seeds") + 1:][:3] == ["0", "1", "2"]


@pytest.mark.parametrize("kind, flag, renamed", [
    ("imagenet_cls", "--beton-dir", "--beton-folder"),
    ("coarse_fine", "--labelset", "--label-set"),
    ("transfer", "--work-dir", "--workdir"),
    ("imagenet_cls", "--beton-dir", "--beton-d"),   # an abbreviation argparse accepts: still a mismatch
])
def test_a_renamed_flag_fails(kind, flag, renamed, parser, tmp_path, capsys):
    step = next(s for s in plan_steps("paper", tmp_path) if s.kind == kind)
    assert not problems(parser, step, capsys)
    step.argv = [renamed if token == flag else token for token in step.argv]
    found = problems(parser, step, capsys)
    assert found and renamed in found[0]


def cfg_option_keys(step) -> list:
    argv = step.argv
    start = argv.index("--cfg-options") + 1
    return [t.partition("=")[0] for t in argv[start:] if not t.startswith("--")]


def has_key(cfg, dotted: str) -> bool:
    node = cfg
    for part in dotted.split("."):
        if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif hasattr(node, "keys") and part in node:
            node = node[part]
        else:
            return False
    return True


@pytest.mark.parametrize("plan_name, arch", PLANS)
def test_transfer_overrides_name_keys_of_their_config(plan_name, arch, tmp_path):
    """A --cfg-options key the config does not have is a typo or a renamed setting: mmengine would add it silently."""
    config = pytest.importorskip("mmengine.config")
    seen = {}
    for step in plan_steps(plan_name, tmp_path, arch):
        if step.kind == "transfer" and step.argv[2] not in seen:
            seen[step.argv[2]] = cfg_option_keys(step)
    assert seen
    for path, keys in seen.items():
        cfg = config.Config.fromfile(path, import_custom_modules=False)
        missing = [k for k in keys if not has_key(cfg, k)]
        assert not missing, f"{path}: {missing} are not keys of the config"
        assert not has_key(cfg, keys[-1] + "_renamed")


def test_breeds_plan_steps_parse_with_the_cli(parser, tmp_path, capsys, synthetic_breeds):
    """datasets/breeds_plan.yaml: every step parses with the real CLI, the subpop steps name a BREEDS set, and the
    fine run's inline label-set spec labels the same classes as entity30 with one label each (on the synthetic
    BREEDS hierarchy of tests/breeds_fixture.py: 4 entity30 superclasses x 8 classes)."""
    from fastload.labelsets import resolve_label_set
    from fastload.resources import imagenet_wnids
    steps = plan_steps(BREEDS_PLAN, tmp_path)
    found = [p for step in steps for p in problems(parser, step, capsys)]
    assert not found, "\n".join(found)
    assert {s.kind for s in steps} >= {"compile", "manifest", "pretrain", "transfer", "imagenet_cls", "subpop"}
    subpop = [s for s in steps if s.kind == "subpop"]
    assert {s.argv[s.argv.index("--breeds") + 1] for s in subpop} == {"entity30", "living17"}
    manifests = {s.id: s.argv[s.argv.index("--labelset") + 1] for s in steps if s.kind == "manifest"}
    coarse = resolve_label_set(manifests["manifest/entity30"], imagenet_wnids())
    fine = resolve_label_set(manifests["manifest/entity30_fine"], imagenet_wnids())
    assert (coarse.num_labels, coarse.num_classes_kept) == (4, 32)
    assert (fine.num_labels, fine.num_classes_kept) == (32, 32)
    assert [lab is None for lab in fine.class_to_label] == [lab is None for lab in coarse.class_to_label]

"""An experiment plan: the paper's (or a user's) pre-training runs and evaluations as data, expanded into steps.

A plan is a YAML file (datasets/paper_plan.yaml, datasets/demo_plan.yaml, or your own) with these keys:

    name, description        free text
    manifests                the manifest list that run manifests name: 'paper' (datasets/paper_manifests.yaml,
                             the default) or a YAML path (relative to the plan file)
    data                     {key: {synth: [args], compile: {layout, args}}}: the data roots the plan reads
                             (imagenet, voc, sun, ...); `synth` gives the `fastload synth KEY` arguments the demo
                             uses when no --data is given; `compile` compiles that root once with
                             `fastload compile cls LAYOUT ROOT RESULTS/compiled/KEY ARGS` (LAYOUT a key of
                             fastload.transfer_data.LAYOUTS), which an evaluation reads with data_root "{compiled}"
    compile                  extra arguments for `fastload compile imagenet ROOT OUT`
    defaults                 recipe, gpus, seeds (transfer seeds), pretrain_args, manifest_seed
    evaluations              {name: {kind, label, seeds, gpus, args, metric, ...}}: `kind` is a key of KINDS below,
                             which also says which further keys the kind needs or accepts (EVAL_KEYS says what each
                             key means); `metric` (default: the kind's) is the dotted key of the step's result
                             holding the number the report shows. Every stored metric is a fraction in [0, 1];
                             the report shows percent.
    runs                     list of {id, manifest: NAME or {labelset, per_class, classes, budget, unit, seed},
                             recipe, gpus, pretrain_args, evals: [evaluation names], tags: {TAG: value}}; TAGS
                             lists the figures and tables a run can feed. A control run (`tags: {control: LABEL}`)
                             is the reference the report compares every other run with: for transfer from a
                             randomly initialised network, give it `pretrain_args: [--epochs, 0]`.
    commands                 optional {step kind: [argv template]}: replaces the built-in command of a kind
                             (a user's own tools, or the fake steps of the tests)

`load_plan(name, arch=...)` gives the same plan with another network (ARCH_VARIANTS: `fastload reproduce --arch`):
every run pre-trains with that network's recipe and every transfer uses that network's counterpart of its config.

`build_steps(plan, data_roots, results_dir)` turns it into the dependency graph
synth -> compile -> manifest -> pretrain -> evaluations, each step one command line. `write_steps` and
`read_steps_file` (or `read_steps` for the steps alone) are the one writer and the one reader of RESULTS/steps.json.
"""
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .beton import COMPILE_FILE, beton_name, index_name
from .errors import FastloadError, UsageError
from .files import check_plain_name, read_yaml, write_json
from .manifest import MAX_SEED, Selection, load_manifest_list
from .models.networks import NETWORKS, archs_of
from .resources import DATASETS_DIR, TRANSFER_CONFIGS_DIR

BUILTIN_PLANS = {"paper": "paper_plan.yaml", "demo": "demo_plan.yaml"}
MAX_GPUS = 4096  # GPUs per step: a bound that catches a typo'd count before a scheduler sees it
STEPS_FILE = "steps.json"
TOP_KEYS = {"name", "description", "manifests", "data", "compile", "defaults", "evaluations", "runs", "commands"}
DEFAULT_KEYS = {"recipe", "gpus", "seeds", "pretrain_args", "manifest_seed"}
RUN_KEYS = {"id", "manifest", "recipe", "gpus", "pretrain_args", "evals", "tags", "description"}
MANIFEST_KEYS = {"labelset", "per_class", "classes", "budget", "unit", "seed"}
# keys older plans had, and why they went
REMOVED_KEYS = {"scale": "every stored metric is a fraction now and the report shows percent: delete it",
                "std": "nothing read it: delete it"}

# What each evaluation key means (one meaning for every kind that takes it).
EVAL_KEYS = {
    "kind": "a key of KINDS", "label": "the report's name of the number", "seeds": "list of seeds",
    "gpus": "GPUs per step", "args": "extra command-line arguments", "metric": "dotted key of the result file",
    "config": "transfer config (a file in transfer/ or a path)", "data": "the data key it fine-tunes on",
    "data_root": "where the config's data_root points inside that key's folder (default '{root}'; '{compiled}': "
                 "the key's compile folder, when the plan compiles it)",
    "group_seeds": "run all seeds in one step (its result lists them)", "baseline": "run id of the reference model",
    "labelset": "label set (default: the run's own)", "command": "argv template", "result": "result file template",
}
COMMON_EVAL_KEYS = frozenset({"kind", "label", "seeds", "gpus", "args", "metric"})

# Tags: what a run feeds in the report, and what the tag's value is.
TAGS = {"fig1": "images per class (a number)", "fig2": "number of classes (a number)", "fig4": "bar label",
        "fig6": "the coarse label set shown", "fig9": "[split kind, A | B | A+B], or a list of them",
        "table1": "column label", "table2": "[row, column]", "table3": "column label",
        "control": "row label of the reference run (e.g. random init)"}
NUMERIC_TAGS = {"fig1", "fig2"}


@dataclass(frozen=True)
class Kind:
    """One kind of step, declared once: its command, its result, for an evaluation kind the keys it takes and how
    its number is read, how the launchers run it, how the dry run prices it and which part of the report shows it.
    Adding an evaluation kind is one entry of KINDS plus the command it runs (and, priced by 'estimate', its entry
    of reproduce.ESTIMATES: tests/test_dry_run_bounds.py fails for a kind without a price)."""
    command: tuple                       # argv template: "{name}" is a value, a token "{name*}" a list of arguments
    result: str = None                   # the file in the step's output folder holding its metrics (None: none)
    evaluation: bool = False             # may be the `kind` of a plan's evaluation
    required: frozenset = frozenset()    # evaluation keys it needs beyond COMMON_EVAL_KEYS
    allowed: frozenset = frozenset()     # evaluation keys it accepts beyond those
    metric: str = None                   # dotted key of the result holding its number (None: no single number)
    per_seed: str = None                 # with group_seeds, the result lists [{seed, value}] under this key
    baseline_metric: str = None          # dotted key of the baseline model's number on the same data, if any
    seeded: bool = False                 # one step per seed (else one step, no seed)
    gpus: int = 1                        # default GPUs of an evaluation step
    # how the launchers run it
    distributed: bool = False            # a step on several GPUs runs one process per GPU under torchrun
    fresh_out: bool = False              # its command wants an empty out folder: an earlier attempt's out is
                                         # deleted before it starts (never set aside)
    # how the dry run prices it: a key of reproduce.PRICERS. 'estimate': its kind's entry of reproduce.ESTIMATES;
    # 'config': its transfer config's protocol (reproduce.CONFIG_PROTOCOLS); 'images': pre-training images x
    # epochs at a pixel rate; 'measured': only the wall times of its done steps (a user's command). Measured wall
    # times of done steps of the same class replace an estimate.
    price: str = "estimate"
    # what the report does with it beyond its number
    trains: bool = False                 # trains the run's network: its number is the run's own (pre-training
                                         # top-1) and its arch the network of every number of the run
    report: str = None                   # the report section that reads its records (REPORT_SECTIONS)
    label: str = None                    # the report's name of the protocol (a transfer-suite kind)
    # how it follows the run's network
    network_free: bool = False           # its output is the same for every network (a manifest may be shared by
                                         # runs of several): the step records no arch
    # how `--arch` (with_arch) maps an evaluation of this kind to another network: 'config': its transfer config to
    # that network's counterpart (the network's plan variant); 'checkpoint': it reads the network, its feature
    # layer and crop from the checkpoint, so network-specific args are refused; None: a user's command, as written
    with_arch: str = "checkpoint"


# The report's sections that read the records of the kinds that name them (Kind.report), beyond the numbers table.
REPORT_SECTIONS = {"induction": "Figure 4 (induction accuracy per label set)",
                   "coarse_fine": "Figure 6 (coarse minus fine accuracy per class)",
                   "subpop": "the subpopulation-shift table (source and target top-1)",
                   "suite": "the transfer suite's figure and one table per protocol (Kind.label)"}


# "fastload" at the front of a command runs this Python's fastload CLI, "python" this Python.
KINDS = {
    "synth": Kind(("fastload", "synth", "{dataset}", "{out}", "{args*}"), fresh_out=True),
    "compile": Kind(("fastload", "compile", "imagenet", "{root}", "{out}", "{args*}"), result=COMPILE_FILE),
    # a transfer dataset compiled once (a plan's `data: {KEY: {compile: {layout, args}}}`), read by evaluations
    # whose data_root is "{compiled}"
    "compile_cls": Kind(("fastload", "compile", "cls", "{layout}", "{root}", "{out}", "{args*}"),
                        result=COMPILE_FILE),
    # a manifest named in the plan's manifest list (datasets/paper_manifests.yaml), or an inline selection
    "manifest": Kind(("fastload", "subset", "--index", f"{{compiled}}/{index_name('train')}", "{manifest_args*}"),
                     network_free=True),
    "pretrain": Kind(("fastload", "pretrain", "--recipe", "{recipe}", "--manifest", "{manifest}",
                      "--beton", f"{{compiled}}/{beton_name('train')}",
                      "--val-beton", f"{{compiled}}/{beton_name('val')}",
                      "--val-index", f"{{compiled}}/{index_name('val')}", "--out", "{out}", "{resume*}", "{args*}"),
                     result="summary.json", metric="top1", distributed=True, price="images", trains=True),
    "transfer": Kind(("fastload", "transfer", "{config}", "--checkpoint", "{checkpoint}", "--work-dir", "{out}",
                      "--seeds", "{seeds*}", "--cfg-options", "data_root={data_root}", "{args*}"),
                     result="summary.json", evaluation=True, required=frozenset({"config", "data"}),
                     allowed=frozenset({"data_root", "group_seeds"}), metric="mean", per_seed="runs", seeded=True,
                     price="config", with_arch="config"),
    "imagenet_cls": Kind(("fastload", "imagenet-cls", "--checkpoint", "{checkpoint}", "--beton-dir", "{compiled}",
                          "--seed", "{seed}", "--out", "{out}/summary.json", "{args*}"),
                         result="summary.json", evaluation=True, metric="top1", seeded=True),
    "induction": Kind(("fastload", "induction", "--checkpoint", "{checkpoint}", "--baseline", "{baseline}",
                       "--labelset", "{labelset}", "--beton-dir", "{compiled}", "--out", "{out}/summary.json",
                       "{args*}"),
                      result="summary.json", evaluation=True, required=frozenset({"baseline"}),
                      allowed=frozenset({"labelset"}), metric="model.top1", baseline_metric="baseline.top1",
                      report="induction"),
    "coarse_fine": Kind(("fastload", "coarse-fine", "--checkpoint", "{checkpoint}", "--labelset", "{labelset}",
                         "--beton-dir", "{compiled}", "--out", "{out}/coarse_fine.tsv", "{args*}"),
                        result="coarse_fine.tsv", evaluation=True, allowed=frozenset({"labelset"}),
                        report="coarse_fine"),
    # BREEDS subpopulation shift: new fc8 on a BREEDS set's source subclasses; the number is target top-1, the
    # report's subpop table shows source beside it ("--breeds NAME" goes in the evaluation's args)
    "subpop": Kind(("fastload", "subpop", "--checkpoint", "{checkpoint}", "--beton-dir", "{compiled}",
                    "--seed", "{seed}", "--out", "{out}/summary.json", "{args*}"),
                   result="summary.json", evaluation=True, metric="target_top1", seeded=True, report="subpop"),
    # the classification transfer suite (docs/suite.md) on a `compile cls` folder: data_root "{compiled}"
    "probe": Kind(("fastload", "suite", "probe", "--checkpoint", "{checkpoint}", "--beton-dir", "{data_root}",
                   "--out", "{out}", "--seeds", "{seeds*}", "{args*}"),
                  result="summary.json", evaluation=True, required=frozenset({"data"}),
                  allowed=frozenset({"data_root", "group_seeds"}), metric="mean", per_seed="runs", seeded=True,
                  report="suite", label="linear probe"),
    "finetune": Kind(("fastload", "suite", "finetune", "--checkpoint", "{checkpoint}", "--beton-dir", "{data_root}",
                      "--out", "{out}", "--seeds", "{seeds*}", "{args*}"),
                     result="summary.json", evaluation=True, required=frozenset({"data"}),
                     allowed=frozenset({"data_root", "group_seeds"}), metric="mean", per_seed="runs", seeded=True,
                     report="suite", label="fine-tuning"),
    # any command of the user's (an argv template in the evaluation's `command`)
    "shell": Kind((), result="summary.json", evaluation=True, required=frozenset({"command"}),
                  allowed=frozenset({"result", "group_seeds"}), metric="mean", per_seed="runs", seeded=True,
                  gpus=0, price="measured", with_arch=None),
}
EVAL_KINDS = sorted(k for k, kind in KINDS.items() if kind.evaluation)


# The networks a plan (any plan whose runs train an AlexNet recipe) can be run with in place of its AlexNet: those
# whose record has a plan variant (fastload.models.networks.NETWORKS: recipe, GPUs, transfer config counterparts),
# listed (`--arch` choices) from the largest pre-training setup down: ResNet-50 on 8 GPUs, then ResNet-18 on 1
ARCH_VARIANTS = {net.name: net for net in sorted((net for net in NETWORKS.values() if net.plan is not None),
                                                 key=lambda net: -net.plan.gpus)}
# how the report names the network a recipe trains (its `arch`)
ARCH_LABELS = {name: net.label for name, net in NETWORKS.items()}
# arguments that name a network's own parts: a plan written for AlexNet that sets them cannot be mapped
ARCH_SPECIFIC_ARGS = {"pretrain": ("--arch", "--init", "--dropout", "--blurpool"), "analysis": ("--layer",)}


@dataclass
class Evaluation:
    """One evaluation of a plan, checked against its kind."""
    name: str
    kind: str
    label: str
    seeds: list                 # [None] for a kind that is not seeded
    gpus: int
    args: list
    metric: str = None          # dotted key of the result holding the number (None: no single number)
    group_seeds: bool = False
    config: str = None
    data: str = None
    data_root: str = "{root}"
    baseline: str = None
    labelset: str = None
    command: list = None
    result: str = None


@dataclass
class Run:
    """One pre-training run and what follows it."""
    id: str
    manifest: object            # a name in the manifest list, or an inline selection {labelset, per_class, ...}
    labelset: str               # the label set it trains on (what induction and coarse/fine read by default)
    recipe: str
    gpus: int
    pretrain_args: list
    evals: list
    tags: dict
    description: str = ""


@dataclass
class Defaults:
    recipe: str = "paper"
    gpus: int = 1
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    pretrain_args: list = field(default_factory=list)
    manifest_seed: int = 0


@dataclass
class Plan:
    path: str
    name: str
    description: str
    manifests: str              # 'paper' or the manifest list's path
    data: dict                  # data key -> `fastload synth KEY` arguments
    compile_args: list
    defaults: Defaults
    evaluations: dict           # name -> Evaluation
    runs: list                  # of Run
    commands: dict              # step kind -> argv template
    arch: str = None            # the ARCH_VARIANTS key it was expanded for (`--arch`); None: its own recipes
    data_compile: dict = None   # data key -> {layout, args}: compiled once by a compile_cls step

    def run_ids(self) -> list:
        return [r.id for r in self.runs]

    def run(self, run_id: str) -> Run:
        return next(r for r in self.runs if r.id == run_id)

    def control(self):
        """The control run (tagged `control`), or None."""
        return next((r for r in self.runs if "control" in r.tags), None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        """The inverse of to_dict (as stored in steps.json)."""
        return cls(**{**d, "defaults": Defaults(**d["defaults"]),
                      "evaluations": {k: Evaluation(**e) for k, e in d["evaluations"].items()},
                      "runs": [Run(**r) for r in d["runs"]]})


@dataclass
class Step:
    """One command of the plan: what runs, what it needs first, and what it records."""
    id: str
    kind: str
    argv: list
    deps: list = field(default_factory=list)
    gpus: int = 0
    out: str = ""
    result: str = None          # JSON file with the step's metrics (None: the step has none)
    outputs: list = field(default_factory=list)   # files that must exist once it succeeded
    run: str = None
    evaluation: str = None
    recipe: str = None
    seed: int = None
    resume_file: str = None     # pretrain: when this exists at launch, "{resume*}" expands to --resume
    arch: str = None            # a run's steps: the network its recipe trains (None: a recipe fastload can't read)
    config: str = None          # a transfer step: the plan's config name (what the dry run prices it by)
    args: list = None           # the plan's extra arguments of the step (pretrain_args, an evaluation's args)
    manifest: str = None        # a pre-training step: the manifest file it trains on
    epochs: int = None          # a pre-training step: the --epochs of its args (None: its recipe's)
    selection: dict = None      # a manifest step: {per_class, classes, budget} it selects (None where unset)

    def fingerprint(self) -> str:
        """Identifies what the step computes: a plan change that alters its command re-runs it."""
        return hashlib.sha1(json.dumps([self.kind, self.argv], sort_keys=True).encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- loading and validation

def resolve_plan_path(name_or_path: str) -> Path:
    """'paper', 'demo' or a YAML file."""
    if name_or_path in BUILTIN_PLANS:
        return DATASETS_DIR / BUILTIN_PLANS[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise UsageError(f"--plan {name_or_path!r}: not a file and not a built-in plan "
                         f"(allowed: {', '.join(BUILTIN_PLANS)} or a YAML file)")
    return path


def load_plan(name_or_path: str, arch: str = None) -> Plan:
    """The plan; with `arch` (a key of ARCH_VARIANTS) the same plan with that network (`with_arch`)."""
    path = resolve_plan_path(name_or_path)
    raw = read_yaml(path, "plan")
    return with_arch(parse_plan(raw, str(path)), arch)


def with_arch(plan: Plan, arch: str = None) -> Plan:
    """The plan with network `arch` (ARCH_VARIANTS) in place of its AlexNet: named PLAN_ARCH, every run on the
    variant's recipe and GPUs, every transfer on the variant's counterpart of its config (which must exist now).
    Refused, naming the entry, where the plan cannot be mapped: a run that does not train an AlexNet recipe, an
    argument naming a part of AlexNet, a transfer config the table has no counterpart for."""
    if arch is None:
        return plan
    if arch not in ARCH_VARIANTS:
        raise UsageError(f"--arch {arch!r}: not a network the plans can be run with (allowed: "
                         f"{', '.join(ARCH_VARIANTS)}; without --arch: the plan's own recipes, AlexNet)")
    variant, label = ARCH_VARIANTS[arch].plan, ARCH_VARIANTS[arch].label
    for run in plan.runs:
        where = f"runs ({run.id})"
        _refuse_args(plan.path, f"{where}.pretrain_args", run.pretrain_args, ARCH_SPECIFIC_ARGS["pretrain"], arch)
        trained = recipe_arch(run.recipe, strict=True, where=f"plan {plan.path}: {where}")
        if trained not in archs_of("alexnet"):
            _fail(plan.path, where, f"--arch {arch}: its recipe {run.recipe!r} trains {trained}, not AlexNet: "
                                    "--arch maps a plan written for AlexNet")
    evaluations = {}
    for name, ev in plan.evaluations.items():
        where = f"evaluations.{name}"
        mapping = KINDS[ev.kind].with_arch
        if mapping == "config":
            if ev.config not in variant.configs:
                _fail(plan.path, f"{where}.config", f"--arch {arch}: {ev.config!r} has no {label} "
                                                    f"counterpart in fastload.models.networks.NETWORKS (mapped: "
                                                    f"{', '.join(variant.configs)})")
            mapped = TRANSFER_CONFIGS_DIR / variant.configs[ev.config]
            if not mapped.is_file():
                raise FastloadError(f"--arch {arch}: transfer config {mapped} does not exist (the {label} "
                                    f"counterpart of {ev.config}, evaluation {name} of plan {plan.path}; "
                                    "fastload.models.networks.NETWORKS)")
            ev = replace(ev, config=variant.configs[ev.config])
        elif mapping == "checkpoint":
            # the analyses take the network, its feature layer and its crop from the checkpoint
            _refuse_args(plan.path, f"{where}.args", ev.args, ARCH_SPECIFIC_ARGS["analysis"], arch)
        evaluations[name] = ev
    configs = sorted({ev.config for ev in evaluations.values() if KINDS[ev.kind].with_arch == "config"})
    note = (f"Here with {label} in place of AlexNet (`--arch {arch}`): every run pre-trains with "
            f"train/{variant.recipe}.yaml on {variant.gpus} GPU(s)"
            + (f"; transfers with {', '.join(configs)}" if configs else "")
            + f"; the analyses read {label}'s own feature layer. The paper's numbers are AlexNet's.")
    return replace(plan, name=f"{plan.name}_{arch}", arch=arch, evaluations=evaluations,
                   description=f"{plan.description.strip()}\n{note}".strip(),
                   runs=[replace(r, recipe=variant.recipe, gpus=variant.gpus) for r in plan.runs])


def _refuse_args(path, where, args, refused, arch):
    for a in args:
        if a.split("=")[0] in refused or a.startswith("arch="):
            _fail(path, where, f"--arch {arch}: {a!r} names a part of AlexNet (refused with --arch: "
                               f"{', '.join(refused)})")


def recipe_arch(recipe: str, pretrain_args=(), strict: bool = False, where: str = "") -> str:
    """The network a run trains: its recipe's `arch`, or the --arch / --set arch=... of its pre-training
    arguments. A recipe fastload cannot read (a plan's own pretrain command) is None, or refused when strict."""
    args = list(pretrain_args)
    for i, a in enumerate(args[:-1]):
        if a == "--arch" or (a == "--set" and args[i + 1].startswith("arch=")):
            return args[i + 1].split("=", 1)[-1] if a == "--set" else args[i + 1]
    from .recipe import load_recipe
    try:
        return load_recipe(recipe)["arch"]
    except UsageError as e:
        if strict:
            raise FastloadError(f"{where}: {e}") from None
        return None


def _fail(path, where, message):
    raise FastloadError(f"plan {path}: {where}: {message}")


def _check_keys(path, where, entry, allowed):
    if not isinstance(entry, dict):
        _fail(path, where, f"must be a mapping, got {type(entry).__name__}")
    for key in sorted(set(entry) & set(REMOVED_KEYS) - set(allowed)):
        _fail(path, f"{where}.{key}", f"the key '{key}' was removed: {REMOVED_KEYS[key]}")
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        _fail(path, where, f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def _check_args(path, where, value):
    if not isinstance(value, list) or not all(isinstance(a, (str, int, float)) for a in value):
        _fail(path, where, f"must be a list of command-line arguments, got {value!r}")
    return [str(a) for a in value]


def _check_gpus(path, where, value):
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_GPUS:
        _fail(path, where, f"gpus must be an integer in 0..{MAX_GPUS}, got {value!r}")
    return value


def _check_name(path, where, name, what):
    """A name that becomes a folder or file name under RESULTS (run id, evaluation, data key): one plain path
    component (fastload.files.check_plain_name)."""
    try:
        return check_plain_name(name, what)
    except FastloadError as e:
        _fail(path, where, str(e))


def _check_seed(path, where, value):
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEED:
        _fail(path, where, f"a seed must be an integer in 0..{MAX_SEED}, got {value!r}")
    return value


def parse_plan(raw, path: str = "<plan>") -> Plan:
    """Validate a plan mapping; every error names the file and the entry."""
    _check_keys(path, "top level", raw, TOP_KEYS)
    for key in ("name", "runs"):
        if key not in raw:
            _fail(path, "top level", f"missing required key '{key}'")
    data = _parse_data(path, raw.get("data") or {})
    defaults = _parse_defaults(path, raw.get("defaults") or {})
    if not isinstance(raw.get("evaluations") or {}, dict):
        _fail(path, "evaluations", "must map evaluation names to {kind, ...}")
    for name in raw.get("evaluations") or {}:
        _check_name(path, "evaluations", name, "evaluation name")
    evaluations = {name: _parse_evaluation(path, name, e, data, defaults)
                   for name, e in (raw.get("evaluations") or {}).items()}
    commands = _parse_commands(path, raw.get("commands") or {})
    manifests = _resolve_manifests(path, raw.get("manifests", "paper"))
    runs = _parse_runs(path, raw["runs"], evaluations, defaults, _manifest_labelsets(path, manifests))
    for name, e in evaluations.items():
        if e.baseline is not None and e.baseline not in {r.id for r in runs}:
            _fail(path, f"evaluations.{name}.baseline", f"run {e.baseline!r} is not in the plan's runs")
    if sum("control" in r.tags for r in runs) > 1:
        _fail(path, "runs", "more than one run is tagged 'control' (the report compares with one)")
    data_compile = _parse_data_compile(path, raw.get("data") or {})
    for name, e in evaluations.items():
        if "{compiled}" in e.data_root and e.data not in data_compile:
            _fail(path, f"evaluations.{name}.data_root", f"'{{compiled}}' needs data.{e.data}.compile "
                                                         "(the layout that compiles it)")
    return Plan(path=path, name=str(raw["name"]), description=str(raw.get("description", "")),
                manifests=manifests, data=data, data_compile=data_compile,
                compile_args=_check_args(path, "compile", raw.get("compile") or []), defaults=defaults,
                evaluations=evaluations, runs=runs, commands=commands)


def _parse_data(path, data):
    if not isinstance(data, dict):
        _fail(path, "data", "must map data keys (imagenet, voc, sun, ...) to {synth: [args]}")
    out = {}
    for key, spec in data.items():
        _check_name(path, "data", key, "data key")
        spec = spec or {}
        _check_keys(path, f"data.{key}", spec, {"synth", "compile"})
        out[key] = _check_args(path, f"data.{key}.synth", spec.get("synth") or [])
    if "imagenet" not in out:
        _fail(path, "data", "must include 'imagenet' (the pre-training data)")
    return out


def _parse_data_compile(path, data) -> dict:
    """data key -> {layout, args} for every data entry with a `compile` (a layout of transfer_data.LAYOUTS)."""
    from .transfer_data import LAYOUTS
    out = {}
    for key, spec in data.items():
        compile_spec = (spec or {}).get("compile")
        if compile_spec is None:
            continue
        where = f"data.{key}.compile"
        _check_keys(path, where, compile_spec, {"layout", "args"})
        if compile_spec.get("layout") not in LAYOUTS:
            _fail(path, f"{where}.layout", f"{compile_spec.get('layout')!r} is not a layout (allowed: "
                                           f"{', '.join(sorted(LAYOUTS))})")
        out[key] = {"layout": compile_spec["layout"],
                    "args": _check_args(path, f"{where}.args", compile_spec.get("args") or [])}
    return out


def _parse_defaults(path, d):
    _check_keys(path, "defaults", d, DEFAULT_KEYS)
    seeds = d.get("seeds", Defaults().seeds)
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        _fail(path, "defaults.seeds", f"must be a non-empty list of integers, got {seeds!r}")
    for seed in seeds:
        _check_seed(path, "defaults.seeds", seed)
    return Defaults(recipe=str(d.get("recipe", "paper")), gpus=_check_gpus(path, "defaults.gpus", d.get("gpus", 1)),
                    seeds=seeds, pretrain_args=_check_args(path, "defaults.pretrain_args", d.get("pretrain_args", [])),
                    manifest_seed=_check_seed(path, "defaults.manifest_seed", d.get("manifest_seed", 0)))


def _parse_evaluation(path, name, e, data, defaults) -> Evaluation:
    where = f"evaluations.{name}"
    if not isinstance(e, dict):
        _fail(path, where, f"must be a mapping, got {type(e).__name__}")
    kind_name = e.get("kind")
    if kind_name not in EVAL_KINDS:
        _fail(path, f"{where}.kind", f"{kind_name!r} is not a known kind (allowed: {', '.join(EVAL_KINDS)})")
    kind = KINDS[kind_name]
    _check_keys(path, where, e, COMMON_EVAL_KEYS | kind.required | kind.allowed)
    for key in sorted(kind.required - set(e)):
        _fail(path, where, f"a {kind_name} evaluation needs '{key}' ({EVAL_KEYS[key]})")
    if "data" in e and e["data"] not in data:
        _fail(path, f"{where}.data", f"{e['data']!r} is not a data key of the plan (allowed: {', '.join(data)})")
    seeds = e.get("seeds", defaults.seeds if kind.seeded else [None])
    if not isinstance(seeds, list) or not seeds:
        _fail(path, f"{where}.seeds", f"must be a non-empty list, got {seeds!r}")
    for seed in seeds:
        if seed is not None:
            _check_seed(path, f"{where}.seeds", seed)
    return Evaluation(name=name, kind=kind_name, label=str(e.get("label", name)), seeds=seeds,
                      gpus=_check_gpus(path, f"{where}.gpus", e.get("gpus", kind.gpus)),
                      args=_check_args(path, f"{where}.args", e.get("args", [])),
                      metric=str(e["metric"]) if "metric" in e else kind.metric,
                      group_seeds=bool(e.get("group_seeds", False)), config=e.get("config"), data=e.get("data"),
                      data_root=str(e.get("data_root", "{root}")), baseline=e.get("baseline"),
                      labelset=e.get("labelset"),
                      command=_check_args(path, f"{where}.command", e["command"]) if "command" in e else None,
                      result=e.get("result"))


def _parse_commands(path, commands):
    if not isinstance(commands, dict):
        _fail(path, "commands", "must map step kinds to argv templates")
    known = sorted(k for k, kind in KINDS.items() if kind.command)
    for kind in commands:
        if kind not in known:
            _fail(path, f"commands.{kind}", f"unknown step kind (allowed: {', '.join(known)})")
    return {kind: _check_args(path, f"commands.{kind}", argv) for kind, argv in commands.items()}


def _resolve_manifests(path, manifests) -> str:
    if manifests == "paper":
        return "paper"
    p = Path(str(manifests))
    if not p.is_absolute():
        p = Path(path).resolve().parent / p
    if not p.is_file():
        _fail(path, "manifests", f"{manifests!r} is neither 'paper' nor a file (looked for {p})")
    return str(p)


def _manifest_labelsets(path, manifests) -> dict:
    """name -> label set of every manifest in the plan's manifest list (the names runs may use)."""
    try:
        entries = load_manifest_list(manifests)
    except FastloadError as e:
        _fail(path, "manifests", str(e))
    return {name: selection.label_set for name, _, selection in entries}


def _parse_manifest(path, where, manifest, labelsets):
    """(the run's manifest spec, the label set it trains on)."""
    if isinstance(manifest, str):
        if manifest not in labelsets:
            _fail(path, f"{where}.manifest", f"{manifest!r} is not a manifest of the plan's manifest list "
                                             f"(known: {', '.join(sorted(labelsets))})")
        return manifest, str(labelsets[manifest])
    _check_keys(path, f"{where}.manifest", manifest or {}, MANIFEST_KEYS)
    spec = dict(manifest or {})
    try:  # the counts and seed are checked now, not when the step runs
        Selection(**{("label_set" if k == "labelset" else k): v for k, v in spec.items()})
    except (UsageError, TypeError) as e:
        _fail(path, f"{where}.manifest", str(e))
    return spec, str(spec.get("labelset", "full"))


def _check_tags(path, where, tags):
    if not isinstance(tags, dict):
        _fail(path, where, "must map a figure or table name to an x value or [row, column]")
    for tag, value in tags.items():
        if tag not in TAGS:
            _fail(path, f"{where}.{tag}", f"not a figure or table of the report "
                                          f"(known: {', '.join(f'{t} = {d}' for t, d in TAGS.items())})")
        if tag in NUMERIC_TAGS and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            _fail(path, f"{where}.{tag}", f"must be a number ({TAGS[tag]}), got {value!r}")
    return dict(tags)


def _parse_runs(path, runs, evaluations, defaults, labelsets):
    if not isinstance(runs, list) or not runs:
        _fail(path, "runs", "must be a non-empty list of pre-training runs")
    seen, out = set(), []
    for i, r in enumerate(runs):
        where = f"runs[{i}]" + (f" ({r.get('id')})" if isinstance(r, dict) and r.get("id") else "")
        _check_keys(path, where, r, RUN_KEYS)
        rid = r.get("id")
        _check_name(path, where, rid, "run id")  # RESULTS/runs/<id> is its pre-training's --out
        if rid in seen:
            _fail(path, where, f"id must be a unique name, {rid!r} appears twice")
        seen.add(rid)
        manifest, labelset = _parse_manifest(path, where, r.get("manifest") or {}, labelsets)
        evals = r.get("evals") or []
        for ev in evals:
            if ev not in evaluations:
                _fail(path, f"{where}.evals", f"{ev!r} is not defined under 'evaluations' "
                                              f"(defined: {', '.join(evaluations) or 'none'})")
        out.append(Run(id=rid, manifest=manifest, labelset=labelset, recipe=str(r.get("recipe", defaults.recipe)),
                       gpus=_check_gpus(path, f"{where}.gpus", r.get("gpus", defaults.gpus)),
                       pretrain_args=defaults.pretrain_args + _check_args(path, f"{where}.pretrain_args",
                                                                          r.get("pretrain_args", [])),
                       evals=list(evals), tags=_check_tags(path, f"{where}.tags", r.get("tags") or {}),
                       description=str(r.get("description", ""))))
    return out


# ---------------------------------------------------------------- data roots

def parse_data_roots(values, plan: Plan) -> dict:
    """--data DIR (holding imagenet/, voc/, sun/) or --data imagenet=PATH voc=PATH ...; checked against the plan."""
    roots = {}
    for value in values or []:
        if "=" in value:
            key, _, root = value.partition("=")
            roots[key] = Path(root).expanduser().resolve()
        else:
            base = Path(value).expanduser().resolve()
            roots.update({key: base / key for key in plan.data})
    missing = [k for k in plan.data if k not in roots]
    if missing:
        raise UsageError(f"--data: no root for {', '.join(missing)} (give --data DIR holding "
                         f"{'/, '.join(plan.data)}/ or --data KEY=PATH for each of {', '.join(plan.data)})")
    for key in plan.data:
        if not roots[key].exists():
            raise FastloadError(f"--data: {key} root {roots[key]} does not exist")
    return roots


# ---------------------------------------------------------------- expansion into steps

@dataclass
class _Where:
    """The folders the steps of one expansion read and write, and the plan's manifest list (read once)."""
    results: Path
    compiled: Path
    data_roots: dict
    synth: bool
    manifest_list: dict = None   # name -> Selection of the plan's manifest list


def compiled_data_dir(results: Path, key: str) -> Path:
    """Where a compile_cls step writes data key `key`'s betons."""
    return results / "compiled" / key


def manifest_step_id(run: Run) -> str:
    """Runs that name the same manifest of the list share its step; an inline selection is the run's own."""
    return f"manifest/{run.manifest if isinstance(run.manifest, str) else run.id}"


def manifest_args(plan: Plan, run: Run, manifest_dir: Path):
    """`fastload subset` arguments for a run's manifest, and the manifest file they write."""
    spec = run.manifest
    if isinstance(spec, str):
        return ["--manifests", plan.manifests, "--only", spec, "--out", str(manifest_dir)], manifest_dir / f"{spec}.npz"
    args = ["--labelset", str(spec.get("labelset", "full"))]
    for key in ("per_class", "classes", "budget", "unit"):
        if spec.get(key) is not None:
            args += ["--" + key.replace("_", "-"), str(spec[key])]
    out = manifest_dir / f"{run.id}.npz"
    return args + ["--seed", str(spec.get("seed", plan.defaults.manifest_seed)), "--out", str(out)], out


SELECTION_KEYS = ("per_class", "classes", "budget")   # what the dry run counts a manifest's images from


def manifest_selection(run: Run, manifest_list: dict) -> dict:
    """{per_class, classes, budget} of a run's manifest (None where unset): its inline selection, or its entry of
    the plan's manifest list (`manifest_list`: name -> Selection)."""
    if isinstance(run.manifest, str):
        return _selection_of_entry(manifest_list, run.manifest)
    return {key: run.manifest.get(key) for key in SELECTION_KEYS}


def _selection_of_entry(manifest_list: dict, name: str) -> dict:
    selection = manifest_list.get(name)
    return {key: None if selection is None else getattr(selection, key) for key in SELECTION_KEYS}


def read_manifest_list(manifests: str) -> dict:
    """name -> Selection of a manifest list ('paper' or a file)."""
    return {name: selection for name, _, selection in load_manifest_list(manifests)}


def option(argv: list, flag: str):
    """The value after the last `flag` in an argv, or None."""
    hits = [i for i, a in enumerate(argv[:-1]) if a == flag]
    return argv[hits[-1] + 1] if hits else None


def build_steps(plan: Plan, data_roots: dict, results_dir, synth: bool = False) -> list:
    """Every step of the plan in dependency order. With synth=True the data roots are first generated."""
    results = Path(results_dir).resolve()
    where = _Where(results, results / "compiled" / "imagenet", data_roots, synth, read_manifest_list(plan.manifests))
    steps = []
    if synth:
        steps += [_make(plan, "synth", f"synth/{key}", Path(data_roots[key]),
                        {"dataset": key, "out": data_roots[key], "args": plan.data[key]},
                        outputs=[str(data_roots[key])]) for key in plan.data]
    steps.append(_make(plan, "compile", "compile/imagenet", where.compiled,
                       {"root": data_roots["imagenet"], "out": where.compiled, "args": plan.compile_args},
                       deps=["synth/imagenet"] if synth else [], result_dir=where.compiled))
    for key, spec in (plan.data_compile or {}).items():
        out = compiled_data_dir(results, key)
        steps.append(_make(plan, "compile_cls", f"compile/{key}", out,
                           {"layout": spec["layout"], "root": data_roots[key], "out": out, "args": spec["args"]},
                           deps=[f"synth/{key}"] if synth else [], result_dir=out))
    for run in plan.runs:
        steps += _run_steps(plan, run, where, {s.id for s in steps})
    _check_graph(steps)
    return steps


def _run_steps(plan, run, where, existing):
    m_args, manifest = manifest_args(plan, run, where.results / "manifests")
    run_dir = where.results / "runs" / run.id
    checkpoint = run_dir / "last.pt"
    steps = []
    if manifest_step_id(run) not in existing:
        steps.append(_make(plan, "manifest", manifest_step_id(run), manifest,
                           {"compiled": where.compiled, "out": manifest, "manifest_args": m_args},
                           deps=["compile/imagenet"], outputs=[str(manifest)], run=run.id))
        steps[-1].selection = manifest_selection(run, where.manifest_list)
    pre = _make(plan, "pretrain", f"pretrain/{run.id}", run_dir,
                {"recipe": run.recipe, "manifest": manifest, "compiled": where.compiled, "out": run_dir,
                 "args": run.pretrain_args}, deps=[manifest_step_id(run)], outputs=[str(checkpoint)],
                result_dir=run_dir, run=run.id, gpus=run.gpus)
    pre.recipe, pre.resume_file = run.recipe, str(checkpoint)
    pre.args, pre.manifest = list(run.pretrain_args), str(manifest)
    pre.arch = recipe_arch(run.recipe, run.pretrain_args)
    pre.epochs = _epochs(option(run.pretrain_args, "--epochs"), f"plan {plan.path}: runs ({run.id}).pretrain_args")
    steps.append(pre)
    for ev_name in run.evals:
        ev = plan.evaluations[ev_name]
        # one step per seed (parallel Slurm jobs), or one step for all seeds (one process start: the CPU demo)
        for seeds in ([ev.seeds] if ev.group_seeds else [[seed] for seed in ev.seeds]):
            steps.append(_eval_step(plan, run, ev, seeds, where))
    for step in steps:
        if not KINDS[step.kind].network_free:
            step.arch = pre.arch      # the network each number of the run comes from
    return steps


def _eval_step(plan, run: Run, ev: Evaluation, seeds: list, where: _Where) -> Step:
    """The step of one evaluation of one run. Each evaluation key adds its placeholder (and dependency) the same
    way for every kind."""
    seed = seeds[0] if len(seeds) == 1 else None
    sid = f"{ev.name}/{run.id}" + (f"/seed{seed}" if seed is not None else "")
    out = where.results / "evals" / ev.name / run.id / (f"seed{seed}" if seed is not None else "")
    deps = [f"pretrain/{run.id}"]
    values = {"checkpoint": where.results / "runs" / run.id / "last.pt", "out": out,
              "seed": seed if seed is not None else "", "seeds": [s for s in seeds if s is not None],
              "compiled": where.compiled, "args": ev.args, "run_dir": where.results / "runs" / run.id,
              "labelset": ev.labelset or run.labelset}
    if ev.config:
        values["config"] = _config_path(ev.config)
    if ev.data:
        # e.g. "{root}/VOCdevkit/": where the config's data_root points inside the data key's folder
        compiled = compiled_data_dir(where.results, ev.data)
        values["data_root"] = ev.data_root.format(root=where.data_roots[ev.data], compiled=compiled)
        if "{compiled}" in ev.data_root:
            deps.append(f"compile/{ev.data}")
        elif where.synth:
            deps.append(f"synth/{ev.data}")
    if ev.baseline:
        values["baseline"] = where.results / "runs" / ev.baseline / "last.pt"
        if ev.baseline != run.id:
            deps.append(f"pretrain/{ev.baseline}")
    step = _make(plan, ev.kind, sid, out, values, deps=deps, result_dir=out, run=run.id, gpus=ev.gpus,
                 template=ev.command, result=ev.result)
    step.evaluation, step.seed, step.recipe = ev.name, seed, run.recipe
    step.config, step.args = ev.config, list(ev.args)
    return step


def _epochs(value, where: str):
    """The --epochs of pre-training arguments as a number (None when they set none)."""
    try:
        return None if value is None else int(value)
    except ValueError:
        raise FastloadError(f"{where}: --epochs must be a whole number, got {value!r}") from None


def _config_path(config: str) -> str:
    path = Path(config)
    if not path.is_absolute() and not path.exists():
        path = TRANSFER_CONFIGS_DIR / config
    return str(path)


def _make(plan, kind, sid, out, values, deps=(), outputs=(), result_dir=None, run=None, gpus=0,
          template=None, result=None):
    template = template or plan.commands.get(kind) or list(KINDS[kind].command)
    argv = expand_template(template, values, where=f"step {sid}")
    if result is not None:
        result_path = expand_template([result], values, where=f"step {sid} result")[0]
    elif result_dir is not None and KINDS[kind].result:
        result_path = str(Path(result_dir) / KINDS[kind].result)
    else:
        result_path = None
    return Step(id=sid, kind=kind, argv=argv, deps=list(deps), gpus=gpus, out=str(out), result=result_path,
                outputs=list(outputs), run=run)


def expand_template(template: list, values: dict, where: str) -> list:
    """Fill "{name}" placeholders; a token "{name*}" becomes a list of arguments ("{resume*}" is kept for launch)."""
    argv = []
    for token in template:
        if token.startswith("{") and token.endswith("*}"):
            key = token[1:-2]
            if key == "resume":
                argv.append(token)
                continue
            if key not in values:
                raise FastloadError(f"{where}: unknown placeholder {token} (known: "
                                    f"{', '.join(sorted(values))})")
            argv += [str(v) for v in values[key]]
            continue
        try:
            argv.append(token.format(**values))
        except KeyError as e:
            raise FastloadError(f"{where}: unknown placeholder {{{e.args[0]}}} in {token!r} (known: "
                                f"{', '.join(sorted(values))})") from None
    return argv


def _check_graph(steps):
    ids = {}
    for s in steps:
        if s.id in ids:
            raise FastloadError(f"plan expands to two steps named {s.id!r}")
        ids[s.id] = s
    for s in steps:
        for d in s.deps:
            if d not in ids:
                raise FastloadError(f"step {s.id} depends on {d!r}, which is not a step of the plan")


def select_steps(steps: list, only) -> list:
    """--only STEP...: those steps (an id, or a prefix such as 'pretrain/' or a run id) and what they need."""
    if not only:
        return steps
    by_id = {s.id: s for s in steps}
    wanted = set()
    for pattern in only:
        hits = [s.id for s in steps if s.id == pattern or s.id.startswith(pattern.rstrip("/") + "/")
                or pattern in s.id.split("/")]
        if not hits:
            raise UsageError(f"--only {pattern!r} matches no step (steps look like: "
                             f"{', '.join(s.id for s in steps[:6])}, ...)")
        wanted.update(hits)
    stack = list(wanted)
    while stack:
        for d in by_id[stack.pop()].deps:
            if d not in wanted:
                wanted.add(d)
                stack.append(d)
    return [s for s in steps if s.id in wanted]


# ---------------------------------------------------------------- the steps file

def write_steps(results_dir, plan: Plan, steps: list, data_roots: dict) -> Path:
    """RESULTS/steps.json: the expanded steps (what the launchers and Slurm jobs run), the plan they came from and
    the data roots (what the report reads). Returns its path."""
    return write_json(Path(results_dir) / STEPS_FILE,
                      {"plan": plan.to_dict(), "data_roots": {k: str(v) for k, v in data_roots.items()},
                       "steps": [s.to_dict() for s in steps]}, indent=1, default=str)


@dataclass
class StepsFile:
    plan: Plan
    steps: list


def read_steps_file(results_dir) -> StepsFile:
    """RESULTS/steps.json: the plan and the steps expanded from it."""
    path = Path(results_dir) / STEPS_FILE
    if not path.is_file():
        old = " (its plan.json is from an older fastload: rerun the same `fastload reproduce` command)" \
            if (Path(results_dir) / "plan.json").is_file() else ""
        raise FastloadError(f"{path} is missing: {results_dir} is not a folder written by `fastload reproduce`"
                            f"{old}")
    try:
        doc = json.loads(path.read_text())
        return StepsFile(Plan.from_dict(doc["plan"]),
                         [Step(**s) if "selection" in s else _step_from_older_file(s) for s in doc["steps"]])
    except (ValueError, KeyError, TypeError) as e:
        raise FastloadError(f"{path}: not a steps file written by this fastload ({type(e).__name__}: {e}); "
                            "rerun `fastload reproduce` with the same --out to rewrite it") from None


def _step_from_older_file(stored: dict) -> Step:
    """A step of a steps file written before Step carried what the dry run prices it by (epochs, selection; before
    that recipe, args, manifest): those read once from its argv here, the one place that parses a stored argv, so
    that the pricing reads fields only. Lenient: a value it cannot read stays None, as the launchers and the report
    (the readers of such a file) need none of them."""
    step = Step(**stored)
    fill = _OLDER_FILE_FIELDS.get(step.kind)
    if fill is not None:
        fill(step, step.argv)
    return step


def _whole_number(value):
    return int(value) if value is not None and value.isdigit() else None


def _pretrain_fields_from_argv(step: Step, argv: list) -> None:
    step.recipe = step.recipe or option(argv, "--recipe")
    step.manifest = step.manifest or option(argv, "--manifest")
    step.epochs = _whole_number(option(step.args if step.args is not None else argv, "--epochs"))


def _selection_from_argv(step: Step, argv: list) -> None:
    if option(argv, "--only"):   # an entry of the plan's manifest list
        try:
            entries = read_manifest_list(option(argv, "--manifests") or "paper")
        except FastloadError:    # a list since moved or changed: the selection stays unknown
            entries = {}
        step.selection = _selection_of_entry(entries, option(argv, "--only"))
    else:
        step.selection = {key: _whole_number(option(argv, "--" + key.replace("_", "-"))) for key in SELECTION_KEYS}


# step kind -> what fills its fields from the argv of an older steps file (manifest_args and KINDS["pretrain"]
# wrote those argvs)
_OLDER_FILE_FIELDS = {"pretrain": _pretrain_fields_from_argv, "manifest": _selection_from_argv}


def read_steps(results_dir) -> list:
    """The steps stored in RESULTS/steps.json."""
    return read_steps_file(results_dir).steps

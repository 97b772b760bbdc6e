"""An experiment plan: the paper's (or a user's) pre-training runs and evaluations as data, expanded into steps.

A plan is a YAML file (datasets/paper_plan.yaml, datasets/demo_plan.yaml, or your own) with these keys:

    name, description        free text
    manifests                the manifests file that run manifests name: 'paper' (datasets/paper_manifests.yaml,
                             the default) or a YAML path (relative to the plan file)
    data                     {key: {synth: [args]}}: the data roots the plan reads (imagenet, voc, sun, ...);
                             `synth` gives the `fastload synth KEY` arguments the demo uses when no --data is given
    compile                  extra arguments for `fastload compile imagenet ROOT OUT`
    defaults                 recipe, gpus, seeds (transfer seeds), pretrain_args, manifest_seed
    evaluations              {name: {kind, config, data, data_root, seeds, group_seeds, gpus, args, metric, scale,
                             label}}: group_seeds runs all seeds in one step (its result lists them under
                             `runs: [{seed, value}]`, as `fastload transfer` writes);
                             `metric` is the key (dotted path) of the step's result holding the number the
                             report shows, `scale` multiplies it (100 for a 0-1 metric shown in %)
    runs                     list of {id, manifest: NAME or {labelset, per_class, classes, budget, unit, seed},
                             recipe, gpus,
                             pretrain_args, evals: [evaluation names], tags: {figure/table: x or [row, col]}}
    commands                 optional {step kind: [argv template]}: replaces the built-in command of a kind
                             (a user's own tools, or the fake steps of the tests)

`build_steps(plan, data_roots, results_dir)` turns it into the dependency graph
synth -> compile -> manifest -> pretrain -> evaluations, each step one command line.
"""
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import FastloadError, UsageError
from .resources import DATASETS_DIR, TRANSFER_CONFIGS_DIR

BUILTIN_PLANS = {"paper": "paper_plan.yaml", "demo": "demo_plan.yaml"}
TOP_KEYS = {"name", "description", "manifests", "data", "compile", "defaults", "evaluations", "runs", "commands"}
DEFAULT_KEYS = {"recipe", "gpus", "seeds", "pretrain_args", "manifest_seed"}
RUN_KEYS = {"id", "manifest", "recipe", "gpus", "pretrain_args", "evals", "tags", "description"}
MANIFEST_KEYS = {"labelset", "per_class", "classes", "budget", "unit", "seed"}
EVAL_KINDS = {"transfer", "imagenet_cls", "induction", "coarse_fine", "shell"}
EVAL_KEYS = {"kind", "config", "data", "seeds", "gpus", "args", "metric", "std", "label", "baseline",
             "labelset", "command", "result", "scale", "data_root", "group_seeds"}
STEP_KINDS = {"synth", "compile", "manifest", "pretrain"} | EVAL_KINDS

# The built-in command of each step kind: an argv template. "{name}" is replaced by a value; a token that is
# exactly "{name*}" expands into a list of arguments. "fastload" at the front runs this Python's fastload CLI,
# "python" this Python.
DEFAULT_COMMANDS = {
    "synth": ["fastload", "synth", "{dataset}", "{out}", "{args*}"],
    "compile": ["fastload", "compile", "imagenet", "{root}", "{out}", "{args*}"],
    # a manifest named in the plan's manifests file (datasets/paper_manifests.yaml), or an inline selection
    "manifest": ["fastload", "subset", "--index", "{compiled}/train_index.npz", "{manifest_args*}"],
    "pretrain": ["fastload", "pretrain", "--recipe", "{recipe}", "--manifest", "{manifest}",
                 "--beton", "{compiled}/train.beton", "--val-beton", "{compiled}/val.beton",
                 "--val-index", "{compiled}/val_index.npz", "--out", "{out}", "{resume*}", "{args*}"],
    "transfer": ["fastload", "transfer", "{config}", "--checkpoint", "{checkpoint}", "--work-dir", "{out}",
                 "--seeds", "{seeds*}", "--cfg-options", "data_root={data_root}", "{args*}"],
    "imagenet_cls": ["fastload", "imagenet-cls", "--checkpoint", "{checkpoint}",
                     "--beton-dir", "{compiled}", "--seed", "{seed}", "--out", "{out}/summary.json", "{args*}"],
    "induction": ["fastload", "induction", "--checkpoint", "{checkpoint}", "--baseline", "{baseline}",
                  "--labelset", "{labelset}", "--beton-dir", "{compiled}", "--out", "{out}/summary.json", "{args*}"],
    "coarse_fine": ["fastload", "coarse-fine", "--checkpoint", "{checkpoint}", "--labelset", "{labelset}",
                    "--beton-dir", "{compiled}", "--out", "{out}/coarse_fine.tsv", "{args*}"],
}
# The JSON file each kind writes with its metrics (relative to the step's output folder), and files that must exist.
RESULT_FILES = {"synth": None, "compile": "compile.json", "manifest": None, "pretrain": "summary.json",
                "transfer": "summary.json", "imagenet_cls": "summary.json", "induction": "summary.json",
                "coarse_fine": "coarse_fine.tsv", "shell": "summary.json"}


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

    def fingerprint(self) -> str:
        """Identifies what the step computes: a plan change that alters its command re-runs it."""
        return hashlib.sha1(json.dumps([self.kind, self.argv], sort_keys=True).encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Plan:
    path: str
    name: str
    description: str
    manifests: str
    data: dict
    compile_args: list
    defaults: dict
    evaluations: dict
    runs: list
    commands: dict

    def run_ids(self) -> list:
        return [r["id"] for r in self.runs]


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


def load_plan(name_or_path: str) -> Plan:
    import yaml
    path = resolve_plan_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise FastloadError(f"plan {path}: not valid YAML: {e}") from None
    return parse_plan(raw, str(path))


def _fail(path, where, message):
    raise FastloadError(f"plan {path}: {where}: {message}")


def _check_keys(path, where, entry, allowed):
    if not isinstance(entry, dict):
        _fail(path, where, f"must be a mapping, got {type(entry).__name__}")
    unknown = sorted(set(entry) - allowed)
    if unknown:
        _fail(path, where, f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def _check_args(path, where, value):
    if not isinstance(value, list) or not all(isinstance(a, (str, int, float)) for a in value):
        _fail(path, where, f"must be a list of command-line arguments, got {value!r}")
    return [str(a) for a in value]


def _check_gpus(path, where, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        _fail(path, where, f"gpus must be an integer >= 0, got {value!r}")
    return value


def parse_plan(raw, path: str = "<plan>") -> Plan:
    """Validate a plan mapping; every error names the file and the entry."""
    _check_keys(path, "top level", raw, TOP_KEYS)
    for key in ("name", "runs"):
        if key not in raw:
            _fail(path, "top level", f"missing required key '{key}'")
    data = _parse_data(path, raw.get("data") or {})
    defaults = _parse_defaults(path, raw.get("defaults") or {})
    evaluations = {name: _parse_evaluation(path, name, e, data, defaults)
                   for name, e in (raw.get("evaluations") or {}).items()}
    commands = _parse_commands(path, raw.get("commands") or {})
    manifests = _resolve_manifests(path, raw.get("manifests", "paper"))
    runs = _parse_runs(path, raw["runs"], evaluations, defaults, _manifest_names(path, manifests))
    for name, e in evaluations.items():
        if e.get("baseline") is not None and e["baseline"] not in {r["id"] for r in runs}:
            _fail(path, f"evaluations.{name}.baseline", f"run {e['baseline']!r} is not in the plan's runs")
    return Plan(path=path, name=str(raw["name"]), description=str(raw.get("description", "")),
                manifests=manifests, data=data,
                compile_args=_check_args(path, "compile", raw.get("compile") or []), defaults=defaults,
                evaluations=evaluations, runs=runs, commands=commands)


def _parse_data(path, data):
    if not isinstance(data, dict):
        _fail(path, "data", "must map data keys (imagenet, voc, sun, ...) to {synth: [args]}")
    out = {}
    for key, spec in data.items():
        spec = spec or {}
        _check_keys(path, f"data.{key}", spec, {"synth"})
        out[key] = {"synth": _check_args(path, f"data.{key}.synth", spec.get("synth") or [])}
    if "imagenet" not in out:
        _fail(path, "data", "must include 'imagenet' (the pre-training data)")
    return out


def _parse_defaults(path, d):
    _check_keys(path, "defaults", d, DEFAULT_KEYS)
    seeds = d.get("seeds", [0, 1, 2])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        _fail(path, "defaults.seeds", f"must be a non-empty list of integers, got {seeds!r}")
    return {"recipe": str(d.get("recipe", "paper")), "gpus": _check_gpus(path, "defaults.gpus", d.get("gpus", 1)),
            "seeds": seeds, "pretrain_args": _check_args(path, "defaults.pretrain_args", d.get("pretrain_args", [])),
            "manifest_seed": int(d.get("manifest_seed", 0))}


def _parse_evaluation(path, name, e, data, defaults):
    where = f"evaluations.{name}"
    _check_keys(path, where, e, EVAL_KEYS)
    kind = e.get("kind")
    if kind not in EVAL_KINDS:
        _fail(path, f"{where}.kind", f"{kind!r} is not a known kind (allowed: {', '.join(sorted(EVAL_KINDS))})")
    if kind == "transfer":
        if not e.get("config"):
            _fail(path, where, "a transfer evaluation needs 'config' (a file in transfer/)")
        if e.get("data") not in data:
            _fail(path, f"{where}.data", f"{e.get('data')!r} is not a data key of the plan "
                                         f"(allowed: {', '.join(data)})")
    if kind == "induction" and not e.get("baseline"):
        _fail(path, where, "an induction evaluation needs 'baseline' (the run id of the 1000-class model)")
    if kind == "shell" and not e.get("command"):
        _fail(path, where, "a shell evaluation needs 'command' (an argv template)")
    seeds = e.get("seeds", defaults["seeds"] if kind in ("transfer", "imagenet_cls", "shell") else [None])
    if not isinstance(seeds, list) or not seeds:
        _fail(path, f"{where}.seeds", f"must be a non-empty list, got {seeds!r}")
    return {"kind": kind, "config": e.get("config"), "data": e.get("data"), "seeds": seeds,
            "gpus": _check_gpus(path, f"{where}.gpus", e.get("gpus", 1 if kind != "shell" else 0)),
            "args": _check_args(path, f"{where}.args", e.get("args", [])),
            "metric": str(e.get("metric", "mean")), "std": e.get("std"), "label": str(e.get("label", name)),
            "baseline": e.get("baseline"), "labelset": e.get("labelset"),
            "command": _check_args(path, f"{where}.command", e["command"]) if e.get("command") else None,
            "result": e.get("result"), "scale": float(e.get("scale", 1.0)),
            "data_root": str(e.get("data_root", "{root}")), "group_seeds": bool(e.get("group_seeds", False))}


def _parse_commands(path, commands):
    if not isinstance(commands, dict):
        _fail(path, "commands", "must map step kinds to argv templates")
    for kind in commands:
        if kind not in STEP_KINDS - {"shell"}:
            _fail(path, f"commands.{kind}", f"unknown step kind (allowed: "
                                            f"{', '.join(sorted(STEP_KINDS - {'shell'}))})")
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


def _manifest_names(path, manifests) -> set:
    """The names a plan's runs may use as `manifest: NAME`."""
    import yaml
    file = DATASETS_DIR / "paper_manifests.yaml" if manifests == "paper" else Path(manifests)
    try:
        raw = yaml.safe_load(file.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        _fail(path, "manifests", f"cannot read manifests file {file}: {e}")
    entries = raw.get("manifests") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        _fail(path, "manifests", f"{file} has no 'manifests' list")
    return {str(e.get("name")) for e in entries if isinstance(e, dict)}


def _check_manifest(path, where, manifest, names):
    if isinstance(manifest, str):
        if manifest not in names:
            _fail(path, f"{where}.manifest", f"{manifest!r} is not a manifest of the plan's manifests file "
                                             f"(known: {', '.join(sorted(names))})")
        return manifest
    _check_keys(path, f"{where}.manifest", manifest or {}, MANIFEST_KEYS)
    return dict(manifest or {})


def _parse_runs(path, runs, evaluations, defaults, manifest_names):
    if not isinstance(runs, list) or not runs:
        _fail(path, "runs", "must be a non-empty list of pre-training runs")
    seen, out = set(), []
    for i, r in enumerate(runs):
        where = f"runs[{i}]" + (f" ({r.get('id')})" if isinstance(r, dict) and r.get("id") else "")
        _check_keys(path, where, r, RUN_KEYS)
        rid = r.get("id")
        if not isinstance(rid, str) or not rid or "/" in rid or rid in seen:
            _fail(path, where, f"id must be a unique non-empty name without '/', got {rid!r}")
        seen.add(rid)
        manifest = _check_manifest(path, where, r.get("manifest") or {}, manifest_names)
        evals = r.get("evals") or []
        for ev in evals:
            if ev not in evaluations:
                _fail(path, f"{where}.evals", f"{ev!r} is not defined under 'evaluations' "
                                              f"(defined: {', '.join(evaluations) or 'none'})")
        tags = r.get("tags") or {}
        if not isinstance(tags, dict):
            _fail(path, f"{where}.tags", "must map a figure or table name to an x value or [row, column]")
        out.append({"id": rid, "manifest": manifest, "recipe": str(r.get("recipe", defaults["recipe"])),
                    "gpus": _check_gpus(path, f"{where}.gpus", r.get("gpus", defaults["gpus"])),
                    "pretrain_args": defaults["pretrain_args"] + _check_args(path, f"{where}.pretrain_args",
                                                                            r.get("pretrain_args", [])),
                    "evals": list(evals), "tags": tags, "description": str(r.get("description", ""))})
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

def manifest_args(plan: Plan, spec, manifest_dir: Path, run_id: str):
    """`fastload subset` arguments for a run's manifest, and the manifest file they write."""
    if isinstance(spec, str):
        return ["--plan", plan.manifests, "--only", spec, "--out", str(manifest_dir)], manifest_dir / f"{spec}.npz"
    args = ["--labelset", str(spec.get("labelset", "full"))]
    for key in ("per_class", "classes", "budget", "unit"):
        if spec.get(key) is not None:
            args += ["--" + key.replace("_", "-"), str(spec[key])]
    out = manifest_dir / f"{run_id}.npz"
    return args + ["--seed", str(spec.get("seed", plan.defaults["manifest_seed"])), "--out", str(out)], out


def build_steps(plan: Plan, data_roots: dict, results_dir, synth: bool = False) -> list:
    """Every step of the plan in dependency order. With synth=True the data roots are first generated."""
    results = Path(results_dir).resolve()
    steps = []
    if synth:
        steps += [_synth_step(plan, key, data_roots[key], results) for key in plan.data]
    compiled = results / "compiled" / "imagenet"
    steps.append(_make(plan, "compile", "compile/imagenet", compiled, {"root": data_roots["imagenet"],
                       "out": compiled, "args": plan.compile_args},
                       deps=["synth/imagenet"] if synth else [], result_dir=compiled))
    runs_by_id = {r["id"]: r for r in plan.runs}
    for run in plan.runs:
        steps += _run_steps(plan, run, runs_by_id, data_roots, results, compiled, synth)
    _check_graph(steps)
    return steps


def _synth_step(plan, key, root, results):
    return _make(plan, "synth", f"synth/{key}", Path(root), {"dataset": key, "out": root,
                 "args": plan.data[key]["synth"]}, outputs=[str(root)])


def _run_steps(plan, run, runs_by_id, data_roots, results, compiled, synth):
    rid = run["id"]
    m_args, manifest = manifest_args(plan, run["manifest"], results / "manifests", rid)
    run_dir = results / "runs" / rid
    checkpoint = run_dir / "last.pt"
    steps = [_make(plan, "manifest", f"manifest/{rid}", manifest,
                   {"compiled": compiled, "out": manifest, "manifest_args": m_args},
                   deps=["compile/imagenet"], outputs=[str(manifest)], run=rid)]
    pre = _make(plan, "pretrain", f"pretrain/{rid}", run_dir,
                {"recipe": run["recipe"], "manifest": manifest, "compiled": compiled, "out": run_dir,
                 "args": run["pretrain_args"]}, deps=[f"manifest/{rid}"], outputs=[str(checkpoint)],
                result_dir=run_dir, run=rid, gpus=run["gpus"])
    pre.recipe, pre.resume_file = run["recipe"], str(checkpoint)
    steps.append(pre)
    for ev_name in run["evals"]:
        ev = plan.evaluations[ev_name]
        # one step per seed (parallel Slurm jobs), or one step for all seeds (one process start: the CPU demo)
        for seeds in ([ev["seeds"]] if ev["group_seeds"] else [[seed] for seed in ev["seeds"]]):
            steps.append(_eval_step(plan, run, ev_name, ev, seeds, runs_by_id, data_roots, results, compiled,
                                    synth))
    return steps


def _eval_step(plan, run, ev_name, ev, seeds, runs_by_id, data_roots, results, compiled, synth):
    rid = run["id"]
    seed = seeds[0] if len(seeds) == 1 else None
    sid = f"{ev_name}/{rid}" + (f"/seed{seed}" if seed is not None else "")
    out = results / "evals" / ev_name / rid / (f"seed{seed}" if seed is not None else "")
    checkpoint = results / "runs" / rid / "last.pt"
    deps = [f"pretrain/{rid}"]
    values = {"checkpoint": checkpoint, "out": out, "seed": seed if seed is not None else "",
              "seeds": [s for s in seeds if s is not None],
              "compiled": compiled, "args": ev["args"], "run_dir": results / "runs" / rid,
              "labelset": ev["labelset"] or run_labelset(plan, run)}
    if ev["kind"] == "transfer":
        values["config"] = _config_path(ev["config"])
        # e.g. "{root}/VOCdevkit/": where the config's data_root points inside the data key's folder
        values["data_root"] = ev["data_root"].format(root=data_roots[ev["data"]])
        if synth:
            deps.append(f"synth/{ev['data']}")
    if ev["kind"] == "induction":
        values["baseline"] = results / "runs" / ev["baseline"] / "last.pt"
        if ev["baseline"] != rid:
            deps.append(f"pretrain/{ev['baseline']}")
    template = ev["command"] if ev["kind"] == "shell" else None
    step = _make(plan, ev["kind"], sid, out, values, deps=deps, result_dir=out, run=rid, gpus=ev["gpus"],
                 template=template, result=ev["result"])
    step.evaluation, step.seed, step.recipe = ev_name, seed, run["recipe"]
    return step


def run_labelset(plan: Plan, run: dict) -> str:
    """The label set a run was trained on (what induction evaluates against)."""
    spec = run["manifest"]
    if isinstance(spec, dict):
        return str(spec.get("labelset", "full"))
    import yaml
    file = DATASETS_DIR / "paper_manifests.yaml" if plan.manifests == "paper" else Path(plan.manifests)
    for entry in (yaml.safe_load(file.read_text()) or {}).get("manifests", []):
        if entry.get("name") == spec:
            # as the manifest has it (FAMILY@K: the family's step nearest K/1000 of the dataset's classes)
            return str(entry.get("label_set", "full"))
    raise FastloadError(f"manifest {spec!r} vanished from {file}")


def _config_path(config: str) -> str:
    path = Path(config)
    if not path.is_absolute() and not path.exists():
        path = TRANSFER_CONFIGS_DIR / config
    return str(path)


def _make(plan, kind, sid, out, values, deps=(), outputs=(), result_dir=None, run=None, gpus=0,
          template=None, result=None):
    template = template or plan.commands.get(kind) or DEFAULT_COMMANDS[kind]
    values = {k: v for k, v in values.items()}
    argv = expand_template(template, values, where=f"step {sid}")
    if result is not None:
        result_path = expand_template([result], values, where=f"step {sid} result")[0]
    elif result_dir is not None and RESULT_FILES[kind]:
        result_path = str(Path(result_dir) / RESULT_FILES[kind])
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
            argv.append(token.format(**{k: v for k, v in values.items()}))
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

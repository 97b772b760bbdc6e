"""`fastload report RESULTS`: report.md with the paper's figures and tables, reproduced next to published numbers.

Reads only RESULTS/steps.json through the plan module (the plan: which run feeds which figure or table, through
each run's `tags`), RESULTS/results.jsonl (the store: each step's metrics; a record counts when its step is in the
steps file with the same command) and datasets/paper_results.yaml (the published numbers).
Stored metrics are fractions; the report shows them in percent (mAP, accuracy and top-1 alike), to 2 decimals.
Numbers: the mean over seeds with the sample standard deviation and the number of seeds, "mean ± std (n)".
Differences between two runs are paired by seed where both have the same seeds (else unpaired, with the combined
std sqrt(std_a² + std_b²)); a difference whose |mean| is below its std is marked "within noise".
"""
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from .errors import FastloadError
from .files import atomic_path, write_text
from .plan import ARCH_LABELS, KINDS, read_steps_file
from .resources import dataset_file
from .store import ResultsStore

PRETRAIN = "pretrain_top1"   # pseudo-evaluation: the pre-training run's own val top-1
# figure id (a plan tag) -> (kind, title, x label)
FIGURES = {
    "fig1": ("line", "Figure 1: performance versus pre-training images per class", "images per class"),
    "fig2": ("line", "Figure 2: performance versus number of pre-training classes", "number of classes"),
    "fig4": ("induction", "Figure 4: induction accuracy on classes unseen as labels (fc7 nearest neighbours)", ""),
    "fig6": ("coarse_fine", "Figure 6: coarse-class minus fine-class accuracy (1000-class model)", ""),
    "fig9": ("bars", "Figure 9: random and minimal splits A, B and A+B (last-layer fine-tuning)", ""),
}
# table id (a plan tag) -> (kind, title)
TABLES = {
    "table1": ("columns", "Table 1: 1000 fine classes versus 127 coarse classes"),
    "table2": ("grid", "Table 2: a fixed budget of images: more classes or more images per class"),
    "table3": ("columns", "Table 3: pre-training without the PASCAL classes"),
}
PAPER_UNIT = "percent"       # datasets/paper_results.yaml holds the numbers as the paper prints them
PAPER_ARCH = "AlexNet"       # the network of every number the paper publishes (Huh et al. 2016, Section 2)
PAPER_KEYS = {"source", "unit", "values", "differences", "paper_only"}
PAPER_ENTRY_KEYS = {"value", "std", "source", "note", "approximate"}
PAPER_DIFFERENCE_KEYS = {"evaluation", "run", "baseline", "paper"} | PAPER_ENTRY_KEYS - {"value"}
NOISE = "within noise"


# ---------------------------------------------------------------- collecting numbers

def dig(metrics, path: str):
    """metrics['a']['b'] for path 'a.b'; None when absent or not a number."""
    value = metrics
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _reading(plan, rec, baseline: bool):
    """(evaluation name, metric key, per-seed list key) of a record's number, or None when it has none."""
    own = KINDS.get(rec["kind"])
    if own is not None and own.trains:   # the run's own number: the pseudo-evaluation PRETRAIN
        return None if baseline else (PRETRAIN, own.metric, None)
    ev = plan.evaluations.get(rec.get("evaluation"))
    if ev is None or ev.metric is None:
        return None
    kind = KINDS[ev.kind]
    if baseline:
        return None if kind.baseline_metric is None else (ev.name, kind.baseline_metric, None)
    return ev.name, ev.metric, kind.per_seed


def collect(plan, done: list, baseline: bool = False) -> dict:
    """(run id, evaluation) -> {seed: value} from the store's 'done' records; with baseline=True the baseline
    model's number on the same data (induction's `baseline.top1`)."""
    out = {}
    for rec in done:
        reading, run = _reading(plan, rec, baseline), rec.get("run")
        if reading is None or run is None:
            continue
        name, metric, per_seed = reading
        metrics = rec.get("metrics") or {}
        if rec.get("seed") is None and per_seed and isinstance(metrics.get(per_seed), list):
            # one step ran several seeds: {runs: [{seed, value}]}
            for r in metrics[per_seed]:
                if isinstance(r, dict) and isinstance(r.get("value"), (int, float)):
                    out.setdefault((run, name), {})[r.get("seed")] = float(r["value"])
            continue
        value = dig(metrics, metric)
        if value is not None:
            out.setdefault((run, name), {})[rec.get("seed")] = value
    return out


def stats(values: dict):
    """(mean, std, n) of {seed: value}; std is the sample std (0 for one value)."""
    if not values:
        return None
    v = np.array(list(values.values()), dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def difference(a: dict, b: dict):
    """(mean, std, n) of a - b: paired by seed when the seeds agree, else the difference of the means with the
    combined std sqrt(std_a² + std_b²) and n the smaller seed count."""
    if not a or not b:
        return None
    common = sorted(set(a) & set(b), key=str)
    if common and len(common) == len(a) == len(b):
        return stats({s: a[s] - b[s] for s in common})
    (ma, sa, na), (mb, sb, nb) = stats(a), stats(b)
    return ma - mb, math.sqrt(sa ** 2 + sb ** 2), min(na, nb)


def noise_note(diff) -> str:
    """'within noise' when |mean| < std; with one seed on a side the spread is unknown."""
    if diff is None:
        return ""
    mean, std, n = diff
    if n < 2:
        return "1 seed: spread unknown"
    return NOISE if abs(mean) < std else ""


def pct(value: float) -> str:
    return f"{100 * value:.2f}"


def fmt(stat) -> str:
    """'mean ± std (n)' in percent; the value alone for one seed."""
    if stat is None:
        return "—"
    mean, std, n = stat
    return f"{pct(mean)} ± {pct(std)} ({n})" if n > 1 else pct(mean)


def fmt_diff(diff) -> str:
    note = noise_note(diff)
    return fmt(diff) + (f", {note}" if note else "")


# ---------------------------------------------------------------- inputs

def load_inputs(results_dir):
    """(plan, done records of the current steps, failed records, records left out, paper numbers, Sources)."""
    results = Path(results_dir)
    steps_file = read_steps_file(results)
    fingerprints = {s.id: s.fingerprint() for s in steps_file.steps}
    store = ResultsStore(results)
    all_done = store.done()
    done = [r for step, r in all_done.items() if r.get("fingerprint") == fingerprints.get(step)]
    failed = [r for step, r in store.latest().items()
              if r["status"] == "failed" and step in fingerprints and step not in all_done]
    return (steps_file.plan, done, failed, len(all_done) - len(done), load_paper_results(),
            sources_of(steps_file.plan, steps_file.steps))


def load_paper_results(path=None) -> dict:
    """datasets/paper_results.yaml: {source, unit, values: {evaluation: {run: entry}}, differences: [entry],
    paper_only}; an entry is a number or {value, std, source, note, approximate}."""
    path = Path(path) if path else dataset_file("paper_results.yaml")
    try:
        paper = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise FastloadError(f"{path}: not valid YAML: {e}") from None
    _check_paper_keys(path, "top level", paper, PAPER_KEYS)
    if paper.get("unit") != PAPER_UNIT:
        raise FastloadError(f"{path}: 'unit' must be {PAPER_UNIT!r} (the paper's own numbers), "
                            f"got {paper.get('unit')!r}")
    paper.setdefault("values", {})
    paper.setdefault("differences", [])
    paper.setdefault("paper_only", {})
    for evaluation, runs in paper["values"].items():
        for run, entry in (runs or {}).items():
            if isinstance(entry, dict):
                _check_paper_keys(path, f"values.{evaluation}.{run}", entry, PAPER_ENTRY_KEYS)
    for d in paper["differences"]:
        if not isinstance(d, dict) or not {"evaluation", "run", "baseline", "paper"} <= set(d):
            raise FastloadError(f"{path}: a difference needs evaluation, run, baseline and paper, got {d!r}")
        _check_paper_keys(path, f"difference {d['evaluation']}/{d['run']}", d, PAPER_DIFFERENCE_KEYS)
    return paper


def _check_paper_keys(path, where, entry, allowed):
    unknown = sorted(set(entry) - allowed) if isinstance(entry, dict) else ["<not a mapping>"]
    if unknown:
        raise FastloadError(f"{path}: {where}: unknown key(s) {', '.join(map(str, unknown))} "
                            f"(allowed: {', '.join(sorted(allowed))})")


def paper_entry(entry):
    """A paper number as {value, std, source, note, approximate} (None when the paper states none)."""
    if entry is None:
        return None
    if isinstance(entry, dict):
        return {"std": None, "source": "", "note": "", "approximate": False, **entry}
    return {"value": float(entry), "std": None, "source": "", "note": "", "approximate": False}


def paper_value(paper, evaluation, run):
    return paper_entry((paper["values"].get(evaluation) or {}).get(run))


def fmt_paper(entry) -> str:
    """The paper's number as it prints it, with its ± where it has one."""
    if entry is None:
        return "—"
    text = ("≈ " if entry["approximate"] else "") + f"{entry['value']:g}"
    return text + (f" ± {entry['std']:g}" if entry["std"] is not None else "")


@dataclass(frozen=True)
class Sources:
    """What the report calls the two kinds of number, with the network each comes from."""
    networks: str = ""       # the networks of the reproduced numbers ("ResNet-50"); "" when no step says

    @property
    def reproduced(self) -> str:
        return f"reproduced ({self.networks})" if self.networks else "reproduced"

    @property
    def paper(self) -> str:
        return f"paper ({PAPER_ARCH})"


def sources_of(plan, steps) -> Sources:
    """The reproduced numbers' networks: the archs the plan's pre-training steps train (plan.ARCH_LABELS), e.g.
    'reproduced (ResNet-50)'; plain 'reproduced' when no step says (a plan's own pretrain command)."""
    archs = list(dict.fromkeys(s.arch for s in steps if KINDS[s.kind].trains and s.arch))
    if not archs and plan.arch:
        archs = [plan.arch]
    return Sources(", ".join(ARCH_LABELS.get(a, a) for a in archs))


def tagged(plan, tag) -> list:
    """(run id, tag value) of the runs tagged for a figure or table, in plan order."""
    return [(r.id, r.tags[tag]) for r in plan.runs if tag in r.tags]


def label_of(plan, evaluation) -> str:
    if evaluation == PRETRAIN:
        return "pre-training top-1 (%, own label set)"
    return plan.evaluations[evaluation].label


def evaluations_of(plan, numbers, runs) -> list:
    """The evaluations with a number for any of these runs (the ones shown as rows and panels)."""
    names = [e for e in list(plan.evaluations) + [PRETRAIN] if any((r, e) in numbers for r in runs)]
    # a kind read against its own baseline (induction: each run's unseen classes differ) is not compared across runs
    return [e for e in names if e == PRETRAIN or KINDS[plan.evaluations[e].kind].baseline_metric is None]


def control_of(plan):
    """(run id, label) of the control run (tag `control`), or None."""
    run = plan.control()
    return None if run is None else (run.id, str(run.tags["control"]))


# ---------------------------------------------------------------- tables

def columns_table(plan, numbers, paper, tag, title, src: Sources = Sources()) -> list:
    cols = tagged(plan, tag)
    if not cols:
        return []
    extra = list((paper["paper_only"].get(tag) or {}).items())
    runs = [r for r, _ in cols]
    control = control_of(plan)
    control = control if control and control[0] not in runs else None
    header = ["evaluation"] + [f"{label} {part}" for _, label in cols for part in (src.reproduced, src.paper)] + \
             [f"{label} {src.paper}" for _, label in extra] + \
             ([f"{control[1]} (control) {src.reproduced}"] if control else [])
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for ev in evaluations_of(plan, numbers, runs):
        cells = [label_of(plan, ev)]
        cells += [f"{fmt(stats(numbers.get((r, ev))))} | {fmt_paper(paper_value(paper, ev, r))}" for r in runs]
        cells += [fmt_paper(paper_value(paper, ev, key)) for key, _ in extra]
        cells += [fmt(stats(numbers.get((control[0], ev))))] if control else []
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def grid_table(plan, numbers, paper, tag, title, src: Sources = Sources()) -> list:
    cells = tagged(plan, tag)
    if not cells:
        return []
    rows = list(dict.fromkeys(str(v[0]) for _, v in cells))
    cols = list(dict.fromkeys(str(v[1]) for _, v in cells))
    at = {(str(v[0]), str(v[1])): r for r, v in cells}
    lines = [f"### {title}", ""]
    for ev in evaluations_of(plan, numbers, [r for r, _ in cells]):
        lines += [f"{label_of(plan, ev)}:", "", "| budget | " + " | ".join(f"{c} {part}" for c in cols
                                                              for part in (src.reproduced, src.paper))
                  + " |", "|---|" + "---|---|" * len(cols)]
        for row in rows:
            out = []
            for col in cols:
                r = at.get((row, col))
                out += [fmt(stats(numbers.get((r, ev)))), fmt_paper(paper_value(paper, ev, r))] if r else ["—", "—"]
            lines.append(f"| {row} | " + " | ".join(out) + " |")
        lines.append("")
    return lines


def control_table(plan, numbers) -> list:
    """The control run as its own row, and every other run's number with its difference from the control's."""
    control = control_of(plan)
    if control is None:
        return []
    cid, clabel = control
    evs = [e for e in evaluations_of(plan, numbers, [cid]) if e != PRETRAIN]
    if not evs:
        return []
    header = ["run"] + [label_of(plan, e) for e in evs]
    lines = [f"### Against the control: {clabel}", "",
             f"Each cell: the run's number and, in brackets, its difference from the control run `{cid}` "
             f"(paired by seed; \"{NOISE}\" when |difference| < its std).", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
             "| " + " | ".join([f"{clabel} (control)"] + [fmt(stats(numbers.get((cid, e)))) for e in evs]) + " |"]
    for run in plan.runs:
        if run.id == cid or not any((run.id, e) in numbers for e in evs):
            continue
        cells = []
        for e in evs:
            mine = numbers.get((run.id, e))
            cells.append(f"{fmt(stats(mine))} (Δ {fmt_diff(difference(mine, numbers.get((cid, e))))})"
                         if mine else "—")
        lines.append(f"| {run.id} | " + " | ".join(cells) + " |")
    return lines + [""]


def _paper_difference(d: dict) -> dict:
    return paper_entry({**{k: v for k, v in d.items() if k not in ("evaluation", "run", "baseline", "paper")},
                        "value": float(d["paper"])})


def _wanted_differences(plan, numbers, paper) -> list:
    """(evaluation, run, baseline, paper entry): the paper's stated differences, then each table column against
    its table's first column where both have the number (not pre-training top-1: label sets differ)."""
    wanted = [(d["evaluation"], d["run"], d["baseline"], _paper_difference(d)) for d in paper["differences"]]
    for tag, (kind, _) in TABLES.items():
        cols = tagged(plan, tag)
        if kind == "columns" and len(cols) > 1:
            base = cols[0][0]
            for r, _ in cols[1:]:
                for ev in evaluations_of(plan, numbers, [r, base]):
                    if ev != PRETRAIN and (r, ev) in numbers and (base, ev) in numbers and \
                            not any(w[:3] == (ev, r, base) for w in wanted):
                        wanted.append((ev, r, base, None))
    return wanted


def differences_table(plan, numbers, baselines, paper, src: Sources = Sources()) -> list:
    """Run minus baseline, paired by seed. For an evaluation read against its own baseline model (induction), the
    baseline's number is the one measured on the same classes and images."""
    lines = ["### Differences (run minus baseline)", "",
             f"| evaluation | run | baseline | {src.reproduced} difference ± std (n) | {src.paper} | paper's source |",
             "|---|---|---|---|---|---|"]
    run_ids = set(plan.run_ids())
    for ev, run, base, paper_diff in _wanted_differences(plan, numbers, paper):
        if (ev != PRETRAIN and ev not in plan.evaluations) or not {run, base} <= run_ids:
            continue
        own_baseline = ev != PRETRAIN and plan.evaluations[ev].baseline == base and (run, ev) in baselines
        reference = baselines.get((run, ev)) if own_baseline else numbers.get((base, ev))
        diff = difference(numbers.get((run, ev)), reference)
        source = "; ".join(x for x in ((paper_diff or {}).get("source"), (paper_diff or {}).get("note")) if x)
        lines.append(f"| {label_of(plan, ev)} | {run} | {base} | {fmt_diff(diff) if diff else '—'} | "
                     f"{fmt_paper(paper_diff)} | {source} |")
    return lines + [""]


def all_results_table(plan, numbers) -> list:
    lines = ["### Every result", "", "| run | evaluation | mean ± std (n) | per seed |", "|---|---|---|---|"]
    for (run, ev), values in sorted(numbers.items()):
        seeds = ", ".join(f"{'-' if s is None else s}: {pct(v)}"
                          for s, v in sorted(values.items(), key=lambda kv: str(kv[0])))
        lines.append(f"| {run} | {label_of(plan, ev)} | {fmt(stats(values))} | {seeds} |")
    return lines + [""]


def subpop_table(plan, done: list) -> list:
    """BREEDS subpopulation shift: per run and subpop evaluation, source and target top-1 and their gap, each
    mean ± std over seeds (empty when the plan ran no subpop evaluation)."""
    values = {}
    for rec in done:
        ev = plan.evaluations.get(rec.get("evaluation"))
        metrics = rec.get("metrics") or {}
        if ev is None or KINDS[ev.kind].report != "subpop" or rec.get("run") is None:
            continue
        cell = values.setdefault((rec["run"], ev.name, str(metrics.get("breeds", "?"))), {})
        for key in ("source_top1", "target_top1", "shift_top1"):
            if dig(metrics, key) is not None:
                cell.setdefault(key, {})[rec.get("seed")] = dig(metrics, key)
    if not values:
        return []
    lines = ["### Subpopulation shift (BREEDS): a new last layer trained on the source subclasses", "",
             "| run | evaluation | BREEDS set | source top-1 | target top-1 | source − target |",
             "|---|---|---|---|---|---|"]
    for (run, ev, breeds), cell in sorted(values.items()):
        row = " | ".join(fmt(stats(cell.get(k, {}))) for k in ("source_top1", "target_top1", "shift_top1"))
        lines.append(f"| {run} | {label_of(plan, ev)} | {breeds} | {row} |")
    return lines + [""]


# ---------------------------------------------------------------- figures (every number in percent)

def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(plt, fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)


# Every figure keeps all it draws inside its axes: y-limits span every plotted value (points with their error bars,
# the control's line and band, the paper's numbers) plus this share of the range above and below.
Y_MARGIN = 0.08
# The paper's numbers get an axis of their own (right, in their colour) when sharing one would leave the reproduced
# numbers less than this share of its height: the demo's ~9% mAP against the paper's 58% would be a flat line.
SHARED_AXIS_MIN_SHARE = 0.25
PAPER_COLOUR = "crimson"


def _fit_ylim(ax, values, floor=None):
    """Set ax's y-limits to hold every value with a margin; bars pass floor=0 to keep their base on the axis."""
    lo, hi = min(values), max(values)
    pad = Y_MARGIN * (hi - lo) if hi > lo else max(1.0, 0.05 * abs(hi))
    bottom = floor if floor is not None and lo >= floor and lo - pad < floor else lo - pad
    ax.set_ylim(bottom, hi + pad)


def _same_scale_ylim(twin, values, shared_ylim):
    """The paper's own axis as tall in points as the reproduced one (slopes read alike), centred on its values;
    taller when its values need it."""
    _fit_ylim(twin, values)
    low, high = twin.get_ylim()
    height = shared_ylim[1] - shared_ylim[0]
    if high - low < height:
        centre = (low + high) / 2
        twin.set_ylim(centre - height / 2, centre + height / 2)


def _needs_own_axis(reproduced, published) -> bool:
    """Whether the paper's numbers would squeeze the reproduced ones (see SHARED_AXIS_MIN_SHARE)."""
    span = max(max(reproduced) - min(reproduced), 1.0)          # percent points; a single point counts as 1
    joint = max(reproduced + published) - min(reproduced + published)
    return span < SHARED_AXIS_MIN_SHARE * joint


def _legend_below(ax, extra_axes=()):
    """One legend for ax (and axes drawn over it, e.g. the paper's twin) under its x label, off the data."""
    handles, labels = ax.get_legend_handles_labels()
    for other in extra_axes:
        more = other.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    if handles:
        ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)


def _control_line(ax, plan, numbers, ev) -> list:
    """The control run's mean as a dashed reference line, its ± std as a band when it has several seeds; returns
    the y values drawn (for the axes' limits)."""
    control = control_of(plan)
    s = stats(numbers.get((control[0], ev))) if control else None
    if s is None:
        return []
    mean, std, n = (100 * s[0], 100 * s[1], s[2])
    ax.axhline(mean, color="gray", linestyle="--", linewidth=1, label=f"{control[1]} (control)")
    if n > 1:
        ax.axhspan(mean - std, mean + std, color="gray", alpha=0.15, linewidth=0)
        return [mean - std, mean + std]
    return [mean]


def _series(points, numbers, ev):
    """x, mean, error bar (the std where a point has more than one seed, else none) in percent."""
    xs, ys, es = [], [], []
    for r, x in sorted(points, key=lambda p: p[1]):
        s = stats(numbers.get((r, ev)))
        if s:
            xs.append(x), ys.append(100 * s[0]), es.append(100 * s[1] if s[2] > 1 else 0.0)
    return xs, ys, es


def _paper_points(ax, xs, entries, label):
    """The paper's numbers as crosses with their ±; returns the y values drawn."""
    ys, es = [p["value"] for p in entries], [p["std"] or 0.0 for p in entries]
    ax.errorbar(xs, ys, yerr=es, fmt="x", color=PAPER_COLOUR, markersize=9, capsize=3, label=label)
    return [y - e for y, e in zip(ys, es)] + [y + e for y, e in zip(ys, es)]


def line_figure(plan, numbers, paper, tag, title, xlabel, path, src: Sources = Sources()) -> bool:
    points = [(r, float(x)) for r, x in tagged(plan, tag)]
    evs = evaluations_of(plan, numbers, [r for r, _ in points])
    if not evs:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(evs), figsize=(4 * len(evs), 3.9), squeeze=False, layout="constrained")
    for ax, ev in zip(axes[0], evs):
        xs, ys, es = _series(points, numbers, ev)
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=f"{src.reproduced}, mean ± std over seeds")
        drawn = [y - e for y, e in zip(ys, es)] + [y + e for y, e in zip(ys, es)]
        drawn += _control_line(ax, plan, numbers, ev)
        published = [(x, paper_value(paper, ev, r)) for r, x in points if paper_value(paper, ev, r)]
        twins = []
        if published:
            px, entries = [x for x, _ in published], [p for _, p in published]
            span = [v for p in entries for v in (p["value"] - (p["std"] or 0.0), p["value"] + (p["std"] or 0.0))]
            if drawn and _needs_own_axis(drawn, span):
                twins.append(ax.twinx())
                _paper_points(twins[0], px, entries, src.paper)
            else:
                drawn += _paper_points(ax, px, entries, src.paper)
        if drawn:
            _fit_ylim(ax, drawn)
        if twins:
            _same_scale_ylim(twins[0], span, ax.get_ylim())
            twins[0].set_ylabel(f"{src.paper}, % (own axis, same scale)", color=PAPER_COLOUR)
            twins[0].tick_params(axis="y", colors=PAPER_COLOUR)
        ax.set_xscale("log")
        ticks = sorted({x for _, x in points})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel("%")
        ax.set_title(label_of(plan, ev), fontsize=9)
        _legend_below(ax, twins)
    fig.suptitle(title, fontsize=10)
    _save(plt, fig, path)
    return True


def _flatten(metrics, prefix=""):
    out = {}
    for k, v in (metrics or {}).items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = float(v)
    return out


def shown_in(rec, section: str) -> bool:
    """The record is of a kind whose records report section `section` reads (plan.Kind.report)."""
    kind = KINDS.get(rec["kind"])
    return kind is not None and kind.report == section


def induction_figure(plan, done, tag, title, path) -> list:
    """Grouped bars of every top-1/top-5 number of each tagged run's induction result; returns table lines."""
    runs = {r: x for r, x in tagged(plan, tag)}
    recs = [rec for rec in done if shown_in(rec, "induction") and rec.get("run") in runs]
    if not recs:
        return []
    series = [(runs[rec["run"]], {k: v for k, v in _flatten(rec.get("metrics")).items()
                                  if k.endswith(("top1", "top5"))}) for rec in recs]
    chance = [m.get("model.chance_top1") for _, m in series]
    keys = sorted({k for _, m in series for k in m if "chance" not in k})
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.5, 1.6 + 0.6 * len(series) * max(1, len(keys))), 3.4))
    width = 0.8 / max(1, len(keys))
    for j, key in enumerate(keys):
        ax.bar([i + j * width for i in range(len(series))], [100 * m.get(key, 0) for _, m in series], width,
               label=key)
    centres = [i + width * (len(keys) - 1) / 2 for i in range(len(series))]
    ax.set_xticks(centres, [str(s) for s, _ in series])
    if any(c is not None for c in chance):
        ax.scatter(centres, [None if c is None else 100 * c for c in chance], marker="_", s=600, color="black",
                   label="chance (top-1)", zorder=3)
    ax.set_ylabel("nearest-neighbour accuracy (%)")
    _fit_ylim(ax, [0.0] + [100 * v for _, m in series for v in m.values()], floor=0.0)
    _legend_below(ax)
    ax.set_title(title, fontsize=9)
    _save(plt, fig, path)
    lines = ["| run | " + " | ".join(f"{k} (%)" for k in keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {s} | " + " | ".join(pct(m[k]) if k in m else "—" for k in keys) + " |" for s, m in series]
    return lines + [""]


def coarse_fine_figure(plan, done, tag, title, path, show=5) -> list:
    runs = {r for r, _ in tagged(plan, tag)}
    recs = [rec for rec in done if shown_in(rec, "coarse_fine") and rec.get("run") in runs]
    rows = [row for rec in recs[-1:] for row in (rec.get("metrics") or {}).get("rows", [])]
    if not rows:
        return []
    rows = sorted(rows, key=lambda r: -float(r["gap"]))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 0.25 * len(rows)), 3.4))
    ax.bar(range(len(rows)), [100 * float(r["gap"]) for r in rows], color="tab:orange")
    ax.set_xticks(range(len(rows)), [str(r.get("name", r.get("coarse_wnid"))) for r in rows], rotation=90,
                  fontsize=6)
    ax.set_ylabel("coarse acc. - fine acc. (points)")
    ax.set_title(title, fontsize=9)
    _save(plt, fig, path)
    lines = ["| coarse class | sub-classes | coarse acc. (%) | fine acc. (%) | gap (points) |", "|---|---|---|---|---|"]
    picked = rows if len(rows) <= 2 * show else rows[:show] + rows[-show:]
    lines += [f"| {r.get('name')} ({r.get('coarse_wnid')}) | {r.get('subclasses')} | {pct(float(r['coarse_acc']))} | "
              f"{pct(float(r['fine_acc']))} | {pct(float(r['gap']))} |" for r in picked]
    return lines + ["", f"mean gap over {len(rows)} coarse classes: "
                        f"{pct(np.mean([float(r['gap']) for r in rows]))} points", ""]


def _split_cells(plan, tag):
    # tag = [group, bar], or a list of them when one run stands in several places (A+B of both split kinds)
    return [(r, cell) for r, v in tagged(plan, tag) for cell in (v if v and isinstance(v[0], (list, tuple)) else [v])]


def bars_figure(plan, numbers, paper, tag, title, path) -> list:
    cells = _split_cells(plan, tag)
    groups = list(dict.fromkeys(str(v[0]) for _, v in cells))
    bars = sorted(dict.fromkeys(str(v[1]) for _, v in cells), key=lambda b: (len(b), b))  # A, B, A+B
    # only evaluations that every bar has somewhere (not one the A+B run has alone)
    evs = [ev for ev in evaluations_of(plan, numbers, [r for r, _ in cells])
           if all(any((r, ev) in numbers for r, v in cells if str(v[1]) == b) for b in bars)]
    if not evs:
        return []
    at = {(str(v[0]), str(v[1])): r for r, v in cells}
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(evs), figsize=(4 * len(evs), 3.9), squeeze=False, layout="constrained")
    lines = []
    for ax, ev in zip(axes[0], evs):
        width = 0.8 / len(bars)
        drawn = [0.0]
        for j, bar in enumerate(bars):
            s = [stats(numbers.get((at.get((g, bar)), ev))) for g in groups]
            tops, errs = [100 * x[0] if x else 0 for x in s], [100 * x[1] if x and x[2] > 1 else 0 for x in s]
            ax.bar([i + j * width for i in range(len(groups))], tops, width, yerr=errs, capsize=3, label=bar)
            drawn += [t - e for t, e in zip(tops, errs)] + [t + e for t, e in zip(tops, errs)]
        drawn += _control_line(ax, plan, numbers, ev)
        _fit_ylim(ax, drawn, floor=0.0)
        ax.set_xticks([i + width * (len(bars) - 1) / 2 for i in range(len(groups))], groups)
        ax.set_title(label_of(plan, ev), fontsize=9)
        _legend_below(ax)
        lines += [f"{label_of(plan, ev)}:", "", "| split | " + " | ".join(bars) + " |", "|---|" + "---|" * len(bars)]
        lines += [f"| {g} | " + " | ".join(fmt(stats(numbers.get((at.get((g, b)), ev)))) for b in bars) + " |"
                  for g in groups] + [""]
    fig.suptitle(title, fontsize=10)
    _save(plt, fig, path)
    return lines


# ---------------------------------------------------------------- the transfer suite (docs/suite.md)

# step kind -> the protocol's name: the kinds the suite's figure and tables show (plan.KINDS, report "suite")
SUITE_PROTOCOLS = {name: kind.label for name, kind in KINDS.items() if kind.report == "suite"}


def suite_datasets(plan, numbers, kind) -> list:
    """(evaluation name, data key) of the plan's evaluations of `kind` (probe/finetune) that have a number."""
    return [(name, ev.data) for name, ev in plan.evaluations.items()
            if ev.kind == kind and any(e == name for _, e in numbers)]


def suite_average(numbers, run, evs):
    """{seed: mean over the datasets} for the seeds every dataset has; None when a dataset lacks the run."""
    per = [numbers.get((run, e)) for e in evs]
    if not all(per):
        return None
    seeds = set.intersection(*(set(v) for v in per))
    return {seed: float(np.mean([v[seed] for v in per])) for seed in seeds} or None


def suite_table(plan, numbers, kind) -> list:
    """Runs x datasets of one protocol, mean ± std (seeds), each run's difference from the control marked
    "within noise" when |difference| < its std, and the average over the datasets (per seed, then over seeds)."""
    datasets = suite_datasets(plan, numbers, kind)
    if not datasets:
        return []
    evs = [e for e, _ in datasets]
    control = control_of(plan)
    header = ["run"] + [d for _, d in datasets] + ["average"]
    lines = [f"### Transfer suite: {SUITE_PROTOCOLS[kind]} (Kornblith et al. 2019)", "",
             "Each cell: mean ± std (seeds) in percent of the dataset's metric (top-1; mean per-class accuracy for "
             "aircraft, caltech101, flowers102, pets; 11-point mAP for voc07)"
             + (f"; \"{NOISE}\" where the difference from the control `{control[0]}` is below its std" if control
                else "") + ". The average is over the datasets for each seed, then over seeds.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in plan.runs:
        cells = [numbers.get((run.id, e)) for e in evs]
        if not any(cells):
            continue
        cells.append(suite_average(numbers, run.id, evs))
        keys = evs + [None]
        row = []
        for key, values in zip(keys, cells):
            ref = None
            if control and run.id != control[0]:
                ref = suite_average(numbers, control[0], evs) if key is None else numbers.get((control[0], key))
            note = noise_note(difference(values, ref)) if values and ref else ""
            row.append(fmt(stats(values)) + (f" ({note})" if note == NOISE else ""))
        name = f"{run.id} (control)" if control and run.id == control[0] else run.id
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return lines + [""]


def suite_figure(plan, numbers, path) -> list:
    """Grouped bars: per protocol, each dataset's mean ± std for every run that has it; [] when nothing to draw."""
    kinds = [k for k in SUITE_PROTOCOLS if suite_datasets(plan, numbers, k)]
    if not kinds:
        return []
    plt = _pyplot()
    fig, axes = plt.subplots(len(kinds), 1, figsize=(11, 3.2 * len(kinds)), squeeze=False)
    for ax, kind in zip(axes[:, 0], kinds):
        datasets = suite_datasets(plan, numbers, kind)
        runs = [r.id for r in plan.runs if any((r.id, e) in numbers for e, _ in datasets)]
        width = 0.8 / max(len(runs), 1)
        for i, run in enumerate(runs):
            ys = [stats(numbers.get((run, e))) for e, _ in datasets]
            xs = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(datasets))]
            ax.bar(xs, [100 * y[0] if y else 0 for y in ys], width,
                   yerr=[100 * y[1] if y and y[2] > 1 else 0 for y in ys], capsize=2, label=run)
        ax.set_xticks(range(len(datasets)), [d for _, d in datasets], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("%")
        ax.set_title(f"{SUITE_PROTOCOLS[kind]}: mean ± std over seeds", fontsize=9)
        ax.legend(fontsize=7, ncol=min(len(runs), 6))
    fig.suptitle("Transfer suite (Kornblith et al. 2019): every run on every dataset", fontsize=10)
    fig.subplots_adjust(hspace=0.55)
    _save(plt, fig, path)
    return [""]


def suite_sections(plan, numbers, figures) -> list:
    """The suite's figure and its two tables (probe, fine-tuning), or nothing when the plan ran no suite step."""
    tables = [line for kind in SUITE_PROTOCOLS for line in suite_table(plan, numbers, kind)]
    if not tables:
        return []
    body = suite_figure(plan, numbers, figures / "suite.png")
    return ["## Transfer suite", "", "![suite](figures/suite.png)", ""] + body + tables


# ---------------------------------------------------------------- the report

def _figure_sections(plan, numbers, done, paper, figures, src: Sources) -> list:
    lines = []
    for fig_id, (kind, title, xlabel) in FIGURES.items():
        path = figures / f"{fig_id}.png"
        if kind == "line":
            body = [""] if line_figure(plan, numbers, paper, fig_id, title, xlabel, path, src) else []
        elif kind == "induction":
            body = induction_figure(plan, done, fig_id, title, path)
        elif kind == "coarse_fine":
            body = coarse_fine_figure(plan, done, fig_id, title, path)
        else:
            body = bars_figure(plan, numbers, paper, fig_id, title, path)
        if body:
            lines += [f"## {title}", "", f"![{fig_id}](figures/{fig_id}.png)", ""] + body
    return lines


def write_report(results_dir) -> Path:
    """Write RESULTS/report.md and RESULTS/figures/*.png; returns the report's path."""
    results = Path(results_dir)
    plan, done, failed, left_out, paper, src = load_inputs(results)
    numbers, baselines = collect(plan, done), collect(plan, done, baseline=True)
    lines = [f"# fastload report: plan {plan.name}", "", plan.description.strip(), "",
             f"{len(done)} completed steps in {results / 'results.jsonl'}"
             + (f" ({left_out} earlier results of steps the plan changed or dropped are left out)" if left_out else "")
             + ". Every number is in percent. Reproduced numbers" + (f" ({src.networks})" if src.networks else "")
             + " are mean ± sample std (number of seeds); "
             f"paper numbers ({PAPER_ARCH}) from {paper.get('source', 'the paper')}, with the paper's ± where it "
             f"gives one (— where the paper states none or the plan did not run it). A difference whose |mean| is "
             f"below its std is marked \"{NOISE}\".", ""]
    lines += _figure_sections(plan, numbers, done, paper, results / "figures", src)
    lines += suite_sections(plan, numbers, results / "figures")
    lines += ["## Tables", ""]
    for tab_id, (kind, title) in TABLES.items():
        maker = columns_table if kind == "columns" else grid_table
        lines += maker(plan, numbers, paper, tab_id, title, src)
    lines += control_table(plan, numbers) + differences_table(plan, numbers, baselines, paper, src)
    lines += subpop_table(plan, done)
    lines += all_results_table(plan, numbers)
    if failed:
        lines += ["### Failed steps (rerun `fastload reproduce` with the same --out to retry)", ""]
        lines += [f"- {r['step']}: {r.get('error', 'failed').split('; log ')[0]} (log: {r.get('log')})"
                  for r in failed] + [""]
    return write_text(results / "report.md", "\n".join(lines) + "\n")

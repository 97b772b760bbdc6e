"""`fastload report RESULTS`: report.md with the paper's figures and tables, reproduced next to published numbers.

Reads only RESULTS/plan.json (the plan: which run feeds which figure or table, through each run's `tags`),
RESULTS/results.jsonl (the store: each step's metrics) and datasets/paper_results.yaml (the published numbers).
Numbers: the mean over seeds with the sample standard deviation and the number of seeds, "mean ± std (n)".
Differences between two runs are paired by seed where both have the same seeds (else unpaired).
"""
import json
import math
import os
from pathlib import Path

import numpy as np

from .errors import FastloadError
from .files import write_text
from .resources import dataset_file
from .store import ResultsStore

PRETRAIN = "pretrain_top1"   # pseudo-evaluation: the pre-training run's own val top-1
# figure id -> (kind, title, x label)
FIGURES = {
    "fig1": ("line", "Figure 1: performance versus pre-training images per class", "images per class"),
    "fig2": ("line", "Figure 2: performance versus number of pre-training classes", "number of classes"),
    "fig4": ("induction", "Figure 4: induction accuracy on classes unseen as labels (fc7 nearest neighbours)", ""),
    "fig6": ("coarse_fine", "Figure 6: coarse-class minus fine-class accuracy (1000-class model)", ""),
    "fig9": ("bars", "Figure 9: random and minimal splits A, B and A+B (last-layer fine-tuning)", ""),
}
# table id -> (kind, title)
TABLES = {
    "table1": ("columns", "Table 1: 1000 fine classes versus 127 coarse classes"),
    "table2": ("grid", "Table 2: a fixed budget of images: more classes or more images per class"),
    "table3": ("columns", "Table 3: pre-training without the PASCAL classes"),
}


# ---------------------------------------------------------------- collecting numbers

def dig(metrics, path: str):
    """metrics['a']['b'] for path 'a.b'; None when absent or not a number."""
    value = metrics
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def collect(plan: dict, done: list) -> dict:
    """(run id, evaluation) -> {seed: value} from the store's 'done' records (latest per step wins)."""
    evals = plan["evaluations"]
    out = {}
    for rec in done:
        run, metrics = rec.get("run"), rec.get("metrics") or {}
        if rec["kind"] == "pretrain":
            value, name = dig(metrics, "top1"), PRETRAIN
        elif rec.get("evaluation") in evals:
            name = rec["evaluation"]
            ev = evals[name]
            if rec.get("seed") is None and isinstance(metrics.get("runs"), list):
                # one step ran several seeds: {runs: [{seed, value}]}
                for r in metrics["runs"]:
                    if isinstance(r, dict) and isinstance(r.get("value"), (int, float)) and run is not None:
                        out.setdefault((run, name), {})[r.get("seed")] = r["value"] * ev.get("scale", 1.0)
                continue
            value = dig(metrics, ev["metric"])
            value = None if value is None else value * ev.get("scale", 1.0)
        else:
            continue
        if value is not None and run is not None:
            out.setdefault((run, name), {})[rec.get("seed")] = value
    return out


def stats(values: dict):
    """(mean, std, n) of {seed: value}; std is the sample std (0 for one value)."""
    if not values:
        return None
    v = np.array(list(values.values()), dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def difference(a: dict, b: dict):
    """(mean, std, n) of a - b: paired by seed when the seeds agree, else the unpaired difference of means."""
    if not a or not b:
        return None
    common = sorted(set(a) & set(b), key=str)
    if common and len(common) == len(a) == len(b):
        return stats({s: a[s] - b[s] for s in common})
    (ma, sa, na), (mb, sb, nb) = stats(a), stats(b)
    return ma - mb, math.sqrt(sa ** 2 / na + sb ** 2 / nb), min(na, nb)


def fmt(stat) -> str:
    if stat is None:
        return "—"
    mean, std, n = stat
    return f"{mean:.3f} ± {std:.3f} ({n})" if n > 1 else f"{mean:.3f}"


def fmt_paper(value) -> str:
    return "—" if value is None else f"{value:g}"


# ---------------------------------------------------------------- inputs

def load_inputs(results_dir):
    results = Path(results_dir)
    plan_file = results / "plan.json"
    if not plan_file.is_file():
        raise FastloadError(f"{plan_file} is missing: {results} is not a folder written by `fastload reproduce`")
    expanded = json.loads(plan_file.read_text())
    plan, step_ids = expanded["plan"], {s["id"] for s in expanded.get("steps", [])}
    store = ResultsStore(results)
    done = list(store.done().values())
    failed = [r for step, r in store.latest().items()
              if r["status"] == "failed" and step in step_ids and step not in store.done()]
    return plan, done, failed, load_paper_results()


def load_paper_results(path=None) -> dict:
    import yaml
    path = Path(path) if path else dataset_file("paper_results.yaml")
    try:
        paper = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise FastloadError(f"{path}: not valid YAML: {e}") from None
    paper.setdefault("values", {})
    paper.setdefault("differences", [])
    paper.setdefault("paper_only", {})
    return paper


def paper_value(paper, evaluation, run):
    return (paper["values"].get(evaluation) or {}).get(run)


def tagged(plan, tag) -> list:
    """(run id, tag value) of the runs tagged for a figure or table, in plan order."""
    return [(r["id"], r["tags"][tag]) for r in plan["runs"] if tag in (r.get("tags") or {})]


def label_of(plan, evaluation) -> str:
    if evaluation == PRETRAIN:
        return "pre-training top-1 (own label set)"
    return plan["evaluations"][evaluation].get("label", evaluation)


def evaluations_of(plan, numbers, runs) -> list:
    names = [e for e in list(plan["evaluations"]) + [PRETRAIN] if any((r, e) in numbers for r in runs)]
    return [e for e in names if plan["evaluations"].get(e, {}).get("kind") not in ("induction", "coarse_fine")]


# ---------------------------------------------------------------- tables

def columns_table(plan, numbers, paper, tag, title) -> list:
    cols = tagged(plan, tag)
    extra = list((paper["paper_only"].get(tag) or {}).items())
    if not cols:
        return []
    runs = [r for r, _ in cols]
    header = ["evaluation"] + [f"{label} {part}" for _, label in cols for part in ("reproduced", "paper")] + \
             [f"{label} paper" for _, label in extra]
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for ev in evaluations_of(plan, numbers, runs):
        cells = [label_of(plan, ev)]
        cells += [f"{fmt(stats(numbers.get((r, ev))))} | {fmt_paper(paper_value(paper, ev, r))}" for r in runs]
        cells += [fmt_paper(paper_value(paper, ev, key)) for key, _ in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def grid_table(plan, numbers, paper, tag, title) -> list:
    cells = tagged(plan, tag)
    if not cells:
        return []
    rows = list(dict.fromkeys(str(v[0]) for _, v in cells))
    cols = list(dict.fromkeys(str(v[1]) for _, v in cells))
    at = {(str(v[0]), str(v[1])): r for r, v in cells}
    lines = [f"### {title}", ""]
    for ev in evaluations_of(plan, numbers, [r for r, _ in cells]):
        lines += [f"{label_of(plan, ev)}:", "", "| budget | " + " | ".join(f"{c} {part}" for c in cols
                                                              for part in ("reproduced", "paper"))
                  + " |", "|---|" + "---|---|" * len(cols)]
        for row in rows:
            out = []
            for col in cols:
                r = at.get((row, col))
                out += [fmt(stats(numbers.get((r, ev)))), fmt_paper(paper_value(paper, ev, r))] if r else ["—", "—"]
            lines.append(f"| {row} | " + " | ".join(out) + " |")
        lines.append("")
    return lines


def differences_table(plan, numbers, paper) -> list:
    """The paper's stated differences, and each table column against its table's first column."""
    wanted = [(d["evaluation"], d["run"], d["baseline"], d.get("paper")) for d in paper["differences"]]
    for tag, (kind, _) in TABLES.items():
        cols = tagged(plan, tag)
        if kind == "columns" and len(cols) > 1:
            for r, _ in cols[1:]:
                for ev in evaluations_of(plan, numbers, [r, cols[0][0]]):
                    if not any(w[:3] == (ev, r, cols[0][0]) for w in wanted):
                        wanted.append((ev, r, cols[0][0], None))
    lines = ["### Differences (run minus baseline)", "",
             "| evaluation | run | baseline | reproduced difference ± std (n) | paper |", "|---|---|---|---|---|"]
    run_ids = {r["id"] for r in plan["runs"]}
    for ev, run, base, paper_diff in wanted:
        if (ev != PRETRAIN and ev not in plan["evaluations"]) or not {run, base} <= run_ids:
            continue
        diff = difference(numbers.get((run, ev)), numbers.get((base, ev)))
        lines.append(f"| {label_of(plan, ev)} | {run} | {base} | {fmt(diff)} | {fmt_paper(paper_diff)} |")
    return lines + [""]


def all_results_table(plan, numbers) -> list:
    lines = ["### Every result", "", "| run | evaluation | mean ± std (n) | per seed |", "|---|---|---|---|"]
    for (run, ev), values in sorted(numbers.items()):
        seeds = ", ".join(f"{'-' if s is None else s}: {v:.3f}"
                          for s, v in sorted(values.items(), key=lambda kv: str(kv[0])))
        lines.append(f"| {run} | {label_of(plan, ev)} | {fmt(stats(values))} | {seeds} |")
    return lines + [""]


# ---------------------------------------------------------------- figures

def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path):
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)


def line_figure(plan, numbers, paper, tag, title, xlabel, path) -> bool:
    points = [(r, float(x)) for r, x in tagged(plan, tag)]
    evs = evaluations_of(plan, numbers, [r for r, _ in points])
    if not evs:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(evs), figsize=(4 * len(evs), 3.4), squeeze=False)
    for ax, ev in zip(axes[0], evs):
        xs, ys, es, px, py = [], [], [], [], []
        for r, x in sorted(points, key=lambda p: p[1]):
            s = stats(numbers.get((r, ev)))
            if s:
                xs.append(x), ys.append(s[0]), es.append(s[1])
            if paper_value(paper, ev, r) is not None:
                px.append(x), py.append(paper_value(paper, ev, r))
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label="reproduced")
        if px:
            ax.plot(px, py, "x", color="crimson", markersize=9, label="paper")
        ax.set_xscale("log")
        ticks = sorted({x for _, x in points})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_title(label_of(plan, ev), fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
    plt.close(fig)
    return True


def _flatten(metrics, prefix=""):
    out = {}
    for k, v in (metrics or {}).items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = float(v)
    return out


def induction_figure(plan, done, tag, title, path) -> list:
    """Grouped bars of every top-1/top-5 number of each tagged run's induction result; returns table lines."""
    runs = {r: x for r, x in tagged(plan, tag)}
    recs = [rec for rec in done if rec["kind"] == "induction" and rec.get("run") in runs]
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
        ax.bar([i + j * width for i in range(len(series))], [m.get(key, 0) for _, m in series], width, label=key)
    ax.set_xticks([i + width * (len(keys) - 1) / 2 for i in range(len(series))], [str(s) for s, _ in series])
    if any(c is not None for c in chance):
        ax.scatter([i + width * (len(keys) - 1) / 2 for i in range(len(series))], chance, marker="_", s=600,
                   color="black", label="chance (top-1)", zorder=3)
    ax.set_ylabel("nearest-neighbour accuracy")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    _save(fig, path)
    plt.close(fig)
    lines = ["| run | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {s} | " + " | ".join(f"{m[k]:.3f}" if k in m else "—" for k in keys) + " |" for s, m in series]
    return lines + [""]


def coarse_fine_figure(plan, done, tag, title, path, show=5) -> list:
    runs = {r for r, _ in tagged(plan, tag)}
    recs = [rec for rec in done if rec["kind"] == "coarse_fine" and rec.get("run") in runs]
    rows = [row for rec in recs[-1:] for row in (rec.get("metrics") or {}).get("rows", [])]
    if not rows:
        return []
    rows = sorted(rows, key=lambda r: -float(r["gap"]))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 0.25 * len(rows)), 3.4))
    ax.bar(range(len(rows)), [float(r["gap"]) for r in rows], color="tab:orange")
    ax.set_xticks(range(len(rows)), [str(r.get("name", r.get("coarse_wnid"))) for r in rows], rotation=90,
                  fontsize=6)
    ax.set_ylabel("coarse acc. - fine acc.")
    ax.set_title(title, fontsize=9)
    _save(fig, path)
    plt.close(fig)
    lines = ["| coarse class | sub-classes | coarse acc. | fine acc. | gap |", "|---|---|---|---|---|"]
    picked = rows if len(rows) <= 2 * show else rows[:show] + rows[-show:]
    lines += [f"| {r.get('name')} ({r.get('coarse_wnid')}) | {r.get('subclasses')} | {float(r['coarse_acc']):.3f} | "
              f"{float(r['fine_acc']):.3f} | {float(r['gap']):.3f} |" for r in picked]
    return lines + [f"", f"mean gap over {len(rows)} coarse classes: {np.mean([float(r['gap']) for r in rows]):.3f}",
                    ""]


def bars_figure(plan, numbers, paper, tag, title, path) -> list:
    # tag = [group, bar], or a list of them when one run stands in several places (A+B of both split kinds)
    cells = [(r, cell) for r, v in tagged(plan, tag)
             for cell in (v if v and isinstance(v[0], (list, tuple)) else [v])]
    groups = list(dict.fromkeys(str(v[0]) for _, v in cells))
    bars = sorted(dict.fromkeys(str(v[1]) for _, v in cells), key=lambda b: (len(b), b))  # A, B, A+B
    # only evaluations that every bar has somewhere (not one the A+B run has alone)
    evs = [ev for ev in evaluations_of(plan, numbers, [r for r, _ in cells])
           if all(any((r, ev) in numbers for r, v in cells if str(v[1]) == b) for b in bars)]
    if not evs:
        return []
    at = {(str(v[0]), str(v[1])): r for r, v in cells}
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(evs), figsize=(4 * len(evs), 3.4), squeeze=False)
    lines = []
    for ax, ev in zip(axes[0], evs):
        width = 0.8 / len(bars)
        for j, bar in enumerate(bars):
            s = [stats(numbers.get((at.get((g, bar)), ev))) for g in groups]
            ax.bar([i + j * width for i in range(len(groups))], [x[0] if x else 0 for x in s], width,
                   yerr=[x[1] if x else 0 for x in s], capsize=3, label=bar)
        ax.set_xticks([i + width * (len(bars) - 1) / 2 for i in range(len(groups))], groups)
        ax.set_title(label_of(plan, ev), fontsize=9)
        ax.legend(fontsize=7)
        lines += [f"{label_of(plan, ev)}:", "", "| split | " + " | ".join(bars) + " |", "|---|" + "---|" * len(bars)]
        lines += [f"| {g} | " + " | ".join(fmt(stats(numbers.get((at.get((g, b)), ev)))) for b in bars) + " |"
                  for g in groups] + [""]
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
    plt.close(fig)
    return lines


# ---------------------------------------------------------------- the report

def write_report(results_dir) -> Path:
    """Write RESULTS/report.md and RESULTS/figures/*.png; returns the report's path."""
    results = Path(results_dir)
    plan, done, failed, paper = load_inputs(results)
    numbers = collect(plan, done)
    figures = results / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    lines = [f"# fastload report: plan {plan['name']}", "", plan.get("description", "").strip(), "",
             f"{len(done)} completed steps in {results / 'results.jsonl'}. Reproduced numbers are mean ± sample std "
             f"(number of seeds); paper numbers from {paper.get('source', 'the paper')} (— where the paper states "
             "none or the plan did not run it).", ""]
    for fig_id, (kind, title, xlabel) in FIGURES.items():
        path = figures / f"{fig_id}.png"
        if kind == "line":
            body = [] if not line_figure(plan, numbers, paper, fig_id, title, xlabel, path) else [""]
        elif kind == "induction":
            body = induction_figure(plan, done, fig_id, title, path)
        elif kind == "coarse_fine":
            body = coarse_fine_figure(plan, done, fig_id, title, path)
        else:
            body = bars_figure(plan, numbers, paper, fig_id, title, path)
        if body:
            lines += [f"## {title}", "", f"![{fig_id}](figures/{fig_id}.png)", ""] + body
    lines += ["## Tables", ""]
    for tab_id, (kind, title) in TABLES.items():
        maker = columns_table if kind == "columns" else grid_table
        lines += maker(plan, numbers, paper, tab_id, title)
    lines += differences_table(plan, numbers, paper) + all_results_table(plan, numbers)
    if failed:
        lines += ["### Failed steps (rerun `fastload reproduce` with the same --out to retry)", ""]
        lines += [f"- {r['step']}: {r.get('error', 'failed').split('; log ')[0]} (log: {r.get('log')})"
                  for r in failed] + [""]
    return write_text(results / "report.md", "\n".join(lines) + "\n")

"""The report's figures keep everything they draw inside their axes: the control's dashed line and band, every
point with its error bar and the paper's numbers (on an axis of their own when they would squeeze the reproduced
ones), and a legend that covers no data. Built from a store shaped like the demo's (datasets/demo_plan.yaml: grouped
transfer seeds, per-seed ImageNet-CLS, a random-init control), with the numbers of the demo run in README.md."""
import pytest
from matplotlib.collections import PathCollection

import fastload.report as report
from fastload.plan import build_steps, load_plan, write_steps
from fastload.store import ResultsStore, base_record

ROOTS = {"imagenet": "/data/imagenet", "voc": "/data/voc", "sun": "/data/sun", "cifar10": "/data/cifar10",
         "flowers102": "/data/flowers102"}
# the demo run's numbers as fractions, two seeds each (mean and sample std as in README.md's Table 1; the
# 8-per-class point from the run's differences to the control)
DEMO_TRANSFERS = {
    "pascal_det": {"full": (0.06947, 0.10893), "full_x250": (0.0150, 0.0436), "top_down_127": (0.0079, 0.0451),
                   "random": (0.0096, 0.0110)},
    "sun_cls": {"full": (0.2792, 0.3042), "full_x250": (0.2208, 0.2375), "top_down_127": (0.2292, 0.2542),
                "random": (0.1916, 0.2000)},
    "imagenet_cls": {"full": (0.4400, 0.4750), "full_x250": (0.1287, 0.1337), "top_down_127": (0.1575, 0.1625),
                     "random": (0.1025, 0.1300)},
}
DEMO_PRETRAIN = {"full": 0.5275, "full_x250": 0.1125, "top_down_127": 0.8725, "random": 0.0225}
# made-up analyses of the same shape (the figures' layout is what is checked)
INDUCTION = {"model": {"top1": 0.31, "top5": 0.62, "chance_top1": 0.125}, "baseline": {"top1": 0.48, "top5": 0.8}}
COARSE_FINE = [{"coarse_wnid": f"n0000000{i}", "name": f"coarse {i}", "subclasses": 3, "coarse_acc": 0.9,
                "fine_acc": 0.9 - gap, "gap": gap} for i, gap in enumerate((0.4, 0.1, -0.05))]


def write_demo_results(results):
    """RESULTS/steps.json of the demo plan and a store holding the numbers above, as the runner writes them."""
    plan = load_plan("demo")
    steps = {s.id: s for s in build_steps(plan, ROOTS, results, synth=True)}
    write_steps(results, plan, list(steps.values()), ROOTS)
    store = ResultsStore(results)
    for run, top1 in DEMO_PRETRAIN.items():
        store.append(base_record(steps[f"pretrain/{run}"], "done", metrics={"top1": top1}))
    for ev, runs in DEMO_TRANSFERS.items():
        for run, values in runs.items():
            if ev == "imagenet_cls":     # one step per seed
                for seed, v in enumerate(values):
                    store.append(base_record(steps[f"{ev}/{run}/seed{seed}"], "done", metrics={"top1": v}))
            else:                        # one step runs both seeds (group_seeds)
                store.append(base_record(steps[f"{ev}/{run}"], "done", metrics={
                    "runs": [{"seed": s, "value": v} for s, v in enumerate(values)]}))
    store.append(base_record(steps["induction/top_down_127"], "done", metrics=INDUCTION))
    store.append(base_record(steps["coarse_fine/full"], "done", metrics={"rows": COARSE_FINE}))
    return results


def drawn_y(ax):
    """Display-space y of everything ax draws: lines (data, caps, axhline), error-bar segments, patches (band)."""
    ys = []
    for line in ax.lines:
        ys += list(line.get_transform().transform(line.get_xydata())[:, 1])
    for coll in ax.collections:
        if isinstance(coll, PathCollection):      # scatter markers: their positions
            ys += list(coll.get_offset_transform().transform(coll.get_offsets())[:, 1])
            continue
        for path in coll.get_paths():             # error-bar segments
            ys += list(coll.get_transform().transform(path.vertices)[:, 1])
    for patch in ax.patches:
        box = patch.get_window_extent()
        ys += [box.y0, box.y1]
    return ys


def check_figure(fig):
    """Every drawn y inside its axes; no legend over any axes."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        box = ax.get_window_extent()
        ys = drawn_y(ax)
        outside = [y for y in ys if not box.y0 - 0.5 <= y <= box.y1 + 0.5]
        assert not outside, f"{ax.get_title() or ax.get_ylabel()}: {len(outside)} of {len(ys)} drawn y outside"
    for legend in [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends):
        lbox = legend.get_window_extent(renderer)
        assert not any(lbox.overlaps(ax.get_window_extent()) for ax in fig.axes), legend.get_texts()[0].get_text()


@pytest.fixture
def demo_figures(tmp_path, monkeypatch):
    figures, save = {}, report._save

    def check_then_save(plt, fig, path):
        figures[path.name] = fig
        check_figure(fig)
        save(plt, fig, path)

    monkeypatch.setattr(report, "_save", check_then_save)
    report.write_report(write_demo_results(tmp_path / "results"))
    return figures


def test_demo_figures_hold_reference_lines_and_keep_legends_off_the_data(demo_figures):
    assert {"fig1.png", "fig2.png", "fig4.png", "fig6.png"} <= set(demo_figures)
    fig1 = demo_figures["fig1.png"]
    panels = {ax.get_title(): ax for ax in fig1.axes if ax.get_title()}
    sun = panels["SUN-CLS mean per-class accuracy (%)"]
    control = [line for line in sun.lines if line.get_linestyle() == "--"]
    assert len(control) == 1 and control[0].get_ydata()[0] == pytest.approx(19.58, abs=0.01)
    low, high = sun.get_ylim()
    assert low < 19.58 - 0.59 and high > 29.17 + 1.77          # the band and the top error bar, inside


def test_paper_numbers_an_order_of_magnitude_away_get_their_own_axis(demo_figures):
    fig1 = demo_figures["fig1.png"]
    paper_axes = [ax for ax in fig1.axes if any(line.get_color() == report.PAPER_COLOUR for line in ax.lines)]
    assert len(paper_axes) == 1 and not paper_axes[0].get_title()     # a twin, not a panel
    twin = paper_axes[0]
    assert twin.get_ylabel() == "paper (AlexNet), % (own axis, same scale)"
    det = next(ax for ax in fig1.axes if ax.get_title() == "PASCAL-DET mAP (%)")
    assert det.get_position().bounds == twin.get_position().bounds
    assert det.get_ylim()[1] < 15                     # the reproduced ~9% mAP fill their axis ...
    assert twin.get_ylim()[0] < 54.6 < 58.6 < twin.get_ylim()[1]     # ... the paper's 54.6 and 58.3 ± 0.3 theirs
    legend = [t.get_text() for t in det.get_legend().get_texts()]
    assert "paper (AlexNet)" in legend and "random init (control)" in legend


def test_close_paper_numbers_share_the_axis():
    assert report._needs_own_axis([6.0, 12.0], [54.3, 58.6])
    assert not report._needs_own_axis([55.0, 61.0], [54.6, 58.6])
    assert not report._needs_own_axis([57.0], [58.0, 58.6])          # one reproduced point near the paper's


def test_paper_plan_figures_keep_everything_inside(tmp_path, monkeypatch):
    """The same checks on the paper plan's figures (line figures next to the paper's numbers, the split bars)."""
    from test_report import fill_store
    checked, save = [], report._save

    def check_then_save(plt, fig, path):
        check_figure(fig)
        checked.append(path.name)
        save(plt, fig, path)

    monkeypatch.setattr(report, "_save", check_then_save)
    fill_store(tmp_path / "results")
    report.write_report(tmp_path / "results")
    assert {"fig1.png", "fig2.png", "fig9.png"} <= set(checked)

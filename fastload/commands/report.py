"""fastload report: report.md with figures and tables next to the paper's numbers."""


def configure(p):
    p.add_argument("results", help="a results folder written by `fastload reproduce` (or `fastload demo`)")


def run(args):
    from ..report import write_report
    out = write_report(args.results)
    print(f"wrote {out} and {out.parent / 'figures'}/")
    return 0

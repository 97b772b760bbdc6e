"""fastload subset: build pre-training manifests (label set x images per class x classes x budget) from a TRAIN index.

One manifest:  fastload subset --index OUT/train_index.npz --labelset top_down@127 --per-class 500 --seed 0 --out M.npz
A whole plan:  fastload subset --index OUT/train_index.npz --plan paper --out DIR   (datasets/paper_manifests.yaml)
"""


def configure(p):
    p.add_argument("--index", required=True, help="the TRAIN index .npz written by `fastload compile` (required)")
    p.add_argument("--out", required=True,
                   help="output manifest .npz (one manifest) or folder (with --plan) (required)")
    p.add_argument("--plan", default=None,
                   help="'paper' (datasets/paper_manifests.yaml) or a plan YAML: write every manifest it lists "
                        "(default: none, build one manifest from the options below)")
    p.add_argument("--no-scale", action="store_true",
                   help="with --plan: keep the plan's ImageNet-1k counts on a smaller index (default: scale them)")
    p.add_argument("--only", default=None, help="with --plan: comma-separated manifest names to build (default: all)")
    p.add_argument("--labelset", default="full",
                   help="label set: a built-in name, FAMILY@K (bottom_up@918: the step nearest K/1000 of the "
                        "index's classes), A+B (union) or a class<TAB>label .tsv (default: full)")
    p.add_argument("--per-class", type=int, default=None,
                   help="images per unit, seeded and nested (default: all)")
    p.add_argument("--classes", type=int, default=None, help="a seeded random subset of this many units (default: all)")
    p.add_argument("--budget", type=int, default=None,
                   help="exactly this many images, spread evenly over the chosen units (default: none)")
    p.add_argument("--unit", choices=["class", "label"], default="class",
                   help="what --per-class/--classes/--budget count: fine classes or labels (default: class)")
    p.add_argument("--seed", type=int, default=0, help="selection seed (default: 0)")
    p.add_argument("--not-nested", action="store_true",
                   help="draw each size independently instead of nesting smaller sets in larger ones (default: nested)")


def run(args):
    from ..errors import UsageError
    from ..manifest import ManifestBuilder, read_index_classes
    from pathlib import Path

    single_flags = [f for f, v in (("--per-class", args.per_class), ("--classes", args.classes),
                                   ("--budget", args.budget)) if v is not None]
    if args.plan and (single_flags or args.labelset != "full" or args.unit != "class" or args.not_nested):
        dropped = ", ".join(single_flags) or "--labelset/--unit/--not-nested"
        raise UsageError(f"--plan takes its selections from the plan file; drop {dropped}")
    if not args.plan and (args.no_scale or args.only):
        raise UsageError("--no-scale and --only apply to --plan only")
    class_id, class_wnids = read_index_classes(args.index)
    builder = ManifestBuilder(class_id, class_wnids, index_path=Path(args.index).resolve())
    rows = _build_plan(builder, args) if args.plan else [_build_one(builder, args)]
    _print_table(rows)
    return 0


def _build_one(builder, args):
    from ..manifest import Selection
    sel = Selection(args.labelset, args.per_class, args.classes, args.budget, args.unit, args.seed, not args.not_nested)
    manifest = builder.build(sel)
    path = manifest.save(args.out)
    return path.stem, "", manifest


def _build_plan(builder, args):
    from dataclasses import asdict
    from pathlib import Path

    from ..errors import FastloadError, UsageError
    from ..manifest import plan_path, plan_scales, read_plan, scale_selection

    plan = read_plan(plan_path(args.plan))
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - {name for name, _, _ in plan})
        if unknown:
            raise UsageError(f"--only: no manifest named {', '.join(unknown)}; the plan has: "
                             f"{', '.join(name for name, _, _ in plan)}")
        plan = [entry for entry in plan if entry[0] in wanted]
    class_scale, image_scale = (1.0, 1.0) if args.no_scale else plan_scales(builder.class_counts)
    print(f"index: {len(builder.class_id)} images, {len(builder.class_wnids)} classes; plan counts scaled by "
          f"{class_scale:.4g} (classes) and {image_scale:.4g} (images per class)")
    out = Path(args.out)
    rows = []
    for name, kind, sel in plan:
        try:
            manifest = builder.build(scale_selection(sel, class_scale, image_scale))
        except FastloadError as e:
            raise type(e)(f"plan manifest '{name}': {e}") from e
        manifest.recipe.update(plan=str(args.plan), plan_name=name, plan_selection=asdict(sel),
                               class_scale=class_scale, image_scale=image_scale)
        manifest.save(out / f"{name}.npz")
        rows.append((name, kind, manifest))
    if args.only:  # a partial build (one step of `fastload reproduce`) leaves the whole plan's summary alone
        print(f"wrote {len(rows)} manifests to {out}/")
    else:
        _write_tsv(out / "manifests.tsv", rows)
        print(f"wrote {len(rows)} manifests to {out}/ (summary: manifests.tsv)")
    return rows


def _table_lines(rows):
    yield "name\tkind\tlabel_set\tlabels\tunits\timages\tper_unit"
    for name, kind, m in rows:
        r = m.recipe
        yield (f"{name}\t{kind}\t{r['label_set_resolved']}\t{m.num_labels}\t{r['num_units']}\t{m.num_images}\t"
               f"{r['min_per_unit']}..{r['max_per_unit']}")


def _write_tsv(path, rows):
    from ..files import write_text
    write_text(path, "".join(line + "\n" for line in _table_lines(rows)))


def _print_table(rows):
    lines = [line.split("\t") for line in _table_lines(rows)]
    widths = [max(len(cells[i]) for cells in lines) for i in range(len(lines[0]))]
    for cells in lines:
        print("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))))

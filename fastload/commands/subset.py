"""fastload subset: build pre-training manifests (label set x images per class x classes x budget) from a TRAIN index.

One manifest:    fastload subset --index OUT/train_index.npz --labelset top_down@127 --per-class 500 --seed 0 --out M.npz
A manifest list: fastload subset --index OUT/train_index.npz --manifests paper --out DIR  (datasets/paper_manifests.yaml)
"""


def configure(p):
    p.add_argument("--index", required=True, help="the TRAIN index .npz written by `fastload compile` (required)")
    p.add_argument("--out", required=True,
                   help="output manifest .npz (one manifest) or folder (with --manifests) (required)")
    p.add_argument("--manifests", default=None, metavar="LIST",
                   help="'paper' (datasets/paper_manifests.yaml) or a manifest-list YAML: write every manifest it "
                        "lists (default: none, build one manifest from the options below)")
    p.add_argument("--plan", default=None, help="deprecated name of --manifests")
    p.add_argument("--no-scale", action="store_true",
                   help="with --manifests: keep the list's ImageNet-1k counts on a smaller index (default: scale)")
    p.add_argument("--only", default=None,
                   help="with --manifests: comma-separated manifest names to build (default: all)")
    p.add_argument("--labelset", default="full",
                   help="label set: a built-in name, FAMILY@K (bottom_up@918: the step nearest K/1000 of the "
                        "index's classes), A+B (union), a class<TAB>label .tsv, a BREEDS set (entity30, "
                        "living17_source, ...) or a spec: a .yaml file or an inline '{depth: 6}' mapping "
                        "(docs/taxonomies.md) (default: full)")
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
    import sys

    from ..errors import UsageError
    from ..manifest import ManifestListEntry, Selection, build_manifest_list, builder_for_index, summary_lines

    manifests = args.manifests
    if args.plan is not None:
        print("fastload subset: --plan is deprecated, use --manifests (the experiment plan is `reproduce --plan`)",
              file=sys.stderr)
        if manifests is not None:
            raise UsageError("give --manifests only (--plan is its deprecated name)")
        manifests = args.plan
    single_flags = [f for f, v in (("--per-class", args.per_class), ("--classes", args.classes),
                                   ("--budget", args.budget)) if v is not None]
    if manifests and (single_flags or args.labelset != "full" or args.unit != "class" or args.not_nested):
        dropped = ", ".join(single_flags) or "--labelset/--unit/--not-nested"
        raise UsageError(f"--manifests takes its selections from the manifest list; drop {dropped}")
    if not manifests and (args.no_scale or args.only):
        raise UsageError("--no-scale and --only apply to --manifests only")
    if manifests:
        only = [name for name in args.only.split(",") if name] if args.only else None
        built = build_manifest_list(index=args.index, manifests=manifests, out=args.out, only=only,
                                    scale=not args.no_scale)
        print(f"wrote {len(built)} manifests to {args.out}/" + ("" if only else " (summary: manifests.tsv)"))
    else:
        sel = Selection(args.labelset, args.per_class, args.classes, args.budget, args.unit, args.seed,
                        not args.not_nested)
        manifest = builder_for_index(args.index).build(sel)
        path = manifest.save(args.out)
        built = [(ManifestListEntry(path.stem, "", sel), manifest)]
    _print_table(summary_lines(built))
    return 0


def _print_table(lines):
    rows = [line.split("\t") for line in lines]
    widths = [max(len(cells[i]) for cells in rows) for i in range(len(rows[0]))]
    for cells in rows:
        print("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))))

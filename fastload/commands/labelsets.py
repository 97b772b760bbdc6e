"""fastload labelsets: the paper's label sets built from WordNet, the BREEDS sets, any cut of the tree (a spec),
and the hierarchies printed with class counts (docs/taxonomies.md)."""


def configure(p):
    sub = p.add_subparsers(dest="labelsets_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="every built-in label set with its number of labels and kept classes")
    show = sub.add_parser("show", help="the labels of one label set, with names and member counts")
    show.add_argument("name", help="a built-in label set name (see 'list'), a class<TAB>label .tsv file, or a "
                                   "spec: a .yaml file or an inline '{depth: 6}' mapping (docs/taxonomies.md)")
    export = sub.add_parser("export", help="write DIR/NAME.tsv (class_wnid<TAB>label_wnid) for every built-in set")
    export.add_argument("dir", help="output folder (created if missing)")
    tree = sub.add_parser("tree", help="the hierarchy below a synset, with the ImageNet-1k classes under each node")
    tree.add_argument("synset", nargs="?", default=None,
                      help="the node to start from: a wnid, a synset name (dog.n.01) or a BREEDS id (default: root)")
    tree.add_argument("--depth", type=int, default=2, help="levels below SYNSET to print, 0..64 (default: 2)")
    tree.add_argument("--hierarchy", choices=("wordnet", "breeds"), default="wordnet",
                      help="wordnet: fastload's single-parent WordNet tree; breeds: the BREEDS hierarchy "
                           "(files from $FASTLOAD_BREEDS_DIR or datasets/breeds, levels by longest path) (default: "
                           "wordnet)")


def run(args):
    import sys
    import time
    from pathlib import Path

    from ..errors import FastloadError
    from ..files import write_text
    from ..errors import UsageError
    from ..labelsets import builtin_label_sets, get_label_set
    from ..taxonomy import label_display, print_tree
    from ..wordnet import default_tree

    if args.labelsets_command == "list":
        started = time.perf_counter()
        sets = builtin_label_sets()
        unbuilt = breeds_left_out(sets)
        print(f"built {len(sets)} label sets (WordNet tree{'' if unbuilt else ' and BREEDS hierarchy'}) in "
              f"{time.perf_counter() - started:.2f} s", file=sys.stderr)
        print(f"{'name':<18} {'labels':>6} {'classes':>7}  description")
        for name, ls in sets.items():
            print(f"{name:<18} {ls.num_labels:>6} {ls.num_classes_kept:>7}  {ls.description}")
        for name in unbuilt:
            print(f"{name:<18} {'-':>6} {'-':>7}  needs the BREEDS hierarchy files (datasets/breeds/README.md)")
    elif args.labelsets_command == "show":
        ls = get_label_set(args.name)
        tree = default_tree()
        print(f"{ls.name}: {ls.num_labels} labels over {ls.num_classes_kept} of {len(ls.class_wnids)} classes")
        for lab, members in ls.members().items():
            name, lemma = label_display(tree, lab)
            print(f"{lab}  {len(members):4d}  {name:<32} {lemma}")
    elif args.labelsets_command == "tree":
        if not 0 <= args.depth <= 64:
            raise UsageError(f"--depth must be in 0..64, got {args.depth}")
        for line in print_tree(args.synset, args.depth, args.hierarchy):
            print(line)
    else:
        out = Path(args.dir)
        if out.exists() and not out.is_dir():
            raise FastloadError(f"{out} exists and is not a folder: give the folder to export the label sets into")
        sets = builtin_label_sets()
        for name, ls in sets.items():
            write_text(out / f"{name}.tsv", ls.to_tsv())
        print(f"wrote {len(sets)} label sets to {out}/")
        breeds_left_out(sets)
    return 0


def breeds_left_out(sets) -> list:
    """The BREEDS set names missing from `sets` (the hierarchy files were not found), said on stderr in one line."""
    import sys

    from ..breeds import breeds_dir, breeds_set_descriptions, missing_breeds_files, missing_hierarchy_error
    names = [name for name in breeds_set_descriptions() if name not in sets]
    if names:
        folder = breeds_dir()
        why = missing_hierarchy_error(folder, missing_breeds_files(folder))
        print(f"{len(names)} BREEDS label sets left out: {why}", file=sys.stderr)
    return names

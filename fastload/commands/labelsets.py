"""fastload labelsets: the paper's label sets, built from WordNet."""


def configure(p):
    sub = p.add_subparsers(dest="labelsets_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="every built-in label set with its number of labels and kept classes")
    show = sub.add_parser("show", help="the labels of one label set, with names and member counts")
    show.add_argument("name", help="a built-in label set name (see 'list') or a class<TAB>label .tsv file")
    export = sub.add_parser("export", help="write DIR/NAME.tsv (class_wnid<TAB>label_wnid) for every built-in set")
    export.add_argument("dir", help="output folder (created if missing)")


def run(args):
    import sys
    import time
    from pathlib import Path

    from ..errors import FastloadError
    from ..files import write_text
    from ..labelsets import builtin_label_sets, get_label_set
    from ..wordnet import default_tree

    if args.labelsets_command == "list":
        started = time.perf_counter()
        sets = builtin_label_sets()
        print(f"built {len(sets)} label sets from WordNet in {time.perf_counter() - started:.2f} s", file=sys.stderr)
        print(f"{'name':<18} {'labels':>6} {'classes':>7}  description")
        for name, ls in sets.items():
            print(f"{name:<18} {ls.num_labels:>6} {ls.num_classes_kept:>7}  {ls.description}")
    elif args.labelsets_command == "show":
        ls = get_label_set(args.name)
        tree = default_tree()
        print(f"{ls.name}: {ls.num_labels} labels over {ls.num_classes_kept} of {len(ls.class_wnids)} classes")
        for lab, members in ls.members().items():
            print(f"{lab}  {len(members):4d}  {tree.name(lab):<32} {tree.lemma(lab)}")
    else:
        out = Path(args.dir)
        if out.exists() and not out.is_dir():
            raise FastloadError(f"{out} exists and is not a folder: give the folder to export the label sets into")
        sets = builtin_label_sets()
        for name, ls in sets.items():
            write_text(out / f"{name}.tsv", ls.to_tsv())
        print(f"wrote {len(sets)} label sets to {out}/")
    return 0

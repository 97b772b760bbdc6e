"""fastload wordnet: which WordNet is in use, and a synset's chain up the tree."""


def configure(p):
    sub = p.add_subparsers(dest="wordnet_command", metavar="ACTION", required=True)
    sub.add_parser("info", help="say which WordNet corpus is in use")
    path = sub.add_parser("path", help="print a synset's parent chain to the root with depths")
    path.add_argument("wnid", help="a WordNet id such as n02085620, or a synset name such as dog.n.01")


def run(args):
    from ..wordnet import default_tree, wordnet_source
    tree = default_tree()
    if args.wordnet_command == "info":
        print(f"WordNet {tree.wn.get_version()}: {wordnet_source()}")
        return 0
    wnid = args.wnid if args.wnid[1:].isdigit() else tree.wnid_of_name(args.wnid)
    chain = tree.path_to_root(wnid)
    for node in chain:
        print(f"{tree.depth(node):3d}  {node}  {tree.name(node)}")
    return 0

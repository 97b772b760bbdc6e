"""A small hierarchy in the three-file BREEDS format, for the tests of fastload's BREEDS rules (the real files are
supplied by the user, datasets/breeds/README.md). Leaves are real ImageNet-1k classes, so specs, `synth
--classes-from` and manifests over ImageNet work on it. Everything a test expects is read off this description by
hand, not computed by fastload:

    entity (L0)
      living thing n00004258 (L1)
        animal dummy1 (L2)
          vertebrate dummy2 (L3)            23 classes: entity13's only superclass (needs 20)
            mammal n01861778 (L4)           dog, cat, rodent: 14 classes, c12 under both cat and rodent
              dog n02084071 (L5)            c00..c05
              cat dummy6 (L5)               c06..c10, c12; also a child of animal: reached by a path of length 3 too
              rodent dummy7 (L5)            c11..c13: 3 classes, too few for living17 (needs 4)
            bird n01503061 (L4)             songbird, raptor: 9 classes
              songbird dummy8 (L5)          c14..c18
              raptor dummy9 (L5)            c19..c22
              fossil dummy10                no class below it: not part of the hierarchy kept
      non-living thing n00021939 (L1)
        artifact dummy11 (L2)
          instrumentality dummy12 (L3)      19 classes: too few for entity13
            container dummy13 (L4)          vessel, box: 8 classes
              vessel dummy15 (L5)           c23..c26
              box dummy16 (L5)              c27..c30
            device dummy14 (L4)             tool, machine: 11 classes
              tool dummy17 (L5)             c31..c35
              machine dummy18 (L5)          one child: engine dummy19 (L6)
                engine dummy19 (L6)           with two children: dummy20 (c36..c38) and dummy21 (c39..c41) (L7)
        natural object dummy22 (L2)
          rock dummy23 (L3)
            mineral dummy24 (L4)            c42, c43: too few for entity30 (needs 8)
    c44: an ImageNet class outside the hierarchy
"""
import json
from pathlib import Path

from fastload.resources import read_imagenet_classes

FIRST_CLASS = 300  # the leaves c00..c44 are ImageNet classes 300..344 (their wnids, numbers and names)
NAMES = {"n00001740": "entity", "n00004258": "living thing", "dummy1": "animal", "dummy2": "vertebrate",
         "n01861778": "mammal", "n02084071": "dog", "dummy6": "cat", "dummy7": "rodent", "n01503061": "bird",
         "dummy8": "songbird", "dummy9": "raptor", "dummy10": "fossil", "n00021939": "non-living thing",
         "dummy11": "artifact", "dummy12": "instrumentality", "dummy13": "container", "dummy14": "device",
         "dummy15": "vessel", "dummy16": "box", "dummy17": "tool", "dummy18": "machine", "dummy19": "engine",
         "dummy20": "engine part", "dummy21": "engine housing", "dummy22": "natural object", "dummy23": "rock",
         "dummy24": "mineral"}
CHILDREN = {
    "n00001740": ["n00004258", "n00021939"],
    "n00004258": ["dummy1"], "dummy1": ["dummy2", "dummy6"], "dummy2": ["n01861778", "n01503061"],
    "n01861778": ["n02084071", "dummy6", "dummy7"], "n01503061": ["dummy8", "dummy9", "dummy10"],
    "n02084071": ["c00", "c01", "c02", "c03", "c04", "c05"], "dummy6": ["c06", "c07", "c08", "c09", "c10", "c12"],
    "dummy7": ["c11", "c12", "c13"], "dummy8": ["c14", "c15", "c16", "c17", "c18"],
    "dummy9": ["c19", "c20", "c21", "c22"],
    "n00021939": ["dummy11", "dummy22"], "dummy11": ["dummy12"], "dummy12": ["dummy13", "dummy14"],
    "dummy13": ["dummy15", "dummy16"], "dummy14": ["dummy17", "dummy18"], "dummy15": ["c23", "c24", "c25", "c26"],
    "dummy16": ["c27", "c28", "c29", "c30"], "dummy17": ["c31", "c32", "c33", "c34", "c35"],
    "dummy18": ["dummy19"], "dummy19": ["dummy20", "dummy21"], "dummy20": ["c36", "c37", "c38"],
    "dummy21": ["c39", "c40", "c41"], "dummy22": ["dummy23"], "dummy23": ["dummy24"], "dummy24": ["c42", "c43"],
}
NUM_LEAVES = 45

# the superclasses each BREEDS set keeps, in id order, and the pool its subclasses are drawn from (the leaves of
# each child of the first node with more than one child, concatenated: mammal's pool holds c12 twice)
SUPERCLASSES = {
    "entity13": ["dummy2"],
    "entity30": ["dummy13", "dummy14", "n01503061", "n01861778"],
    "living17": ["dummy6", "dummy8", "dummy9", "n02084071"],
    "nonliving26": ["dummy15", "dummy16", "dummy17", "dummy18"],
}
POOLS = {
    "dummy2": [f"c{i:02d}" for i in range(23)],
    "n01861778": [f"c{i:02d}" for i in range(14)] + ["c12"],
    "n01503061": [f"c{i:02d}" for i in range(14, 23)],
    "dummy13": [f"c{i:02d}" for i in range(23, 31)],
    "dummy14": [f"c{i:02d}" for i in range(31, 42)],
    "n02084071": ["c00", "c01", "c02", "c03", "c04", "c05"],
    "dummy6": ["c06", "c07", "c08", "c09", "c10", "c12"], "dummy8": ["c14", "c15", "c16", "c17", "c18"],
    "dummy9": ["c19", "c20", "c21", "c22"], "dummy15": ["c23", "c24", "c25", "c26"],
    "dummy16": ["c27", "c28", "c29", "c30"], "dummy17": ["c31", "c32", "c33", "c34", "c35"],
    "dummy18": [f"c{i:02d}" for i in range(36, 42)],
}
LEVELS = {"n00001740": 0, "n00004258": 1, "n00021939": 1, "dummy1": 2, "dummy2": 3, "dummy6": 5, "dummy12": 3,
          "n01861778": 4, "dummy19": 6, "dummy20": 7, "c12": 6, "c36": 8, "dummy24": 4}


def leaf_wnids() -> dict:
    """'c00' -> its ImageNet wnid, for the 45 leaves."""
    classes = read_imagenet_classes()
    return {f"c{i:02d}": classes[FIRST_CLASS + i][0] for i in range(NUM_LEAVES)}


def wnid(node: str) -> str:
    """The id written to the files for a node of this description (a leaf's ImageNet wnid)."""
    return leaf_wnids().get(node, node)


def write_hierarchy(folder) -> Path:
    """Write class_hierarchy.txt, dataset_class_info.json and node_names.txt of this hierarchy into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    classes, leaves = read_imagenet_classes(), leaf_wnids()
    info = [[FIRST_CLASS + i, leaves[f"c{i:02d}"], classes[FIRST_CLASS + i][1]] for i in range(NUM_LEAVES)]
    (folder / "dataset_class_info.json").write_text(json.dumps(info))
    (folder / "class_hierarchy.txt").write_text(
        "".join(f"{wnid(p)} {wnid(c)}\n" for p, kids in CHILDREN.items() for c in kids))
    names = dict(NAMES, **{w: classes[FIRST_CLASS + i][1].split(",")[0] for i, w in enumerate(leaves.values())})
    (folder / "node_names.txt").write_text("".join(f"{node}\t{name}\n" for node, name in names.items()))
    return folder

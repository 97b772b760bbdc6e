"""Describable Textures (the folder `dtd`): images/<class>/<file>.jpg and labels/{train,val,test}<p>.txt with
lines "<class>/<file>.jpg", p = 1..10 (option `partition`, default 1: Kornblith et al. 2019 use the first
split, 1,880 train / 1,880 val / 1,880 test). Top-1 accuracy."""
from pathlib import Path

from ..errors import DataError, UsageError
from .layout import Layout, Listing, Sample
from .text import check_images_exist, line_error, need_file, numbered_lines

NEEDS = "images/<class>/<file>.jpg and labels/train1.txt, val1.txt, test1.txt (DTD's dtd)"


def read_dtd(root, partition=1) -> Listing:
    """The DTD listing of one of its ten partitions; classes sorted by name."""
    root, partition = Path(root), int(partition)
    if not 1 <= partition <= 10:
        raise UsageError(f"dtd partition {partition}: choose 1..10")
    entries = {}
    for split in ("train", "val", "test"):
        path = need_file(root, f"labels/{split}{partition}.txt", NEEDS)
        rows = numbered_lines(path)
        for number, line in rows:
            if line.count("/") != 1 or " " in line:
                raise line_error(path, number, f"expected '<class>/<file>.jpg', got {line!r}")
        entries[split] = (path, rows)
    classes = tuple(sorted({line.split("/")[0] for _, rows in entries.values() for _, line in rows}))
    if not classes:
        raise DataError(f"{entries['train'][0]}: no images listed")
    label = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split, (path, rows) in entries.items():
        splits[split] = [Sample(f"images/{line}", label[line.split("/")[0]]) for _, line in rows]
        check_images_exist(root, splits[split], path)
    return Listing("dtd", classes, splits, "top1")


DTD = Layout("dtd", read_dtd, NEEDS, "top1", options={"partition": 1})

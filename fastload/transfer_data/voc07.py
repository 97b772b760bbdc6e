"""PASCAL VOC 2007 classification (the folder `VOCdevkit/VOC2007`): JPEGImages/<id>.jpg and
ImageSets/Main/<class>_{train,val,test}.txt, lines "<id> <flag>" with flag 1 (present), -1 (absent) or 0
(difficult: present, but only in objects marked difficult). Multi-label: a sample's label is the bitmask of the
classes present. Option `difficult` (default "positive": a difficult flag counts as present, as the devkit's
"0 = difficult" marks objects that are there) or "negative". The devkit's own scorer ignores difficult images
per class; a label here has no third state, so that rule is not applied. Splits as published (2,501 / 2,510 /
4,952). Metric: 11-point interpolated mAP over the 20 classes."""
from pathlib import Path

from ..errors import DataError, UsageError
from ..voc import VOC_CLASSES
from .layout import Layout, Listing, Sample
from .text import check_images_exist, line_error, need_file, numbered_lines

NEEDS = "JPEGImages/<id>.jpg and ImageSets/Main/<class>_{train,val,test}.txt for the 20 classes (VOCdevkit/VOC2007)"
FLAGS = {"1": True, "-1": False}


def read_split(root: Path, split: str, difficult_present: bool) -> list:
    masks, order = {}, None
    for bit, name in enumerate(VOC_CLASSES):
        path = need_file(root, f"ImageSets/Main/{name}_{split}.txt", NEEDS)
        ids = []
        for number, line in numbered_lines(path):
            fields = line.split()
            if len(fields) != 2 or fields[1] not in ("1", "-1", "0"):
                raise line_error(path, number, f"expected '<image id> <1|-1|0>', got {line!r}")
            present = FLAGS.get(fields[1], difficult_present)
            masks[fields[0]] = masks.get(fields[0], 0) | (present << bit)
            ids.append(fields[0])
        if order is None:
            order = ids
        elif sorted(ids) != sorted(order):
            raise DataError(f"{path} lists other images than {VOC_CLASSES[0]}_{split}.txt")
    samples = [Sample(f"JPEGImages/{i}.jpg", masks[i]) for i in order]
    check_images_exist(root, samples, root / f"ImageSets/Main/{VOC_CLASSES[0]}_{split}.txt")
    return samples


def read_voc07(root, difficult="positive") -> Listing:
    """The VOC 2007 classification listing: train, val, test, labels as class bitmasks."""
    if difficult not in ("positive", "negative"):
        raise UsageError(f"voc07 difficult {difficult!r}: choose positive or negative")
    root = Path(root)
    splits = {s: read_split(root, s, difficult == "positive") for s in ("train", "val", "test")}
    return Listing("voc07", VOC_CLASSES, splits, "map11", multilabel=True)


VOC07 = Layout("voc07", read_voc07, NEEDS, "map11", options={"difficult": "positive"})

"""FGVC-Aircraft (the folder `fgvc-aircraft-2013b`): data/images/<id>.jpg, data/variants.txt (the 100 variant
names, label order), data/images_variant_{train,val,test}.txt ("<id> <variant name>", the name may hold spaces)
and data/images_box.txt ("<id> <xmin> <ymin> <xmax> <ymax>").

Every image carries a copyright banner about 20 pixels high along its bottom edge. The dataset's README gives the
boxes in 1-based pixel coordinates with both ends included, so a box crops to the 0-based half-open window
(xmin - 1, ymin - 1, xmax, ymax); the box never covers the banner. Option `box` (default true) applies it at
compile time; `box=false` keeps whole images. Splits as published (3,334 / 3,333 / 3,333). Mean per-class accuracy.
"""
from pathlib import Path

from ..errors import DataError
from .layout import Layout, Listing, Sample
from .text import check_images_exist, line_error, need_file, numbered_lines, parse_flag, parse_int

NEEDS = ("data/images/<id>.jpg, data/variants.txt, data/images_variant_{train,val,test}.txt and "
         "data/images_box.txt (FGVC-Aircraft's fgvc-aircraft-2013b)")


def read_boxes(path) -> dict:
    """{image id: (x0, y0, x1, y1)} 0-based half-open, from the 1-based inclusive boxes of images_box.txt."""
    boxes = {}
    for number, line in numbered_lines(path):
        fields = line.split()
        if len(fields) != 5:
            raise line_error(path, number, f"expected '<id> <xmin> <ymin> <xmax> <ymax>', got {line!r}")
        xmin, ymin, xmax, ymax = (parse_int(path, number, v, "coordinate") for v in fields[1:])
        if not (1 <= xmin <= xmax and 1 <= ymin <= ymax):
            raise line_error(path, number, f"box {xmin},{ymin},{xmax},{ymax} is empty or not 1-based")
        boxes[fields[0]] = (xmin - 1, ymin - 1, xmax, ymax)
    return boxes


def read_aircraft(root, box="true") -> Listing:
    """The FGVC-Aircraft variant listing (100 classes): train, val, test; boxes attached when `box`."""
    root = Path(root)
    box = parse_flag("aircraft", "box", box)
    classes = tuple(line for _, line in numbered_lines(need_file(root, "data/variants.txt", NEEDS)))
    label = {c: i for i, c in enumerate(classes)}
    boxes = read_boxes(need_file(root, "data/images_box.txt", NEEDS)) if box else {}
    splits = {}
    for split in ("train", "val", "test"):
        path = need_file(root, f"data/images_variant_{split}.txt", NEEDS)
        samples = []
        for number, line in numbered_lines(path):
            image, _, variant = line.partition(" ")
            if variant not in label:
                raise line_error(path, number, f"variant {variant!r} is not in data/variants.txt")
            if box and image not in boxes:
                raise line_error(path, number, f"image {image} has no box in data/images_box.txt")
            samples.append(Sample(f"data/images/{image}.jpg", label[variant], boxes.get(image)))
        check_images_exist(root, samples, path)
        splits[split] = samples
    if not classes:
        raise DataError(f"{root / 'data/variants.txt'} lists no variants")
    return Listing("aircraft", classes, splits, "mean_class_acc")


AIRCRAFT = Layout("aircraft", read_aircraft, NEEDS, "mean_class_acc", options={"box": "true"})

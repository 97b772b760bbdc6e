"""Oxford-IIIT Pets: images/<Breed_name>_<n>.jpg and annotations/trainval.txt, annotations/test.txt, lines
"<image> <class id 1..37> <species 1|2> <breed id>" ('#' lines are comments). train = trainval (3,680 images),
test (3,669). Mean per-class accuracy (Kornblith et al. 2019, Table A1)."""
from pathlib import Path

from ..errors import DataError
from .layout import Layout, Listing, Sample
from .text import check_images_exist, line_error, need_file, numbered_lines, parse_int

NEEDS = "images/<Breed>_<n>.jpg and annotations/trainval.txt + annotations/test.txt (Oxford-IIIT Pets)"


def read_list(path) -> list:
    """[(line number, image name, 0-based class)] of a Pets annotation list."""
    out = []
    for number, line in numbered_lines(path, comment="#"):
        fields = line.split()
        if len(fields) != 4:
            raise line_error(path, number, f"expected '<image> <class id> <species> <breed id>', got {line!r}")
        out.append((number, fields[0], parse_int(path, number, fields[1], "class id") - 1))
    return out


def read_pets(root) -> Listing:
    """The Pets listing: train (trainval.txt), test; a class is named by its images' prefix (e.g. Abyssinian)."""
    root = Path(root)
    lists = {"train": need_file(root, "annotations/trainval.txt", NEEDS),
             "test": need_file(root, "annotations/test.txt", NEEDS)}
    names, splits = {}, {}
    for split, path in lists.items():
        rows = read_list(path)
        for number, image, label in rows:
            if label < 0:
                raise line_error(path, number, f"class id {label + 1} is not 1 or more")
            breed = image.rsplit("_", 1)[0]
            if names.setdefault(label, breed) != breed:
                raise line_error(path, number, f"class id {label + 1} is {names[label]!r} elsewhere, {breed!r} here")
        splits[split] = [Sample(f"images/{image}.jpg", label) for _, image, label in rows]
        check_images_exist(root, splits[split], path)
    missing = sorted(set(range(max(names) + 1)) - set(names))
    if missing:
        raise DataError(f"{lists['train']}: class id {missing[0] + 1} has no image in either list")
    return Listing("pets", tuple(names[k] for k in range(len(names))), splits, "mean_class_acc")


PETS = Layout("pets", read_pets, NEEDS, "mean_class_acc")

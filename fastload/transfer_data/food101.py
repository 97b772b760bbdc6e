"""Food-101 (the folder `food-101`): images/<class>/<id>.jpg, meta/classes.txt (label order) and the official
split lists meta/train.json / meta/test.json ({class: ["class/id", ...]}), or meta/train.txt / meta/test.txt
("class/id" per line) when the JSON files are absent. Top-1 accuracy."""
import json
from pathlib import Path

from ..errors import DataError
from .layout import Layout, Listing, Sample
from .text import check_images_exist, need_file, numbered_lines

NEEDS = "images/<class>/<id>.jpg, meta/classes.txt and meta/train.json + meta/test.json (or .txt) (Food-101's food-101)"


def split_entries(root: Path, split: str) -> tuple:
    """([(line number or 0, "class/id")], the list file) of a split, from its .json or else its .txt."""
    js = root / "meta" / f"{split}.json"
    if js.is_file():
        try:
            table = json.loads(js.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{js}:{e.lineno}: not JSON ({e.msg})") from None
        if not isinstance(table, dict):
            raise DataError(f"{js}: expected an object {{class: [\"class/id\", ...]}}")
        return [(0, entry) for entries in table.values() for entry in entries], js
    txt = need_file(root, f"meta/{split}.txt", NEEDS)
    return numbered_lines(txt), txt


def read_food101(root) -> Listing:
    """The Food-101 listing: train (75,750 images), test (25,250)."""
    root = Path(root)
    classes = tuple(line for _, line in numbered_lines(need_file(root, "meta/classes.txt", NEEDS)))
    label = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split in ("train", "test"):
        entries, path = split_entries(root, split)
        samples = []
        for number, entry in entries:
            cls = str(entry).split("/")[0]
            if cls not in label or "/" not in str(entry):
                where = f"{path}:{number}" if number else str(path)
                raise DataError(f"{where}: entry {entry!r} is not '<class>/<id>' with a class of "
                                    f"meta/classes.txt")
            samples.append(Sample(f"images/{entry}.jpg", label[cls]))
        check_images_exist(root, samples, path)
        splits[split] = samples
    return Listing("food101", classes, splits, "top1")


FOOD101 = Layout("food101", read_food101, NEEDS, "top1")

"""Birdsnap: species.txt (tab-separated, header "id common scientific dir"), images.txt (tab-separated, header
"url md5 path species_id bb_x1 ..."; every image) and test_images.txt (header "path", then the test images);
the images as the dataset's get_birdsnap.py script downloads them, under download/images/<path> (option
`images`). train = images.txt minus the test list. Many source URLs are gone, so a real copy lacks some images:
those are left out, and the reader says how many on stderr (Kornblith et al. 2019 trained on the 47,386 they
could fetch, tested on 2,443). Top-1 accuracy."""
import sys
from pathlib import Path

from ..errors import DataError
from .layout import Layout, Listing, Sample
from .text import line_error, need_file, numbered_lines, parse_int

NEEDS = "species.txt, images.txt, test_images.txt and the images under download/images/ (Birdsnap)"


def tsv_rows(path, columns) -> list:
    """[(line number, {column: value})] of a tab-separated file with a header naming at least `columns`."""
    lines = numbered_lines(path)
    if not lines:
        raise DataError(f"{path} is empty")
    header = lines[0][1].split("\t")
    missing = [c for c in columns if c not in header]
    if missing:
        raise line_error(path, lines[0][0], f"the header has no column {missing[0]!r} (it has {', '.join(header)})")
    rows = []
    for number, line in lines[1:]:
        fields = line.split("\t")
        if len(fields) != len(header):
            raise line_error(path, number, f"{len(fields)} tab-separated fields, the header has {len(header)}")
        rows.append((number, dict(zip(header, fields))))
    return rows


def read_birdsnap(root, images="download/images") -> Listing:
    """The Birdsnap listing (500 species): train, test, over the images present on disk."""
    root = Path(root)
    species_path = need_file(root, "species.txt", NEEDS)
    species = {}
    for number, row in tsv_rows(species_path, ("id", "common")):
        species[parse_int(species_path, number, row["id"], "species id")] = row["common"]
    ids = sorted(species)
    label = {sid: i for i, sid in enumerate(ids)}
    test_path = need_file(root, "test_images.txt", NEEDS)
    test = {row["path"] for _, row in tsv_rows(test_path, ("path",))}
    images_path = need_file(root, "images.txt", NEEDS)
    splits, absent = {"train": [], "test": []}, 0
    for number, row in tsv_rows(images_path, ("path", "species_id")):
        sid = parse_int(images_path, number, row["species_id"], "species_id")
        if sid not in label:
            raise line_error(images_path, number, f"species_id {sid} is not in species.txt")
        if not (root / images / row["path"]).is_file():
            absent += 1
            continue
        splits["test" if row["path"] in test else "train"].append(Sample(f"{images}/{row['path']}", label[sid]))
    if absent:
        print(f"birdsnap: {absent} images listed in {images_path} are not under {root / images} and are left out",
              file=sys.stderr)
    if not splits["train"] or not splits["test"]:
        raise DataError(f"{root / images}: no {'train' if not splits['train'] else 'test'} image of "
                            f"{images_path} is present")
    return Listing("birdsnap", tuple(species[s] for s in ids), splits, "top1")


BIRDSNAP = Layout("birdsnap", read_birdsnap, NEEDS, "top1", options={"images": "download/images"})

"""SUN397 (Xiao et al. 2010) as the official archives unpack (and as `fastload synth sun` writes it):

    ROOT/SUN397/a/abbey/sun_aaalbzqrimafwbiv.jpg ...
    ROOT/Partitions/ClassName.txt               /a/abbey ... (397 lines; optional: else the partition's classes)
    ROOT/Partitions/Training_01.txt ... _10.txt  /a/abbey/sun_aaalbzqrimafwbiv.jpg ... (50 per class)
    ROOT/Partitions/Testing_01.txt ... _10.txt   (50 per class)

Option `partition` (1..10, default 1: the paper's): which Training_XX/Testing_XX pair gives the train and test
splits. Class ids are positions in ClassName.txt when present, else in the sorted classes of the partition, the
order fastload.mmdet.classification.SUN397Dataset uses, so a beton and the file pipeline give every image the same
label.
"""
from pathlib import Path

from ..errors import DataError, UsageError
from .layout import Layout, Listing, Sample

SPLIT_FILES = {"train": "Training", "test": "Testing"}
NUM_PARTITIONS = 10
NEEDS = "SUN397/ (the images, SUN397/a/abbey/...) and Partitions/ (Training_01.txt, Testing_01.txt, ...)"


def partition_number(partition) -> int:
    try:
        number = int(partition)
    except (TypeError, ValueError):
        number = 0
    if not 1 <= number <= NUM_PARTITIONS:
        raise UsageError(f"SUN397 partition {partition!r}: choose 1..{NUM_PARTITIONS}")
    return number


def read_lines(path: Path, what: str) -> list:
    """(line number, stripped text) of a listing's non-empty lines; DataError when it is missing or empty."""
    if not path.is_file():
        raise DataError(f"SUN397 {what} {path} does not exist (the folder must hold {NEEDS})")
    lines = [(n, line.strip()) for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
             if line.strip()]
    if not lines:
        raise DataError(f"SUN397 {what} {path} is empty")
    return lines


def read_partition(path: Path) -> list:
    """The image paths of a partition file as written there ('/a/abbey/sun_x.jpg')."""
    lines = read_lines(path, "partition file")
    for number, line in lines:
        if not line.startswith("/") or line.count("/") < 3:
            raise DataError(f"{path}:{number}: {line!r} is not a SUN397 image path like /a/abbey/sun_x.jpg")
    return [line for _, line in lines]


def class_of(image_path: str) -> str:
    return image_path.rsplit("/", 1)[0]  # '/a/abbey/sun_x.jpg' -> '/a/abbey'


def read_sun397(root, partition=1) -> Listing:
    """The train and test splits of one official partition (see the module docstring)."""
    root, number = Path(root), partition_number(partition)
    if not (root / "SUN397").is_dir():
        raise DataError(f"{root} has no SUN397/ folder (it must hold {NEEDS})")
    listed = {split: read_partition(root / "Partitions" / f"{stem}_{number:02d}.txt")
              for split, stem in SPLIT_FILES.items()}
    names_file = root / "Partitions" / "ClassName.txt"
    if names_file.is_file():
        classes = [line for _, line in read_lines(names_file, "class list")]
    else:
        classes = sorted({class_of(p) for paths in listed.values() for p in paths})
    class_id = {name: i for i, name in enumerate(classes)}
    splits, seen = {}, {}
    for split, paths in listed.items():
        path = root / "Partitions" / f"{SPLIT_FILES[split]}_{number:02d}.txt"
        samples = []
        for line_number, image in enumerate(paths, 1):
            if class_of(image) not in class_id:
                raise DataError(f"{path}:{line_number}: class {class_of(image)} of {image} is not in {names_file}")
            if image in seen:  # an image listed twice would be trained on twice, or tested on after training
                raise DataError(f"{path}:{line_number}: {image} is listed twice (first at {seen[image]})")
            seen[image] = f"{path.name}:{line_number}"
            samples.append(Sample(path="SUN397" + image, label=class_id[class_of(image)]))
        splits[split] = samples
    trained = {sample.label for sample in splits.get("train", ())}
    untrained = [name for name, i in class_id.items() if i not in trained]
    if untrained:
        train_file = root / "Partitions" / f"{SPLIT_FILES['train']}_{number:02d}.txt"
        raise DataError(f"{train_file}: no training image of {len(untrained)} class(es) of the class list, "
                        f"e.g. {untrained[0]}")
    return Listing(name="sun397", classes=tuple(classes), splits=splits, metric="mean_class_acc")


SUN397 = Layout(name="sun397", read=read_sun397, needs=NEEDS, metric="mean_class_acc", options={"partition": 1})

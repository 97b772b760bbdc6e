"""The records every classification-transfer layout reader returns (see the package docstring)."""
from dataclasses import dataclass, field
from typing import Callable, Optional

METRICS = ("top1", "mean_class_acc", "map11")


@dataclass(frozen=True)
class Sample:
    path: str            # relative to the dataset root given by the user
    label: int           # class index; for a multi-label dataset (VOC07 classification) a bitmask of classes
    box: tuple = None    # optional (x0, y0, x1, y1) crop in pixels applied at compile time (FGVC Aircraft)


@dataclass(frozen=True)
class Listing:
    name: str                          # layout name, e.g. "sun397"
    classes: tuple                     # class names in label order
    splits: dict                       # split name ("train", "val", "test") -> list[Sample]
    metric: str                        # "top1" | "mean_class_acc" | "map11" (11-point mAP, multi-label)
    multilabel: bool = False


@dataclass(frozen=True)
class Layout:
    name: str
    read: Callable        # read(root: Path, **options) -> Listing; DataError naming file and line on bad input
    needs: str            # one line: what the folder must hold
    metric: str
    options: dict = field(default_factory=dict)
    # load(root, sample) -> uint8 HxWx3 array, for layouts whose images are not files (CIFAR's pickled batches:
    # Sample.path is "<batch file>#<row>"); None: Sample.path is an image file under the root
    load: Optional[Callable] = None

"""The records every classification-transfer layout reader returns (one reader per dataset, registered in
fastload.transfer_data.LAYOUTS): what `fastload compile cls` compiles and what the beton loaders read back."""
from dataclasses import dataclass, field

METRICS = ("top1", "mean_class_acc", "map11")


@dataclass(frozen=True)
class Sample:
    """One image of a split."""
    path: str            # relative to the dataset root given by the user
    label: int           # class index; for a multi-label dataset (VOC07 classification) a bitmask of classes
    box: tuple = None    # optional (x0, y0, x1, y1) crop in pixels applied at compile time (FGVC Aircraft)


@dataclass(frozen=True)
class Listing:
    """A dataset as a layout reader found it: its classes in label order and the samples of every split."""
    name: str                          # layout name, e.g. "sun397"
    classes: tuple                     # class names in label order
    splits: dict                       # split name ("train", "val", "test") -> list[Sample]
    metric: str                        # "top1" | "mean_class_acc" | "map11" (11-point mAP, multi-label)
    multilabel: bool = False


@dataclass(frozen=True)
class Layout:
    """One dataset's reader, declared once."""
    name: str
    read: callable        # read(root: Path, **options) -> Listing; raises fastload.errors.DataError (one line
                          # naming the file and line) on malformed input
    needs: str            # one line: what the folder must hold (used in error/doctor-style messages)
    metric: str
    options: dict = field(default_factory=dict)   # layout options (e.g. SUN397 partition) with defaults
    # load(root, sample) -> uint8 HxWx3 RGB array, for layouts whose images are not files (CIFAR's pickled batches:
    # Sample.path is "<batch file>#<row>"); None: Sample.path is an image file under the root
    load: callable = None

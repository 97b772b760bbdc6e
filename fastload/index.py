"""Find the images of an ImageNet-style folder and keep them as a columnar index (numpy .npz).

Layouts read (paths in the index are relative to ROOT):
- ILSVRC-2012: ROOT/train/<wnid>/*.JPEG, and validation as ROOT/val/<wnid>/*.JPEG, or a flat ROOT/val/*.JPEG
  labelled by Kaggle's LOC_val_solution.csv (ImageId,PredictionString; the string starts with the wnid) or by the
  devkit's ILSVRC2012_validation_ground_truth.txt (one 1-based ILSVRC2012_ID per line, for
  ILSVRC2012_val_00000001.JPEG onwards). The devkit's ids follow the class order of its meta.mat, which is not the
  sorted-wnid order, so that file also needs `devkit_class_order`: a text file with the 1000 wnids in ILSVRC2012_ID
  order, one per line. Make it once from the devkit with scipy (ILSVRC2012_IDs 1..1000 are the leaf classes):
      import scipy.io
      synsets = scipy.io.loadmat("ILSVRC2012_devkit_t12/data/meta.mat", squeeze_me=True)["synsets"]
      leaves = sorted((int(s[0]), str(s[1])) for s in synsets if int(s[0]) <= 1000)
      open("class_order.txt", "w").write("".join(wnid + "\n" for _, wnid in leaves))
- Kaggle's copy: ROOT/ILSVRC/Data/CLS-LOC/{train,val} with ROOT/LOC_val_solution.csv.
- Any ImageFolder tree: ROOT/<split>/<class>/*.jpg (for example Places365). It compiles like ImageNet, but the
  WordNet label sets need wnid folder names; `require_wnids` says so when they are missing.

Class ids are positions in the sorted list of train class folders (for ImageNet-1k: the standard sorted-wnid order).
Index columns (one row per image, row i = row i of the split's .beton): path, class_id (int32), width, height
(int32, the original image size), nbytes (int64, the file size); plus class_wnids, root and fingerprint (a hash
of the columns and class list, not of the root: see `fingerprint`).

Every entry under a split folder is either a row of the index or a report row (relative path, reason): files
without an image suffix, folders inside class folders (not searched), broken links, names that are not valid
UTF-8, images beside class folders (they have no class). Compile writes them to OUT/skipped.jsonl.
"""
import csv
import hashlib
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FastloadError
from .files import atomic_path

WNID_PATTERN = re.compile(r"^n\d{8}$")
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff"}
KAGGLE_VAL_FILE = "LOC_val_solution.csv"
DEVKIT_VAL_FILE = "ILSVRC2012_validation_ground_truth.txt"
INDEX_COLUMNS = ("path", "class_id", "width", "height", "nbytes")


@dataclass
class Index:
    """One split's images: columns of equal length, plus the dataset's classes and its root folder."""
    path: np.ndarray        # str, relative to root
    class_id: np.ndarray    # int32, position in class_wnids
    width: np.ndarray       # int32
    height: np.ndarray      # int32
    nbytes: np.ndarray      # int64
    class_wnids: np.ndarray  # str, class-id order
    root: str

    def __len__(self):
        return len(self.path)

    @property
    def num_classes(self) -> int:
        return len(self.class_wnids)

    @property
    def wnid(self) -> np.ndarray:
        """The class folder name (wnid) of every row."""
        return self.class_wnids[self.class_id]

    def select(self, rows) -> "Index":
        """The rows `rows` (in that order) as a new Index over the same classes."""
        rows = np.asarray(rows, dtype=np.int64)
        return Index(*(getattr(self, c)[rows] for c in INDEX_COLUMNS), self.class_wnids, self.root)


def save_index(index: Index, path) -> str:
    """Write the index as .npz (atomically), with its fingerprint; returns the fingerprint."""
    digest = fingerprint(index)
    with atomic_path(path) as tmp:
        np.savez(tmp, **{c: getattr(index, c) for c in INDEX_COLUMNS},
                 class_wnids=np.asarray(index.class_wnids, dtype=str), root=np.asarray(str(index.root)),
                 fingerprint=np.asarray(digest))
    return digest


def fingerprint(index) -> str:
    """A hash of an index's contents (paths, class ids, sizes, file sizes, class list; not its root folder):
    two compiles share it exactly when their betons hold the same rows in the same order."""
    return _fingerprint({c: getattr(index, c) for c in INDEX_COLUMNS + ("class_wnids",)})


def _fingerprint(columns: dict) -> str:
    digest = hashlib.sha256()
    for name in INDEX_COLUMNS + ("class_wnids",):
        if name not in columns:
            continue
        values = np.asarray(columns[name])
        if values.dtype.kind in "US":
            data = "\0".join(str(v) for v in values.tolist()).encode("utf-8", "surrogatepass")
        else:
            data = values.astype("<i8").tobytes()
        digest.update(f"{name}:{len(values)}:".encode())
        digest.update(data)
    return digest.hexdigest()[:32]


def _open_npz(path, what: str):
    """np.load of an index file; a missing, truncated or foreign file is one FastloadError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FastloadError(f"{what} {path} does not exist (it is written by `fastload compile`)")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise FastloadError(f"{path} is not a readable {what} (.npz written by `fastload compile`): "
                            f"{type(e).__name__}: {e}") from None


def _read_arrays(path, keys, what: str) -> dict:
    with _open_npz(path, what) as z:
        missing = [k for k in keys if k not in z.files]
        if missing:
            raise FastloadError(f"{path} is not a fastload {what}: missing {', '.join(missing)}")
        try:
            arrays = {k: z[k] for k in z.files if k in keys or k == "fingerprint"}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise FastloadError(f"{path}: truncated or corrupt {what}: {type(e).__name__}: {e}") from None
    return arrays


def load_index(path) -> Index:
    """Read an index written by `save_index` (OUT/train_index.npz, OUT/val_index.npz): the one index reader."""
    z = _read_arrays(path, INDEX_COLUMNS + ("class_wnids", "root"), "index")
    index = Index(z["path"], z["class_id"].astype(np.int32), z["width"].astype(np.int32),
                  z["height"].astype(np.int32), z["nbytes"].astype(np.int64), z["class_wnids"], str(z["root"]))
    lengths = {len(getattr(index, c)) for c in INDEX_COLUMNS}
    if len(lengths) != 1:
        raise FastloadError(f"{path}: index columns have different lengths {sorted(lengths)}: a corrupt index")
    return index


def load_index_classes(path):
    """(class_id int32 per row, class_wnids) of an index .npz, without its other columns (for manifests)."""
    z = _read_arrays(path, ("class_id", "class_wnids"), "index")
    return z["class_id"].astype(np.int32, copy=False), z["class_wnids"].astype(str)


def load_fingerprint(path) -> str:
    """The fingerprint stored in an index file (computed from its columns for a file written without one)."""
    with _open_npz(path, "index") as z:
        if "fingerprint" in z.files:
            return str(z["fingerprint"])
        return _fingerprint({k: z[k] for k in z.files})


def build_index(root, paths, class_ids, widths, heights, nbytes, class_wnids) -> Index:
    return Index(np.asarray(paths, dtype=str), np.asarray(class_ids, dtype=np.int32),
                 np.asarray(widths, dtype=np.int32), np.asarray(heights, dtype=np.int32),
                 np.asarray(nbytes, dtype=np.int64), np.asarray(class_wnids, dtype=str), str(root))


# ---------------------------------------------------------------------------------------------- finding images

def find_image_root(root: Path) -> Path:
    """The folder that holds train/ and val/: ROOT itself, or Kaggle's ROOT/ILSVRC/Data/CLS-LOC."""
    root = Path(root)
    if not root.is_dir():
        raise FastloadError(f"dataset folder {root} does not exist")
    kaggle = root / "ILSVRC" / "Data" / "CLS-LOC"
    if not (root / "train").is_dir() and (kaggle / "train").is_dir():
        return kaggle
    return root


def is_image_file(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def list_classes(split_dir: Path) -> list:
    """Sorted class folder names of ROOT/<split>/; an error names the folder when there are none."""
    if not split_dir.is_dir():
        raise FastloadError(f"{split_dir} does not exist: expected class folders such as {split_dir}/n01440764/")
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and is_utf8(e.name))
    if not classes:
        raise FastloadError(f"{split_dir} has no class folders (expected {split_dir}/<class>/*.JPEG)")
    return classes


def check_class_names(classes: list, split_dir: Path) -> bool:
    """True when every class folder is a WordNet id. Mixed names (wnids plus others) are a stray folder: error."""
    odd = [c for c in classes if not WNID_PATTERN.match(c)]
    if odd and len(odd) < len(classes):
        shown = ", ".join(str(split_dir / c) for c in odd[:5])
        raise FastloadError(f"unknown class folder(s) among WordNet-id folders: {shown}"
                            f"{' ...' if len(odd) > 5 else ''} (class folders must all be wnids like n01440764, "
                            "or none of them for a plain ImageFolder tree)")
    return not odd


def require_wnids(class_wnids, where) -> None:
    """WordNet label sets need wnid class names; say so, naming the dataset, when a plain ImageFolder lacks them."""
    odd = [c for c in class_wnids if not WNID_PATTERN.match(str(c))]
    if odd:
        raise FastloadError(f"{where}: class names such as {odd[0]!r} are not WordNet ids (n########), so WordNet "
                            "label sets cannot be built for this dataset; only the 'full' per-folder labels apply")


def scan_folder(folder: Path, root: Path, inside: str):
    """(image file names, report rows) of one folder. Every entry is either an image file name returned or a
    (relative path, reason) row: other files, sub-folders, broken links, names that are not UTF-8. `inside` says
    where the folder sits, for the reasons."""
    names, report = [], []
    rel = os.path.relpath(folder, root)
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        reason = entry_problem(entry, inside)
        if reason:
            report.append((f"{rel}/{entry.name}", reason))
        else:
            names.append(entry.name)
    return names, report


def entry_problem(entry, inside: str) -> str:
    """Why one directory entry is not an image of the index ('' when it is)."""
    if not is_utf8(entry.name):
        return "file name is not valid UTF-8 (rename it to include the file)"
    if entry.is_symlink() and not os.path.exists(entry.path):
        return "broken symbolic link"
    if entry.is_dir():
        return f"folder inside {inside} (not searched)"
    if not entry.is_file():
        return "not a regular file"
    if entry.name in (KAGGLE_VAL_FILE, DEVKIT_VAL_FILE):
        return "validation ground truth (labels, not an image)"
    if not is_image_file(entry.name):
        return f"not an image file name (suffix {os.path.splitext(entry.name)[1] or 'none'})"
    return ""


def is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.scandir keeps undecodable bytes as lone surrogates
        return False
    return True


def list_class_folders(split_dir: Path, classes: list, root: Path):
    """(relative paths, class ids, report rows) of ROOT/<split>/<class>/<image>, sorted by class then name."""
    paths, class_ids, report = [], [], []
    for class_id, name in enumerate(classes):
        folder = split_dir / name
        if not folder.is_dir():
            continue  # a class missing from val is allowed; an unknown val folder is caught by the caller
        files, rows = scan_folder(folder, root, "a class folder")
        report += rows
        if not files:
            raise FastloadError(f"class folder {folder} has no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        rel = os.path.relpath(folder, root)
        paths += [f"{rel}/{f}" for f in files]
        class_ids += [class_id] * len(files)
    return paths, class_ids, report


def list_split(root, split: str, classes: list, devkit_class_order=None):
    """(relative paths, class ids, report rows) of one split; validation may be flat with a ground-truth file.
    Report rows (relative path, reason) name every entry under the split folder that is not in the index."""
    root = Path(root)
    image_root = find_image_root(root)
    split_dir = image_root / split
    if not split_dir.is_dir():
        raise FastloadError(f"split folder {split_dir} does not exist (choose the splits to compile with --splits)")
    sub = [e.name for e in os.scandir(split_dir) if e.is_dir() and is_utf8(e.name)]
    if sub:
        unknown = sorted(set(sub) - set(classes))
        if unknown:
            raise FastloadError(f"unknown class folder {split_dir / unknown[0]} in {split}: it is not a train class "
                                f"({len(unknown)} such folders)")
        paths, class_ids, report = list_class_folders(split_dir, classes, root)
        return paths, class_ids, loose_entries(split_dir, root, classes) + report
    flat, report = scan_folder(split_dir, root, f"{split}/")
    if not flat:
        raise FastloadError(f"{split_dir} has neither class folders nor image files")
    wnid_of_file = read_flat_labels(root, image_root, split_dir, devkit_class_order)
    paths, class_ids = label_flat_files(root, split_dir, flat, wnid_of_file, classes)
    return paths, class_ids, report


def loose_entries(split_dir: Path, root: Path, classes: list) -> list:
    """Report rows for the entries of a split folder with class folders that are not class folders."""
    rel = os.path.relpath(split_dir, root)
    report = []
    for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
        if entry.is_dir() and entry.name in classes:
            continue
        reason = entry_problem(entry, f"{split_dir.name}/")
        if not reason:
            reason = f"image beside the class folders of {split_dir.name}/ (it has no class)"
        report.append((f"{rel}/{entry.name}", reason))
    return report


def label_flat_files(root: Path, split_dir: Path, files: list, wnid_of_file: dict, classes: list):
    class_of = {c: i for i, c in enumerate(classes)}
    rel = os.path.relpath(split_dir, root)
    rows = []
    for name in files:
        wnid = wnid_of_file.get(os.path.splitext(name)[0])
        if wnid is None:
            raise FastloadError(f"{split_dir / name} has no entry in the validation ground truth")
        if wnid not in class_of:
            raise FastloadError(f"ground truth gives {split_dir / name} the class {wnid}, which is not a train class")
        rows.append((class_of[wnid], name))
    rows.sort()
    return [f"{rel}/{n}" for _, n in rows], [c for c, _ in rows]


def read_flat_labels(root: Path, image_root: Path, split_dir: Path, devkit_class_order) -> dict:
    """{image stem: wnid} from LOC_val_solution.csv or the devkit ground truth, whichever is found first."""
    places = [root, image_root, split_dir, split_dir.parent]
    for folder in places:
        if (folder / KAGGLE_VAL_FILE).is_file():
            return read_kaggle_solution(folder / KAGGLE_VAL_FILE)
    devkit_places = places + [root / "ILSVRC2012_devkit_t12" / "data"]
    for folder in devkit_places:
        if (folder / DEVKIT_VAL_FILE).is_file():
            return read_devkit_ground_truth(folder / DEVKIT_VAL_FILE, devkit_class_order)
    looked = ", ".join(sorted({str(p) for p in devkit_places}))
    raise FastloadError(f"{split_dir} holds images without class folders, and no ground truth was found: "
                        f"looked for {KAGGLE_VAL_FILE} or {DEVKIT_VAL_FILE} in {looked}")


def read_kaggle_solution(path: Path) -> dict:
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
            raise FastloadError(f"{path}: expected the header 'ImageId,PredictionString', got {header}")
        labels = {}
        for line_no, row in enumerate(reader, start=2):
            if len(row) < 2 or not row[1].split():
                raise FastloadError(f"{path}:{line_no}: expected 'ImageId,wnid x1 y1 x2 y2 ...', got {row}")
            labels[row[0].strip()] = row[1].split()[0]
    return labels


def read_devkit_ground_truth(path: Path, class_order_file) -> dict:
    if class_order_file is None:
        raise FastloadError(f"{path} labels validation images by ILSVRC2012_ID, whose order comes from the devkit's "
                            "meta.mat: pass --devkit-class-order FILE (the 1000 wnids in ILSVRC2012_ID order, one per "
                            "line; see `fastload compile imagenet --help`)")
    if not Path(class_order_file).is_file():
        raise FastloadError(f"--devkit-class-order {class_order_file} does not exist")
    order = [w.strip() for w in Path(class_order_file).read_text().split() if w.strip()]
    bad = [w for w in order if not WNID_PATTERN.match(w)]
    if bad:
        raise FastloadError(f"{class_order_file}: {bad[0]!r} is not a wnid (expected one wnid per line)")
    labels = {}
    for line_no, text in enumerate(Path(path).read_text().split(), start=1):
        if not text.isdigit() or not 1 <= int(text) <= len(order):
            raise FastloadError(f"{path}:{line_no}: {text!r} is not an ILSVRC2012_ID in 1..{len(order)}")
        labels[f"ILSVRC2012_val_{line_no:08d}"] = order[int(text) - 1]
    return labels

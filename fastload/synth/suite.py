"""Synthetic trees of the classification transfer suite, each in its dataset's own on-disk format.

`write_suite(name, out, ...)` writes a tiny copy of one dataset's published layout (the files and formats its
documentation describes: CIFAR's pickled batches, Flowers' .mat files, Stanford Cars' devkit structs, Birdsnap's
tab-separated lists...), written here from those formats, independently of the readers in
fastload/transfer_data that parse them. OUT is the folder a user gives `fastload compile cls NAME OUT`.

Every class k of a dataset has its own appearance (the shared renderer's shape, colour and texture codes hashed
from "<dataset>/<k>"); an image is one such object on a cluttered background with random pose and lighting, so
the classes are learnable and a pre-trained network's features help. VOC07 images hold one to three objects of
different classes (multi-label); FGVC-Aircraft images carry the 20-pixel banner at the bottom that its boxes
leave out. Class names are the real datasets' first names, so listings look like the real ones.
"""
import json
import pickle
import time
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..files import publish_folder, staged_folder
from ..voc import VOC_CLASSES
from .imagenet import check_new_output, parse_size
from .render import draw_background, draw_object, finish_image, make_appearance, render_object_image

JPEG_QUALITY = 90
BANNER = 20   # FGVC-Aircraft's copyright banner height in pixels

NAMES = {
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    "cifar100": ("apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle"),
    "food101": ("apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio", "beef_tartare", "beet_salad",
                "beignets", "bibimbap", "bread_pudding", "breakfast_burrito"),
    "pets": ("Abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle", "Bengal",
             "Birman", "Bombay", "boxer", "British_Shorthair"),
    "dtd": ("banded", "blotchy", "braided", "bubbly", "bumpy", "chequered", "cobwebbed", "cracked",
            "crosshatched", "crystalline"),
    "caltech101": ("BACKGROUND_Google", "Faces", "Faces_easy", "Leopards", "Motorbikes", "accordion", "airplanes",
                   "anchor", "ant", "barrel"),
    "aircraft": ("707-320", "727-200", "737-200", "737-300", "A300B4", "A310", "Cessna 172", "Cessna 208",
                 "DC-3", "Boeing 717"),
    "cars": ("AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012", "Acura TL Type-S 2008",
             "Acura TSX Sedan 2012", "Acura Integra Type R 2001", "Acura ZDX Hatchback 2012",
             "Aston Martin V8 Vantage Convertible 2012", "Aston Martin V8 Vantage Coupe 2012", "Audi R8 Coupe 2012"),
    "birdsnap": ("Acadian Flycatcher", "Acorn Woodpecker", "Alder Flycatcher", "Allens Hummingbird",
                 "Altamira Oriole", "American Avocet", "American Bittern", "American Black Duck",
                 "American Coot", "American Crow"),
    "flowers102": tuple(f"flower_{k:03d}" for k in range(1, 11)),
}
SUITE = ("food101", "cifar10", "cifar100", "birdsnap", "sun397", "cars", "aircraft", "voc07", "dtd", "pets",
         "caltech101", "flowers102")


class ClassImages:
    """Images of a dataset's classes: image(k, i) is the i-th image of class k (deterministic in seed, k, i)."""

    def __init__(self, dataset: str, width: int, height: int, seed: int):
        self.dataset, self.width, self.height, self.seed = dataset, width, height, seed
        self.salt = sum(dataset.encode())

    def appearance(self, k: int):
        code = f"{self.dataset}/{k}"
        return make_appearance(code, code + "/colour", code + "/texture")

    def image(self, k: int, i: int) -> tuple:
        """(uint8 HxWx3, 0-based inclusive box of the object)."""
        rng = np.random.default_rng([self.seed, self.salt, k, i])
        return render_object_image(self.appearance(k), self.width, self.height, rng)

    def multi(self, ks, i: int) -> np.ndarray:
        """One image holding an object of every class in `ks` (VOC), side by side."""
        rng = np.random.default_rng([self.seed, self.salt, 1000, i])
        img = draw_background(self.height, self.width, rng, clutter=2)
        for j, k in enumerate(ks):
            cx = self.width * (j + 0.5) / len(ks) + rng.uniform(-0.05, 0.05) * self.width
            draw_object(img, self.appearance(k), cx, self.height * rng.uniform(0.4, 0.6),
                        min(self.width / len(ks), self.height) * rng.uniform(0.3, 0.42), rng.uniform(-0.5, 0.5))
        return finish_image(img, rng)


def save_jpeg(img: np.ndarray, path: Path) -> None:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, "JPEG", quality=JPEG_QUALITY)


def write_lines(path: Path, lines) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def per_split(counts: dict, classes: int) -> dict:
    """{split: [(class, index within class)]}: every class's images numbered on across the splits."""
    out, start = {}, 0
    for split, n in counts.items():
        out[split] = [(k, start + i) for k in range(classes) for i in range(n)]
        start += n
    return out


# ---- one writer per dataset: (tmp folder, ClassImages, classes K, {split: per-class count}) --------------------

def write_cifar(tmp: Path, images: ClassImages, k: int, counts: dict, hundred: bool) -> None:
    names = [n.encode() for n in NAMES["cifar100" if hundred else "cifar10"][:k]]
    label_key = b"fine_labels" if hundred else b"labels"

    def batch(items, label):
        data = np.stack([images.image(c, i)[0].transpose(2, 0, 1).reshape(-1) for c, i in items]).astype(np.uint8)
        d = {b"batch_label": label.encode(), b"data": data, label_key: [c for c, _ in items],
             b"filenames": [f"{names[c].decode()}_{i}.png".encode() for c, i in items]}
        if hundred:
            d[b"coarse_labels"] = [c // 5 for c, _ in items]
        return d

    def dump(name, obj):
        with open(tmp / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)

    items = per_split(counts, k)
    rng = np.random.default_rng(images.seed)
    train = [items["train"][j] for j in rng.permutation(len(items["train"]))]
    if hundred:
        dump("train", batch(train, "training batch 1 of 1"))
        dump("test", batch(items["test"], "testing batch 1 of 1"))
        dump("meta", {b"fine_label_names": names, b"coarse_label_names": [b"group%d" % g for g in range(k)]})
    else:
        for b in range(5):
            dump(f"data_batch_{b + 1}", batch(train[b::5], f"training batch {b + 1} of 5"))
        dump("test_batch", batch(items["test"], "testing batch 1 of 1"))
        dump("batches.meta", {b"label_names": names, b"num_cases_per_batch": len(train) // 5, b"num_vis": 3072})


def write_food101(tmp, images, k, counts):
    names = NAMES["food101"][:k]
    write_lines(tmp / "meta/classes.txt", names)
    write_lines(tmp / "meta/labels.txt", [n.replace("_", " ").capitalize() for n in names])
    for split, items in per_split(counts, k).items():
        table = {n: [] for n in names}
        for c, i in items:
            entry = f"{names[c]}/{100000 + 37 * i + c}"
            save_jpeg(images.image(c, i)[0], tmp / "images" / f"{entry}.jpg")
            table[names[c]].append(entry)
        (tmp / "meta" / f"{split}.json").write_text(json.dumps(table), encoding="utf-8")
        write_lines(tmp / "meta" / f"{split}.txt", [e for n in names for e in table[n]])


def write_flowers102(tmp, images, k, counts):
    import scipy.io
    rng = np.random.default_rng(images.seed)
    items = [(split, c, i) for split, its in per_split(counts, k).items() for c, i in its]
    order = rng.permutation(len(items))     # image numbers are not grouped by class or split
    labels = np.zeros(len(items), np.uint8)
    ids = {"train": [], "val": [], "test": []}
    for number, j in enumerate(order, 1):
        split, c, i = items[j]
        save_jpeg(images.image(c, i)[0], tmp / "jpg" / f"image_{number:05d}.jpg")
        labels[number - 1] = c + 1
        ids[split].append(number)
    scipy.io.savemat(tmp / "imagelabels.mat", {"labels": labels[None, :]})
    scipy.io.savemat(tmp / "setid.mat", {key: np.array(sorted(ids[s]), np.uint16)[None, :]
                                         for s, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid"))})


def write_pets(tmp, images, k, counts):
    names = NAMES["pets"][:k]
    header = ["#Image CLASS-ID SPECIES BREED ID", "#ID: 1:37 Class ids", "#SPECIES: 1:Cat 2:Dog",
              "#BREED ID: 1-25:Cat 1:12:Dog", "#All images with 1st letter as captial are cat images"]
    lists = {"train": "trainval", "test": "test"}
    for split, items in per_split(counts, k).items():
        lines = []
        for c, i in items:
            cat = names[c][0].isupper()
            stem = f"{names[c]}_{i + 1}"
            save_jpeg(images.image(c, i)[0], tmp / "images" / f"{stem}.jpg")
            lines.append(f"{stem} {c + 1} {1 if cat else 2} {c + 1}")
        write_lines(tmp / "annotations" / f"{lists[split]}.txt", (header if split == "test" else []) + lines)


def write_dtd(tmp, images, k, counts):
    names = NAMES["dtd"][:k]
    for split, items in per_split(counts, k).items():
        lines = []
        for c, i in items:
            rel = f"{names[c]}/{names[c]}_{i + 1:04d}.jpg"
            save_jpeg(images.image(c, i)[0], tmp / "images" / rel)
            lines.append(rel)
        write_lines(tmp / "labels" / f"{split}1.txt", lines)


def write_caltech101(tmp, images, k, counts):
    names = NAMES["caltech101"][:k]
    for c, i in per_split({"all": sum(counts.values())}, k)["all"]:
        save_jpeg(images.image(c, i)[0], tmp / names[c] / f"image_{i + 1:04d}.jpg")


def write_aircraft(tmp, images, k, counts):
    names = NAMES["aircraft"][:k]
    data = tmp / "data"
    write_lines(data / "variants.txt", names)
    write_lines(data / "families.txt", sorted({n.split("-")[0] for n in names}))
    boxes, split_lines = [], {}
    for split, items in per_split(counts, k).items():
        split_lines[split] = []
        for c, i in items:
            image_id = f"{1000000 + 101 * i + c:07d}"
            img, (x0, y0, x1, y1) = images.image(c, i)
            banner = np.full((BANNER, img.shape[1], 3), 30, np.uint8)
            banner[6:14, 4:img.shape[1] // 2] = 220      # the copyright text
            save_jpeg(np.concatenate([img, banner]), data / "images" / f"{image_id}.jpg")
            boxes.append(f"{image_id} {x0 + 1} {y0 + 1} {x1 + 1} {y1 + 1}")   # 1-based, both ends included
            split_lines[split].append(f"{image_id} {names[c]}")
    write_lines(data / "images_box.txt", boxes)
    for split, lines in split_lines.items():
        write_lines(data / f"images_variant_{split}.txt", lines)
        write_lines(data / f"images_family_{split}.txt", [f"{l.split(' ', 1)[0]} {l.split(' ', 1)[1].split('-')[0]}"
                                                          for l in lines])
    write_lines(data / "images_variant_trainval.txt", split_lines["train"] + split_lines["val"])


def write_cars(tmp, images, k, counts):
    import scipy.io
    names = NAMES["cars"][:k]
    dtype = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"), ("fname", "O")]
    annos = {}
    for split, items in per_split(counts, k).items():
        records = []
        for n, (c, i) in enumerate(items, 1):
            img, (x0, y0, x1, y1) = images.image(c, i)
            fname = f"{n:05d}.jpg"
            save_jpeg(img, tmp / f"cars_{split}" / fname)
            records.append((np.uint16(x0 + 1), np.uint16(y0 + 1), np.uint16(x1 + 1), np.uint16(y1 + 1),
                            np.uint8(c + 1), fname))
        annos[split] = np.array(records, dtype=dtype)[None, :]
    (tmp / "devkit").mkdir()
    names_array = np.empty((1, k), dtype=object)
    names_array[0, :] = names
    scipy.io.savemat(tmp / "devkit" / "cars_meta.mat", {"class_names": names_array})
    scipy.io.savemat(tmp / "devkit" / "cars_train_annos.mat", {"annotations": annos["train"]})
    unlabelled = np.array([r[:4] + r[5:] for r in annos["test"][0].tolist()],
                          dtype=[d for d in dtype if d[0] != "class"])[None, :]
    scipy.io.savemat(tmp / "devkit" / "cars_test_annos.mat", {"annotations": unlabelled})
    scipy.io.savemat(tmp / "cars_test_annos_withlabels.mat", {"annotations": annos["test"]})


def write_voc07(tmp, images, k, counts):
    """VOC2007 classification lists: 20 class files per split; only the first K classes appear in images."""
    rng = np.random.default_rng(images.seed)
    flags = {}
    number = 0
    for split, n in counts.items():
        flags[split] = []
        for _ in range(n * k):
            number += 1
            present = sorted(rng.choice(k, size=int(rng.integers(1, min(3, k) + 1)), replace=False).tolist())
            image_id = f"{number * 2:06d}"
            save_jpeg(images.multi(present, number), tmp / "JPEGImages" / f"{image_id}.jpg")
            difficult = present[-1] if len(present) > 1 and rng.uniform() < 0.2 else None
            flags[split].append((image_id, {c: 0 if c == difficult else 1 for c in present}))
    main = tmp / "ImageSets" / "Main"
    for split in ("train", "val", "test"):
        write_lines(main / f"{split}.txt", [i for i, _ in flags[split]])
    write_lines(main / "trainval.txt", [i for s in ("train", "val") for i, _ in flags[s]])
    for c, name in enumerate(VOC_CLASSES):
        for split, rows in list(flags.items()) + [("trainval", flags["train"] + flags["val"])]:
            write_lines(main / f"{name}_{split}.txt", [f"{i} {f.get(c, -1):2d}" for i, f in rows])


def write_birdsnap(tmp, images, k, counts):
    names = NAMES["birdsnap"][:k]
    folders = [n.replace(" ", "_") for n in names]
    write_lines(tmp / "species.txt", ["id\tcommon\tscientific\tdir"] +
                [f"{c + 1}\t{n}\tAvis {n.split()[-1].lower()}\t{folders[c]}" for c, n in enumerate(names)])
    rows, test = ["url\tmd5\tpath\tspecies_id\tbb_x1\tbb_y1\tbb_x2\tbb_y2\tback_x\tback_y"], ["path"]
    for split, items in per_split(counts, k).items():
        for c, i in items:
            img, (x0, y0, x1, y1) = images.image(c, i)
            path = f"{folders[c]}/{i}.jpg"
            save_jpeg(img, tmp / "download" / "images" / path)
            rows.append(f"http://example.org/{folders[c]}/{i}.jpg\t{'0' * 32}\t{path}\t{c + 1}\t"
                        f"{x0}\t{y0}\t{x1}\t{y1}\t{(x0 + x1) // 2}\t{y0}")
            if split == "test":
                test.append(path)
    # a real copy lacks the images whose URLs are gone: one listed image here was never downloaded
    rows.append(f"http://example.org/gone.jpg\t{'0' * 32}\t{folders[0]}/gone.jpg\t1\t0\t0\t9\t9\t4\t0")
    write_lines(tmp / "images.txt", rows)
    write_lines(tmp / "test_images.txt", test)


WRITERS = {
    "food101": write_food101, "birdsnap": write_birdsnap, "cars": write_cars, "aircraft": write_aircraft,
    "voc07": write_voc07, "dtd": write_dtd, "pets": write_pets, "caltech101": write_caltech101,
    "flowers102": write_flowers102,
    "cifar10": lambda *a: write_cifar(*a, hundred=False), "cifar100": lambda *a: write_cifar(*a, hundred=True),
}
# the splits each dataset publishes (Caltech-101 has none: the reader draws train images per class)
SPLITS = {"cifar10": ("train", "test"), "cifar100": ("train", "test"), "food101": ("train", "test"),
          "birdsnap": ("train", "test"), "cars": ("train", "test"), "pets": ("train", "test"),
          "caltech101": ("train", "test"), "aircraft": ("train", "val", "test"), "voc07": ("train", "val", "test"),
          "dtd": ("train", "val", "test"), "flowers102": ("train", "val", "test")}


def write_suite(name: str, out, classes: int = 4, train_per_class: int = 6, test_per_class: int = 4,
                val_per_class: int = 2, size="48", seed: int = 0) -> dict:
    """Write a synthetic tree of dataset `name` (one of SUITE) at `out`; returns a summary."""
    if name not in SUITE:
        raise UsageError(f"dataset {name!r}: choose one of {', '.join(SUITE)}")
    if name == "sun397":
        from .sun import write_sun
        return write_sun(out, max(classes, 2), train_per_class, test_per_class, size, seed, background="random")
    width, height = (32, 32) if name.startswith("cifar") else parse_size(size)
    if not 2 <= classes <= 10:
        raise UsageError(f"--classes {classes}: expected 2..10")
    for flag, value in (("--train-per-class", train_per_class), ("--test-per-class", test_per_class),
                        ("--val-per-class", val_per_class)):
        if value < 1:
            raise UsageError(f"{flag} {value}: expected at least 1")
    if name.startswith("cifar") and train_per_class * classes % 5 and name == "cifar10":
        raise UsageError(f"cifar10: --classes x --train-per-class must split into 5 batches (got "
                         f"{classes * train_per_class})")
    counts = {s: {"train": train_per_class, "val": val_per_class, "test": test_per_class}[s] for s in SPLITS[name]}
    start = time.perf_counter()
    check_new_output(out)
    with staged_folder(out) as tmp:  # removed if anything fails
        WRITERS[name](tmp, ClassImages(name, width, height, seed), classes, counts)
        publish_folder(tmp, out)
    return {"dataset": name, "classes": classes, **{s: n * classes for s, n in counts.items()},
            "seconds": round(time.perf_counter() - start, 2)}

"""Synthetic PASCAL VOC: VOCdevkit/VOC2007 (detection, 20 categories) and VOCdevkit/VOC2012 (10 person actions).

Objects are drawn by the shared renderer with the appearance of their category's WordNet synset
(datasets/pascal_voc_wordnet.tsv, through the same `TreeCodes` as synthetic ImageNet, so a VOC 'dog' shares its
shape with the ImageNet dogs). Files follow the devkit exactly:
- VOC2007: JPEGImages/<6-digit id>.jpg, Annotations/<id>.xml (<size>, and per object <name>, <pose>, <truncated>,
  <difficult>, <bndbox> with 1-based inclusive xmin ymin xmax ymax), ImageSets/Main/{trainval,train,val,test}.txt and
  <class>_{trainval,train,val,test}.txt (`<id> <1|-1|0>`: 0 when the class is present only as difficult).
  1-3 objects per image; every category occurs in each split when there are at least 20 objects in it.
  `truncated` is 1 when the object leaves the image; `difficult` is 1 when its visible box is under 12 px wide or
  high; pose 'Left' objects are drawn mirrored.
- VOC2012: JPEGImages/2012_<6 digits>.jpg, Annotations/<id>.xml with 1-2 person objects, each with <actions> holding
  the 10 actions (exactly one 1) and <other>0</other> as the real files have, ImageSets/Action/{train,val,trainval}.txt
  (image ids) and <action>_{train,val,trainval}.txt (`<id> <person index from 1> <1|-1>`).
  An action shows in the person's pose (a per-action tilt) and in a context object of the action's synset placed
  against the person box (ridinghorse: a horse under it, phoning: a telephone at the head, ...).
"""
import dataclasses
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..files import publish_folder, staged_folder
from ..voc import OTHER_ACTION, VOC_ACTIONS, VOC_CLASSES
from .imagenet import TreeCodes, check_new_output
from .render import draw_background, draw_object, finish_image

# action -> (context object synset, its centre offset from the person centre and its radius, in person radii;
#            the person's tilt in radians)
ACTION_SCENES = {
    "jumping": ("trampoline.n.01", (0.0, 1.5), 0.8, 0.0),
    "phoning": ("telephone.n.01", (0.35, -0.6), 0.3, 0.1),
    "playinginstrument": ("guitar.n.01", (0.3, 0.2), 0.55, -0.1),
    "reading": ("book.n.02", (0.0, 0.1), 0.4, 0.0),
    "ridingbike": ("bicycle.n.01", (0.0, 1.3), 0.85, 0.0),
    "ridinghorse": ("horse.n.01", (0.0, 1.25), 1.0, 0.0),
    "running": ("running_shoe.n.01", (0.25, 1.2), 0.35, 0.45),
    "takingphoto": ("camera.n.01", (0.4, -0.45), 0.3, 0.0),
    "usingcomputer": ("laptop.n.01", (0.65, 0.35), 0.5, 0.2),
    "walking": ("walking_stick.n.01", (0.7, 0.5), 0.55, 0.2),
}
POSES = ("Left", "Right", "Frontal", "Unspecified")
DIFFICULT_PX = 12
PERSON_MAX_ASPECT = 0.6  # persons are tall
JPEG_QUALITY = 90


def category_appearances(codes: TreeCodes) -> dict:
    """VOC category -> Appearance, from its WordNet synset."""
    from ..label_tree import read_pascal_mapping
    mapping = read_pascal_mapping()
    out = {}
    for cls in VOC_CLASSES:
        app = codes.appearance(codes.tree.wnid_of_name(mapping[cls]))
        if cls == "person":
            app = dataclasses.replace(app, aspect=min(app.aspect, PERSON_MAX_ASPECT))
        out[cls] = app
    return out


def label_stream(labels, rng):
    """Endless seeded sequence of `labels`, each round a fresh permutation (balanced across a split)."""
    while True:
        for i in rng.permutation(len(labels)):
            yield labels[i]


def image_size(rng) -> tuple:
    width = int(rng.integers(160, 257))
    return width, int(round(width * rng.uniform(0.7, 0.8)))


def to_voc_box(box) -> tuple:
    """0-based inclusive pixel box -> VOC's 1-based inclusive (xmin, ymin, xmax, ymax)."""
    return tuple(int(v) + 1 for v in box)


def render_detection_image(rng, classes, apps):
    """Background + 1-3 objects; returns (uint8 image, [object dicts])."""
    width, height = image_size(rng)
    img = draw_background(height, width, rng, clutter=int(rng.integers(0, 4)))
    objects = []
    for _ in range(int(rng.integers(1, 4))):
        cls = next(classes)
        for _attempt in range(20):  # redraw placements that leave too little visible
            pose = POSES[int(rng.integers(len(POSES)))]
            radius = min(width, height) * rng.uniform(0.14, 0.3)
            cx, cy = rng.uniform(0.05, 0.95) * width, rng.uniform(0.05, 0.95) * height
            trial = img.copy()
            drawn = draw_object(trial, apps[cls], cx, cy, radius, rng.uniform(-0.3, 0.3), pose == "Left")
            if drawn and drawn[1] and min(drawn[1][2] - drawn[1][0], drawn[1][3] - drawn[1][1]) >= 6:
                img = trial
                break
        else:
            continue
        full, visible = drawn
        small = min(visible[2] - visible[0] + 1, visible[3] - visible[1] + 1) < DIFFICULT_PX
        objects.append({"name": cls, "pose": pose, "truncated": int(full != visible), "difficult": int(small),
                        "box": to_voc_box(visible)})
    return finish_image(img, rng), objects


def render_action_image(rng, actions, apps, context_apps):
    """Background + 1-2 persons, each doing an action shown by its tilt and a context object."""
    width, height = image_size(rng)
    img = draw_background(height, width, rng, clutter=int(rng.integers(0, 3)))
    n = 1 if rng.uniform() < 0.6 else 2
    persons = []
    for k in range(n):
        action = next(actions)
        _, (dx, dy), scale, tilt = ACTION_SCENES[action]
        radius = min(width, height) * rng.uniform(0.2, 0.25)
        cx = width * ((k + 0.5) / n + rng.uniform(-0.06, 0.06))
        cy = height * rng.uniform(0.3, 0.42)  # room below for horses, bikes and trampolines
        mirror = bool(rng.integers(2))
        sign = -1.0 if mirror else 1.0
        ctx = (context_apps[action], cx + sign * dx * radius, cy + dy * radius, scale * radius, 0.0, mirror)
        if scale >= 0.6:  # big context objects (horse, bike) are behind the person, small ones in front
            draw_object(img, *ctx)
        drawn = draw_object(img, apps["person"], cx, cy, radius, sign * tilt, mirror)
        if scale < 0.6:
            draw_object(img, *ctx)
        full, visible = drawn
        persons.append({"name": "person", "pose": "Unspecified", "truncated": int(full != visible), "difficult": 0,
                        "action": action, "box": to_voc_box(visible)})
    return finish_image(img, rng), persons


def annotation_xml(folder: str, filename: str, width: int, height: int, objects: list) -> ET.ElementTree:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = filename
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = f"The {folder} Database (fastload synthetic)"
    ET.SubElement(source, "annotation").text = f"PASCAL {folder}"
    ET.SubElement(source, "image").text = "fastload synth"
    size = ET.SubElement(root, "size")
    for key, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for obj in objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj["name"]
        ET.SubElement(node, "pose").text = obj["pose"]
        ET.SubElement(node, "truncated").text = str(obj["truncated"])
        ET.SubElement(node, "difficult").text = str(obj["difficult"])
        if "action" in obj:
            acts = ET.SubElement(node, "actions")
            for action in VOC_ACTIONS + (OTHER_ACTION,):
                ET.SubElement(acts, action).text = "1" if action == obj["action"] else "0"
        box = ET.SubElement(node, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), obj["box"]):
            ET.SubElement(box, key).text = str(value)
    tree = ET.ElementTree(root)
    ET.indent(tree, "\t")
    return tree


def save_image_and_xml(year_dir: Path, image_id: str, img: np.ndarray, objects: list) -> None:
    from PIL import Image
    Image.fromarray(img).save(year_dir / "JPEGImages" / f"{image_id}.jpg", "JPEG", quality=JPEG_QUALITY)
    tree = annotation_xml(year_dir.name, f"{image_id}.jpg", img.shape[1], img.shape[0], objects)
    tree.write(year_dir / "Annotations" / f"{image_id}.xml", encoding="utf-8")


def write_lines(path: Path, lines: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def class_label(objects: list, cls: str) -> int:
    mine = [o for o in objects if o["name"] == cls]
    if any(not o["difficult"] for o in mine):
        return 1
    return 0 if mine else -1


def write_voc2007(year_dir: Path, trainval: int, test: int, seed: int, apps: dict) -> dict:
    for sub in ("JPEGImages", "Annotations"):
        (year_dir / sub).mkdir(parents=True)
    splits = {"trainval": [], "test": []}
    objects_of = {}
    number = 1
    for split_no, (split, count) in enumerate((("trainval", trainval), ("test", test))):
        classes = label_stream(VOC_CLASSES, np.random.default_rng([seed, 2007, 0, split_no]))
        for _ in range(count):
            image_id = f"{number:06d}"
            img, objects = render_detection_image(np.random.default_rng([seed, 2007, number]), classes, apps)
            save_image_and_xml(year_dir, image_id, img, objects)
            splits[split].append(image_id)
            objects_of[image_id] = objects
            number += 1
    order = np.random.default_rng([seed, 2007, 1]).permutation(len(splits["trainval"]))
    splits["train"] = sorted(splits["trainval"][i] for i in order[: (len(order) + 1) // 2])
    splits["val"] = sorted(set(splits["trainval"]) - set(splits["train"]))
    main = year_dir / "ImageSets" / "Main"
    for split, ids in splits.items():
        write_lines(main / f"{split}.txt", ids)
        for cls in VOC_CLASSES:
            write_lines(main / f"{cls}_{split}.txt", [f"{i} {class_label(objects_of[i], cls):2d}" for i in ids])
    return {"trainval": trainval, "test": test, "objects": sum(len(o) for o in objects_of.values())}


def write_voc2012_actions(year_dir: Path, train: int, val: int, seed: int, apps: dict, context_apps: dict) -> dict:
    for sub in ("JPEGImages", "Annotations"):
        (year_dir / sub).mkdir(parents=True)
    splits = {"train": [], "val": []}
    persons_of = {}
    number = 1
    for split_no, (split, count) in enumerate((("train", train), ("val", val))):
        actions = label_stream(VOC_ACTIONS, np.random.default_rng([seed, 2012, 0, split_no]))
        for _ in range(count):
            image_id = f"2012_{number:06d}"
            img, persons = render_action_image(np.random.default_rng([seed, 2012, number]), actions, apps,
                                               context_apps)
            save_image_and_xml(year_dir, image_id, img, persons)
            splits[split].append(image_id)
            persons_of[image_id] = persons
            number += 1
    splits["trainval"] = splits["train"] + splits["val"]
    action_dir = year_dir / "ImageSets" / "Action"
    for split, ids in splits.items():
        write_lines(action_dir / f"{split}.txt", ids)
        for action in VOC_ACTIONS:
            write_lines(action_dir / f"{action}_{split}.txt",
                        [f"{i} {k} {1 if p['action'] == action else -1:2d}"
                         for i in ids for k, p in enumerate(persons_of[i], 1)])
    return {"action_train": train, "action_val": val, "persons": sum(len(p) for p in persons_of.values())}


def write_voc(out, trainval: int = 24, test: int = 12, action_train: int = 16, action_val: int = 12,
              seed: int = 0) -> dict:
    """Write OUT/VOCdevkit/VOC2007 and VOC2012 (module docstring); returns a summary."""
    for flag, value in (("--train", trainval), ("--test", test), ("--action-train", action_train),
                        ("--action-val", action_val)):
        if value < 1:
            raise UsageError(f"{flag} {value}: expected at least 1")
    start = time.perf_counter()
    codes = TreeCodes()
    apps = category_appearances(codes)
    context_apps = {a: codes.appearance(codes.tree.wnid_of_name(s[0])) for a, s in ACTION_SCENES.items()}
    check_new_output(out)
    with staged_folder(out) as tmp:  # removed if anything fails
        summary = write_voc2007(tmp / "VOCdevkit" / "VOC2007", trainval, test, seed, apps)
        summary.update(write_voc2012_actions(tmp / "VOCdevkit" / "VOC2012", action_train, action_val, seed, apps,
                                             context_apps))
        publish_folder(tmp, out)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    return summary

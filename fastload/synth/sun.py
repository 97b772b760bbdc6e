"""Synthetic SUN397: scenes in the SUN397 folder layout with the official partition files.

A scene category has (all from SHA-256 of its name): a top colour (sky, ceiling), a bottom colour (ground, floor),
a horizon height, and a mixture of SCENE_OBJECTS ImageNet classes with weights; each image is that background
(jittered) with 3-6 objects drawn from the mixture by the shared renderer (with their WordNet appearance, as in
synthetic ImageNet), mostly below the horizon, plus clutter, lighting and noise.
With background='random' every image gets random muted sky/ground colours and a random horizon instead of its
category's, so only the objects (their shapes, colours and textures, the cues synthetic ImageNet teaches) tell the
scenes apart: a transfer task on which pre-trained features matter (the demo uses it).

Layout: OUT/SUN397/<letter>/<name>[/<sub>]/sun_<16 letters>.jpg for categories taken from SUN397's real list
(SUN_CATEGORIES, e.g. /a/abbey, /b/bakery/shop), OUT/Partitions/ClassName.txt (one category path per line) and
Training_0p.txt / Testing_0p.txt for p = 1..--partitions (lines like /a/abbey/sun_aaaaplgaqxlmpnnc.jpg): each
partition splits every category's train + test images afresh (seeded), as SUN397's ten partitions do.
"""
import hashlib
import time
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..files import publish_folder, staged_folder
from .imagenet import TreeCodes, check_new_output, parse_size
from .render import draw_background, draw_object, finish_image, hash_floats, hsv_to_rgb, muted_colour

SUN_CATEGORIES = (
    "/a/abbey", "/a/airport_terminal", "/a/amphitheater", "/a/apartment_building/outdoor", "/a/aquarium",
    "/b/bakery/shop", "/b/bamboo_forest", "/b/bathroom", "/b/beach", "/b/bedroom", "/b/boathouse", "/b/bookstore",
    "/b/bridge", "/c/campsite", "/c/canyon", "/c/castle", "/c/classroom", "/c/coast", "/c/corridor",
    "/d/desert/sand", "/d/dining_room", "/f/forest/broadleaf", "/f/fountain", "/g/golf_course", "/h/highway",
    "/k/kitchen", "/l/library/indoor", "/l/lighthouse", "/l/living_room", "/m/mountain", "/o/office",
    "/p/parking_lot", "/p/playground", "/r/restaurant", "/r/river", "/s/skyscraper", "/s/stadium/baseball",
    "/s/supermarket", "/v/valley", "/w/windmill",
)
SCENE_OBJECTS = 4
# 'scene': each category's own sky/ground colours and horizon; 'random': a fresh random background per image
BACKGROUNDS = ("scene", "random")
JPEG_QUALITY = 90


def scene_style(category: str, reference_wnids: list) -> dict:
    """A category's colours, horizon and object mixture (wnids and weights), from the hash of its path."""
    f = hash_floats(category, 8 + 2 * SCENE_OBJECTS, "scene")
    picks = [int(f[8 + i] * len(reference_wnids)) for i in range(SCENE_OBJECTS)]
    weights = np.array([0.2 + f[8 + SCENE_OBJECTS + i] for i in range(SCENE_OBJECTS)])
    return {"top": hsv_to_rgb(f[0], 0.1 + 0.5 * f[1], 0.5 + 0.45 * f[2]),
            "bottom": hsv_to_rgb(f[3], 0.2 + 0.6 * f[4], 0.25 + 0.55 * f[5]),
            "horizon": 0.3 + 0.4 * f[6],
            "objects": [sorted(reference_wnids)[i] for i in picks], "weights": weights / weights.sum()}


def render_scene(style: dict, appearances: list, width: int, height: int, rng, background: str = "scene"):
    """One scene image (uint8 HxWx3) of a category's `style`; `background` as in BACKGROUNDS."""
    if background == "random":
        top, bottom, horizon = muted_colour(rng), muted_colour(rng), rng.uniform(0.3, 0.7)
    else:
        top, bottom = (np.clip(np.asarray(style[k]) * rng.uniform(0.85, 1.15, 3), 0, 1) for k in ("top", "bottom"))
        horizon = style["horizon"] + rng.uniform(-0.08, 0.08)
    img = draw_background(height, width, rng, top=top, bottom=bottom,
                          horizon=horizon, clutter=int(rng.integers(0, 3)))
    small = min(width, height)
    for _ in range(int(rng.integers(3, 7))):
        k = int(rng.choice(len(appearances), p=style["weights"]))
        cy = height * rng.uniform(horizon - 0.1, 1.0)
        draw_object(img, appearances[k], rng.uniform(0, width), cy, small * rng.uniform(0.07, 0.18),
                    rng.uniform(-0.4, 0.4), bool(rng.integers(2)))
    return finish_image(img, rng)


def image_name(seed: int, category: str, index: int) -> str:
    digest = hashlib.sha256(f"{seed}|{category}|{index}".encode()).digest()
    return "sun_" + "".join(chr(ord("a") + b % 26) for b in digest[:16]) + ".jpg"


def choose_categories(k: int, seed: int) -> list:
    if not 2 <= k <= len(SUN_CATEGORIES):
        raise UsageError(f"--classes {k}: expected 2..{len(SUN_CATEGORIES)} (the embedded SUN397 categories)")
    order = np.random.default_rng([seed, 397]).permutation(len(SUN_CATEGORIES))
    return sorted(SUN_CATEGORIES[i] for i in order[:k])


def write_sun(out, classes: int = 10, train_per_class: int = 10, test_per_class: int = 10, size="128x96",
              seed: int = 0, partitions: int = 1, background: str = "scene") -> dict:
    """Write OUT/SUN397 and OUT/Partitions (module docstring); returns a summary."""
    if background not in BACKGROUNDS:
        raise UsageError(f"--background {background}: choose one of {', '.join(BACKGROUNDS)}")
    from PIL import Image
    width, height = parse_size(size)
    for flag, value in (("--train-per-class", train_per_class), ("--test-per-class", test_per_class)):
        if value < 1:
            raise UsageError(f"{flag} {value}: expected at least 1")
    if not 1 <= partitions <= 10:
        raise UsageError(f"--partitions {partitions}: expected 1..10 (SUN397 has ten)")
    start = time.perf_counter()
    categories = choose_categories(classes, seed)
    codes = TreeCodes()
    check_new_output(out)
    with staged_folder(out) as tmp:  # removed if anything fails
        files = {}
        for c, category in enumerate(categories):
            style = scene_style(category, codes.reference)
            appearances = [codes.appearance(w) for w in style["objects"]]
            folder = tmp / "SUN397" / category.strip("/")
            folder.mkdir(parents=True)
            files[category] = []
            for i in range(train_per_class + test_per_class):
                img = render_scene(style, appearances, width, height, np.random.default_rng([seed, 397, c, i]),
                                   background)
                name = image_name(seed, category, i)
                Image.fromarray(img).save(folder / name, "JPEG", quality=JPEG_QUALITY)
                files[category].append(f"{category}/{name}")
        write_partitions(tmp / "Partitions", files, train_per_class, seed, partitions)
        publish_folder(tmp, out)
    return {"classes": len(categories), "train": len(categories) * train_per_class,
            "test": len(categories) * test_per_class, "partitions": partitions,
            "seconds": round(time.perf_counter() - start, 2)}


def write_partitions(folder: Path, files: dict, train_per_class: int, seed: int, partitions: int) -> None:
    folder.mkdir(parents=True)
    (folder / "ClassName.txt").write_text("".join(f"{c}\n" for c in files))
    for p in range(1, partitions + 1):
        train, test = [], []
        for c, (category, paths) in enumerate(files.items()):
            order = np.random.default_rng([seed, 397, 1000 + p, c]).permutation(len(paths))
            train += [paths[i] for i in sorted(order[:train_per_class])]
            test += [paths[i] for i in sorted(order[train_per_class:])]
        (folder / f"Training_{p:02d}.txt").write_text("".join(f"{x}\n" for x in train))
        (folder / f"Testing_{p:02d}.txt").write_text("".join(f"{x}\n" for x in test))

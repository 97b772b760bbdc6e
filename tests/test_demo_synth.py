"""The synthetic-data knobs the demo plan turns: SUN397 scenes told apart by their objects alone."""
import numpy as np
import pytest

from fastload.errors import UsageError
from fastload.synth.imagenet import TreeCodes
from fastload.synth.sun import SUN_CATEGORIES, render_scene, scene_style, write_sun


@pytest.fixture(scope="module")
def codes():
    return TreeCodes()


def sky_colours(category, codes, background, n=12):
    """Mean colour of the top 4 rows (the sky: horizons lie at 0.22..0.78 of the height) of n scene images."""
    style = scene_style(category, codes.reference)
    apps = [codes.appearance(w) for w in style["objects"]]
    out = []
    for i in range(n):
        img = render_scene(style, apps, 64, 48, np.random.default_rng([5, i]), background)
        out.append(img[:4].reshape(-1, 3).mean(axis=0) / 255.0)
    return np.array(out)


def sky_cue_accuracy(codes, background, categories=SUN_CATEGORIES[:6]) -> float:
    """Leave-one-out nearest-category-mean accuracy of the sky's chromaticity: how well the background alone tells
    the scenes apart (chance 1/6)."""
    colours = np.concatenate([sky_colours(c, codes, background) for c in categories])
    colours = colours / colours.sum(axis=1, keepdims=True)
    labels = np.repeat(np.arange(len(categories)), len(colours) // len(categories))
    correct = 0
    for i in range(len(colours)):
        others = np.arange(len(colours)) != i
        means = np.array([colours[others & (labels == k)].mean(axis=0) for k in range(len(categories))])
        correct += int(np.argmin(((means - colours[i]) ** 2).sum(axis=1)) == labels[i])
    return correct / len(colours)


def test_random_background_removes_the_scene_colour_cue(codes):
    assert sky_cue_accuracy(codes, "scene") > 0.5  # each category's own sky and ground colours
    assert sky_cue_accuracy(codes, "random") < 0.2  # a fresh sky per image: chance or below


def test_random_background_keeps_the_objects(codes, tmp_path):
    """Same category, same seed: 'random' changes the background, not which objects the scene holds."""
    summary = write_sun(tmp_path / "sun", classes=2, train_per_class=2, test_per_class=1, size="48x32", seed=3,
                        background="random")
    assert (summary["classes"], summary["train"], summary["test"]) == (2, 4, 2)
    files = sorted((tmp_path / "sun" / "SUN397").rglob("*.jpg"))
    assert len(files) == 6
    style = scene_style(SUN_CATEGORIES[0], codes.reference)
    apps = [codes.appearance(w) for w in style["objects"]]
    scene = render_scene(style, apps, 64, 48, np.random.default_rng(0), "scene")
    random = render_scene(style, apps, 64, 48, np.random.default_rng(0), "random")
    assert scene.shape == random.shape == (48, 64, 3)
    assert np.abs(scene.astype(int) - random.astype(int)).mean() > 5


def test_bad_background_names_the_argument(tmp_path):
    with pytest.raises(UsageError, match="--background plain: choose one of scene, random"):
        write_sun(tmp_path / "sun", classes=2, background="plain")
    assert not (tmp_path / "sun").exists()

"""The one synthetic renderer: an appearance code -> an object drawn into a numpy image.

An `Appearance` is made from three codes (any strings, hashed with SHA-256, never Python's `hash()`):
- the shape code picks the silhouette family and its proportions,
- the colour code picks a two-colour scheme (around a base hue that the shape code sets),
- the texture code picks the surface pattern (kind, frequency, orientation) and a small tint and stretch,
so two objects sharing their shape and colour codes differ only in texture: harder to tell apart than two with
nothing in common. The generators (ImageNet, VOC, SUN397) choose the codes; this module only draws.

Drawing is vectorised numpy over the pixels of the object's window; images are float32 HxWx3 in [0, 1] until
`finish_image` adds lighting and sensor noise and converts to uint8.
"""
import colorsys
import hashlib
import math
from dataclasses import dataclass

import numpy as np

SHAPES = ("ellipse", "box", "triangle", "diamond", "polygon", "star", "ring", "cross", "crescent", "blob")
TEXTURES = ("stripes", "checks", "dots", "rings", "waves", "gradient")


def hash_floats(code: str, n: int, salt: str = "") -> np.ndarray:
    """`n` floats in [0, 1) from SHA-256 of `salt|code`: the same on every machine and Python run."""
    out = []
    counter = 0
    while len(out) < n:
        digest = hashlib.sha256(f"{salt}|{code}|{counter}".encode()).digest()
        out.extend(int.from_bytes(digest[i:i + 4], "little") / 2 ** 32 for i in range(0, 32, 4))
        counter += 1
    return np.array(out[:n], dtype=np.float64)


def hsv_to_rgb(h, s, v) -> tuple:
    return tuple(float(c) for c in colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)))


@dataclass(frozen=True)
class Appearance:
    shape: int            # index into SHAPES
    aspect: float         # width / height of the shape's frame
    shape_param: float    # in [0, 1): star points, ring hole, polygon sides, blob wobble...
    primary: tuple        # RGB in [0, 1]
    secondary: tuple      # RGB in [0, 1], the pattern's second colour
    texture: int          # index into TEXTURES
    frequency: float      # pattern cycles across the object's radius
    angle: float          # pattern orientation (radians)
    contrast: float       # pattern strength in [0, 1]


def make_appearance(shape_code: str, colour_code: str, texture_code: str) -> Appearance:
    """The appearance of three codes (see the module docstring for what each one sets)."""
    s = hash_floats(shape_code, 4, "shape")
    c = hash_floats(colour_code, 6, "colour")
    t = hash_floats(texture_code, 6, "texture")
    # The shape group sets a base hue that its colour groups vary around; the texture (leaf) only tints.
    base = s[3] + 0.3 * (c[0] - 0.5)
    primary = hsv_to_rgb(base + 0.05 * (t[4] - 0.5), 0.45 + 0.5 * c[1], 0.45 + 0.5 * c[2])
    secondary = hsv_to_rgb(base + 0.2 + 0.6 * c[3], 0.3 + 0.6 * c[4], 0.25 + 0.7 * c[5])
    return Appearance(
        shape=int(s[0] * len(SHAPES)), aspect=float((0.65 + 0.7 * s[1]) * (0.92 + 0.16 * t[5])),
        shape_param=float(s[2]), primary=primary, secondary=secondary,
        texture=int(t[0] * len(TEXTURES)), frequency=float(1.5 + 3.5 * t[1]), angle=float(math.pi * t[2]),
        contrast=float(0.55 + 0.45 * t[3]))


def random_appearance(rng: np.random.Generator) -> Appearance:
    """A random appearance for background clutter (from the image's own random stream)."""
    codes = [f"clutter{rng.integers(1 << 30)}" for _ in range(3)]
    return make_appearance(*codes)


def shape_mask(shape: int, u: np.ndarray, v: np.ndarray, param: float) -> np.ndarray:
    """Inside-test of a silhouette in normalised object coordinates (the shape spans about [-1, 1]^2)."""
    name = SHAPES[shape]
    if name == "ellipse":
        return u * u + v * v <= 1.0
    if name == "box":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if name == "triangle":  # apex up (image y grows downwards)
        return (v >= -0.95) & (v <= 0.8) & (np.abs(u) <= (v + 0.95) * 0.6)
    if name == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    r = np.sqrt(u * u + v * v)
    theta = np.arctan2(v, u)
    if name == "polygon":
        n = 5 + int(param * 4)
        sector = np.mod(theta, 2 * math.pi / n) - math.pi / n
        return r * np.cos(sector) <= math.cos(math.pi / n)
    if name == "star":
        n = 4 + int(param * 4)
        return r <= 0.6 + 0.4 * np.cos(n * theta)
    if name == "ring":
        return (r <= 1.0) & (r >= 0.4 + 0.2 * param)
    if name == "cross":
        w = 0.3 + 0.15 * param
        return ((np.abs(u) <= w) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= w) & (np.abs(u) <= 1.0))
    if name == "crescent":
        off = 0.45 + 0.2 * param
        return (r <= 1.0) & ((u - off) ** 2 + v * v > 0.75 ** 2)
    # blob
    return r <= 0.75 + 0.15 * np.sin(3 * theta + 6.0 * param) + 0.1 * np.cos(5 * theta)


def texture_field(app: Appearance, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The pattern's mix weight in [0, 1] between the primary and the secondary colour."""
    ca, sa = math.cos(app.angle), math.sin(app.angle)
    a = u * ca + v * sa
    b = -u * sa + v * ca
    f = app.frequency * math.pi
    name = TEXTURES[app.texture]
    if name == "stripes":
        t = np.sin(f * a)
    elif name == "checks":
        t = np.sin(f * a) * np.sin(f * b) * 2.0
    elif name == "dots":
        t = (np.cos(f * a) + np.cos(f * b)) - 1.0
    elif name == "rings":
        t = np.sin(f * np.sqrt(u * u + v * v) * 1.5)
    elif name == "waves":
        t = np.sin(f * a + 1.5 * np.sin(0.5 * f * b))
    else:  # gradient
        t = a * 1.2
    return np.clip(0.5 + 1.5 * t, 0.0, 1.0)


def draw_object(img: np.ndarray, app: Appearance, cx: float, cy: float, radius: float, angle: float = 0.0,
                mirror: bool = False):
    """Paint `app` centred at (cx, cy) with the given radius (pixels) and rotation into `img` (in place).

    The object may extend past the image border. Returns (full_box, visible_box), each (x0, y0, x1, y1) as 0-based
    inclusive pixel coordinates (full_box may lie partly outside the image; visible_box is None when nothing of the
    object is inside), or None when the object covers no pixel centre at all.
    """
    h, w = img.shape[:2]
    sx, sy = math.sqrt(app.aspect), 1.0 / math.sqrt(app.aspect)
    half = radius * max(sx, sy) * 1.42 + 1.0
    x0, x1 = int(math.floor(cx - half)), int(math.ceil(cx + half))
    y0, y1 = int(math.floor(cy - half)), int(math.ceil(cy + half))
    xs = np.arange(x0, x1 + 1, dtype=np.float32) + 0.5 - cx
    ys = np.arange(y0, y1 + 1, dtype=np.float32) + 0.5 - cy
    X, Y = np.meshgrid(xs, ys)
    ca, sa = math.cos(angle), math.sin(angle)
    u = (X * ca + Y * sa) / (radius * sx)
    v = (-X * sa + Y * ca) / (radius * sy)
    if mirror:
        u = -u
    mask = shape_mask(app.shape, u, v, app.shape_param)
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if rows.size == 0:
        return None
    full = (x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]), y0 + int(rows[-1]))
    vx0, vy0, vx1, vy1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
    if vx0 > vx1 or vy0 > vy1:
        return full, None
    sub = (slice(vy0 - y0, vy1 - y0 + 1), slice(vx0 - x0, vx1 - x0 + 1))
    m, uu, vv = mask[sub], u[sub], v[sub]
    t = (texture_field(app, uu, vv) * app.contrast)[..., None]
    colour = np.asarray(app.primary, np.float32) * (1 - t) + np.asarray(app.secondary, np.float32) * t
    shade = (1.08 - 0.3 * np.minimum(uu * uu + vv * vv, 1.0))[..., None]  # a little roundness
    region = img[vy0:vy1 + 1, vx0:vx1 + 1]
    region[m] = (colour * shade)[m]
    vis_rows, vis_cols = np.nonzero(m.any(axis=1))[0], np.nonzero(m.any(axis=0))[0]
    if vis_rows.size == 0:
        return full, None
    visible = (vx0 + int(vis_cols[0]), vy0 + int(vis_rows[0]), vx0 + int(vis_cols[-1]), vy0 + int(vis_rows[-1]))
    return full, visible


def muted_colour(rng: np.random.Generator) -> tuple:
    return hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.35), rng.uniform(0.3, 0.9))


def draw_background(height: int, width: int, rng: np.random.Generator, top=None, bottom=None,
                    horizon: float = None, clutter: int = 3) -> np.ndarray:
    """A background: two-colour gradient (random muted colours unless given, so objects stand out as in photos),
    soft low-frequency blotches and a few small random clutter objects. `horizon` (fraction of the height) makes a
    sharp sky/ground split instead."""
    top = np.asarray(top if top is not None else muted_colour(rng), np.float32)
    bottom = np.asarray(bottom if bottom is not None else muted_colour(rng), np.float32)
    y = (np.arange(height, dtype=np.float32) + 0.5) / height
    x = (np.arange(width, dtype=np.float32) + 0.5) / width
    tilt = rng.uniform(-0.3, 0.3)
    pos = y[:, None] + tilt * (x[None, :] - 0.5)
    if horizon is None:
        mix = np.clip(pos, 0.0, 1.0)
    else:
        mix = np.clip((pos - horizon) * 12.0 + 0.5, 0.0, 1.0)
    img = top * (1 - mix[..., None]) + bottom * mix[..., None]
    fx, fy, px, py = rng.uniform(1.0, 4.0), rng.uniform(1.0, 4.0), rng.uniform(0, 6.3), rng.uniform(0, 6.3)
    blotch = 1.0 + 0.12 * np.sin(fx * 6.28 * x[None, :] + px) * np.sin(fy * 6.28 * y[:, None] + py)
    img = (img * blotch[..., None]).astype(np.float32)
    small = min(height, width)
    for _ in range(clutter):
        draw_object(img, random_appearance(rng), rng.uniform(0, width), rng.uniform(0, height),
                    small * rng.uniform(0.04, 0.1), rng.uniform(-math.pi, math.pi))
    return img


def finish_image(img: np.ndarray, rng: np.random.Generator, noise=(0.01, 0.04), gain=(0.75, 1.2)) -> np.ndarray:
    """Lighting (overall gain, a brightness slope and a colour cast) and Gaussian sensor noise -> uint8 HxWx3."""
    h, w = img.shape[:2]
    y = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    x = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    light = rng.uniform(*gain) + rng.uniform(-0.3, 0.3) * x + rng.uniform(-0.3, 0.3) * y
    cast = rng.uniform(0.94, 1.06, 3).astype(np.float32)
    out = img * light[..., None] * cast
    out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(rng.uniform(*noise))
    return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def render_object_image(app: Appearance, width: int, height: int, rng: np.random.Generator):
    """One object on a cluttered background with random position, scale, rotation, mirroring and lighting
    (the ImageNet generator's image). Returns (uint8 HxWx3, box (x0, y0, x1, y1) 0-based inclusive, clipped)."""
    img = draw_background(height, width, rng, clutter=int(rng.integers(0, 5)))
    small = min(width, height)
    radius = small * rng.uniform(0.22, 0.36)
    cx = width / 2 + rng.uniform(-0.18, 0.18) * width
    cy = height / 2 + rng.uniform(-0.18, 0.18) * height
    drawn = draw_object(img, app, cx, cy, radius, rng.uniform(-0.6, 0.6), bool(rng.integers(2)))
    box = drawn[1] if drawn is not None and drawn[1] is not None else (0, 0, width - 1, height - 1)
    return finish_image(img, rng), box

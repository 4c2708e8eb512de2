"""The embedded sample set (`data=sample`): ten classes of rendered objects, generated on first use.

Each image is a cluttered, colour-gradient background with one object of the class at a random
position, scale, rotation and colour, saved as a JPEG of a photo-like size and aspect ratio (portrait
and landscape). Everything is drawn from `random.Random((seed, split, class, i))`, so the set is the same
on every machine.
"""
from __future__ import annotations

import math
import os
import random
import shutil
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

from common.errors import UserError
from common.files import current_umask

CLASSES = ("circle", "square", "triangle", "star", "cross", "ring", "stripes", "checkerboard", "dots", "crescent")
VERSION = 1
DEFAULT_COUNTS = {"train": 100, "val": 30}


def default_root() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "googlenet-inception" / f"sample-v{VERSION}"


def _random_colour(rng: random.Random, lo: int = 0, hi: int = 255) -> tuple[int, int, int]:
    return tuple(rng.randint(lo, hi) for _ in range(3))


def _background(rng: random.Random, width: int, height: int) -> Image.Image:
    top, bottom = _random_colour(rng, 60, 200), _random_colour(rng, 60, 200)
    img = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(img)
    for y in range(height):
        t = y / max(height - 1, 1)
        draw.line([(0, y), (width, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    for _ in range(rng.randint(3, 8)):  # clutter: faint lines and small blobs
        colour = _random_colour(rng, 40, 220)
        if rng.random() < 0.5:
            pts = [(rng.uniform(0, width), rng.uniform(0, height)) for _ in range(2)]
            draw.line(pts, fill=colour, width=rng.randint(1, 3))
        else:
            x, y, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(2, 6)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    return img


def _polygon(cx, cy, radius, sides, angle, inner=None):
    points = []
    for k in range(sides * (2 if inner else 1)):
        r = inner if inner and k % 2 else radius
        a = angle + math.pi * 2 * k / (sides * (2 if inner else 1))
        points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return points


def _draw_object(img: Image.Image, label: str, rng: random.Random) -> None:
    width, height = img.size
    size = min(width, height) * rng.uniform(0.3, 0.6)
    r = size / 2
    cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
    colour = _random_colour(rng)
    # keep the object visible against the background
    if sum(colour) / 3 > 100 and sum(colour) / 3 < 160:
        colour = tuple(min(255, c + 90) if rng.random() < 0.5 else max(0, c - 90) for c in colour)
    other = tuple(255 - c for c in colour)
    angle = rng.uniform(-0.3, 0.3)
    draw = ImageDraw.Draw(img)
    box = [cx - r, cy - r, cx + r, cy + r]
    if label == "circle":
        draw.ellipse(box, fill=colour)
    elif label == "square":
        draw.polygon(_polygon(cx, cy, r * 1.2, 4, math.pi / 4 + angle), fill=colour)
    elif label == "triangle":
        draw.polygon(_polygon(cx, cy, r, 3, -math.pi / 2 + angle), fill=colour)
    elif label == "star":
        draw.polygon(_polygon(cx, cy, r, 5, -math.pi / 2 + angle, inner=r * 0.4), fill=colour)
    elif label == "cross":
        t = r * 0.3
        draw.rectangle([cx - r, cy - t, cx + r, cy + t], fill=colour)
        draw.rectangle([cx - t, cy - r, cx + t, cy + r], fill=colour)
    elif label == "ring":
        draw.ellipse(box, outline=colour, width=max(2, int(r * 0.25)))
    elif label == "stripes":
        step = max(3, int(r / rng.randint(3, 5)))
        for k, x in enumerate(range(int(cx - r), int(cx + r), step)):
            draw.rectangle([x, cy - r, x + step - 1, cy + r], fill=colour if k % 2 else other)
    elif label == "checkerboard":
        n = rng.randint(3, 5)
        cell = 2 * r / n
        for i in range(n):
            for j in range(n):
                fill = colour if (i + j) % 2 else other
                draw.rectangle([cx - r + i * cell, cy - r + j * cell, cx - r + (i + 1) * cell, cy - r + (j + 1) * cell],
                               fill=fill)
    elif label == "dots":
        n = rng.randint(3, 4)
        cell = 2 * r / n
        for i in range(n):
            for j in range(n):
                x, y = cx - r + (i + 0.5) * cell, cy - r + (j + 0.5) * cell
                draw.ellipse([x - cell * 0.3, y - cell * 0.3, x + cell * 0.3, y + cell * 0.3], fill=colour)
    elif label == "crescent":
        background = img.getpixel((int(cx), int(cy)))
        draw.ellipse(box, fill=colour)
        shift = r * 0.6
        draw.ellipse([cx - r + shift, cy - r - shift * 0.3, cx + r + shift, cy + r - shift * 0.3], fill=background)
    else:
        raise ValueError(label)


def render_image(label: str, rng: random.Random) -> Image.Image:
    width = rng.randint(120, 220)
    aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    height = int(width / aspect)
    img = _background(rng, width, height)
    _draw_object(img, label, rng)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return img


def generate(root: Path, seed: int = 0, counts: dict[str, int] | None = None,
             classes: tuple[str, ...] = CLASSES) -> Path:
    """Write ROOT/<split>/<class>/<i>.JPEG for every split (and the given classes); returns root. Another seed
    draws new images of the same classes: a held-out set."""
    counts = counts or DEFAULT_COUNTS
    for split, count in counts.items():
        for label in classes:
            c = CLASSES.index(label)
            folder = root / split / f"{c:02d}_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                rng = random.Random(f"{seed}:{split}:{label}:{i}")
                render_image(label, rng).save(folder / f"{label}_{i:04d}.JPEG", quality=rng.randint(80, 95))
    return root


def ensure_sample_data(root=None, seed: int = 0) -> Path:
    """The sample set's folder, generated first if missing; concurrent callers never see half a set.

    It is generated only into an absent or empty folder: a folder that holds anything else is never deleted or
    overwritten (a one-line error says so instead).
    """
    root = Path(root).expanduser() if root else default_root()
    if (root / ".complete").is_file():
        return root
    if root.is_symlink():  # generated where the link points (a folder cannot be renamed over a link)
        root = Path(os.path.realpath(root))
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UserError(f"data.root={root} holds other files and is not a sample set; data=sample generates only "
                        "into an empty or absent folder: pass another data.root (or none for the default cache)")
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    except OSError as e:
        raise UserError(f"cannot create the sample set at {root}: {e.strerror}; pass a writable data.root") from None
    try:
        generate(tmp, seed)
        (tmp / ".complete").write_text(f"version {VERSION} seed {seed}\n")
        os.chmod(tmp, 0o777 & ~current_umask())  # a folder like any other (mkdtemp's is private to its owner)
        os.rename(tmp, root)  # replaces an empty folder; fails if another process finished first
    except OSError:
        if not (root / ".complete").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root

"""Generated images that are not digits, and damaged digits: numpy + Pillow only, seeded.

Two uses, one generator: training adds :func:`negatives` as an extra "not a digit" class
(outlier exposure), the model card's threshold is chosen on another seed's negatives, and
``mnist-batch evaluate --trust`` measures the model on yet other seeds' sets and on
:func:`corrupt`-ed test digits. Fonts are split three ways (:data:`FONT_ROLES`), so the letters
a threshold is chosen on, and those it is judged on, come from fonts training never saw.

Every function is deterministic for a given seed (``numpy.random.default_rng``) and returns
MNIST-format uint8 images: white ink on black, [N, 28, 28].
"""

from __future__ import annotations

import functools
import io
import pathlib

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from mnist_batch.constants import IMAGE_SIZE
from mnist_batch.preprocess import to_mnist

FONT_DIR = pathlib.Path("/usr/share/fonts/truetype/dejavu")
"""Where Debian's ``fonts-dejavu-core`` puts its fonts; without it, Pillow's own default font."""

FONT_ROLES = ("train", "validation", "evaluation")
"""Disjoint font subsets: every third font (sorted by name) per role."""

GLYPHS = "ACEFGHKLMNPRTUVWXYacefhkmnprtuvwxy#%&*+=?@$<>~^Σπλ€£¥§¶©®±÷×∞√∫≈≠≤≥"
"""Letters and symbols drawn as non-digits. Left out: shapes that ARE digit shapes in some hand
(O o D Q 0; I l i j ! | / \\ ( ) [ ] { } 1 7; S s 5; Z z 2; B b 6 8; g q 9; J; the minus sign),
which no check on the image alone can tell from a digit."""

NEGATIVE_KINDS = ("noise", "blank", "blobs", "strokes", "glyphs")
"""The kinds of generated non-digits, in the order :func:`negatives` cycles through them."""

TRAINING_KINDS = ("noise", "blank", "blobs", "strokes", "glyphs", "glyphs", "glyphs")
"""What training draws (:func:`negatives` ``kinds``): glyphs three times as often, as ~70 shapes
need more examples than noise does."""

CORRUPTIONS = ("noise", "blur", "thin", "thick", "rotate", "scale", "shift", "contrast", "jpeg")
"""Damage a scan can do to a digit (:func:`corrupt`); the label stays the digit's."""


def font_files(role: str) -> tuple[str, ...]:
    """The TrueType files of one role (:data:`FONT_ROLES`); ``()`` when the machine has none."""
    if role not in FONT_ROLES:
        raise ValueError(f"font role must be one of {FONT_ROLES}, got {role!r}")
    files = sorted(str(p) for p in FONT_DIR.glob("*.ttf")) if FONT_DIR.is_dir() else []
    return tuple(files[FONT_ROLES.index(role) :: len(FONT_ROLES)])


@functools.lru_cache(maxsize=256)
def _font(path: str | None, size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    if path is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(path, size=size)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def noise_field(rng: np.random.Generator) -> np.ndarray:
    """One field of noise or texture: uniform, Gaussian, sparse specks, smooth clouds or a grating."""
    s = IMAGE_SIZE
    kind = rng.integers(5)
    if kind == 0:
        img = rng.uniform(0, rng.uniform(60, 256), (s, s))
    elif kind == 1:
        img = rng.normal(rng.uniform(0, 128), rng.uniform(20, 100), (s, s))
    elif kind == 2:
        img = (rng.random((s, s)) < rng.uniform(0.03, 0.5)) * rng.uniform(100, 255)
    elif kind == 3:
        low = rng.uniform(0, 255, (rng.integers(3, 8),) * 2).astype(np.float32)
        img = np.asarray(Image.fromarray(low, mode="F").resize((s, s), Image.Resampling.BICUBIC))
    else:
        yy, xx = np.mgrid[0:s, 0:s]
        angle, period = rng.uniform(0, np.pi), rng.uniform(3, 10)
        img = 127.5 * (1 + np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period))
    return _to_uint8(img)


def blank_field(rng: np.random.Generator) -> np.ndarray:
    """An empty box: one grey level, maybe a faint gradient or a few specks."""
    s = IMAGE_SIZE
    img = np.full((s, s), rng.uniform(0, 255))
    if rng.random() < 0.5:
        img = img + np.linspace(0, rng.uniform(-40, 40), s)[None, :]
    if rng.random() < 0.5:
        specks = rng.random((s, s)) < rng.uniform(0.002, 0.02)
        img = np.where(specks, rng.uniform(0, 255), img)
    return _to_uint8(img)


def _scaled_canvas(rng: np.random.Generator, draw_fn) -> np.ndarray:
    """Draws at 4x on a black canvas, blurs a little, shrinks to 28x28 (anti-aliased ink)."""
    big = IMAGE_SIZE * 4
    canvas = Image.new("L", (big, big), 0)
    draw_fn(ImageDraw.Draw(canvas), big)
    canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 3.0)))
    return np.asarray(canvas.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX), dtype=np.uint8)


def blobs(rng: np.random.Generator) -> np.ndarray:
    """1-5 filled or outlined ellipses and rectangles of random size and grey level."""

    def draw(d: ImageDraw.ImageDraw, big: int) -> None:
        for _ in range(rng.integers(1, 6)):
            x0, y0 = rng.uniform(0, big * 0.8, 2)
            w, h = rng.uniform(big * 0.1, big * 0.9, 2)
            box = [x0, y0, min(x0 + w, big - 1), min(y0 + h, big - 1)]
            fill = int(rng.uniform(90, 256))
            shape = d.ellipse if rng.random() < 0.6 else d.rectangle
            if rng.random() < 0.7:
                shape(box, fill=fill)
            else:
                shape(box, outline=fill, width=int(rng.integers(4, 16)))

    return _scaled_canvas(rng, draw)


def strokes(rng: np.random.Generator) -> np.ndarray:
    """A scribble: 4-9 random pen strokes (lines and arcs) across the box."""

    def draw(d: ImageDraw.ImageDraw, big: int) -> None:
        width = int(rng.integers(5, 14))
        for _ in range(rng.integers(4, 10)):
            if rng.random() < 0.6:
                d.line([tuple(rng.uniform(8, big - 8, 2)) for _ in range(rng.integers(2, 4))], fill=255, width=width)
            else:
                x0, y0 = rng.uniform(0, big * 0.6, 2)
                w, h = rng.uniform(big * 0.2, big * 0.6, 2)
                start = rng.uniform(0, 360)
                box = [x0, y0, min(x0 + w, big - 1), min(y0 + h, big - 1)]
                d.arc(box, start, start + rng.uniform(60, 300), fill=255, width=width)

    return _scaled_canvas(rng, draw)


def glyph(rng: np.random.Generator, fonts: tuple[str, ...]) -> np.ndarray:
    """A letter or symbol of :data:`GLYPHS` in a font of ``fonts``, made MNIST format by ``to_mnist``."""
    char = GLYPHS[rng.integers(len(GLYPHS))]
    font = _font(fonts[rng.integers(len(fonts))] if fonts else None, int(rng.integers(36, 64)))
    canvas = Image.new("L", (96, 96), 0)
    ImageDraw.Draw(canvas).text((48, 48), char, fill=255, font=font, anchor="mm")
    if rng.random() < 0.5:
        canvas = canvas.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BILINEAR)
    return to_mnist(np.asarray(canvas, dtype=np.uint8)).pixels


def negatives(n: int, *, seed: int, role: str = "train", kinds: tuple[str, ...] = NEGATIVE_KINDS) -> np.ndarray:
    """``n`` generated non-digits, the kinds taking turns (glyphs from ``role``'s fonts).

    Args:
      n: how many.
      seed: the generator's seed; another seed gives other images.
      role: which fonts the glyphs use (:data:`FONT_ROLES`).
      kinds: which of :data:`NEGATIVE_KINDS`.

    Returns:
      uint8 [n, 28, 28], white ink on black.
    """
    unknown = sorted(set(kinds) - set(NEGATIVE_KINDS))  # a kind may repeat: it is drawn that much more
    if unknown:
        raise ValueError(f"unknown negative kind(s) {unknown}; known: {NEGATIVE_KINDS}")
    rng = np.random.default_rng(seed)
    fonts = font_files(role)
    makers = {
        "noise": noise_field,
        "blank": blank_field,
        "blobs": blobs,
        "strokes": strokes,
        "glyphs": lambda r: glyph(r, fonts),
    }
    out = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for i in range(n):
        out[i] = makers[kinds[i % len(kinds)]](rng)
    return out


def _per_image(images: np.ndarray, fn) -> np.ndarray:
    return np.stack([np.asarray(fn(Image.fromarray(img, mode="L"), i), dtype=np.uint8) for i, img in enumerate(images)])


def _affine(images: np.ndarray, rng: np.random.Generator, *, rotate=0.0, scale=1.0, shift=0.0) -> np.ndarray:
    n = len(images)
    angles = rng.choice([-1.0, 1.0], n) * rotate
    shifts = rng.choice([-1.0, 1.0], (n, 2)) * shift

    def one(img: Image.Image, i: int) -> Image.Image:
        c = (IMAGE_SIZE - 1) / 2
        a = np.deg2rad(angles[i])
        cos, sin = np.cos(a) / scale, np.sin(a) / scale
        dx, dy = shifts[i]
        # Output (x, y) samples input M @ ((x, y) - c) + c - shift.
        coeffs = (cos, -sin, c - cos * c + sin * c - dx, sin, cos, c - sin * c - cos * c - dy)
        return img.transform(img.size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)

    return _per_image(images, one)


def corrupt(images: np.ndarray, kind: str, *, seed: int = 0) -> np.ndarray:
    """Damaged copies of digits, one fixed severity per kind (the trust report's sets).

    ``noise``: Gaussian noise, sigma 0.3 of full scale; ``blur``: Gaussian blur, sigma 1.5 px;
    ``thin``/``thick``: 3x3 min/max filter (strokes eroded/dilated); ``rotate``: +-25 degrees;
    ``scale``: 60 % size; ``shift``: +-4 px both axes; ``contrast``: ink at 30 % over a grey
    background; ``jpeg``: JPEG quality 10.

    Args:
      images: uint8 [N, 28, 28], white ink on black.
      kind: one of :data:`CORRUPTIONS`.
      seed: the noise's and the signs' seed.

    Returns:
      uint8 [N, 28, 28].
    """
    images = np.asarray(images, dtype=np.uint8)
    rng = np.random.default_rng(seed)
    if kind == "noise":
        return _to_uint8(images + rng.normal(0, 0.3 * 255, images.shape))
    if kind == "blur":
        return _per_image(images, lambda img, _: img.filter(ImageFilter.GaussianBlur(1.5)))
    if kind == "thin":
        return _per_image(images, lambda img, _: img.filter(ImageFilter.MinFilter(3)))
    if kind == "thick":
        return _per_image(images, lambda img, _: img.filter(ImageFilter.MaxFilter(3)))
    if kind == "rotate":
        return _affine(images, rng, rotate=25.0)
    if kind == "scale":
        return _affine(images, rng, scale=0.6)
    if kind == "shift":
        return _affine(images, rng, shift=4.0)
    if kind == "contrast":
        return _to_uint8(images * 0.3 + 60)
    if kind == "jpeg":
        return _per_image(images, lambda img, _: _jpeg(img, 10))
    raise ValueError(f"unknown corruption {kind!r}; known: {CORRUPTIONS}")


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("L")

"""The shared preprocessing: each step as a pure function, then the whole on every mode/format."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mnist_batch import decoding
from mnist_batch import preprocess as pp
from mnist_batch.data.export import export_images

import scoring_fixtures

sample_data = scoring_fixtures.sample_data


@pytest.fixture(scope="module")
def digit(sample_data) -> np.ndarray:
    return sample_data.split("test").images[3]


# --- normalize / LUT -------------------------------------------------------------------------


def test_normalize_is_the_lookup_table_and_byte_over_255():
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    padded = np.zeros((28, 28), np.uint8)
    padded[:16, :16] = values
    out = pp.normalize(padded)
    assert out.shape == (28, 28, 1) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:16, :16, 0], (values.astype(np.float32) / np.float32(255.0)))
    with pytest.raises(ValueError, match="uint8"):
        pp.normalize(padded.astype(np.float32))
    with pytest.raises(ValueError, match="28, 28"):
        pp.normalize(np.zeros((27, 28), np.uint8))


# --- decoding --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"not an image at all", "not an image Pillow can identify"),
        (scoring_fixtures.png_header_only(60000, 60000), "over the pixel limit"),
        (scoring_fixtures.png_header_only(0, 0), "not an image Pillow can identify"),
    ],
)
def test_decode_refuses_bad_bytes_with_a_reason(data, message):
    with pytest.raises(decoding.ImageDecodeError, match=message) as first:
        decoding.decode_image(data)
    # The same bad file always gets the same message (no object addresses in it).
    with pytest.raises(decoding.ImageDecodeError) as again:
        decoding.decode_image(bytes(data))
    assert str(first.value) == str(again.value) and " at 0x" not in str(first.value)


def test_decode_refuses_truncated_png_and_jpeg(digit):
    png = scoring_fixtures.encode(Image.fromarray(digit), "PNG")
    big = Image.fromarray(np.tile(digit, (8, 8)))
    jpg = scoring_fixtures.encode(big, "JPEG", quality=90)
    for data in (png[: len(png) // 2], jpg[: len(jpg) // 3]):
        with pytest.raises(decoding.ImageDecodeError):
            decoding.decode_image(data)


def test_decode_pixel_limit_is_checked_before_decoding():
    data = scoring_fixtures.encode(Image.new("L", (100, 100), 0), "PNG")
    assert decoding.decode_image(data, max_pixels=10_000).shape == (100, 100)
    with pytest.raises(decoding.ImageDecodeError, match="100x100 pixels, over the limit of 9,999"):
        decoding.decode_image(data, max_pixels=9_999)


def test_every_mode_and_format_decodes_to_the_digit(digit):
    variants = scoring_fixtures.encode_variants(digit)
    modes = {name: Image.open(io.BytesIO(data)).mode for name, data in variants.items()}
    # The variants really cover the modes the issue lists.
    assert {"L", "LA", "1", "P", "RGB", "RGBA", "CMYK", "I;16"} <= set(modes.values())
    for name, data in variants.items():
        result = pp.preprocess_bytes(data)
        assert result.pixels.shape == (28, 28) and result.pixels.dtype == np.uint8, name
        assert not result.blank, name
        error = np.abs(result.pixels.astype(int) - digit.astype(int)).mean()
        # Lossless variants come back exactly; JPEG within a grey level; 1-bit is thresholded.
        limit = 10.0 if name == "one_bit.bmp" else 1.0
        assert error <= limit, f"{name}: mean abs difference {error:.2f}"
    lossless = ("gray.png", "sixteen_bit.png", "digit.webp", "digit.tiff", "ink_in_alpha.png", "la.png")
    for name in (*lossless, "animated.gif", "palette_transparent.png", "scan_gray.png"):
        np.testing.assert_array_equal(pp.preprocess_bytes(variants[name]).pixels, digit, err_msg=name)


def test_exif_orientation_is_applied(digit):
    data = scoring_fixtures.encode_variants(digit)["exif_rotated.jpg"]
    with Image.open(io.BytesIO(data)) as raw:
        stored = np.asarray(raw.convert("L"))
    decoded = decoding.decode_image(data)
    assert np.abs(decoded.astype(int) - digit).mean() < 1.0
    assert np.abs(stored.astype(int) - digit).mean() > 10.0  # the stored pixels really were rotated


def test_sixteen_bit_is_scaled_not_clipped():
    ramp = (np.arange(28 * 28, dtype=np.uint16).reshape(28, 28) * 83).astype(np.uint16)
    gray = decoding.decode_image(scoring_fixtures.encode(Image.fromarray(ramp), "PNG"))
    np.testing.assert_array_equal(gray, np.rint(ramp / 257.0).astype(np.uint8))


def test_rgba_composites_on_the_paper():
    rng = np.random.default_rng(0)
    strokes = np.zeros((10, 10, 4), np.uint8)
    strokes[..., :3] = rng.integers(0, 60, (10, 10, 1))  # dark strokes of varying darkness
    strokes[3:7, 3:7, 3] = 255  # opaque only on the strokes
    gray = decoding.to_grayscale(Image.fromarray(strokes, mode="RGBA"))
    assert gray[0, 0] == 255 and gray[5, 5] < 60  # transparent -> white paper
    light = strokes.copy()
    light[..., :3] = 255 - strokes[..., :3]
    gray = decoding.to_grayscale(Image.fromarray(light, mode="RGBA"))
    assert gray[0, 0] == 0 and gray[5, 5] > 195  # light strokes -> black paper
    scan = np.zeros((10, 10, 4), np.uint8)
    scan[..., :3] = 230
    scan[4:6, 2:8, :3] = 10  # ink on opaque paper ...
    scan[..., 3] = 255
    scan[:, :2, 3] = 0  # ... with a transparent margin
    gray = decoding.to_grayscale(Image.fromarray(scan, mode="RGBA"))
    assert gray[0, 0] == 230 and gray[5, 5] == 10  # the margin continues the paper


def test_ink_only_in_alpha_becomes_white_on_black():
    rgba = np.zeros((12, 12, 4), np.uint8)
    rgba[2:10, 5:7, 3] = 200
    gray = decoding.to_grayscale(Image.fromarray(rgba, mode="RGBA"))
    np.testing.assert_array_equal(gray, rgba[..., 3])


# --- MNIST-style steps -----------------------------------------------------------------------


def test_polarity():
    scan = np.full((40, 30), 220, np.uint8)
    scan[10:30, 10:14] = 20
    assert pp.is_dark_on_light(scan)
    assert not pp.is_dark_on_light(255 - scan)
    grey_paper = np.full((40, 30), 120, np.uint8)
    grey_paper[10:30, 10:14] = 10
    assert pp.is_dark_on_light(grey_paper)


def test_background_subtraction_removes_paper_and_its_noise():
    rng = np.random.default_rng(1)
    ink = np.clip(rng.normal(40, 5, (60, 60)), 0, 255).astype(np.uint8)
    ink[20:40, 25:30] = 230
    out = pp.subtract_background(ink)
    paper = np.concatenate([out[:20].ravel(), out[45:].ravel()])
    assert (paper > 0).mean() < 0.001 and paper.max() < 0.2 * out.max()
    assert out[20:40, 25:30].min() >= 230 - 40 - 4 * 5 * 1.2


def test_stretch_contrast():
    ink = np.array([[0, 50, 100]], np.uint8)
    np.testing.assert_array_equal(pp.stretch_contrast(ink), [[0, 128, 255]])
    np.testing.assert_array_equal(pp.stretch_contrast(np.zeros((2, 2), np.uint8)), np.zeros((2, 2)))


def test_ink_bbox_ignores_faint_specks():
    ink = np.zeros((50, 40), np.uint8)
    ink[10:30, 5:12] = 200
    assert pp.ink_bbox(ink) == (10, 5, 30, 12)
    ink[45, 38] = 30  # a faint speck below 20 % of the ink
    assert pp.ink_bbox(ink) == (10, 5, 30, 12)
    assert pp.ink_bbox(np.zeros((5, 5), np.uint8)) is None


@pytest.mark.parametrize(("shape", "expected"), [((100, 50), (20, 10)), ((10, 40), (5, 20)), ((7, 7), (20, 20))])
def test_fit_to_box_keeps_aspect_ratio(shape, expected):
    glyph = np.full(shape, 255, np.uint8)
    out = pp.fit_to_box(glyph)
    assert out.shape == expected and out.dtype == np.uint8
    assert out.max() == 255


def test_fit_to_box_is_anti_aliased():
    stripes = np.zeros((200, 200), np.uint8)
    stripes[:, ::2] = 255
    out = pp.fit_to_box(stripes)
    assert 100 < out.mean() < 155 and out.std() < 30  # averaged, not sampled (which gives 0 or 255)


def test_center_of_mass_and_paste_centered():
    glyph = np.zeros((20, 10), np.uint8)
    glyph[15:20, :] = 255  # mass low in the box
    cy, cx = pp.center_of_mass(glyph)
    assert (cy, cx) == (17.0, 4.5)
    canvas = pp.paste_centered(glyph)
    assert canvas.shape == (28, 28) and canvas.sum() == glyph.sum()  # whole glyph kept
    cy, cx = pp.center_of_mass(canvas)
    # The centre of mass would be at 14 but the glyph must stay inside the canvas.
    assert abs(cx - 14) <= 0.5 and cy >= 14 - 0.5
    assert pp.center_of_mass(np.zeros((4, 6), np.uint8)) == (1.5, 2.5)
    with pytest.raises(ValueError, match="does not fit"):
        pp.paste_centered(np.ones((29, 3), np.uint8))


def test_to_mnist_steps_on_a_scan(sample_data):
    rng = np.random.default_rng(7)
    digit = sample_data.split("test").images[0]
    scan = scoring_fixtures.scan_like(digit, rng)
    result = pp.to_mnist(scan)
    assert result.inverted and not result.blank and not result.passthrough
    rows, cols = np.nonzero(result.pixels > 0.2 * 255)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (19, 20, 21)
    cy, cx = pp.center_of_mass(result.pixels)
    assert abs(cy - 14) <= 0.75 and abs(cx - 14) <= 0.75
    assert result.pixels.max() >= 200 and result.pixels[:2].max() == 0


@pytest.mark.parametrize(
    "gray",
    [
        np.full((28, 28), 255, np.uint8),
        np.zeros((28, 28), np.uint8),
        np.full((100, 60), 255, np.uint8),
        np.zeros((100, 60), np.uint8),
        np.random.default_rng(0).integers(200, 210, (80, 80)).astype(np.uint8),
    ],
    ids=["white28", "black28", "white", "black", "flat-noise"],
)
def test_blank_images_are_flagged_not_crashed(gray):
    result = pp.to_mnist(gray)
    assert result.blank
    assert result.pixels.shape == (28, 28)


def test_to_mnist_rejects_non_uint8():
    with pytest.raises(ValueError, match="uint8"):
        pp.to_mnist(np.zeros((28, 28), np.float32))


def test_preprocessing_a_large_image_gives_the_digit(sample_data):
    rng = np.random.default_rng(3)
    digit = sample_data.split("test").images[5]
    big = scoring_fixtures.scan_like(digit, rng, width=3000, height=2000)
    small = scoring_fixtures.scan_like(digit, np.random.default_rng(3))
    a, b = pp.to_mnist(big).pixels.astype(int), pp.to_mnist(small).pixels.astype(int)
    assert np.abs(a - digit).mean() < 25 and np.abs(b - digit).mean() < 25


# --- pass-through ----------------------------------------------------------------------------


def test_exported_test_split_passes_through_bit_identical(sample_data, tmp_path):
    """Every PNG of the exported test split reaches the model exactly as normalize(array) does."""
    test = sample_data.split("test")
    export_images(sample_data, "test", tmp_path)
    paths = sorted(tmp_path.glob("*/*.png"))
    assert len(paths) == len(test) == 2000
    for path in paths:
        index = int(path.stem)
        result = pp.preprocess_bytes(path.read_bytes())
        assert result.passthrough, path
        np.testing.assert_array_equal(result.pixels, test.images[index], err_msg=str(path))
        assert int(path.parent.name) == test.labels[index]
    stacked = np.stack([pp.preprocess_bytes(p.read_bytes()).pixels for p in paths])
    order = np.array([int(p.stem) for p in paths])
    assert pp.normalize(stacked).tobytes() == pp.normalize(test.images[order]).tobytes()


# --- large images: decoded reduced (issue #11) ------------------------------------------------


def big_scan_variants(digit) -> dict[str, bytes]:
    """A 2000x2600 (5.2 MP) scan of the digit in the modes the reduced decode converts or keeps."""
    small = scoring_fixtures.scan_like(digit, np.random.default_rng(1))
    big = Image.fromarray(small).resize((small.shape[1] * 10, small.shape[0] * 10), Image.Resampling.BICUBIC)
    ink_in_alpha = Image.merge("RGBA", [Image.new("L", big.size, 0)] * 3 + [Image.fromarray(255 - np.asarray(big))])
    encode = scoring_fixtures.encode
    return {
        "L.png": encode(big, "PNG"),
        "rgb.jpg": encode(big.convert("RGB"), "JPEG", quality=95),
        "sixteen_bit.png": encode(Image.fromarray(np.asarray(big).astype(np.uint16) * 257), "PNG"),
        "ink_in_alpha.png": encode(ink_in_alpha, "PNG"),
        "palette.png": encode(big.convert("P"), "PNG"),
        "one_bit.png": encode(big.point(lambda v: 255 if v >= 128 else 0).convert("1"), "PNG"),
        "rgba.png": encode(big.convert("RGBA"), "PNG"),
    }


@pytest.mark.slow
def test_large_images_are_decoded_reduced_and_normalise_as_the_full_image_does(digit):
    for name, data in big_scan_variants(digit).items():
        gray = decoding.decode_image(data)
        assert gray.shape == (1300, 1000) and gray.dtype == np.uint8, name  # 2000x2600 / 2: under 4 MP
        with Image.open(io.BytesIO(data)) as full_image:
            full = pp.to_mnist(decoding.to_grayscale(full_image)).pixels.astype(int)
        error = np.abs(pp.to_mnist(gray).pixels.astype(int) - full).mean()
        assert error < 1.0, f"{name}: mean abs difference {error:.2f} from the full-size decode"


def test_a_large_jpeg_is_decoded_reduced_with_its_exif_orientation():
    stored = Image.new("L", (3000, 2000), 230)
    stored.paste(20, (300, 200, 900, 600))  # a dark block near the top left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = scoring_fixtures.encode(stored.convert("RGB"), "JPEG", quality=95, exif=exif)
    gray = decoding.decode_image(data)
    assert gray.shape == (1500, 1000)  # 3000x2000 at 1/2 scale, then turned upright: portrait
    expected = np.asarray(stored.reduce(2).transpose(Image.Transpose.ROTATE_270))
    assert np.abs(gray.astype(int) - expected).mean() < 2.0


def test_images_up_to_the_work_limit_decode_exactly_as_before(digit):
    """The reduced path starts above MAX_WORK_PIXELS; at or under it nothing changes."""
    side = int(decoding.MAX_WORK_PIXELS**0.5)
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (side, side), dtype=np.uint8))
    np.testing.assert_array_equal(decoding.decode_image(scoring_fixtures.encode(img, "PNG")), np.asarray(img))
    assert decoding.reduction_factor((6000, 6000), decoding.MAX_WORK_PIXELS) == 3
    assert decoding.reduction_factor((side, side), decoding.MAX_WORK_PIXELS) == 1

#!/usr/bin/env python3
"""Generates the image fixtures in this folder and their expected.txt.

Needs Pillow and numpy (`pip install pillow numpy`). The photos are re-encoded
from scikit-image's bundled sample data; pass the folder holding them to
refresh them, e.g.

    pip download scikit-image==0.26.0 --no-deps -d /tmp/sk
    (cd /tmp/sk && unzip -q -o scikit_image-*.whl 'skimage/data/*')
    python3 make-images.py --skimage-data /tmp/sk/skimage/data

Without --skimage-data the photos already here are kept as they are. Either
way expected.txt is rewritten: one line `FILE CLASS r g b` per known-class
file (means to two decimals), computed here from the pixels the file holds (decoded with Pillow for
lossy and 8-bit formats, from the encoded arrays for what Pillow reads only
approximately) with the rule of src/classify.rs: every sample reduced to
8 bits as the Rust `image` crate's to_rgba8 does, exact sums of c*a and of a,
the unweighted mean when all alpha is 0, ties to red, then green.
"""

import argparse
import io
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
RNG = np.random.default_rng(20240601)
# For the fixtures added later, so that RNG's draws for the others stay the same.
RNG_LATER = np.random.default_rng(20250101)

# ---------------------------------------------------------------------------
# The classification rule, in numpy.


def u16_to_u8(c):
    """RGB(A) 16-bit samples: round(c * 255 / 65535), as integers."""
    return ((c.astype(np.uint32) + 128) // 257).astype(np.uint8)


def round_half_away(p32):
    """Rust's f32::round on non-negative float32 values, done exactly in float64."""
    return np.floor(p32.astype(np.float64) + 0.5)


def luma16_to_u8(c):
    """Grey 16-bit samples go through f32 in to_rgba8: round((l * (1/65535)) * 255)."""
    scale = np.float32(1.0) / np.float32(65535.0)
    p = (c.astype(np.float32) * scale) * np.float32(255.0)
    return round_half_away(p).astype(np.uint8)


def f32_to_u8(v):
    """NaN and >= 1 become 255, < 0 becomes 0, the rest round(v * 255) in f32."""
    v = v.astype(np.float32)
    clamped = np.where(v < np.float32(1.0), np.maximum(v, np.float32(0.0)), np.float32(1.0))
    p = clamped.astype(np.float32) * np.float32(255.0)
    return round_half_away(p).astype(np.uint8)


def classify_rgba8(rgba):
    """Class and means of an H x W x 4 uint8 array, by exact integer sums."""
    px = rgba.reshape(-1, 4).astype(np.int64)
    alpha = px[:, 3]
    weight = int(alpha.sum())
    if weight == 0:
        sums = [int(px[:, c].sum()) for c in range(3)]
        weight = px.shape[0]
    else:
        sums = [int((px[:, c] * alpha).sum()) for c in range(3)]
    r, g, b = sums
    if r >= g and r >= b:
        cls = "red"
    elif g >= b:
        cls = "green"
    else:
        cls = "blue"
    return cls, [s / weight for s in sums]


def with_alpha(rgb, alpha=None):
    h, w = rgb.shape[:2]
    a = np.full((h, w, 1), 255, np.uint8) if alpha is None else alpha.reshape(h, w, 1)
    return np.concatenate([rgb.astype(np.uint8), a.astype(np.uint8)], axis=2)


def grey_to_rgba(l, a=None):
    return with_alpha(np.repeat(l.reshape(l.shape[0], l.shape[1], 1), 3, axis=2), a)


def pillow_rgba(path):
    """First frame of a file as Pillow decodes it, as RGBA uint8."""
    with Image.open(path) as im:
        im.seek(0)
        return np.asarray(im.convert("RGBA"))


# ---------------------------------------------------------------------------
# Writers for what Pillow cannot write (16-bit colour PNG, float TIFF) or
# must not (headers that lie).


def png_chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png_bytes(samples, color_type, bit_depth, palette=None, trns=None, size=None):
    """A PNG of `samples` (H x W x C, or H x W), filter 0 on every row.

    `size` overrides the width and height written into IHDR."""
    if samples.ndim == 2:
        samples = samples[:, :, None]
    h, w = samples.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    rows = samples.astype(dtype).reshape(h, -1)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)
    width, height = size or (w, h)
    out = b"\x89PNG\r\n\x1a\n"
    out += png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))
    if palette is not None:
        out += png_chunk(b"PLTE", bytes(np.asarray(palette, np.uint8).reshape(-1)))
    if trns is not None:
        out += png_chunk(b"tRNS", bytes(trns))
    out += png_chunk(b"IDAT", zlib.compress(raw, 9))
    out += png_chunk(b"IEND", b"")
    return out


def tiff_bytes(samples, float_samples, size=None, uint32=False, strips=1):
    """An uncompressed little-endian RGB or RGBA TIFF in one strip.

    `uint32` writes 32-bit unsigned samples with no SampleFormat tag (TIFF's
    default, unsigned integers); `strips` is the count written into
    StripOffsets and StripByteCounts, which only the first entry backs."""
    h, w, n = samples.shape
    data = samples.astype("<u4" if uint32 else "<f4" if float_samples else "u1").tobytes()
    width, height = size or (w, h)
    bits = 32 if float_samples or uint32 else 8
    fmt = 3 if float_samples else 1
    entries = []  # (tag, type, count, value or bytes)
    SHORT, LONG = 3, 4
    entries.append((256, LONG, 1, width))
    entries.append((257, LONG, 1, height))
    entries.append((258, SHORT, n, [bits] * n))
    entries.append((259, SHORT, 1, 1))
    entries.append((262, SHORT, 1, 2))
    entries.append((273, LONG, strips, None))  # strip offset, patched below
    entries.append((277, SHORT, 1, n))
    entries.append((278, LONG, 1, height))
    entries.append((279, LONG, strips, len(data)))
    entries.append((284, SHORT, 1, 1))
    if n == 4:
        entries.append((338, SHORT, 1, 2))  # unassociated alpha
    if not uint32:
        entries.append((339, SHORT, n, [fmt] * n))
    ifd_len = 2 + 12 * len(entries) + 4
    extra_at = 8 + ifd_len
    extra = b""
    packed = []
    for tag, typ, count, value in entries:
        if isinstance(value, list):
            blob = struct.pack("<%dH" % count, *value)
            if len(blob) > 4:
                packed.append((tag, typ, count, struct.pack("<I", extra_at + len(extra))))
                extra += blob
                continue
            packed.append((tag, typ, count, blob.ljust(4, b"\0")))
        elif value is None:
            packed.append((tag, typ, count, None))
        elif typ == SHORT:
            packed.append((tag, typ, count, struct.pack("<HH", value, 0)))
        else:
            packed.append((tag, typ, count, struct.pack("<I", value)))
    data_at = extra_at + len(extra)
    out = b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", len(packed))
    for tag, typ, count, value in packed:
        if value is None:
            value = struct.pack("<I", data_at)
        out += struct.pack("<HHI", tag, typ, count) + value
    out += struct.pack("<I", 0) + extra + data
    return out


def tiff_deflate_rows(rgb):
    """A little-endian RGB8 TIFF of one row per strip, each strip deflated on
    its own, as libtiff writes tall images: tables of a strip per row."""
    h, w, _ = rgb.shape
    strips = [zlib.compress(rgb[y].tobytes(), 9) for y in range(h)]
    SHORT, LONG = 3, 4
    count = 10
    bps_at = 8 + 2 + 12 * count + 4
    offsets_at = bps_at + 6
    counts_at = offsets_at + 4 * h
    data_at = counts_at + 4 * h
    offsets = []
    for strip in strips:
        offsets.append(data_at)
        data_at += len(strip)
    entries = [
        (256, LONG, 1, struct.pack("<I", w)),
        (257, LONG, 1, struct.pack("<I", h)),
        (258, SHORT, 3, struct.pack("<I", bps_at)),
        (259, SHORT, 1, struct.pack("<HH", 8, 0)),  # Adobe deflate
        (262, SHORT, 1, struct.pack("<HH", 2, 0)),
        (273, LONG, h, struct.pack("<I", offsets_at)),
        (277, SHORT, 1, struct.pack("<HH", 3, 0)),
        (278, LONG, 1, struct.pack("<I", 1)),
        (279, LONG, h, struct.pack("<I", counts_at)),
        (284, SHORT, 1, struct.pack("<HH", 1, 0)),
    ]
    assert len(entries) == count
    out = b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", count)
    for tag, typ, n, value in entries:
        out += struct.pack("<HHI", tag, typ, n) + value
    out += struct.pack("<I", 0) + struct.pack("<3H", 8, 8, 8)
    out += struct.pack("<%dI" % h, *offsets) + struct.pack("<%dI" % h, *map(len, strips))
    return out + b"".join(strips)


def tiff_tag_list(count):
    """A 1x1 RGB8 TIFF whose ImageWidth is a list of `count` bytes."""
    SHORT, LONG, BYTE = 3, 4, 1
    entries = [
        (256, BYTE, count, None),
        (257, SHORT, 1, 1),
        (258, SHORT, 1, 8),
        (259, SHORT, 1, 1),
        (262, SHORT, 1, 2),
        (273, LONG, 1, 8),
        (277, SHORT, 1, 3),
        (278, SHORT, 1, 1),
        (279, LONG, 1, 3),
    ]
    ifd = 12
    list_at = ifd + 2 + 12 * len(entries) + 4
    out = b"II*\0" + struct.pack("<I", ifd) + bytes([200, 40, 50, 0]) + struct.pack("<H", len(entries))
    for tag, typ, n, value in entries:
        out += struct.pack("<HHI", tag, typ, n) + struct.pack("<I", list_at if value is None else value)
    return out + struct.pack("<I", 0) + b"\1" + bytes(count - 1)


def gif_bomb():
    """GIF whose logical screen and only frame are 65535 x 65535."""
    out = b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0x80, 0, 0)  # 2-entry table
    out += bytes([255, 0, 0, 0, 0, 255])
    out += b"," + struct.pack("<HHHHB", 0, 0, 65535, 65535, 0)
    out += bytes([2, 2, 0x4C, 0x01, 0])  # code size 2, one tiny data block
    return out + b";"


def bmp_bomb():
    """24-bit BMP header claiming 65535 x 65535 (the decoder's largest side)."""
    pixels = b"\0\0\xff" * 4
    info = struct.pack("<IiiHHIIiiII", 40, 65535, 65535, 1, 24, 0, 0, 2835, 2835, 0, 0)
    head = b"BM" + struct.pack("<IHHI", 14 + len(info) + len(pixels), 0, 0, 14 + len(info))
    return head + info + pixels


def jpeg_with_size(jpeg, width, height):
    """The same JPEG with its SOF0 frame size replaced."""
    sof = jpeg.index(b"\xff\xc0")
    return jpeg[: sof + 5] + struct.pack(">HH", height, width) + jpeg[sof + 9 :]


def webp_lossless_with_size(webp, width, height):
    """The same lossless WebP with its VP8L header size replaced."""
    at = webp.index(b"VP8L") + 8
    assert webp[at] == 0x2F
    (bits,) = struct.unpack("<I", webp[at + 1 : at + 5])
    bits = (bits & ~((1 << 28) - 1)) | (width - 1) | ((height - 1) << 14)
    return webp[: at + 1] + struct.pack("<I", bits) + webp[at + 5 :]


# ---------------------------------------------------------------------------
# The fixtures.

EXPECTED = []  # (file, rgba8 pixels)


def save_bytes(name, data):
    (HERE / name).write_bytes(data)


def known(name, rgba8):
    EXPECTED.append((name, rgba8))


def noise(shape, low, high):
    return RNG.integers(low, high, size=shape, endpoint=True)


def synthetic():
    h, w = 37, 61  # odd, so no row is a whole number of SIMD groups

    img = np.zeros((h, w, 3), np.uint8) + np.array([200, 40, 50], np.uint8)
    Image.fromarray(img).save(HERE / "red_solid.png")
    known("red_solid.png", pillow_rgba(HERE / "red_solid.png"))

    img = np.zeros((h, w, 3), np.uint8) + np.array([40, 190, 60], np.uint8)
    Image.fromarray(img).save(HERE / "green_solid.jpg", quality=90, subsampling=0)
    known("green_solid.jpg", pillow_rgba(HERE / "green_solid.jpg"))

    img = np.zeros((h, w, 3), np.uint8) + np.array([30, 60, 210], np.uint8)
    Image.fromarray(img).save(HERE / "blue_solid.bmp")
    known("blue_solid.bmp", pillow_rgba(HERE / "blue_solid.bmp"))

    # Red rises left to right, green top to bottom, blue is flat: mean red
    # 127.5 against green 90 and blue about 60.
    x = np.linspace(0, 255, w).round()
    y = np.linspace(0, 180, h).round()
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 0] = x[None, :]
    img[:, :, 1] = y[:, None]
    img[:, :, 2] = noise((h, w), 50, 70)
    Image.fromarray(img).save(HERE / "red_gradient.png")
    known("red_gradient.png", pillow_rgba(HERE / "red_gradient.png"))

    # Three pixels in four are blue but nearly transparent; the opaque
    # quarter is green. Unweighted the image is blue, weighted it is green.
    blue = RNG.random((h, w)) < 0.75
    rgb = np.where(blue[:, :, None], [20, 40, 250], [30, 220, 40]).astype(np.uint8)
    alpha = np.where(blue, noise((h, w), 0, 12), noise((h, w), 200, 255)).astype(np.uint8)
    rgba = with_alpha(rgb, alpha)
    assert classify_rgba8(with_alpha(rgb))[0] == "blue"
    Image.fromarray(rgba, "RGBA").save(HERE / "green_alpha.png")
    known("green_alpha.png", pillow_rgba(HERE / "green_alpha.png"))

    # 16-bit samples away from multiples of 257, so the reduction matters.
    rgb16 = np.stack(
        [noise((h, w), 2000, 30000), noise((h, w), 10000, 40000), noise((h, w), 30000, 65535)],
        axis=2,
    )
    save_bytes("blue_16bit.png", png_bytes(rgb16, 2, 16))
    known("blue_16bit.png", with_alpha(u16_to_u8(rgb16)))

    rgba16 = np.stack(
        [
            noise((h, w), 30000, 65535),
            noise((h, w), 0, 40000),
            noise((h, w), 0, 50000),
            noise((h, w), 0, 65535),
        ],
        axis=2,
    )
    save_bytes("red_16bit_alpha.png", png_bytes(rgba16, 6, 16))
    known("red_16bit_alpha.png", u16_to_u8(rgba16))

    # Palette with tRNS: index 0 is a fully transparent red and covers most
    # of the picture; the visible entries are greens.
    palette = [(240, 20, 20), (20, 200, 40), (60, 160, 90), (90, 250, 120)]
    trns = [0, 255, 255, 180]
    index = np.where(RNG.random((h, w)) < 0.6, 0, noise((h, w), 1, 3)).astype(np.uint8)
    save_bytes("green_palette.png", png_bytes(index, 3, 8, palette=palette, trns=trns))
    pal = np.array(palette, np.uint8)
    known("green_palette.png", with_alpha(pal[index], np.array(trns, np.uint8)[index]))
    assert classify_rgba8(with_alpha(pal[index]))[0] == "red"

    # Mostly blues, with a fifth of the pixels an orange.
    palette = [(10, 30, 200), (40, 80, 160), (0, 0, 255), (200, 60, 20)]
    index = np.where(RNG.random((h, w)) < 0.2, 3, noise((h, w), 0, 2)).astype(np.uint8)
    im = Image.fromarray(index, "P")
    im.putpalette([c for rgb in palette for c in rgb])
    im.save(HERE / "blue_palette.gif")
    known("blue_palette.gif", pillow_rgba(HERE / "blue_palette.gif"))

    # First frame red, the later (and larger share of the) frames blue.
    frames = [np.zeros((h, w, 3), np.uint8) + np.array(c, np.uint8) for c in [(220, 30, 30), (20, 30, 230), (40, 50, 240)]]
    ims = [Image.fromarray(f).convert("P", palette=Image.Palette.ADAPTIVE) for f in frames]
    ims[0].save(HERE / "red_animated.gif", save_all=True, append_images=ims[1:], duration=100, loop=0)
    known("red_animated.gif", pillow_rgba(HERE / "red_animated.gif"))

    pims = [Image.fromarray(f) for f in frames]
    pims[0].save(HERE / "red_animated.png", save_all=True, append_images=pims[1:], duration=100)
    known("red_animated.png", pillow_rgba(HERE / "red_animated.png"))

    pims[0].save(HERE / "red_animated.webp", save_all=True, append_images=pims[1:], duration=100, lossless=True)
    known("red_animated.webp", pillow_rgba(HERE / "red_animated.webp"))

    grey = noise((h, w), 0, 255).astype(np.uint8)
    Image.fromarray(grey, "L").save(HERE / "grey_tie.png")
    known("grey_tie.png", pillow_rgba(HERE / "grey_tie.png"))

    rgb = np.stack([noise((h, w), 0, 60), noise((h, w), 0, 60), noise((h, w), 150, 255)], axis=2)
    rgba = with_alpha(rgb, np.zeros((h, w), np.uint8))
    save_bytes("all_transparent.png", png_bytes(rgba, 6, 8))
    known("all_transparent.png", rgba)
    assert classify_rgba8(rgba)[0] == "blue"

    rgb = np.stack([noise((h, w), 0, 120), noise((h, w), 100, 255), noise((h, w), 0, 140)], axis=2).astype(np.uint8)
    Image.fromarray(rgb).save(HERE / "green.webp", lossless=True)
    known("green.webp", pillow_rgba(HERE / "green.webp"))

    rgb = np.stack([noise((h, w), 0, 100), noise((h, w), 0, 140), noise((h, w), 120, 255)], axis=2).astype(np.uint8)
    Image.fromarray(rgb).save(HERE / "blue.tiff", compression="tiff_lzw")
    known("blue.tiff", pillow_rgba(HERE / "blue.tiff"))

    la = np.stack([noise((h, w), 0, 255), noise((h, w), 0, 255)], axis=2)
    save_bytes("red_grey_alpha.png", png_bytes(la, 4, 8))
    known("red_grey_alpha.png", grey_to_rgba(la[:, :, 0], la[:, :, 1]))

    # Grey 16-bit, starting with the values either side of each rounding
    # boundary (257k + 128.5), then noise.
    edges = np.array([257 * k + d for k in range(255) for d in (128, 129)])
    l16 = noise(h * w, 0, 65535)
    l16[: len(edges)] = edges
    l16 = l16.reshape(h, w)
    save_bytes("red_grey16.png", png_bytes(l16, 0, 16))
    known("red_grey16.png", grey_to_rgba(luma16_to_u8(l16)))

    l16 = noise(h * w, 0, 65535)
    a16 = noise(h * w, 0, 65535)
    l16[: len(edges)] = edges
    a16[-len(edges) :] = edges
    la16 = np.stack([l16, a16], axis=1).reshape(h, w, 2)
    save_bytes("red_grey16_alpha.png", png_bytes(la16, 4, 16))
    known("red_grey16_alpha.png", grey_to_rgba(luma16_to_u8(la16[:, :, 0]), luma16_to_u8(la16[:, :, 1])))

    # Float samples, including values out of 0..1, infinities and NaN.
    f = np.stack([RNG.uniform(-0.2, 0.5, (h, w)), RNG.uniform(0.3, 1.2, (h, w)), RNG.uniform(0.0, 0.6, (h, w))], axis=2).astype(np.float32)
    f[0, :6, :] = np.array([np.nan, np.inf, -np.inf, -0.0, 0.5 / 255, 254.5 / 255])[:, None]
    save_bytes("green_float.tiff", tiff_bytes(f, True))
    known("green_float.tiff", with_alpha(f32_to_u8(f)))

    f = np.stack([RNG.uniform(0.0, 0.4, (h, w)), RNG.uniform(0.0, 0.5, (h, w)), RNG.uniform(0.4, 1.0, (h, w)), RNG.uniform(-0.1, 1.1, (h, w))], axis=2).astype(np.float32)
    save_bytes("blue_float_alpha.tiff", tiff_bytes(f, True))
    known("blue_float_alpha.tiff", f32_to_u8(f))

    # 32-bit unsigned samples and no SampleFormat tag: TIFF's default is
    # unsigned integers. Each sample c is read as the float c / (2^32 - 1).
    later = lambda low, high: RNG_LATER.integers(low, high, size=(h, w), endpoint=True)
    u = np.stack([later(0, 2**31), later(0, 2**31), later(2**31, 2**32 - 1)], axis=2).astype(np.uint64)
    save_bytes("blue_u32.tiff", tiff_bytes(u, False, uint32=True))
    known("blue_u32.tiff", with_alpha(f32_to_u8((u.astype(np.float64) / (2**32 - 1)).astype(np.float32))))

    # 300x20000 in strips of one row (20000 strips): tables of 160 KB in a
    # file of about 500 KB, each row one colour of a vertical gradient.
    y = np.arange(20000)
    row = np.stack([40 + y * 80 // 20000, np.full(20000, 90), 200 - y * 60 // 20000], axis=1)
    rgb = np.repeat(row[:, None, :], 300, axis=1).astype(np.uint8)
    save_bytes("blue_tall_strips.tiff", tiff_deflate_rows(rgb))
    known("blue_tall_strips.tiff", with_alpha(rgb))

    # Red, with ancillary chunks that inflate far beyond the file: an ICC
    # profile of 64 MiB, a zTXt chunk of 64 MiB and 2000 tEXt chunks.
    img = np.zeros((h, w, 3), np.uint8) + np.array([210, 50, 40], np.uint8)
    plain = png_bytes(img, 2, 8)
    bomb = zlib.compress(bytes(64 << 20), 9)
    extra = png_chunk(b"iCCP", b"icc\0\0" + bomb)
    extra += png_chunk(b"zTXt", b"comment\0\0" + bomb)
    extra += png_chunk(b"tEXt", b"k\0v") * 2000
    save_bytes("red_metadata_bombs.png", plain[:33] + extra + plain[33:])
    known("red_metadata_bombs.png", with_alpha(img))


PHOTOS = {
    # output name: (source file in skimage/data, longest side, JPEG quality)
    "photo_astronaut.jpg": ("astronaut.png", 512, 80),
    "photo_chelsea.jpg": ("chelsea.png", 451, 85),
    "photo_coffee.jpg": ("coffee.png", 600, 80),
    "photo_rocket.jpg": ("rocket.jpg", 640, 80),
    "photo_retina.jpg": ("retina.jpg", 1411, 60),
}


def photos(source):
    if source is not None:
        for name, (src, side, quality) in PHOTOS.items():
            with Image.open(Path(source) / src) as im:
                im = im.convert("RGB")
                if max(im.size) > side:
                    im.thumbnail((side, side), Image.Resampling.LANCZOS)
                # 4:4:4 keeps decoders from differing in chroma upsampling.
                im.save(HERE / name, quality=quality, subsampling=0, optimize=True)
    for name in PHOTOS:
        path = HERE / name
        if not path.exists():
            sys.exit(f"{name} is missing: run with --skimage-data")
        assert path.stat().st_size <= 100 * 1024, name
        known(name, pillow_rgba(path))


def jpeg_end(jpeg):
    """The offset just past the first end-of-image marker after the scans."""
    return jpeg.index(b"\xff\xd9", jpeg.index(b"\xff\xda")) + 2


def trailers():
    # A Motion Photo: the JPEG, then an MP4 whose bytes hold FF DA (and no
    # FF D9 after it), as phones append their video after the image's end.
    photo = (HERE / "photo_coffee.jpg").read_bytes()
    video = RNG_LATER.integers(0, 256, 65536, dtype=np.uint8).tobytes().replace(b"\xff\xd9", b"\xff\x00")
    mp4 = struct.pack(">I", 24) + b"ftypmp42" + b"\0\0\0\0mp42isom"
    mp4 += struct.pack(">I", 8 + len(video) + 4) + b"mdat" + video + b"\xff\xda\x00\x0c"
    save_bytes("photo_coffee_motion.jpg", photo + mp4)
    known("photo_coffee_motion.jpg", pillow_rgba(HERE / "photo_coffee_motion.jpg"))

    # Progressive: the decoder holds every coefficient until the last scan.
    with Image.open(HERE / "photo_chelsea.jpg") as im:
        im.save(HERE / "photo_chelsea_progressive.jpg", quality=85, subsampling=0, progressive=True)
    known("photo_chelsea_progressive.jpg", pillow_rgba(HERE / "photo_chelsea_progressive.jpg"))

    # Restart markers: baseline with an interval per MCU row, progressive
    # with one every 7 MCUs in every scan (EOB runs stop at each).
    with Image.open(HERE / "photo_chelsea.jpg") as im:
        im.save(HERE / "photo_chelsea_restart.jpg", quality=85, subsampling=0, restart_marker_rows=1)
        im.save(
            HERE / "photo_chelsea_progressive_restart.jpg", quality=85, subsampling=0, progressive=True, restart_marker_blocks=7
        )
    known("photo_chelsea_restart.jpg", pillow_rgba(HERE / "photo_chelsea_restart.jpg"))
    known("photo_chelsea_progressive_restart.jpg", pillow_rgba(HERE / "photo_chelsea_progressive_restart.jpg"))

    # A multi-picture (MPF) file: a red picture, then a blue one after its
    # end; the first decides.
    h, w = 37, 61
    red = Image.fromarray(np.zeros((h, w, 3), np.uint8) + np.array([200, 30, 40], np.uint8))
    blue = Image.fromarray(np.zeros((h, w, 3), np.uint8) + np.array([20, 30, 220], np.uint8))
    buf = io.BytesIO()
    red.save(buf, "MPO", save_all=True, append_images=[blue], quality=90, subsampling=0)
    save_bytes("red_mpf.jpg", buf.getvalue())
    known("red_mpf.jpg", pillow_rgba(HERE / "red_mpf.jpg"))


def failures():
    save_bytes("fail_empty", b"")
    save_bytes("fail_not_an_image.txt", b"this is plain text, not an image\n")

    # A noisy PNG cut in the middle of its pixel data: the header is intact.
    whole = png_bytes(noise((64, 64, 3), 0, 255), 2, 8)
    save_bytes("fail_truncated.png", whole[: len(whole) // 2])

    # A JPEG cut before its entropy-coded data: SOF is there, the scan is not.
    whole = (HERE / "photo_chelsea.jpg").read_bytes()
    save_bytes("fail_truncated.jpg", whole[: whole.index(b"\xff\xda")])
    # The same JPEG cut in the middle of its scan: the decoder would fill in
    # the missing pixels, so the missing end-of-image marker must be caught.
    scan = whole.index(b"\xff\xda")
    save_bytes("fail_truncated_scan.jpg", whole[: scan + (len(whole) - scan) // 2])
    # A mostly blue photo whose scan data is cut to a fifth, with the
    # end-of-image marker put back: the decoder would make up the rest.
    whole = (HERE / "photo_rocket.jpg").read_bytes()
    scan = whole.index(b"\xff\xda")
    cut = scan + (jpeg_end(whole) - scan) // 5
    save_bytes("fail_truncated_eoi.jpg", whole[:cut] + b"\xff\xd9")

    # Arithmetic coding, which the decoder does not have (cjpeg from
    # libjpeg-turbo-progs makes it; without it the file here is kept).
    if shutil.which("cjpeg"):
        rgb = np.zeros((37, 61, 3), np.uint8) + np.array([30, 200, 40], np.uint8)
        ppm = b"P6 61 37 255\n" + rgb.tobytes()
        out = subprocess.run(["cjpeg", "-arithmetic", "-quality", "90"], input=ppm, capture_output=True, check=True).stdout
        save_bytes("fail_arithmetic.jpg", out)
    elif not (HERE / "fail_arithmetic.jpg").exists():
        sys.exit("fail_arithmetic.jpg is missing: install cjpeg (libjpeg-turbo-progs)")

    # A 100x100 TIFF whose strip table claims 2^26 strips: a table of 256 MiB
    # that the file does not hold.
    save_bytes("fail_bogus_strips.tiff", tiff_bytes(np.zeros((100, 100, 3)), False, strips=1 << 26))

    # A 1x1 TIFF whose ImageWidth is a list of 2^17 bytes, which a decoder
    # would read as 2^17 entries of 32 bytes before finding it is not one
    # number: more than reading a header of a file of this size may take.
    save_bytes("fail_tag_lists.tiff", tiff_tag_list(1 << 17))

    # A GIF whose LZW minimum code size (12) is out of range.
    buf = io.BytesIO()
    Image.fromarray(noise((8, 8), 0, 3).astype(np.uint8), "P").save(buf, "GIF")
    data = bytearray(buf.getvalue())
    at = 13 + (3 * (2 << (data[10] & 7)) if data[10] & 0x80 else 0)
    while data[at] == 0x21:  # extensions: label, then sub-blocks to a zero
        at += 2
        while data[at]:
            at += data[at] + 1
        at += 1
    assert data[at] == 0x2C
    packed = data[at + 9]
    at += 10 + (3 * (2 << (packed & 7)) if packed & 0x80 else 0)
    data[at] = 12
    save_bytes("fail_corrupt.gif", bytes(data))

    # Headers that claim far more than 100 megapixels over a few bytes of data.
    save_bytes("fail_bomb.png", png_bytes(np.zeros((1, 1, 3)), 2, 8, size=(100000, 100000)))
    save_bytes("fail_bomb.gif", gif_bomb())
    save_bytes("fail_bomb.bmp", bmp_bomb())
    save_bytes("fail_bomb.tiff", tiff_bytes(np.zeros((1, 1, 3)), False, size=(100000, 100000)))
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 0, 0)).save(buf, "JPEG")
    save_bytes("fail_bomb.jpg", jpeg_with_size(buf.getvalue(), 65535, 65535))
    buf = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 0, 0)).save(buf, "WEBP", lossless=True)
    save_bytes("fail_bomb.webp", webp_lossless_with_size(buf.getvalue(), 16383, 16383))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skimage-data", help="scikit-image's skimage/data folder")
    args = parser.parse_args()
    synthetic()
    photos(args.skimage_data)
    trailers()
    failures()
    lines = []
    for name, rgba8 in sorted(EXPECTED):
        cls, (r, g, b) = classify_rgba8(rgba8)
        lines.append(f"{name} {cls} {r:.2f} {g:.2f} {b:.2f}\n")
    (HERE / "expected.txt").write_text("".join(lines))
    for name, _ in EXPECTED:
        stem_class = name.split("_")[0].split(".")[0]
        cls = classify_rgba8(dict(EXPECTED)[name])[0]
        if stem_class in ("red", "green", "blue") and stem_class != cls:
            sys.exit(f"{name} classifies as {cls}")


if __name__ == "__main__":
    main()

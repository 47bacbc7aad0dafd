#!/usr/bin/env python3
"""Builds the benchmark image set for `make bench` (benches/bench.rs).

Needs Pillow and numpy, and the sample photos bundled in the scikit-image
0.26.0 wheel (public domain or CC0, see test-data/images/README.md), unpacked
from the wheel without installing it:

    pip download scikit-image==0.26.0 --no-deps -d DIR
    python3 make-assets.py --wheel DIR/scikit_image-0.26.0-*.whl --out OUT

The large images are mosaics of those photos. Each row of the mosaic is a
strip of photos, scaled with a Lanczos filter to the row's height (1.2x to
2.5x their size, some mirrored), so that the content is that of real photos.
Upscaling smooths away the fine detail a camera records, so a grain of
Gaussian noise (sigma 3 on each channel, as a camera sensor's at a medium
ISO) is added back; the result compresses like a camera's photo: about 2 to
3 bits per pixel as a quality-90 JPEG. Everything is seeded: the same bytes
come out every run.

The set, in OUT/:
- jpeg-12mp-baseline.jpg   4000x3000 baseline JPEG, quality 90, 4:2:0
- jpeg-12mp-progressive.jpg the same pixels as a progressive JPEG
- jpeg-18mp-baseline.jpg   5184x3456 baseline JPEG, quality 90, 4:2:0
- jpeg-3mp-typical.jpg     2048x1536 baseline JPEG, quality 92
- png-8mp-rgb.png          3264x2448 RGB8 PNG
- png-8mp-rgba.png         the same with an alpha vignette (RGBA8)
- webp-12mp-lossy.webp     4000x3000 lossy WebP, quality 80
- webp-4mp-lossless.webp   2304x1728 lossless WebP
- small-photo.jpg          480x320 JPEG, the "small upload"
- soak-2mp.jpg             1600x1200 JPEG for the long run
- near/*.jpg               JPEGs whose top two channel means differ by 0 to
                           3 units (for tests of approximate decoding)
"""

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

RNG_SEED = 20251128
PHOTOS = [
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "retina.jpg",
    "hubble_deep_field.jpg",
    "motorcycle_left.png",
    "ihc.png",
    "motorcycle_right.png",
]


def load_photos(wheel):
    photos = []
    with zipfile.ZipFile(wheel) as z:
        for name in PHOTOS:
            with z.open(f"skimage/data/{name}") as f:
                photos.append(Image.open(io.BytesIO(f.read())).convert("RGB"))
    return photos


def mosaic(photos, width, height, rng, rows):
    """Rows of photos scaled to the row height, cut to `width`."""
    canvas = Image.new("RGB", (width, height))
    row_h = -(-height // rows)
    order = list(range(len(photos)))
    y = 0
    while y < height:
        rng.shuffle(order)
        x = 0
        i = 0
        while x < width:
            photo = photos[order[i % len(order)]]
            i += 1
            scale = row_h / photo.height
            tile = photo.resize((max(1, round(photo.width * scale)), row_h), Image.LANCZOS)
            if rng.random() < 0.4:
                tile = tile.transpose(Image.FLIP_LEFT_RIGHT)
            canvas.paste(tile, (x, y))
            x += tile.width
        y += row_h
    pixels = np.asarray(canvas, dtype=np.float32)
    pixels += rng.normal(0.0, 3.0, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "RGB")


def vignette_alpha(width, height):
    """Opaque centre, fading to 40 at the corners: every block is partly transparent."""
    ys = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    r = np.sqrt(xs * xs + ys * ys) / np.sqrt(2.0)
    return np.clip(255.0 - 215.0 * r * r, 0, 255).astype(np.uint8)


def jpeg(image, quality, progressive=False, subsampling=2):
    out = io.BytesIO()
    image.save(
        out, "JPEG", quality=quality, progressive=progressive, subsampling=subsampling, optimize=True
    )
    return out.getvalue()


def near_boundary(photo, gap, top, other):
    """`photo` shifted so that channel `top` leads channel `other` by about `gap` units."""
    px = np.asarray(photo, dtype=np.float32).copy()
    means = px.reshape(-1, 3).mean(axis=0)
    px[..., other] += means[top] - means[other] - gap
    px = np.clip(px, 0, 255)
    return Image.fromarray((px + 0.5).astype(np.uint8), "RGB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    out = args.out
    (out / "near").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(RNG_SEED)
    photos = load_photos(args.wheel)

    def save(name, data):
        (out / name).write_bytes(data)

    big = mosaic(photos, 4000, 3000, rng, rows=4)
    save("jpeg-12mp-baseline.jpg", jpeg(big, 90))
    save("jpeg-12mp-progressive.jpg", jpeg(big, 90, progressive=True))
    save("jpeg-18mp-baseline.jpg", jpeg(mosaic(photos, 5184, 3456, rng, rows=5), 90))
    save("jpeg-3mp-typical.jpg", jpeg(mosaic(photos, 2048, 1536, rng, rows=2), 92))

    png_rgb = mosaic(photos, 3264, 2448, rng, rows=3)
    buf = io.BytesIO()
    png_rgb.save(buf, "PNG", compress_level=6)
    save("png-8mp-rgb.png", buf.getvalue())
    rgba = png_rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(vignette_alpha(*png_rgb.size), "L"))
    buf = io.BytesIO()
    rgba.save(buf, "PNG", compress_level=6)
    save("png-8mp-rgba.png", buf.getvalue())

    buf = io.BytesIO()
    big.save(buf, "WEBP", quality=80, method=4)
    save("webp-12mp-lossy.webp", buf.getvalue())
    buf = io.BytesIO()
    mosaic(photos, 2304, 1728, rng, rows=2).save(buf, "WEBP", lossless=True, quality=50, method=2)
    save("webp-4mp-lossless.webp", buf.getvalue())

    save("small-photo.jpg", jpeg(photos[1].resize((480, 320), Image.LANCZOS), 85))
    save("soak-2mp.jpg", jpeg(mosaic(photos, 1600, 1200, rng, rows=2), 88))

    # Near the red/green and green/blue boundaries, from several photos,
    # with gaps from 0 to 3 units in both directions.
    for i, photo in enumerate(photos[:6]):
        base = photo.resize((photo.width * 2, photo.height * 2), Image.LANCZOS)
        for top, other in [(0, 1), (1, 2), (2, 0)]:
            for gap in [-3.0, -1.5, -0.5, 0.0, 0.5, 1.5, 3.0]:
                image = near_boundary(base, gap, top, other)
                name = f"near/{PHOTOS[i].split('.')[0]}-{'rgb'[top]}{'rgb'[other]}{gap:+.1f}.jpg"
                save(name, jpeg(image, 88 if i % 2 else 75, subsampling=2 if i % 3 else 0))
    print(f"benchmark images written to {out}")


if __name__ == "__main__":
    main()

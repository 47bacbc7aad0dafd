#!/usr/bin/env python3
"""Times the Python anchors on the benchmark images, for `make bench`.

For each file: Pillow's decode + convert("RGB") + a numpy mean of the
channels (median of 3 runs), and colorthief 0.2.1's get_color() at its
default quality, 10 (one run: it is slow), which is what the original Python
server did. Writes `FILE<TAB>METHOD<TAB>SECONDS` lines, for every image
directly in the asset folder.

    python3 anchors.py --assets DIR --out FILE
"""

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from colorthief import ColorThief
from PIL import Image


def pillow_numpy(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).reshape(-1, 3).mean(axis=0)


def colorthief(path):
    return ColorThief(str(path)).get_color()


def seconds(f, path, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        f(path)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    lines = ["# file\tmethod\tseconds"]
    images = sorted(p for p in args.assets.iterdir() if p.suffix in (".jpg", ".png", ".webp"))
    for path in images:
        name = path.name
        lines.append(f"{name}\tpillow_numpy\t{seconds(pillow_numpy, path, 3):.6f}")
        lines.append(f"{name}\tcolorthief\t{seconds(colorthief, path, 1):.6f}")
        print(f"  {name}: {lines[-2].split()[-1]} s, {lines[-1].split()[-1]} s", flush=True)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

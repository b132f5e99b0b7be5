"""Peak memory and time of `protect images` on large photos (issue 2: "memory stays bounded for 12-megapixel inputs").

Each arm runs the real command in a fresh Python process, as a user would, on JPEGs made from scikit-image's
astronaut (upscaled), and reads that process's peak resident memory (`ru_maxrss`). The baseline, in the same run, is
one 64 x 64 photo: the fixed cost of the libraries, the surrogate and the bundled reference images. The marginal cost
per megapixel above it is what a larger photo adds; the floor it is compared with is what must be held in any case
(the decoded original and its int8 perturbation: 6 bytes a pixel, 6 MB a megapixel).

    python bench/photo_memory.py                      # 64 px, 12, 48 and 100 megapixels, a folder of 8 x 12 MP
    python bench/photo_memory.py --sizes 12 --steps 20

Writes bench/results/photo_memory.json and bench/results/photo_memory.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Results

RUNNER = """
import resource, sys
from protect.cli import cli
try:
    cli(sys.argv[1:], standalone_mode=False)
finally:
    print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def make_photos(folder: Path, megapixels: float, count: int) -> tuple[int, int]:
    """`count` JPEGs of about `megapixels` at 4:3 (each a little different, so none is a copy of another)."""
    import numpy as np
    import skimage.data
    from PIL import Image

    width = max(64, round(math.sqrt(megapixels * 1e6 * 4 / 3)))
    height = max(64, round(width * 3 / 4)) if megapixels >= 0.01 else 64
    folder.mkdir(parents=True)
    base = Image.fromarray(skimage.data.astronaut()).resize((width, height), Image.Resampling.BILINEAR)
    for i in range(count):
        shifted = np.roll(np.asarray(base), 7 * i, axis=1)
        Image.fromarray(shifted).save(folder / f"photo{i}.jpg", quality=90)
    return width, height


def run_arm(megapixels: float, count: int, steps: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "photos"
        width, height = make_photos(src, megapixels, count)
        args = ["images", str(src), "--out", str(Path(tmp) / "out"), "--steps", str(steps), "--device", "cpu"]
        env = os.environ | {"OMP_NUM_THREADS": str(threads)}
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", RUNNER, *args], capture_output=True, text=True, env=env, check=False
        )
        wall = time.perf_counter() - start
        line = [ln for ln in done.stdout.splitlines() if ln.startswith("MAXRSS_KB")]
        if done.returncode != 0 or not line:
            raise RuntimeError(f"protect images failed ({done.returncode}): {done.stderr[-2000:]}")
        report = json.loads((Path(tmp) / "out-report" / "protect-report.json").read_text())
    return {
        "width": width,
        "height": height,
        "photos": count,
        "megapixels_each": round(width * height / 1e6, 2),
        "peak_mb": round(int(line[0].split()[1]) / 1024),
        "seconds": round(wall, 1),
        "max_linf": report["summary"]["max_linf"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="12,48,100", help="megapixels of the single-photo arms")
    ap.add_argument("--folder", type=int, default=8, help="photos in the 12-megapixel folder arm (0: none)")
    ap.add_argument("--steps", type=int, default=2, help="passes (memory does not grow with them)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    res = Results("photo_memory", {k: v for k, v in vars(args).items()})
    arms = [("64 px (baseline)", 0.0, 1)] + [(f"{s} MP", float(s), 1) for s in args.sizes.split(",") if s]
    if args.folder:
        arms.append((f"folder of {args.folder} x 12 MP", 12.0, args.folder))
    for name, megapixels, count in arms:
        res.put(name, run_arm(megapixels, count, args.steps, args.threads))
        print(name, res.data["arms"][name], flush=True)
    base = res.data["arms"]["64 px (baseline)"]["peak_mb"]
    rows = []
    for name, arm in res.data["arms"].items():
        mp = round(arm["megapixels_each"] * arm["photos"], 2)
        extra = arm["peak_mb"] - base
        per = round(extra / mp, 1) if mp >= 1 else "-"
        rows.append([name, mp, arm["peak_mb"], extra, per, arm["seconds"], arm["max_linf"]])
    res.table(
        ["arm", "megapixels", "peak MB", "above baseline MB", "MB per megapixel", "seconds", "max linf"],
        rows,
        "protect images: peak memory on large photos",
        f"One fresh process per arm, --steps {args.steps}, {args.threads} thread(s). The floor for holding one photo "
        "and its perturbation is 6 MB per megapixel.",
    )


if __name__ == "__main__":
    main()

"""Benchmark: does AMUSE (arXiv 2403.05628) beat the whole-message baseline, and for which base watermarker?

Whole-message baseline (every image carries the 30-bit word: 14 message bits + CRC-16) against AMUSE at tau
0.6 (16-bit sub-messages) and tau 0.8 (9 bits), for each backend, on scikit-image's bundled photos (random
crops at 64/128/256) and the CIFAR-10 test subset (32x32), under attacks, for random leaked subsets of m
images, over a sweep of strengths (the PSNR-vs-word-accuracy curve). Also: the null (unmarked images, wrong
keys: verdicts and p-values) and dwtdct embedding speed against invisible-watermark's dwtDct in the same run.

    python bench/watermark_amuse.py            # writes bench/results/watermark.json and watermark.md
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data as skdata

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protect.metrics import psnr, ssim  # noqa: E402
from watermark.api import WatermarkSettings, embed_arrays  # noqa: E402
from watermark.backends import create_backend  # noqa: E402
from watermark.codec import assign, decode, make_word, submessages  # noqa: E402
from watermark.verify import verdict_from_scores  # noqa: E402

log = logging.getLogger("bench.watermark")
RESULTS = ROOT / "bench" / "results"
CIFAR = ROOT.parent / "shared" / "data" / "cifar10_test_2k.npz"
MESSAGE_BITS = 14  # + CRC-16 = the paper's L = 30
SCHEMES = {"baseline": 0.0, "amuse-0.6": 0.6, "amuse-0.8": 0.8}
SUBSETS = (5, 10, 20, 50, "all")
DRAWS = 20
STRENGTHS = {"dwtdct": (6.0, 12.0, 24.0, 40.0), "hidden": (0.25, 0.4, 0.6, 1.0), "rivagan": (1.0,)}
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",
    "cat",
    "colorwheel",
)


# -- data ------------------------------------------------------------------------------------------------
def photo_crops(size: int, n: int, seed: int) -> np.ndarray:
    """Random crops (scaled so a crop covers 25-100% of the shorter side, then resized) and flips."""
    rng = np.random.default_rng(seed)
    sources = []
    for name in PHOTOS:
        img = getattr(skdata, name)()
        img = img[0] if isinstance(img, tuple) else img
        sources.append(np.asarray(img)[:, :, :3])
    out = []
    for i in range(n):
        src = sources[i % len(sources)]
        side = int(min(src.shape[:2]) * rng.uniform(0.25, 1.0))
        top, left = rng.integers(src.shape[0] - side + 1), rng.integers(src.shape[1] - side + 1)
        crop = Image.fromarray(src[top : top + side, left : left + side]).resize((size, size), Image.LANCZOS)
        arr = np.asarray(crop)
        out.append(arr[:, ::-1] if rng.random() < 0.5 else arr)
    return np.stack(out).astype(np.uint8)


def datasets(quick: bool) -> dict[str, np.ndarray]:
    k = 2 if quick else 1
    return {
        "cifar-32": np.load(CIFAR)["x"][: 120 // k],
        "photos-64": photo_crops(64, 40 // k, 64),
        "photos-128": photo_crops(128, 40 // k, 128),
        "photos-256": photo_crops(256, 30 // k, 256),
    }


# -- attacks ---------------------------------------------------------------------------------------------
def _jpeg(a: np.ndarray, q: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(buf).convert("RGB"))


def _resize(a: np.ndarray, f: float) -> np.ndarray:
    h, w = a.shape[:2]
    small = Image.fromarray(a).resize((max(1, int(w * f)), max(1, int(h * f))), Image.BILINEAR)
    return np.asarray(small.resize((w, h), Image.BILINEAR))


def _crop(a: np.ndarray, f: float) -> np.ndarray:
    h, w = a.shape[:2]
    ch, cw = int(round(h * f)), int(round(w * f))
    top, left = (h - ch) // 2, (w - cw) // 2
    return np.asarray(Image.fromarray(a[top : top + ch, left : left + cw]).resize((w, h), Image.BILINEAR))


def _noise(a: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(a + rng.normal(0, sigma, a.shape), 0, 255).round().astype(np.uint8)


ATTACKS = {
    "none": lambda a, i: a,
    "jpeg90": lambda a, i: _jpeg(a, 90),
    "jpeg75": lambda a, i: _jpeg(a, 75),
    "jpeg50": lambda a, i: _jpeg(a, 50),
    "resize0.5": lambda a, i: _resize(a, 0.5),
    "noise5": lambda a, i: _noise(a, 5.0, i),
    "crop90": lambda a, i: _crop(a, 0.9),
    "bright+10": lambda a, i: np.clip(a.astype(np.int16) + 10, 0, 255).astype(np.uint8),
}


# -- one backend -----------------------------------------------------------------------------------------
def subset_accuracy(
    scores: np.ndarray, settings: WatermarkSettings, key: bytes, word: np.ndarray, rng: np.random.Generator
) -> dict[str, dict[str, float]]:
    """Word/bit accuracy of the dataset-level decode over random leaked subsets of m images."""
    layout = settings.layout()
    out = {}
    for m in SUBSETS:
        size = len(scores) if m == "all" else m
        if size > len(scores):
            continue
        draws = 1 if m == "all" else DRAWS
        words = bits = 0.0
        for _ in range(draws):
            idx = rng.choice(len(scores), size, replace=False)
            dec = decode(scores[idx], layout, key)
            words += float(np.array_equal(dec.word, word))
            bits += float((dec.word == word).mean())
        out[str(m)] = {"word_acc": words / draws, "bit_acc": bits / draws}
    return out


def run_backend(
    name: str, sets: dict[str, np.ndarray], strengths: tuple[float, ...], seed: int
) -> list[dict]:
    backend = create_backend(name)
    rows = []
    rng = np.random.default_rng(seed)
    for set_name, images in sets.items():
        for scheme, tau in SCHEMES.items():
            settings = WatermarkSettings(message_bits=MESSAGE_BITS, tau=tau, backend=name)
            layout = settings.layout()
            for strength in strengths:
                settings.strength = strength
                message = rng.integers(0, 2, MESSAGE_BITS).astype(np.uint8)
                key = f"bench-{set_name}-{scheme}-{strength}".encode()
                t0 = time.perf_counter()
                marked = embed_arrays(list(images), message, key, settings=settings, backend=backend)
                embed_s = time.perf_counter() - t0
                quality = [(psnr(a, b), ssim(a, b)) for a, b in zip(images, marked, strict=True)]
                row = {
                    "backend": name,
                    "set": set_name,
                    "scheme": scheme,
                    "tau": tau,
                    "strength": strength,
                    "sub_bits": layout.sub_bits,
                    "images": len(images),
                    "psnr": float(np.mean([q[0] for q in quality])),
                    "ssim": float(np.mean([q[1] for q in quality])),
                    "embed_images_per_s": len(images) / embed_s,
                    "attacks": {},
                }
                word = make_word(message)
                for attack, fn in ATTACKS.items():
                    scores = np.stack(
                        [
                            backend.extract(fn(img, i), layout.sub_bits, strength)
                            for i, img in enumerate(marked)
                        ]
                    )
                    per_image = scores_bit_accuracy(scores, settings, key, word)
                    row["attacks"][attack] = {
                        "per_image_bit_acc": per_image,
                        "subsets": subset_accuracy(scores, settings, key, word, rng),
                    }
                rows.append(row)
                log.info(
                    "%s %s %s s=%g psnr %.1f none/all %s jpeg75/all %s",
                    name,
                    set_name,
                    scheme,
                    strength,
                    row["psnr"],
                    row["attacks"]["none"]["subsets"]["all"]["word_acc"],
                    row["attacks"]["jpeg75"]["subsets"]["all"]["word_acc"],
                )
    return rows


def scores_bit_accuracy(
    scores: np.ndarray, settings: WatermarkSettings, key: bytes, word: np.ndarray
) -> float:
    """Per-image payload bit accuracy (each image against the sub-message it was given)."""
    layout = settings.layout()
    subs = submessages(word, layout, key)[assign(len(scores), layout, key)]
    return float(((scores > 0) == subs.astype(bool)).mean())


# -- null ------------------------------------------------------------------------------------------------
def null_test(name: str, marked_sets: int, seed: int) -> dict:
    """Verdicts and p-values on unmarked CIFAR images (random keys) and on marked sets with wrong keys."""
    backend = create_backend(name)
    x = np.load(CIFAR)["x"]
    settings = WatermarkSettings(message_bits=MESSAGE_BITS, tau=0.8, backend=name)
    layout = settings.layout()
    rng = np.random.default_rng(seed)
    unmarked = np.stack([backend.extract(img, layout.sub_bits) for img in x[:1000]])
    results = {"unmarked": [], "wrong_key": []}
    message = rng.integers(0, 2, MESSAGE_BITS).astype(np.uint8)
    word = make_word(message)
    for s in range(50):  # 50 suspect sets of 20 unmarked images, 2 keys each, with and without a claim
        scores = unmarked[s * 20 : (s + 1) * 20]
        for k in range(2):
            for claim in (word, None):
                v = verdict_from_scores(scores, layout, f"null-{s}-{k}".encode(), claimed_word=claim)
                results["unmarked"].append((v.verdict, v.p_value, claim is not None))
    marked = embed_arrays(
        list(x[1000 : 1000 + 20 * marked_sets]), message, b"true-key", settings=settings, backend=backend
    )
    mscores = np.stack([backend.extract(img, layout.sub_bits) for img in marked])
    for s in range(marked_sets):
        scores = mscores[s * 20 : (s + 1) * 20]
        for k in range(10):
            for claim in (word, None):
                v = verdict_from_scores(scores, layout, f"wrong-{s}-{k}".encode(), claimed_word=claim)
                results["wrong_key"].append((v.verdict, v.p_value, claim is not None))
        results.setdefault("true_key", []).append(verdict_from_scores(scores, layout, b"true-key").verdict)
    summary = {"backend": name, "unmarked_images": 1000, "marked_images_wrong_keys": 20 * marked_sets}
    for part in ("unmarked", "wrong_key"):
        ps = np.array([p for _, p, _ in results[part]])
        summary[part] = {
            "verdicts": len(ps),
            "match": sum(v == "match" for v, _, _ in results[part]),
            "no_watermark": sum(v == "no-watermark" for v, _, _ in results[part]),
            "p_le": {str(a): float((ps <= a).mean()) for a in (0.01, 0.05, 0.1, 0.25, 0.5)},
        }
    summary["true_key_match_rate"] = float(np.mean([v == "match" for v in results["true_key"]]))
    return summary


# -- speed -----------------------------------------------------------------------------------------------
def speed(n: int = 60) -> dict:
    """dwtdct embeds of 256x256 images per second, one thread, vs invisible-watermark's dwtDct in the same
    run."""
    torch.set_num_threads(1)
    images = photo_crops(256, n, 7)
    backend = create_backend("dwtdct")
    bits = np.random.default_rng(0).integers(0, 2, 30)
    t0 = time.perf_counter()
    for img in images:
        backend.embed(img, bits, backend.default_strength)
    ours = n / (time.perf_counter() - t0)
    out = {"dwtdct_images_per_s": ours}
    try:
        from imwatermark import WatermarkEncoder
    except ImportError:
        return out
    enc = WatermarkEncoder()
    enc.set_watermark("bits", bits.tolist())
    t0 = time.perf_counter()
    for img in images:
        enc.encode(np.ascontiguousarray(img[:, :, ::-1]), "dwtDct")
    theirs = n / (time.perf_counter() - t0)
    out.update({"imwatermark_dwtDct_images_per_s": theirs, "ratio": ours / theirs})
    return out


# -- analysis --------------------------------------------------------------------------------------------
def curve(
    rows: list[dict], backend: str, set_name: str, scheme: str, m: str, attacks: tuple[str, ...]
) -> list[tuple[float, float]]:
    """(PSNR, word accuracy averaged over `attacks`) per strength, sorted by PSNR."""
    pts = [
        (r["psnr"], float(np.mean([r["attacks"][a]["subsets"][m]["word_acc"] for a in attacks])))
        for r in rows
        if (r["backend"], r["set"], r["scheme"]) == (backend, set_name, scheme)
        and m in r["attacks"]["none"]["subsets"]
    ]
    return sorted(pts)


def _interp(pts: list[tuple[float, float]], x: float) -> float | None:
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    if not xs or x < xs[0] - 1e-9 or x > xs[-1] + 1e-9:
        return None
    return float(np.interp(x, xs, ys))


def _psnr_at(pts: list[tuple[float, float]], acc: float) -> float | None:
    """Highest PSNR at which the (piecewise-linear) curve still reaches `acc`."""
    best = None
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        if y0 >= acc:
            best = x0
        if y0 >= acc > y1:
            best = x0 + (y0 - acc) / (y0 - y1) * (x1 - x0)
    if pts and pts[-1][1] >= acc:
        best = pts[-1][0]
    return best


def informative(rows: list[dict], backend: str, set_name: str, m: str) -> tuple[str, ...]:
    """Attacks that some scheme survives at some strength (an attack every scheme fails says nothing about AMUSE)."""
    mine = [
        r
        for r in rows
        if (r["backend"], r["set"]) == (backend, set_name) and m in r["attacks"]["none"]["subsets"]
    ]
    return tuple(a for a in ATTACKS if any(r["attacks"][a]["subsets"][m]["word_acc"] > 0 for r in mine))


def _gains(base: list[tuple[float, float]], pts: list[tuple[float, float]]) -> dict:
    """Word-accuracy gain at equal PSNR (points) and PSNR gain at equal word accuracy 0.9 (dB; a lower bound
    when the baseline never reaches 0.9 within the strengths tried)."""
    gains = [(y - b, x) for x, y in pts if (b := _interp(base, x)) is not None]
    pa, pb = _psnr_at(pts, 0.9), _psnr_at(base, 0.9)
    bound = pa is not None and pb is None and bool(base)
    db = (pa - pb) if pa is not None and pb is not None else (pa - base[0][0]) if bound else None
    return {
        "max_gain_points_at_equal_psnr": round(100 * max(gains)[0], 1) if gains else None,
        "at_psnr": round(max(gains)[1], 2) if gains else None,
        "psnr_at_word_acc_0.9": None if pa is None else round(pa, 2),
        "baseline_psnr_at_word_acc_0.9": None if pb is None else round(pb, 2),
        "db_gain_at_equal_word_acc": None if db is None else round(db, 2),
        "db_gain_is_lower_bound": bound,
    }


def compare(rows: list[dict], backend: str, set_name: str, m: str) -> dict:
    """AMUSE vs baseline, on the mean word accuracy over the informative attacks and per attack."""
    attacks = informative(rows, backend, set_name, m)
    out: dict = {"attacks": list(attacks), "mean": {}, "per_attack": {}}
    for scheme in ("amuse-0.6", "amuse-0.8"):
        if attacks:
            out["mean"][scheme] = _gains(
                curve(rows, backend, set_name, "baseline", m, attacks),
                curve(rows, backend, set_name, scheme, m, attacks),
            )
        for a in attacks:
            out["per_attack"].setdefault(a, {})[scheme] = _gains(
                curve(rows, backend, set_name, "baseline", m, (a,)),
                curve(rows, backend, set_name, scheme, m, (a,)),
            )
    return out


def jpeg75_at_38db(rows: list[dict], backend: str) -> list[dict]:
    out = []
    for set_name, scheme in sorted({(r["set"], r["scheme"]) for r in rows if r["backend"] == backend}):
        ok = [
            r
            for r in rows
            if (r["backend"], r["set"], r["scheme"]) == (backend, set_name, scheme) and r["psnr"] >= 38
        ]
        if not ok:
            out.append({"set": set_name, "scheme": scheme, "strength": None})
            continue
        r = max(ok, key=lambda r: r["strength"])
        a = r["attacks"]["jpeg75"]
        out.append(
            {
                "set": set_name,
                "scheme": scheme,
                "strength": r["strength"],
                "psnr": round(r["psnr"], 2),
                "per_image_bit_acc": round(a["per_image_bit_acc"], 3),
                "word_acc_m20": a["subsets"].get("20", {}).get("word_acc"),
                "word_acc_all": a["subsets"]["all"]["word_acc"],
            }
        )
    return out


def _db(v: dict) -> str:
    d = v["db_gain_at_equal_word_acc"]
    return "n/a" if d is None else (">= " if v["db_gain_is_lower_bound"] else "") + f"{d:+.2f}"


def _table(title: str, header: list[str], body: list[list]) -> list[str]:
    """A markdown section: title, header row, separator, one row per list of cells."""
    lines = ["", f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in body]


def _word_cells(r: dict) -> list[str]:
    cells = []
    for a in ATTACKS:
        s = r["attacks"][a]["subsets"]
        m20 = f"{s['20']['word_acc']:.2f}" if "20" in s else "-"
        cells.append(f"{m20} / {s['all']['word_acc']:.0f}")
    return cells


def markdown(res: dict) -> str:
    rows = res["rows"]
    lines = [
        "# Dataset watermarks (AMUSE): benchmark",
        "",
        f"Command: `{res['command']}`; {res['seconds']:.0f} s on this shared 2-core CPU. L = 30 bits "
        "(14 message + CRC-16); baseline = whole word in every image; AMUSE tau 0.6 -> 16-bit, tau 0.8 -> "
        f"9-bit sub-messages. Word accuracy = exact recovery of the 30-bit word from a random leaked subset "
        f"of m images ({DRAWS} draws; m = all is one decode per row).",
    ]
    lines += _table(
        "Targets", ["target", "result", "met"], [[t["target"], t["result"], t["met"]] for t in res["targets"]]
    )
    body = []
    for c in res["comparisons"]:
        for view, schemes in (
            ("mean", c["result"]["mean"]),
            ("jpeg75", c["result"]["per_attack"].get("jpeg75", {})),
        ):
            for scheme, v in schemes.items():
                body.append(
                    [
                        c["backend"],
                        c["set"],
                        c["m"],
                        view,
                        scheme,
                        v["max_gain_points_at_equal_psnr"],
                        v["at_psnr"],
                        f"{v['psnr_at_word_acc_0.9']} / {v['baseline_psnr_at_word_acc_0.9']}",
                        _db(v),
                    ]
                )
    lines += _table(
        "AMUSE vs baseline (mean word accuracy over the attacks some scheme survives; JPEG-75 alone)",
        [
            "backend",
            "set",
            "m",
            "attacks",
            "scheme",
            "max gain at equal PSNR (points)",
            "at PSNR",
            "PSNR at word acc 0.9 (AMUSE / baseline)",
            "dB gain at word acc 0.9",
        ],
        body,
    )
    key = ["backend", "set", "scheme", "strength"]
    lines += _table(
        "Word accuracy per attack at each strength (m = 20 / m = all)",
        key + ["PSNR", "SSIM", *ATTACKS],
        [
            [
                r["backend"],
                r["set"],
                r["scheme"],
                f"{r['strength']:g}",
                f"{r['psnr']:.1f}",
                f"{r['ssim']:.3f}",
                *_word_cells(r),
            ]
            for r in rows
        ],
    )
    lines += _table(
        "Bit accuracy per image (payload bits, before voting)",
        key + list(ATTACKS),
        [
            [
                r["backend"],
                r["set"],
                r["scheme"],
                f"{r['strength']:g}",
                *(f"{r['attacks'][a]['per_image_bit_acc']:.3f}" for a in ATTACKS),
            ]
            for r in rows
        ],
    )
    levels = ("0.01", "0.05", "0.1", "0.5")
    lines += _table(
        "Null: unmarked images and wrong keys (tau 0.8, suspect sets of 20 images)",
        [
            "backend",
            "part",
            "verdicts",
            "match",
            "no-watermark",
            *(f"P(p<={a})" for a in levels),
            "true key match rate",
        ],
        [
            [
                n["backend"],
                part,
                n[part]["verdicts"],
                n[part]["match"],
                n[part]["no_watermark"],
                *(f"{n[part]['p_le'][a]:.3f}" for a in levels),
                f"{n['true_key_match_rate']:.2f}",
            ]
            for n in res["null"]
            for part in ("unmarked", "wrong_key")
        ],
    )
    lines += [
        "",
        "## Speed (256x256, one thread, same run)",
        "",
        "```",
        json.dumps(res["speed"], indent=1),
        "```",
    ]
    return "\n".join(lines) + "\n"


def _meets_gain_target(v: dict) -> bool:
    return (v["max_gain_points_at_equal_psnr"] or -1) >= 28 or (v["db_gain_at_equal_word_acc"] or -1) >= 2


def targets(res: dict) -> list[dict]:
    out = []
    hid = [c for c in res["comparisons"] if c["backend"] == "hidden"]
    cells = sorted({(c["set"], c["m"]) for c in hid})
    met = sorted(
        {(c["set"], c["m"], s) for c in hid for s, v in c["result"]["mean"].items() if _meets_gain_target(v)}
    )
    jpeg = [
        (c["set"], c["m"], s, v) for c in hid for s, v in c["result"]["per_attack"].get("jpeg75", {}).items()
    ]
    if hid:
        cifar = [c for c in hid if (c["set"], c["m"]) == ("cifar-32", "all")]
        head = cifar[0]["result"]["mean"].get("amuse-0.8", {}) if cifar else {}
        best_j = max(jpeg, key=lambda t: t[3]["max_gain_points_at_equal_psnr"] or -1e9) if jpeg else None
        out.append(
            {
                "target": "hidden: AMUSE word acc >= baseline + 28 points at equal PSNR, or >= +2 dB at equal word acc",
                "result": (
                    f"mean over attacks: met in {len({(a, b) for a, b, _ in met})} of {len(cells)} (set, m) cells "
                    f"({', '.join(f'{a} m={b} {s}' for a, b, s in met) or 'none'}); cifar-32 m=all tau 0.8: "
                    f"{head.get('max_gain_points_at_equal_psnr')} points, {_db(head) if head else 'n/a'} dB"
                    + (
                        f"; JPEG-75 alone: best {best_j[3]['max_gain_points_at_equal_psnr']} points "
                        f"({best_j[0]} m={best_j[1]} {best_j[2]})"
                        if best_j
                        else ""
                    )
                ),
                "met": ("yes, in " + ", ".join(sorted({a for a, _, _ in met}))) if met else "no",
            }
        )
    for n in res["null"]:
        matches = n["unmarked"]["match"] + n["wrong_key"]["match"]
        p_ok = all(
            v[part]["p_le"][a] <= float(a) + 0.03
            for v in [n]
            for part in ("unmarked", "wrong_key")
            for a in ("0.01", "0.05", "0.1", "0.5")
        )
        out.append(
            {
                "target": f"{n['backend']}: zero match over >= 1,000 unmarked images and wrong keys; "
                "uniform p-values",
                "result": f"{matches} matches in {n['unmarked']['verdicts'] + n['wrong_key']['verdicts']} "
                f"verdicts; P(p<=a) <= a + 0.03: {p_ok}",
                "met": "yes" if matches == 0 and p_ok else "no",
            }
        )
    for j in res["jpeg75_at_38db"]:
        if j["scheme"] == "amuse-0.8" and j.get("strength") is not None:
            out.append(
                {
                    "target": f"hidden survives JPEG-75 at >= 38 dB ({j['set']}, AMUSE 0.8, whole release)",
                    "result": f"PSNR {j['psnr']}, per-image bit acc {j['per_image_bit_acc']}, word acc m=20 "
                    f"{j['word_acc_m20']}, m=all {j['word_acc_all']}",
                    "met": "yes" if (j["word_acc_all"] or 0) >= 1 else "no",
                }
            )
    sp = res["speed"]
    out.append(
        {
            "target": "dwtdct embeds >= 50 images/s at 256x256",
            "result": f"{sp['dwtdct_images_per_s']:.0f} images/s"
            + (f" ({sp['ratio']:.1f}x invisible-watermark dwtDct)" if "ratio" in sp else ""),
            "met": "yes" if sp["dwtdct_images_per_s"] >= 50 else "no",
        }
    )
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="half the images (a smoke run)")
    p.add_argument("--backends", nargs="+", default=["dwtdct", "hidden", "rivagan"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument(
        "--analyse-only", action="store_true", help="redo the tables from <out>/watermark.raw.json"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw_path = out / "watermark.raw.json"
    if args.analyse_only:
        res = json.loads(raw_path.read_text())
    else:
        sets = datasets(args.quick)
        res = {
            "command": "python bench/watermark_amuse.py" + (" --quick" if args.quick else ""),
            "rows": [],
            "null": [],
            "speed": speed(),
        }
        for name in args.backends:
            try:
                create_backend(name)
            except ImportError as e:  # MissingDependencyError: rivagan without invisible-watermark
                log.warning("skipping %s: %s", name, e)
                continue
            # RivaGAN (ONNX, ~0.5 s per image here) runs on a small slice: enough to show its fixed payload
            use = sets if name != "rivagan" else {"photos-128": sets["photos-128"][:16]}
            res["rows"] += run_backend(name, use, STRENGTHS[name], args.seed)
            if name != "rivagan":
                res["null"].append(null_test(name, marked_sets=5, seed=args.seed))
            res["seconds"] = time.time() - start
            raw_path.write_text(json.dumps(res) + "\n")  # analysis can be redone with --analyse-only
    rows = res["rows"]
    res["comparisons"] = [
        {"backend": b, "set": s, "m": m, "result": compare(rows, b, s, m)}
        for b in sorted({r["backend"] for r in rows})
        for s in sorted({r["set"] for r in rows if r["backend"] == b})
        for m in ("10", "20", "all")
    ]
    res["jpeg75_at_38db"] = jpeg75_at_38db(rows, "hidden")
    res["targets"] = targets(res)
    (out / "watermark.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "watermark.md").write_text(markdown(res))
    print(markdown(res).split("## AMUSE vs")[0])


if __name__ == "__main__":
    main()

"""Writing of a synthetic Tsinghua-Tencent 100K dataset in TT100K's layout.

Every image draws from its own random generator seeded with ``(seed, image index)``, so a dataset is
the same whatever the number of worker processes. A marker file lists what the generator wrote, so
that overwriting deletes exactly that.

Output (as the TT100K release)::

    OUT/annotations.json      {"types": [...], "imgs": {"<id>": {"path", "id", "objects": [...]}}}
    OUT/train/ids.txt, OUT/test/ids.txt
    OUT/train/<id>.jpg, OUT/test/<id>.jpg
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from featsr_d2.core.synthetic.backgrounds import default_backgrounds
from featsr_d2.core.synthetic.compose import compose_image
from featsr_d2.core.synthetic.signs import is_drawable, sign_model
from featsr_d2.core.tt100k_categories import SIZE_BINS, TYPE45
from featsr_d2.utils.file_io import atomic_write_json, atomic_write_text

__all__ = [
    "MARKER",
    "format_summary",
    "generate_synthetic_tt100k",
    "resolve_categories",
]

FIRST_ID = 10000  # image ids are FIRST_ID + index, train images first
MIN_IMAGE_SIZE = 64


def _warm_caches(categories: Sequence[str]) -> None:
    """Render every template and load the photographs (before forking: workers inherit them)."""
    for c in categories:
        sign_model(c)
    default_backgrounds()


def resolve_categories(categories: str | Sequence[str]) -> tuple[str, ...]:
    """Category names from "type45" (TT100K's 45 evaluation classes), a comma-separated string or
    a sequence of names; raises ValueError for names without a sign design."""
    if isinstance(categories, str):
        if categories == "type45":
            return tuple(TYPE45)
        if categories == "all":
            raise ValueError(
                "the 'all' TT100K class set cannot be synthesized: use 'type45' or a list of names"
            )
        categories = categories.split(",")
    names = tuple(dict.fromkeys(c.strip() for c in categories if c.strip()))
    if not names:
        raise ValueError("no categories given")
    unknown = [c for c in names if not is_drawable(c)]
    if unknown:
        raise ValueError(f"no sign design for categories {unknown}; see signs.SIGN_CATEGORIES")
    return names


@dataclass(frozen=True)
class _Job:
    split: str
    index: int  # global image index (train first), seeds the image's generator
    image_id: int


@dataclass(frozen=True)
class _Settings:
    out_dir: str
    image_size: int
    seed: int
    categories: tuple[str, ...]


def _render_job(settings: _Settings, job: _Job) -> tuple[_Job, list[dict]]:
    rng = np.random.default_rng([settings.seed, job.index])
    img, objects, quality = compose_image(rng, settings.image_size, settings.categories)
    path = os.path.join(settings.out_dir, job.split, f"{job.image_id}.jpg")
    Image.fromarray(img).save(path, format="JPEG", quality=quality)
    return job, objects


_WORKER_SETTINGS: _Settings | None = None


def _worker_init(settings: _Settings) -> None:
    global _WORKER_SETTINGS
    _WORKER_SETTINGS = settings
    cv2.setNumThreads(1)
    _warm_caches(settings.categories)  # no-op after fork: the caches came with the parent


def _worker_run(job: _Job) -> tuple[_Job, list[dict]]:
    assert _WORKER_SETTINGS is not None
    return _render_job(_WORKER_SETTINGS, job)


# Left in the output folder before anything else is written: what this generator wrote there, so
# that --overwrite deletes exactly that and nothing a user put there (a real TT100K, notes).
MARKER = ".featsr_synthetic.json"
_MARKER_KIND = "featsr_d2 synthetic TT100K"
_OURS = ("annotations.json", "train", "test")


def _written_files(out_dir: str) -> list[str] | None:
    """The relative paths this generator wrote into ``out_dir`` per its marker; None without a
    (valid) marker."""
    path = os.path.join(out_dir, MARKER)
    try:
        with open(path, encoding="utf-8") as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("kind") != _MARKER_KIND:
        return None
    files = marker.get("files")
    if not isinstance(files, list) or not all(isinstance(p, str) for p in files):
        return None
    return files


def _remove_previous(out_dir: str) -> None:
    """Delete what the marker lists (only paths inside ``out_dir``), then the emptied split
    folders and the marker itself; annotations first, so that a half-removed dataset never looks
    complete."""
    files = _written_files(out_dir)
    assert files is not None
    root = os.path.realpath(out_dir)
    ordered = sorted(files, key=lambda p: p != "annotations.json")
    for rel in ordered:
        target = os.path.realpath(os.path.join(root, rel))
        if os.path.commonpath([root, target]) != root or target == root:
            continue  # a marker naming a path outside the folder is not obeyed
        if os.path.isfile(target) and not os.path.islink(os.path.join(root, rel)):
            os.remove(target)
    for split in ("train", "test"):
        folder = os.path.join(out_dir, split)
        if os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)
    os.remove(os.path.join(out_dir, MARKER))


def _prepare_out_dir(out_dir: str, overwrite: bool, planned: list[str]) -> None:
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise FileExistsError(f"{out_dir} exists and is not a folder; give --out a folder")
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not overwrite:
            raise FileExistsError(f"{out_dir} is not empty (pass overwrite=True / --overwrite)")
        present = [n for n in _OURS if os.path.lexists(os.path.join(out_dir, n))]
        if _written_files(out_dir) is not None:
            _remove_previous(out_dir)  # what remains is not ours, and is kept
        elif present:
            raise FileExistsError(
                f"{out_dir} holds {', '.join(present)} that this generator did not write (no "
                f"{MARKER} lists them): refusing to delete them, which could be a real dataset. "
                "Choose another --out, or remove them yourself."
            )
    os.makedirs(out_dir, exist_ok=True)
    marker = {"kind": _MARKER_KIND, "files": planned}
    atomic_write_json(os.path.join(out_dir, MARKER), marker)  # before any file it lists
    for split in ("train", "test"):
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)


def _size_bin(obj: dict) -> str:
    b = obj["bbox"]
    side = max(b["xmax"] - b["xmin"], b["ymax"] - b["ymin"])
    for name in ("small", "medium", "large"):
        lo, hi = SIZE_BINS[name]
        if lo <= side < hi:
            return name
    return "large"


def generate_synthetic_tt100k(
    out_dir: str,
    *,
    num_train: int = 600,
    num_test: int = 150,
    image_size: int = 320,
    seed: int = 0,
    categories: str | Sequence[str] = "type45",
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Write a synthetic dataset in the Tsinghua-Tencent 100K layout to `out_dir`.

    Args:
        out_dir: output directory; created if missing, refused if not empty unless `overwrite`,
            which deletes only the files an earlier run wrote there (listed in its ``MARKER``
            file) and refuses a folder holding annotations.json, train/ or test/ without one.
        num_train, num_test: number of images per split.
        image_size: side of the square images, px (>= 64).
        seed: non-negative seed; the dataset (annotation bytes and image bytes) depends only on it,
            the counts, the image size, the categories and the background photographs found on
            the machine (:func:`~featsr_d2.core.synthetic.backgrounds.find_photo_paths`).
        categories: "type45" or a list (or comma-separated string) of drawable TT100K names.
        workers: processes to render with; None picks min(CPU count, 8), or 1 for fewer than 32
            images.
        progress: show a tqdm progress bar.

    Returns:
        A summary: ``out_dir``, ``num_images`` per split, ``num_empty_images``, ``num_objects``,
        ``per_class`` and ``per_size`` (small / medium / large by the long side of the box) counts,
        and ``seconds``.
    """
    start = time.perf_counter()
    if num_train < 0 or num_test < 0:
        raise ValueError("num_train and num_test must be >= 0")
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be >= {MIN_IMAGE_SIZE}, got {image_size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    names = resolve_categories(categories)
    total = num_train + num_test
    if workers is None:
        workers = 1 if total < 32 else min(os.cpu_count() or 1, 8)
    workers = max(1, min(int(workers), max(1, total)))

    out_dir = os.path.abspath(out_dir)
    settings = _Settings(out_dir, int(image_size), int(seed), names)
    jobs = [
        _Job("train" if i < num_train else "test", i, FIRST_ID + i) for i in range(total)
    ]  # fmt: skip
    planned = [f"{job.split}/{job.image_id}.jpg" for job in jobs]
    planned += ["train/ids.txt", "test/ids.txt", "annotations.json"]
    _prepare_out_dir(out_dir, overwrite, planned)

    # OpenCV on one thread before anything is drawn: a worker forked while OpenCV's thread pool
    # runs can inherit a held lock and hang at its first OpenCV call.
    from tqdm import tqdm

    cv2_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    results: dict[int, list[dict]] = {}
    bar = tqdm(total=total, desc="synthetic TT100K", unit="img", disable=not progress)
    try:
        _warm_caches(names)
        if workers == 1:
            for job in jobs:
                _, objs = _render_job(settings, job)
                results[job.image_id] = objs
                bar.update(1)
        else:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
            chunk = max(1, min(16, total // (4 * workers)))
            with ctx.Pool(workers, initializer=_worker_init, initargs=(settings,)) as pool:
                for job, objs in pool.imap_unordered(_worker_run, jobs, chunksize=chunk):
                    results[job.image_id] = objs
                    bar.update(1)
    finally:
        cv2.setNumThreads(cv2_threads)
        bar.close()

    imgs = {}
    for job in jobs:
        imgs[str(job.image_id)] = {
            "path": f"{job.split}/{job.image_id}.jpg",
            "id": job.image_id,
            "objects": results[job.image_id],
        }
    for split in ("train", "test"):
        ids = [str(j.image_id) for j in jobs if j.split == split]
        atomic_write_text(os.path.join(out_dir, split, "ids.txt"), "".join(i + "\n" for i in ids))
    # Written last and atomically: a crashed run never leaves a complete-looking dataset.
    atomic_write_json(
        os.path.join(out_dir, "annotations.json"), {"types": list(names), "imgs": imgs}
    )

    per_class = dict.fromkeys(names, 0)
    per_size = {"small": 0, "medium": 0, "large": 0}
    for entry in imgs.values():
        for obj in entry["objects"]:
            per_class[obj["category"]] += 1
            per_size[_size_bin(obj)] += 1
    return {
        "out_dir": out_dir,
        "num_images": {"train": num_train, "test": num_test},
        "num_empty_images": sum(1 for e in imgs.values() if not e["objects"]),
        "num_objects": sum(per_class.values()),
        "per_class": per_class,
        "per_size": per_size,
        "seconds": time.perf_counter() - start,
    }


def format_summary(summary: dict, columns: int = 6) -> str:
    """A readable multi-line report of a :func:`generate_synthetic_tt100k` summary."""
    n = summary["num_objects"]
    lines = [
        f"synthetic TT100K in {summary['out_dir']}: {summary['num_images']['train']} train + "
        f"{summary['num_images']['test']} test images "
        f"({summary['num_empty_images']} without signs), "
        f"{n} signs, {summary['seconds']:.1f} s",
        "per size (long side of the box): "
        + ", ".join(
            f"{k} [{SIZE_BINS[k][0]}, {SIZE_BINS[k][1]}) {v} ({100.0 * v / max(1, n):.1f}%)"
            for k, v in summary["per_size"].items()
        ),
        "per class:",
    ]
    items = [f"{k:>6} {v:5d}" for k, v in summary["per_class"].items()]
    for i in range(0, len(items), columns):
        lines.append("  " + "   ".join(items[i : i + columns]))
    return "\n".join(lines)

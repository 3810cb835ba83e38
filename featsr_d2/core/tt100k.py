"""Tsinghua-Tencent 100K (TT100K) annotation files: the one reader, framework-free.

The official release (and :mod:`featsr_d2.core.synthetic`) lays a dataset out as::

    ROOT/annotations.json   {"types": [...], "imgs": {"<id>": {"path": "train/<id>.jpg", "id": <id>,
                              "objects": [{"category": "pl40",
                                           "bbox": {"xmin", "ymin", "xmax", "ymax"},
                                           optional "ellipse_org" / "polygon"}]}}}
    ROOT/train/ids.txt      one image id per line (likewise test/ids.txt)
    ROOT/train/<id>.jpg     image paths are relative to ROOT

:func:`load_tt100k_split` reads one split into plain records (image id, file, size, objects with
contiguous class ids and float ``xmin, ymin, xmax, ymax`` boxes); each framework turns them into its
own dataset format (Detectron2: :func:`featsr_d2.data.tt100k.load_tt100k_json`; MMDetection:
:class:`featsr_d2.mmdet.datasets.FeatSRTT100KDataset`), so both load exactly the same boxes and
classes and skip exactly the same records.

Bad input never reaches training as a crash: every problem is reported as a
:class:`TT100KFormatError` naming the file, the record and the fix, or, with
``on_bad_record="skip"``, counted, logged and skipped. A bad object skips that object; a bad image
(unknown or duplicated id, missing or unreadable file, ``objects`` missing or not a list) skips the
image.
Boxes may overhang the image border by up to ``BORDER_TOLERANCE`` pixels (annotation rounding) and
are clipped (``tt100k_bbox`` keeps the box as annotated); further out they are bad. An image's size
is its size as decoded, with its EXIF orientation applied (as Detectron2's ``read_image`` and
OpenCV's ``IMREAD_COLOR`` apply it), so boxes are in the image as displayed; an image path that is
not a regular file (a FIFO would block the loader forever) is a bad image
(:mod:`featsr_d2.core.image_files`).

:func:`parse_object` is the one validator of an object, and this module the one reader of TT100K
files: the evaluation protocol (:mod:`featsr_d2.core.tt100k_protocol`) and
``tools/tt100k_eval.py`` read ground truth and results files with :func:`load_annotations`,
:func:`load_results` and :func:`load_ids`, which check every record strictly (any bad record is an
error naming the file and the record), and the training-time evaluators score the ground truth
the loader returned, so that loading and evaluation never disagree about a record.
"""

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from numbers import Real
from typing import Any

from PIL import Image

from featsr_d2.core.image_files import NotARegularFileError, oriented_image_size
from featsr_d2.core.tt100k_categories import CLASS_SETS, TYPE45

logger = logging.getLogger(__name__)

ON_BAD_RECORD_CHOICES = ("error", "skip")
# How far (pixels) a box may overhang the image before it counts as outside it.
BORDER_TOLERANCE = 1.0
# What a missing annotations.json error suggests, unless the caller knows better.
MISSING_HINT = "Point the dataset at the folder holding annotations.json."


class TT100KFormatError(ValueError):
    """A TT100K annotation file, split file or image that cannot be used as it is."""


class _BadRecords:
    """Raises on the first bad record, or counts and logs them, per the ``on_bad_record`` policy."""

    def __init__(
        self, policy: str, split_name: str, *, skip_setting: str, log: logging.Logger = logger
    ):
        if policy not in ON_BAD_RECORD_CHOICES:
            raise ValueError(
                f"on_bad_record must be one of {ON_BAD_RECORD_CHOICES}, got {policy!r}"
            )
        self.policy = policy
        self.split_name = split_name
        self.skip_setting = skip_setting
        self.log = log
        self.counts: Counter = Counter()
        self.examples: list[str] = []

    def __call__(self, reason: str, message: str) -> None:
        if self.policy == "error":
            raise TT100KFormatError(
                f"{message}\nFix the record, or set {self.skip_setting} to skip bad records "
                "with a logged count."
            )
        self.counts[reason] += 1
        if len(self.examples) < 5:
            self.examples.append(message)

    def report(self) -> None:
        if not self.counts:
            return
        summary = ", ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items()))
        self.log.warning(
            "TT100K %s: skipped bad records (%s). First ones:\n  %s",
            self.split_name,
            summary,
            "\n  ".join(self.examples),
        )


def read_json(path: str, what: str = "annotation file", missing_hint: str = "") -> Any:
    """Parse a JSON file, turning every way it can be unreadable into a :class:`TT100KFormatError`
    that names the file and the fix (missing, not UTF-8, not JSON, a number too long to convert,
    nesting too deep)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise TT100KFormatError(f"{path}: {what} not found. {missing_hint}".rstrip()) from None
    except OSError as e:
        raise TT100KFormatError(f"{path}: {what} cannot be read ({e.strerror or e}).") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise TT100KFormatError(
            f"{path}: not UTF-8 text (byte {e.start}, line {line}). Re-export the {what} as UTF-8."
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise TT100KFormatError(
            f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}). "
            f"Re-download or re-export the {what}."
        ) from None
    except (ValueError, RecursionError) as e:  # e.g. an integer of more than 4300 digits
        raise TT100KFormatError(
            f"{path}: the JSON holds a value Python cannot read ({e}). Fix the {what}."
        ) from None


def read_annotations(json_file: str, missing_hint: str = MISSING_HINT) -> dict:
    """Read and check the top level of a TT100K ``annotations.json`` for the loader (records are
    checked one by one as they are loaded, under the ``on_bad_record`` policy); ``missing_hint``
    tells where the file should be when it is not found."""
    annos = read_json(json_file, "annotation file", missing_hint)
    if not isinstance(annos, dict) or not isinstance(annos.get("imgs"), dict):
        raise TT100KFormatError(
            f"{json_file}: expected an object with an 'imgs' mapping of image id to record "
            "(the TT100K annotations.json format)."
        )
    check_types(annos.get("types", []), json_file)
    return annos


def check_types(types: Any, source: str) -> None:
    """``types`` (an annotation file's category list) must be a list of distinct names."""
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise TT100KFormatError(f"{source}: 'types' must be a list of category names.")
    repeated = (
        sorted({t for t in types if types.count(t) > 1}) if len(set(types)) < len(types) else []
    )
    if repeated:
        raise TT100KFormatError(
            f"{source}: 'types' lists {repeated[:5]} more than once (class ids would be "
            "ambiguous). Remove the repetitions."
        )


def read_ids(ids_file: str) -> list[tuple[int, str]]:
    """The ``(line number, image id)`` pairs of a split file, blank lines skipped."""
    try:
        with open(ids_file, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise TT100KFormatError(
            f"{ids_file}: split file not found. A TT100K root holds train/ids.txt and test/ids.txt."
        ) from None
    except OSError as e:
        raise TT100KFormatError(
            f"{ids_file}: split file cannot be read ({e.strerror or e})."
        ) from None
    try:
        lines = data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise TT100KFormatError(
            f"{ids_file}:{line}: not UTF-8 text (byte {e.start}). A split file holds one image "
            "id per line; re-export it as UTF-8."
        ) from None
    return [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip()]


def image_id_value(img_id: str) -> int | str:
    """The ``image_id`` of a dataset dict: an int when ``img_id`` is its canonical decimal form
    (so that ``str(image_id) == img_id`` always holds; "007" stays a string), else the string."""
    if img_id.isascii() and img_id.isdigit() and len(img_id) <= 18 and str(int(img_id)) == img_id:
        return int(img_id)
    return img_id


def class_names(class_set: str, types: list[str]) -> list[str]:
    """The contiguous class list of a class set: the official 45, or every type in the file."""
    if class_set == "type45":
        return list(TYPE45)
    if class_set == "all":
        return list(types)
    raise ValueError(f"class_set must be one of {CLASS_SETS}, got {class_set!r}")


BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")


def is_finite_number(value: Any) -> bool:
    """A real, finite number that is not a bool (JSON's ``true`` or ``"268.91"`` are not)."""
    if type(value) is float or type(value) is int:  # fast path for parsed JSON
        return math.isfinite(value)
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def parse_object(
    obj: Any, where: str, *, require_score: bool = False
) -> tuple[str, list[float], float]:
    """The one validator of a TT100K object (ground truth or detection), shared by the loader and
    the evaluation protocol: returns ``(category, [xmin, ymin, xmax, ymax], score)``, the score
    NaN when not required.

    Raises:
        TT100KFormatError: naming ``where`` and what is wrong.
    """
    if not (type(obj) is dict or isinstance(obj, Mapping)):
        raise TT100KFormatError(f"{where}: expected an object, got {type(obj).__name__}")
    category = obj.get("category")
    if not isinstance(category, str):
        if "category" not in obj:
            raise TT100KFormatError(f"{where}: missing key 'category'")
        raise TT100KFormatError(
            f"{where}: 'category' must be a string, got {type(category).__name__}"
        )
    bbox = obj.get("bbox")
    if not (type(bbox) is dict or isinstance(bbox, Mapping)):
        problem = "missing key 'bbox'" if "bbox" not in obj else "'bbox' must be an object"
        raise TT100KFormatError(f"{where}: {problem}")
    box = []
    for key in BOX_KEYS:
        if key not in bbox:
            raise TT100KFormatError(f"{where}: bbox is missing key {key!r}")
        if not is_finite_number(bbox[key]):
            raise TT100KFormatError(
                f"{where}: bbox[{key!r}] must be a finite number, got {_short(bbox[key])}"
            )
        box.append(float(bbox[key]))
    score = math.nan
    if require_score:
        if "score" not in obj:
            raise TT100KFormatError(f"{where}: detection has no 'score'")
        if not is_finite_number(obj["score"]):
            raise TT100KFormatError(
                f"{where}: 'score' must be a finite number, got {_short(obj['score'])}"
            )
        score = float(obj["score"])
    return category, box, score


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --------------------------------------------------------------------------------------------------
# Whole files: the ground truth and results files of the evaluation protocol, strictly checked
# --------------------------------------------------------------------------------------------------

PathLike = str | os.PathLike


def image_records(annos: Any, source: str) -> Mapping[str, Any]:
    """The ``imgs`` mapping (image id -> record) of a ground-truth or results mapping."""
    if not isinstance(annos, Mapping):
        raise TT100KFormatError(f"{source}: expected a JSON object, got {type(annos).__name__}")
    if "imgs" not in annos:
        raise TT100KFormatError(f"{source}: missing key 'imgs'")
    imgs = annos["imgs"]
    if not isinstance(imgs, Mapping):
        raise TT100KFormatError(f"{source}: 'imgs' must be an object, got {type(imgs).__name__}")
    return imgs


def record_objects(record: Any, where: str) -> list[Any]:
    """The ``objects`` list of one image record."""
    if not isinstance(record, Mapping):
        raise TT100KFormatError(f"{where}: expected an object, got {type(record).__name__}")
    if "objects" not in record:
        raise TT100KFormatError(f"{where}: missing key 'objects'")
    objects = record["objects"]
    if not isinstance(objects, list):
        raise TT100KFormatError(f"{where}: 'objects' must be a list, got {type(objects).__name__}")
    return objects


def validate_record(record: Any, where: str, *, require_score: bool) -> None:
    """Validates one image record object by object (:func:`parse_object`), raising on the first
    problem."""
    for k, obj in enumerate(record_objects(record, where)):
        parse_object(obj, f"{where}.objects[{k}]", require_score=require_score)


def validate_annotations(
    annos: Any,
    *,
    source: str = "<annotations>",
    require_score: bool,
    img_ids: Iterable[str] | None = None,
) -> None:
    """Checks every record of a ground-truth (``require_score=False``) or results mapping, or only
    those of ``img_ids`` (the evaluated split; ids absent from ``annos`` are skipped). A ground
    truth's ``types``, when present, must be a list of distinct names (:func:`check_types`).

    Raises:
        TT100KFormatError: naming ``source`` and the offending record.
    """
    imgs = image_records(annos, source)
    if not require_score:
        check_types(annos.get("types", []), source)
    ids = imgs if img_ids is None else [i for i in img_ids if i in imgs]
    for img_id in ids:
        validate_record(imgs[img_id], f"{source}: imgs[{img_id!r}]", require_score=require_score)


def load_annotations(path: PathLike) -> dict[str, Any]:
    """Loads and validates a TT100K ground-truth ``annotations.json``."""
    annos = read_json(os.fspath(path), "annotation file")
    validate_annotations(annos, source=str(path), require_score=False)
    return annos


def load_results(path: PathLike) -> dict[str, Any]:
    """Loads and validates a TT100K results file (every object must have a ``score``)."""
    annos = read_json(os.fspath(path), "results file")
    validate_annotations(annos, source=str(path), require_score=True)
    return annos


def load_ids(path: PathLike, gt_annos: Mapping[str, Any] | None = None) -> list[str]:
    """Reads a split file (one image id per line; blank lines are skipped).

    Raises:
        TT100KFormatError: on a duplicated id, or, when ``gt_annos`` is given, on ids it lacks.
    """
    ids: list[str] = []
    lines: dict[str, int] = {}
    for lineno, img_id in read_ids(os.fspath(path)):
        if img_id in lines:
            raise TT100KFormatError(
                f"{path}:{lineno}: image id {img_id!r} already listed on line {lines[img_id]}"
            )
        lines[img_id] = lineno
        ids.append(img_id)
    if gt_annos is not None:
        imgs = image_records(gt_annos, "<ground truth>")
        missing = [i for i in ids if i not in imgs]
        if missing:
            raise TT100KFormatError(
                f"{path}: {len(missing)} image id(s) absent from the ground truth, first at line "
                f"{lines[missing[0]]}: {missing[:5]}"
            )
    return ids


# --------------------------------------------------------------------------------------------------
# One split as plain records, bad records reported or skipped
# --------------------------------------------------------------------------------------------------


def load_tt100k_split(
    json_file: str,
    ids_file: str,
    image_root: str,
    *,
    class_set: str = "type45",
    on_bad_record: str = "error",
    split_name: str = "",
    skip_setting: str = "on_bad_record='skip'",
    missing_hint: str = MISSING_HINT,
    log: logging.Logger = logger,
) -> list[dict[str, Any]]:
    """Load one split of a TT100K-format dataset as plain records, in the split file's order.

    Args:
        json_file: the dataset's ``annotations.json``.
        ids_file: the split's ``ids.txt``.
        image_root: the folder image ``path`` entries are relative to.
        class_set: ``"type45"`` keeps the official 45 evaluation classes (objects of other known
            types are left out, as in the TT100K and FeatSR training setups); ``"all"`` keeps
            every type, in the order of the file's ``types``.
        on_bad_record: ``"error"`` or ``"skip"`` (see the module docstring).
        split_name: used in log messages.
        skip_setting: the caller's setting that skips bad records, named in the error's fix.
        missing_hint: where ``annotations.json`` should be, for the error when it is not found.
        log: where the skipped records and the summary are logged.

    Returns:
        One record per image: ``{"img_id": str, "file_name": str, "width": int, "height": int,
        "objects": [{"category": str, "category_id": int, "bbox": [x0, y0, x1, y1] clipped to
        the image, "tt100k_bbox": [x0, y0, x1, y1] as annotated}]}``.
    """
    bad = _BadRecords(on_bad_record, split_name or ids_file, skip_setting=skip_setting, log=log)
    annos = read_annotations(json_file, missing_hint)
    known_types = set(annos.get("types", []))
    classes = class_names(class_set, annos.get("types", []))
    class_id = {name: i for i, name in enumerate(classes)}

    records = []
    first_line: dict[str, int] = {}
    for line_no, img_id in read_ids(ids_file):
        where = f"{ids_file}:{line_no}: image id {img_id}"
        if img_id in first_line:
            bad(
                "duplicate image id",
                f"{where} is already listed on line {first_line[img_id]} (it would be trained on "
                "and evaluated twice).",
            )
            continue
        first_line[img_id] = line_no
        rec = annos["imgs"].get(img_id)
        if rec is None:
            bad("unknown image id", f"{where} is not in {json_file} 'imgs'.")
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("path"), str):
            bad("malformed image record", f"{json_file}: imgs[{img_id!r}] has no 'path' string.")
            continue
        try:  # as strict as the protocol: a record without an 'objects' list is malformed
            objects = record_objects(rec, f"{json_file}: imgs[{img_id!r}]")
        except TT100KFormatError as e:
            bad("malformed image record", f"{e}.")
            continue
        file_name = os.path.join(image_root, rec["path"])
        try:
            width, height = oriented_image_size(file_name)  # as the image decodes (EXIF)
        except FileNotFoundError:
            bad("missing image", f"{where}: image file {file_name} does not exist.")
            continue
        except NotARegularFileError as e:
            bad("not a regular file", f"{where}: {e}. Put the image file there.")
            continue
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            bad("unreadable image", f"{where}: image file {file_name} cannot be read ({e}).")
            continue

        objs = []
        for k, obj in enumerate(objects):
            rec_where = f"{json_file}: imgs[{img_id!r}].objects[{k}]"
            try:
                category, (x0, y0, x1, y1), _ = parse_object(obj, rec_where)
            except TT100KFormatError as e:
                bad("malformed object", str(e))
                continue
            if category not in known_types and category not in class_id:
                bad(
                    "unknown category",
                    f"{rec_where}: category {category!r} is not in the file's 'types' list.",
                )
                continue
            if category not in class_id:
                continue  # a known type outside the chosen class set
            if not (x1 > x0 and y1 > y0):
                bad("empty box", f"{rec_where}: box {(x0, y0, x1, y1)} has zero or negative area.")
                continue
            tol = BORDER_TOLERANCE
            if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol:
                bad(
                    "box outside image",
                    f"{rec_where}: box {(x0, y0, x1, y1)} lies outside the {width}x{height} "
                    f"image {file_name}.",
                )
                continue
            objs.append(
                {
                    "category": category,
                    "category_id": class_id[category],
                    "bbox": [
                        max(x0, 0.0),
                        max(y0, 0.0),
                        min(x1, float(width)),
                        min(y1, float(height)),
                    ],
                    # The box as annotated (before clipping): what the official protocol scores.
                    "tt100k_bbox": [x0, y0, x1, y1],
                }
            )
        records.append(
            {
                "img_id": img_id,
                "file_name": file_name,
                "width": width,
                "height": height,
                "objects": objs,
            }
        )
    bad.report()
    log.info(
        "Loaded %d images with %d objects from %s (%s)",
        len(records),
        sum(len(r["objects"]) for r in records),
        ids_file,
        class_set,
    )
    return records

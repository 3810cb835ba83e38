"""Command line: ``python -m featsr_d2.core.synthetic --out DIR [options]``.

Writes a synthetic Tsinghua-Tencent 100K dataset (annotations.json, train/ and test/ with ids.txt
and JPEG images) and prints how many signs it holds per class and per size bin.
"""

import argparse
import sys

from featsr_d2.core.synthetic.writer import format_summary, generate_synthetic_tt100k


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m featsr_d2.core.synthetic",
        description="Generate a synthetic dataset in the Tsinghua-Tencent 100K (TT100K) layout.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="output directory (must be empty or new)")
    parser.add_argument("--num-train", type=int, default=600, help="training images")
    parser.add_argument("--num-test", type=int, default=150, help="test images")
    parser.add_argument("--image-size", type=int, default=320, help="side of the square images, px")
    parser.add_argument("--seed", type=int, default=0, help="random seed (>= 0)")
    parser.add_argument(
        "--categories", default="type45", help="'type45' or a comma-separated list of TT100K names"
    )
    parser.add_argument(
        "--workers", type=int, default=None,
        help="worker processes; None: min(CPU count, 8); the output does not depend on it",
    )  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true",
        help="in a non-empty output directory, delete the files an earlier run of this generator "
        "wrote there (listed in its .featsr_synthetic.json) and write anew; anything else is "
        "kept, and annotations.json, train/ or test/ without that list are refused",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = generate_synthetic_tt100k(
            args.out,
            num_train=args.num_train,
            num_test=args.num_test,
            image_size=args.image_size,
            seed=args.seed,
            categories=args.categories,
            workers=args.workers,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except (OSError, ValueError) as e:  # FileExistsError: a folder we may not overwrite
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""fastload compile: index an ImageNet-style folder into FFCV .beton files, or materialize one manifest.

  fastload compile imagenet ROOT OUT [--max-resolution 256 --write-mode proportion ...]
  fastload compile imagenet ROOT OUT --square 176        (fixed-size raw squares, for `augment: device`)
  fastload compile materialize --manifest M.npz --beton OUT/train.beton SUBSET.beton
  fastload compile verify OUT                            (every checksum of every beton in OUT, or of one beton)
  fastload compile cls sun397 ROOT OUT [--option partition=1]   (a classification transfer dataset, warped raw)
"""


def configure(p):
    sub = p.add_subparsers(dest="compile_command", metavar="WHAT", required=True)
    configure_imagenet(sub.add_parser(
        "imagenet", help="compile ROOT (ILSVRC-2012 layout or any ImageFolder tree) into OUT",
        description="Index ROOT/train/<class>/* and ROOT/val (class folders, or flat with LOC_val_solution.csv or "
                    "the devkit's ILSVRC2012_validation_ground_truth.txt) and write OUT/{split}.beton, "
                    "OUT/{split}_index.npz, classes.txt, compile.json, skipped.jsonl and converted.jsonl. The "
                    "compile is staged beside OUT and swapped in when complete, so the new compile must fit beside "
                    "the previous one: once the images are indexed, and before any beton is written, the free space "
                    "there is checked against an estimate from the index (per image, raw: stored width x height x "
                    "3 bytes; jpg: stored pixels x the source file's bytes per pixel, at most 3; proportion: the mix "
                    "of both; plus FFCV's whole pages of 8 MiB or more: the first for the header, one partly filled "
                    "per writer process) and a shortfall is refused on one line. A disk that fills up anyway is one "
                    "line naming the beton, with OUT left as it was."))
    configure_materialize(sub.add_parser(
        "materialize", help="write a standalone beton holding only one manifest's rows",
        description="Copy the rows of a manifest (its `indices`) from the base beton into a standalone beton, "
                    "byte for byte, plus OUT_index.npz. Labels stay fine class ids (apply label_lookup at load)."))
    configure_cls(sub.add_parser(
        "cls", help="compile a classification transfer dataset (LAYOUT: sun397, ...) into OUT",
        description="Read ROOT with LAYOUT's reader (fastload.transfer_data.LAYOUTS) and write OUT/{split}.beton "
                    "(images warped to SIDE x SIDE as the transfer configs' Resize(keep_ratio=False) does, stored "
                    "raw), OUT/{split}_index.npz, classes.txt, compile.json, skipped.jsonl and converted.jsonl. "
                    "Staged beside OUT and swapped in when complete."))
    verify = sub.add_parser("verify", help="check every page checksum of the betons of a compile folder",
                            description="Check every beton in OUT (or the one beton given) against the size and "
                                        "checksums recorded when it was written, and each index against its beton.")
    verify.add_argument("out", help="a compile folder (OUT) or one .beton file")
    verify.set_defaults(_compile_run=run_verify)


def configure_imagenet(p):
    from ..compile import (DEFAULT_COMPRESS_PROBABILITY, DEFAULT_JPEG_QUALITY, DEFAULT_MAX_RESOLUTION,
                           DEFAULT_MIN_SIDE, DEFAULT_WRITE_MODE, WRITE_MODES)
    p.add_argument("root", help="dataset folder holding train/ and val/ (or Kaggle's ILSVRC/Data/CLS-LOC)")
    p.add_argument("out", help="output folder for the betons, indices and reports")
    p.add_argument("--splits", default="train,val", help="comma-separated splits to compile (default: train,val)")
    p.add_argument("--max-resolution", type=int, default=None,
                   help="longest side of stored images; 0 keeps the original size (default: "
                        f"{DEFAULT_MAX_RESOLUTION}; with --square, the square's side)")
    p.add_argument("--square", type=int, default=0, metavar="S",
                   help="store every image as its centre SxS after resizing the shorter side to S: one image size "
                        "per beton, for pre-training with `augment: device` (default: 0, off: aspect kept)")
    p.add_argument("--write-mode", choices=WRITE_MODES, default=None,
                   help="store images raw, as JPEG, or a random proportion as JPEG "
                        f"(default: {DEFAULT_WRITE_MODE}; with --square, raw)")
    p.add_argument("--jpeg-quality", type=int, default=DEFAULT_JPEG_QUALITY,
                   help=f"JPEG quality for compressed images, 1..100 (default: {DEFAULT_JPEG_QUALITY})")
    p.add_argument("--compress-probability", type=float, default=DEFAULT_COMPRESS_PROBABILITY,
                   help="with --write-mode proportion, the fraction stored as JPEG "
                        f"(default: {DEFAULT_COMPRESS_PROBABILITY})")
    p.add_argument("--min-side", type=int, default=DEFAULT_MIN_SIDE,
                   help="skip images whose stored shorter side would be under this many pixels, so that every "
                        f"crop decoder can read every row (default: {DEFAULT_MIN_SIDE})")
    p.add_argument("--num-workers", type=int, default=2, help="processes decoding and writing (default: 2)")
    p.add_argument("--strict", action="store_true",
                   help="fail when any image file cannot be decoded or stored (default: skip it and list it in "
                        "OUT/skipped.jsonl)")
    p.add_argument("--devkit-class-order", default=None, metavar="FILE",
                   help="for a flat val/ labelled by ILSVRC2012_validation_ground_truth.txt: the 1000 wnids in "
                        "ILSVRC2012_ID order (the devkit's meta.mat order), one per line; `python -m pydoc "
                        "fastload.index` shows how to make it from meta.mat (default: none)")
    p.set_defaults(_compile_run=run_imagenet)


def configure_materialize(p):
    p.add_argument("out", help="the beton to write, e.g. subsets/bottom_up_127_x500.beton")
    p.add_argument("--manifest", required=True, help="manifest .npz (from `fastload subset`) whose rows to copy")
    p.add_argument("--beton", required=True, help="the base beton the manifest indexes, e.g. OUT/train.beton")
    p.add_argument("--num-workers", type=int, default=2, help="writer processes (default: 2)")
    p.set_defaults(_compile_run=run_materialize)


def configure_cls(p):
    from ..compile import WRITE_MODES
    from ..compile_cls import DEFAULT_SIDE, DEFAULT_WRITE_MODE, ClsSettings
    from ..transfer_data import LAYOUTS
    layouts = "; ".join(f"{name}: {layout.needs} (options: "
                        f"{', '.join(f'{k}={v}' for k, v in layout.options.items()) or 'none'})"
                        for name, layout in sorted(LAYOUTS.items()))
    p.add_argument("layout", help=f"the dataset's layout ({layouts})")
    p.add_argument("root", help="the dataset folder, as the layout describes it")
    p.add_argument("out", help="output folder for the betons, indices and reports")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a layout option, repeatable (sun397: partition=1..10, default 1)")
    p.add_argument("--side", type=int, default=DEFAULT_SIDE,
                   help=f"stored images are SIDE x SIDE, aspect ratio not kept (default: {DEFAULT_SIDE})")
    p.add_argument("--write-mode", choices=WRITE_MODES, default=DEFAULT_WRITE_MODE,
                   help=f"store images raw (a crop is a byte copy), as JPEG or a proportion of each "
                        f"(default: {DEFAULT_WRITE_MODE})")
    p.add_argument("--jpeg-quality", type=int, default=ClsSettings.jpeg_quality,
                   help=f"JPEG quality when compressing, 1..100 (default: {ClsSettings.jpeg_quality})")
    p.add_argument("--compress-probability", type=float, default=ClsSettings.compress_probability,
                   help=f"with --write-mode proportion, the fraction stored as JPEG "
                        f"(default: {ClsSettings.compress_probability})")
    p.add_argument("--num-workers", type=int, default=2, help="processes decoding and writing (default: 2)")
    p.add_argument("--strict", action="store_true",
                   help="fail when any listed image cannot be stored (default: skip it, listed in skipped.jsonl)")
    p.set_defaults(_compile_run=run_cls)


def run(args):
    return args._compile_run(args)


def run_imagenet(args):
    from ..compile import CompileSettings, compile_imagenet
    from ..errors import UsageError
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    if not splits or len(set(splits)) != len(splits):
        raise UsageError(f"--splits {args.splits!r}: give distinct split folder names, e.g. train,val")
    settings = CompileSettings(args.max_resolution, args.write_mode, args.jpeg_quality, args.compress_probability,
                               args.num_workers, args.strict, args.square, args.min_side)
    summary = compile_imagenet(args.root, args.out, settings, splits, args.devkit_class_order)
    counts = ", ".join(f"{s} {n} images" for s, n in summary["splits"].items())
    print(f"compiled {args.root} -> {args.out}: {counts}, {summary['num_classes']} classes, "
          f"{summary['seconds']} s")
    stored = (f"{args.square}x{args.square} centre squares" if args.square else
              f"longest side <= {settings.max_resolution}" if settings.max_resolution else "original sizes")
    print(f"images stored {settings.write_mode}, {stored} (described in {args.out}/<split>.beton.json)")
    reasons = "".join(f"; {n} {kind}" for kind, n in summary["skipped_reasons"].items())
    print(f"skipped {summary['skipped']} entries, {summary['skipped_images']} of them image files{reasons} (listed "
          f"in {args.out}/skipped.jsonl); {summary['converted']} files converted or noted (in "
          f"{args.out}/converted.jsonl)")
    if summary.get("near_constant"):
        print(f"warning: {summary['near_constant']} stored image(s) are nearly one flat grey level after "
              f"conversion (listed with a note in {args.out}/converted.jsonl)")
    if not summary["wnid_class_names"]:
        print("note: class folders are not WordNet ids (n########): the betons work with the 'full' labels, "
              "but WordNet label sets cannot be built for this dataset")
    return 0


def run_materialize(args):
    from ..compile import materialize
    n = materialize(args.manifest, args.beton, args.out, args.num_workers)
    print(f"materialized {n} rows of {args.beton} selected by {args.manifest} -> {args.out}")
    return 0


def run_verify(args):
    from ..beton import verify_compile
    for line in verify_compile(args.out):
        print(line)
    return 0


def run_cls(args):
    from ..compile_cls import ClsSettings, compile_cls, layout_options
    options = layout_options(args.layout, args.option)
    settings = ClsSettings(args.side, args.write_mode, args.jpeg_quality, args.compress_probability,
                           args.num_workers, args.strict)
    summary = compile_cls(args.layout, args.root, args.out, settings, options)
    counts = ", ".join(f"{s} {n} images" for s, n in summary["splits"].items())
    print(f"compiled {args.layout} {args.root} -> {args.out}: {counts}, {summary['num_classes']} classes, "
          f"metric {summary['metric']}, {summary['seconds']} s")
    print(f"images stored {settings.write_mode}, warped to {settings.side}x{settings.side} "
          f"({settings.side * settings.side * 3:,} bytes each raw)")
    print(f"skipped {summary['skipped']} listed files (in {args.out}/skipped.jsonl); {summary['converted']} files "
          f"converted or noted (in {args.out}/converted.jsonl)")
    return 0

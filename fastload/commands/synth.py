"""fastload synth: synthetic ImageNet / VOC / SUN397 / transfer-suite datasets in their standard layouts (one renderer for all)."""


def _workers_default():
    import os
    return min(2, os.cpu_count() or 1)


def configure(p):
    sub = p.add_subparsers(dest="synth_command", metavar="DATASET", required=True)

    im = sub.add_parser("imagenet", help="ILSVRC-2012 layout: train/<wnid>/, flat val/ + LOC_val_solution.csv",
                        description="ILSVRC-2012 layout with real wnids chosen as whole WordNet groups; appearance "
                                    "follows the WordNet tree (see fastload/synth/imagenet.py).")
    im.add_argument("out", help="output folder (must not exist, or be empty)")
    im.add_argument("--classes", type=int, default=None,
                    help="number of ImageNet classes K, 2..1000 (default: 100; with --classes-from: all of the set)")
    im.add_argument("--classes-from", default=None, metavar="breeds:NAME",
                    help="take the classes of a BREEDS set (entity13, entity30, living17, nonliving26), source and "
                         "target; with --classes K only whole superclasses that fit in K (default: WordNet groups)")
    im.add_argument("--train-per-class", type=int, default=100, help="training images per class (default: 100)")
    im.add_argument("--val-per-class", type=int, default=10, help="validation images per class (default: 10)")
    im.add_argument("--size", default="128", help="image size S or WxH, e.g. 128 or 400x350 (default: 128)")
    im.add_argument("--seed", type=int, default=0, help="seed for the class choice and the images (default: 0)")
    im.add_argument("--workers", type=int, default=_workers_default(), help="render processes (default: min(2, CPUs))")

    voc = sub.add_parser("voc", help="VOCdevkit/VOC2007 (detection, 20 classes) and VOC2012 (10 actions)",
                         description="VOCdevkit with VOC2007 detection data and VOC2012 action data, drawn with "
                                     "per-category appearance from the categories' WordNet synsets.")
    voc.add_argument("out", help="output folder (must not exist, or be empty)")
    voc.add_argument("--train", type=int, default=24, help="VOC2007 trainval images (default: 24)")
    voc.add_argument("--test", type=int, default=12, help="VOC2007 test images (default: 12)")
    voc.add_argument("--action-train", type=int, default=16, help="VOC2012 Action train images (default: 16)")
    voc.add_argument("--action-val", type=int, default=12, help="VOC2012 Action val images (default: 12)")
    voc.add_argument("--seed", type=int, default=0, help="seed (default: 0)")

    sun = sub.add_parser("sun", help="SUN397 layout: SUN397/<letter>/<scene>/*.jpg + Partitions/",
                         description="SUN397 folder with real category names and the official partition files.")
    sun.add_argument("out", help="output folder (must not exist, or be empty)")
    sun.add_argument("--classes", type=int, default=10, help="number of scene categories, 2..40 (default: 10)")
    sun.add_argument("--train-per-class", type=int, default=10, help="training images per category (default: 10)")
    sun.add_argument("--test-per-class", type=int, default=10, help="test images per category (default: 10)")
    sun.add_argument("--size", default="128x96", help="image size S or WxH (default: 128x96)")
    sun.add_argument("--partitions", type=int, default=1,
                     help="number of Training_0p/Testing_0p partition pairs, 1..10 (default: 1)")
    sun.add_argument("--background", choices=("scene", "random"), default="scene",
                     help="scene: each category's own sky/ground colours and horizon; random: a random background "
                          "per image, so only the objects tell scenes apart (default: scene)")
    sun.add_argument("--seed", type=int, default=0, help="seed (default: 0)")

    # the suite's datasets also by name (`fastload synth flowers102 OUT`): a plan's data key is the synth command
    from ..synth.suite import SUITE
    for name in SUITE:
        if name != "sun397":    # `fastload synth sun` above
            add_suite_arguments(sub.add_parser(name, help=f"transfer-suite {name} (= `synth suite {name}`)"))
    suite = sub.add_parser("suite", help="one dataset of the classification transfer suite in its own layout",
                           description="A tiny tree of one transfer-suite dataset in its published on-disk format "
                                       "(see fastload/synth/suite.py and docs/suite.md); compile it with "
                                       "`fastload compile cls NAME OUT`.")
    suite.add_argument("name", help="dataset: food101, cifar10, cifar100, birdsnap, sun397, cars, aircraft, voc07, "
                                    "dtd, pets, caltech101 or flowers102")
    add_suite_arguments(suite)


def add_suite_arguments(suite):
    suite.add_argument("out", help="output folder (must not exist, or be empty)")
    suite.add_argument("--classes", type=int, default=4, help="classes, 2..10 (default: 4)")
    suite.add_argument("--train-per-class", type=int, default=6, help="train images per class (default: 6)")
    suite.add_argument("--val-per-class", type=int, default=2,
                       help="val images per class, where the dataset has a val split (default: 2)")
    suite.add_argument("--test-per-class", type=int, default=4, help="test images per class (default: 4)")
    suite.add_argument("--size", default="48", help="image size S or WxH; CIFAR is always 32 (default: 48)")
    suite.add_argument("--seed", type=int, default=0, help="seed (default: 0)")


def run(args):
    from ..synth.suite import SUITE, write_suite
    from .common import check_output_folder
    check_output_folder(args.out, "output")
    if args.synth_command == "imagenet":
        from ..synth.imagenet import write_imagenet
        s = write_imagenet(args.out, args.classes, args.train_per_class, args.val_per_class, args.size, args.seed,
                           args.workers, classes_from=args.classes_from)
        total = s["classes"] * (s["train_per_class"] + s["val_per_class"])
        print(f"wrote {args.out}: {s['classes']} classes, {s['classes'] * s['train_per_class']} train + "
              f"{s['classes'] * s['val_per_class']} val images ({s['width']}x{s['height']}) in {s['seconds']} s "
              f"({total / max(s['seconds'], 1e-9):.0f} images/s)")
    elif args.synth_command == "voc":
        from ..synth.voc import write_voc
        s = write_voc(args.out, args.train, args.test, args.action_train, args.action_val, args.seed)
        print(f"wrote {args.out}/VOCdevkit: VOC2007 {s['trainval']} trainval + {s['test']} test images "
              f"({s['objects']} objects); VOC2012 {s['action_train']} + {s['action_val']} action images "
              f"({s['persons']} persons) in {s['seconds']} s")
    elif args.synth_command == "suite" or args.synth_command in SUITE:
        name = args.name if args.synth_command == "suite" else args.synth_command
        s = write_suite(name, args.out, args.classes, args.train_per_class, args.test_per_class,
                        args.val_per_class, args.size, args.seed)
        counts = ", ".join(f"{s[k]} {k}" for k in ("train", "val", "test") if k in s)
        print(f"wrote {args.out}: synthetic {name}, {s['classes']} classes, {counts} images in {s['seconds']} s")
    else:
        from ..synth.sun import write_sun
        s = write_sun(args.out, args.classes, args.train_per_class, args.test_per_class, args.size, args.seed,
                      args.partitions, background=args.background)
        print(f"wrote {args.out}: {s['classes']} SUN397 categories, {s['train']} train + {s['test']} test images "
              f"in {s['seconds']} s")
    return 0

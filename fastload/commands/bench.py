"""fastload bench: manifest kernels, loader and training throughput, each against its baseline.

Each benchmark is a keyword-argument function in `fastload/benchmarks/<name>.py` (`bench_manifest`,
`bench_loader`, `bench_train`); its flags are declared here.
"""
import argparse

from .common import check_output_file, check_output_folder

BENCHMARKS = [
    ("manifest", "Numba manifest kernels vs a NumPy/Python reference on a 1.28M-row index"),
    ("loader", "fastload FFCV loader vs torchvision ImageFolder + PIL + DataLoader"),
    ("train", "end-to-end training images/s vs the train step on data already on the device"),
    ("transfer", "transfer training data paths per CPU core: SUN-CLS files vs betons, VOC detection and action"),
]


def configure(p):
    sub = p.add_subparsers(dest="bench_command", metavar="BENCHMARK", required=True)
    configures = {"manifest": configure_manifest, "loader": configure_loader, "train": configure_train,
                  "transfer": configure_transfer}
    for name, help_text in BENCHMARKS:
        configures[name](sub.add_parser(name, help=help_text, description=help_text))


def configure_manifest(p):
    p.add_argument("--manifests", default="paper", help="manifest list: 'paper' or a YAML file (default: paper)")
    p.add_argument("--repeat", type=int, default=3,
                   help="times to build the list with Numba; the fastest run counts (default: 3)")
    p.add_argument("--reference-repeat", type=int, default=1, help="times to build it with the reference (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic index (default: 0)")
    p.set_defaults(_bench_run=run_manifest)


def configure_loader(p):
    from ..benchmarks.loader import DEFAULT_CLASSES, DEFAULT_IMAGES
    p.add_argument("--images", type=int, default=DEFAULT_IMAGES, help=f"JPEGs to make (default: {DEFAULT_IMAGES})")
    p.add_argument("--classes", type=int, default=DEFAULT_CLASSES,
                   help=f"class folders (default: {DEFAULT_CLASSES})")
    p.add_argument("--width", type=int, default=400, help="mean image width in pixels (default: 400)")
    p.add_argument("--height", type=int, default=350, help="mean image height in pixels (default: 350)")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64)")
    p.add_argument("--resolution", type=int, default=224, help="crop side fed to the model (default: 224)")
    p.add_argument("--num-workers", type=int, default=2, help="loader workers / threads for both (default: 2)")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up epoch (default: 2)")
    p.add_argument("--workdir", default=None, help="folder for the JPEGs and the beton, kept and reused "
                                                   "(default: a temporary folder, removed afterwards)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic images (default: 0)")
    p.set_defaults(_bench_run=run_loader)


def configure_train(p):
    from ..benchmarks.train import AMP_CHOICES, CROPS, PIPELINES
    p.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    p.add_argument("--beton", help="train beton to read (default: compile a synthetic one in a temporary folder)")
    p.add_argument("--images", type=int, default=96, help="synthetic beton: number of images")
    p.add_argument("--image-size", type=int, default=72, help="synthetic beton: stored side in pixels (square)")
    p.add_argument("--classes", type=int, default=4, help="synthetic beton: classes")
    p.add_argument("--arch", default="alexnet_caffe", help="alexnet_caffe or alexnet_tv")
    p.add_argument("--resolution", type=int, default=64, help="train crop side in pixels")
    p.add_argument("--batch-size", type=int, default=16, help="images per step")
    p.add_argument("--steps", type=int, default=4, help="timed steps per measurement")
    p.add_argument("--warmup-steps", type=int, default=2, help="untimed steps first (JIT, cudnn autotune)")
    p.add_argument("--pipeline", default="ffcv", choices=PIPELINES, help="data path(s) to measure")
    p.add_argument("--crop", default="rrc", choices=CROPS,
                   help="ffcv pipeline: random-resized crop, or Caffe's random window of a square resize")
    p.add_argument("--num-workers", type=int, default=2, help="loader threads")
    p.add_argument("--amp", default="bf16", choices=AMP_CHOICES, help="autocast dtype on CUDA")
    p.add_argument("--channels-last", action="store_true", help="NHWC model and inputs")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where the model runs")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.set_defaults(_bench_run=run_train)


def configure_transfer(p):
    p.add_argument("--sun-images", type=int, default=400, help="synthetic SUN397 training JPEGs (default: 400)")
    p.add_argument("--sun-size", default="640x480", help="their size WxH (default: 640x480, about a SUN397 photo)")
    p.add_argument("--sun-batches", type=int, default=8,
                   help="timed batches of 50 for the file pipeline (default: 8)")
    p.add_argument("--beton-batches", type=int, default=200, help="timed batches of 50 for the beton (default: 200)")
    p.add_argument("--voc-images", type=int, default=64, help="synthetic VOC training images (default: 64)")
    p.add_argument("--voc-batches", type=int, default=40,
                   help="timed batches of the detection and action pipelines (default: 40)")
    p.add_argument("--workdir", default=None, help="folder for the synthetic data and the beton, kept and reused "
                                                   "(default: a temporary folder, removed afterwards)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (default: 0)")
    p.set_defaults(_bench_run=run_transfer)


def run(args):
    return args._bench_run(args)


def run_manifest(args):
    from ..benchmarks.manifest import bench_manifest
    bench_manifest(args.manifests, repeat=args.repeat, reference_repeat=args.reference_repeat, seed=args.seed)
    return 0


def run_loader(args):
    from ..benchmarks.loader import bench_loader
    if args.workdir:
        check_output_folder(args.workdir, "--workdir")
    bench_loader(images=args.images, classes=args.classes, width=args.width, height=args.height,
                 batch_size=args.batch_size, resolution=args.resolution, num_workers=args.num_workers,
                 epochs=args.epochs, workdir=args.workdir, seed=args.seed)
    return 0


def run_train(args):
    from ..benchmarks.train import bench_train
    if args.json:
        check_output_file(args.json, "--json")
    bench_train(beton=args.beton, images=args.images, image_size=args.image_size, classes=args.classes,
                arch=args.arch, resolution=args.resolution, batch_size=args.batch_size, steps=args.steps,
                warmup_steps=args.warmup_steps, pipeline=args.pipeline, crop=args.crop, num_workers=args.num_workers,
                amp=args.amp, channels_last=args.channels_last, compile_model=args.compile, device=args.device,
                json_path=args.json)
    return 0


def run_transfer(args):
    from ..benchmarks.transfer import bench_transfer
    bench_transfer(sun_images=args.sun_images, sun_size=args.sun_size, sun_batches=args.sun_batches,
                   beton_batches=args.beton_batches, voc_images=args.voc_images, voc_batches=args.voc_batches,
                   workdir=args.workdir, seed=args.seed)
    return 0

"""fastload bench transfer: the transfer configs' training data paths, images/s per CPU core.

- SUN-CLS: the file pipeline of transfer/alexnet-caffe_50k_sun397.py (LoadImageFromFile -> Resize 256x256
  keep_ratio=False -> ClsRandomCrop 227 -> RandomFlip -> PackClsInputs, torch DataLoader workers, pseudo_collate)
  against transfer/alexnet-caffe_50k_sun397-beton.py (FFCV over the compiled beton: a window copy and a flip, FFCV
  threads, batches packed for MMEngine), both built by MMEngine's Runner.build_dataloader from the configs, batch 50,
  on the same synthetic SUN397 JPEGs (default 640x480, about a SUN397 photo). The ratio is the point: the goal is
  the beton path >= 20x the file path per core.
- PASCAL-DET and PASCAL-ACT-CLS: the train dataloaders of faster-rcnn_alexnet-caffe_70k_voc07.py and
  rstarcnn_alexnet-caffe_70k_voc12-action.py on `fastload synth voc` data (images ~200x150, smaller than VOC's
  ~500x375: their JPEG decode is cheaper than the real one, the resize to 1000x600 the same), to compare with what a
  GPU step consumes.
Each path runs with 1 and then 2 workers (processes for the file pipelines, FFCV threads for the beton): one warm-up
batch (process start, JIT), then the timed batches; per core = images/s / workers.
"""
import tempfile
import time
from pathlib import Path

from ..beton import beton_path
from ..errors import UsageError
from ..resources import TRANSFER_CONFIGS_DIR

SUN_FILE_CONFIG = "alexnet-caffe_50k_sun397.py"
SUN_BETON_CONFIG = "alexnet-caffe_50k_sun397-beton.py"
DET_CONFIG = "faster-rcnn_alexnet-caffe_70k_voc07.py"
ACTION_CONFIG = "rstarcnn_alexnet-caffe_70k_voc12-action.py"
# docs/transfer.md "Cost on one GPU": 0.04-0.08 s per one-image detection iteration on an A100/H100 (an estimate, bound by
# MMDetection's per-iteration overhead), i.e. 12.5-25 images/s; an action iteration holds 2 images in about the same
# time per image (70k iterations in 1.5-3 h: 13-26 images/s)
GPU_DET_IMAGES_PER_S = (1 / 0.08, 1 / 0.04)
GPU_ACTION_IMAGES_PER_S = (2 * 70_000 / (3 * 3600), 2 * 70_000 / (1.5 * 3600))
WORKERS = (1, 2)


def load_train_loader_cfg(config: str, data_root, workers: int, beton: bool):
    """The config's train_dataloader dict with data_root applied and `workers` workers (or FFCV threads)."""
    from mmengine.config import Config

    from ..transfer import apply_config_variables
    cfg = Config.fromfile(str(TRANSFER_CONFIGS_DIR / config))
    cfg.data_root = str(data_root)
    apply_config_variables(cfg)
    loader = cfg.train_dataloader
    if beton:
        loader.dataset.num_workers = workers
        loader.dataset.seed = 0
    else:
        loader.num_workers, loader.persistent_workers = workers, False
    return loader


def time_loader(loader_cfg, batches: int) -> float:
    """Images/s of `batches` batches after one warm-up batch, from MMEngine's own dataloader builder."""
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    init_default_scope("mmdet")
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    iterator = iter(loader)
    next(iterator)
    images, start = 0, time.perf_counter()
    for _ in range(batches):
        images += len(next(iterator)["data_samples"])
    return images / (time.perf_counter() - start)


def measure(label: str, config: str, data_root, batches: int, beton: bool = False) -> dict:
    """{workers: images/s} of one config's training dataloader, printed as it goes."""
    rates = {}
    for workers in WORKERS:
        rates[workers] = time_loader(load_train_loader_cfg(config, data_root, workers, beton), batches)
        print(f"  {label:<34} {workers} worker(s): {rates[workers]:9.1f} images/s, "
              f"{rates[workers] / workers:9.1f} per core", flush=True)
    return rates


def bench_transfer(sun_images: int = 400, sun_size: str = "640x480", sun_batches: int = 8, beton_batches: int = 200,
                   voc_images: int = 64, voc_batches: int = 40, workdir=None, seed: int = 0) -> dict:
    """Images/s (total and per core, 1 and 2 workers) of the SUN-CLS file and beton paths and of the VOC detection
    and action training pipelines. Returns {path: {workers: images/s}} plus the per-core ratios."""
    if sun_images < 100 or min(sun_batches, beton_batches, voc_batches, voc_images) < 1:
        raise UsageError("need --sun-images >= 100 (two batches of 50) and positive batch and image counts")
    import fastload.mmdet  # noqa: F401  (registers the transfer configs' modules)
    import fastload.mmdet.beton_data  # noqa: F401
    import fastload.mmdet.classification  # noqa: F401
    with tempfile.TemporaryDirectory(prefix="fastload-bench-transfer-") as tmp:
        work = Path(workdir) if workdir else Path(tmp)
        sun, compiled, voc = prepare_data(work, sun_images, sun_size, voc_images, seed)
        print(f"transfer data benchmark, {time.strftime('%Y-%m-%d %H:%M')}: SUN-CLS on {sun_images} synthetic "
              f"{sun_size} JPEGs (batch 50), VOC on {voc_images} synthetic images; per core = images/s / workers")
        results = {"sun_file": measure("SUN-CLS file pipeline", SUN_FILE_CONFIG, sun, sun_batches),
                   "sun_beton": measure("SUN-CLS beton (FFCV)", SUN_BETON_CONFIG, compiled, beton_batches, True),
                   "voc07_det": measure("PASCAL-DET train pipeline", DET_CONFIG, voc / "VOCdevkit", voc_batches),
                   "voc12_action": measure("PASCAL-ACT-CLS train pipeline", ACTION_CONFIG, voc / "VOCdevkit",
                                           voc_batches)}
    report(results)
    return results


def prepare_data(work: Path, sun_images: int, sun_size: str, voc_images: int, seed: int):
    """Synthetic SUN397 (compiled once) and VOC under `work`, reused when already there."""
    from ..compile_cls import ClsSettings, compile_cls
    from ..synth.sun import write_sun
    from ..synth.voc import write_voc
    sun, compiled, voc = work / "sun", work / "sun_beton", work / "voc"
    classes = 10
    if not sun.exists():
        per_class = -(-sun_images // classes)
        write_sun(sun, classes=classes, train_per_class=per_class, test_per_class=2, size=sun_size, seed=seed)
    if not beton_path(compiled, "train").exists():
        compile_cls("sun397", sun, compiled, ClsSettings(num_workers=2))
    if not voc.exists():
        write_voc(voc, trainval=voc_images, test=4, action_train=voc_images, action_val=4, seed=seed)
    return sun, compiled, voc


def report(results: dict) -> None:
    """The ratios and the GPU comparison."""
    for workers in WORKERS:
        file_core = results["sun_file"][workers] / workers
        beton_core = results["sun_beton"][workers] / workers
        results[f"ratio_{workers}"] = beton_core / file_core
        print(f"  SUN-CLS beton / file per core, {workers} worker(s): {beton_core / file_core:.1f}x (goal >= 20x)")
    for key, label, (low, high) in (("voc07_det", "PASCAL-DET", GPU_DET_IMAGES_PER_S),
                                     ("voc12_action", "PASCAL-ACT-CLS", GPU_ACTION_IMAGES_PER_S)):
        two = results[key][2]
        verdict = "2 cores feed it" if two >= high else "2 cores do not feed the fastest estimate"
        print(f"  {label}: 2 workers give {two:.1f} images/s; one GPU step consumes an estimated {low:.1f}-{high:.1f} "
              f"images/s (docs/transfer.md, 'Cost on one GPU'): {verdict}")

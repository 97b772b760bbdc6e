"""`fastload reproduce`: expand a plan into steps and run them with a launcher, resumably; or, with --dry-run, say
what the plan costs.

Everything a run produces lives in RESULTS: compiled/, manifests/, runs/, evals/, logs/, steps.json (the expanded
steps and the plan, for Slurm jobs and the report) and results.jsonl (the results store). Running the same command
again skips every step the store records as done, so a killed run is resumed by starting it again. One reproduce
at a time may use a RESULTS folder (fastload.files.OutputLock).

The dry run prices each step from a rate: one this machine measured where there is one (the wall times of done
steps in the store of --out, `fastload bench train --json` files given with --bench-json), else the documented
estimate of ESTIMATES; it prints which, and the plan's GPU-hours and its makespan on --gpus under the same
scheduling rules as the local launcher.
"""
import collections
import functools
import json
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from .errors import FastloadError, UsageError
from .files import OutputLock
from .launchers import (LAUNCHERS, DevicePool, format_duration, run_local, run_slurm, simulate, step_class,
                        stop_on_sigterm)
from .models.networks import NETWORKS
from .plan import KINDS, STEPS_FILE, build_steps, load_plan, parse_data_roots, select_steps, write_steps
from .store import ResultsStore

IMAGENET_TRAIN_IMAGES = 1_281_167   # ILSVRC-2012 train set
IMAGENET_CLASSES = 1000

DET_IMAGES_PER_S = 12      # assumed (not measured): AlexNet Faster R-CNN / R*CNN training images/s on one GPU
SUN_IMAGES_PER_S = 1_250   # assumed (not measured): AlexNet fine-tuning on SUN397 JPEGs, decoding bound
# detectron2's docs/notes/benchmarks.md: mmdetection trains Mask R-CNN R-50-FPN at 53 images/s on 8 V100s; taken for
# Faster R-CNN R-50/R-18-FPN per GPU (no mask head: an upper bound on the time), not measured here
FPN_IMAGES_PER_S = 53 / 8
FPN_1X_VOC07_IMAGES = 3760 * 16   # transfer/_base_/schedules/sgd_1x_voc07.py: 3760 updates of 16 images

# What a step costs when this machine has measured nothing, each with its source; declared once, printed as
# "estimated". "pretrain" is a rate (images/s per GPU at `px` pixels, scaled by pixel count to the recipe's crop;
# data-parallel GPUs add up); every other entry is the seconds one step takes on one GPU (or CPU slot). Transfer
# entries are keyed by config file name.
# What a transfer costs: the images its schedule trains on at an assumed rate, not a measured one; one entry per
# protocol, shared by the configs that run it (CONFIG_PROTOCOLS: each AlexNet variant and its ResNet counterparts)
TRANSFER_ESTIMATES = {
    "faster-rcnn_70k_iter-size2": {
        "seconds": 140_000 / DET_IMAGES_PER_S, "source": "py-faster-rcnn ZF end2end: 70k updates x iter_size 2 = "
                                                        f"140k images at an assumed {DET_IMAGES_PER_S} images/s"},
    "faster-rcnn_70k-1img": {
        "seconds": 70_000 / DET_IMAGES_PER_S, "source": "70k one-image iterations at an assumed "
                                                       f"{DET_IMAGES_PER_S} images/s"},
    "faster-rcnn_fpn_1x_voc07": {
        "seconds": FPN_1X_VOC07_IMAGES / FPN_IMAGES_PER_S,
        "source": f"mmdet's 1x VOC schedule: {FPN_1X_VOC07_IMAGES:,} images at {FPN_IMAGES_PER_S:.1f} images/s per GPU "
                  "(detectron2's benchmark of mmdetection's Mask R-CNN R-50-FPN, 53 img/s on 8 V100s; not "
                  "measured here)"},
    "rstarcnn_70k": {
        "seconds": 140_000 / DET_IMAGES_PER_S, "source": "R*CNN: 70k iterations of 2 images = 140k images at an "
                                                        f"assumed {DET_IMAGES_PER_S} images/s"},
    "sun397_50k": {
        "seconds": 50_000 * 50 / SUN_IMAGES_PER_S, "source": "50k iterations of 50 images (Caffe's fine-tuning "
                                                            f"example) at an assumed {SUN_IMAGES_PER_S:,} images/s"},
}
CONFIG_PROTOCOLS = {
    "faster-rcnn_alexnet-caffe_70k_voc07.py": "faster-rcnn_70k_iter-size2",
    "faster-rcnn_alexnet-tv_70k_voc07.py": "faster-rcnn_70k_iter-size2",
    "faster-rcnn_alexnet-caffe_70k-1img_voc07.py": "faster-rcnn_70k-1img",
    "faster-rcnn_r50_fpn_1x_voc07.py": "faster-rcnn_fpn_1x_voc07",
    "faster-rcnn_r18_fpn_1x_voc07.py": "faster-rcnn_fpn_1x_voc07",
    "rstarcnn_alexnet-caffe_70k_voc12-action.py": "rstarcnn_70k",
    "rstarcnn_alexnet-tv_70k_voc12-action.py": "rstarcnn_70k",
    "rstarcnn_r50-c4_70k_voc12-action.py": "rstarcnn_70k",
    "rstarcnn_r18-c4_70k_voc12-action.py": "rstarcnn_70k",
    "alexnet-caffe_50k_sun397.py": "sun397_50k",
    "alexnet-tv_50k_sun397.py": "sun397_50k",
    "resnet50_50k_sun397.py": "sun397_50k",
    "resnet18_50k_sun397.py": "sun397_50k",
    "alexnet-caffe_50k_sun397-beton.py": "sun397_50k",
    "alexnet-tv_50k_sun397-beton.py": "sun397_50k",
    "resnet50_50k_sun397-beton.py": "sun397_50k",
    "resnet18_50k_sun397-beton.py": "sun397_50k",
}
ESTIMATES = {
    # keyed by the recipe's arch: each network's own estimate (fastload.models.networks; FFCV's for the ResNets)
    "pretrain": {name: net.pretrain_estimate for name, net in NETWORKS.items() if net.pretrain_estimate},
    "compile": {"seconds": 3600, "source": "assumption, not measured: ImageNet's 1.33M JPEGs decoded, resized "
                                           "and written in about an hour on a 16-64 core node"},
    "compile_cls": {"seconds": 19_850 / (2 * 600), "source": "assumption: SUN397 partition 1 (19,850 images) "
                                                             "decoded and warped by 2 writer processes at ~600 "
                                                             "images/s each (the file pipeline's rate per core)"},
    "manifest": {"seconds": 10, "source": "README: 0.36 s per manifest with Numba, plus process start and the "
                                          "6 s JIT"},
    "synth": {"seconds": 60, "source": "assumption: a small synthetic dataset"},
    # transfers: one entry per config, its protocol's (TRANSFER_ESTIMATES above)
    **{config: TRANSFER_ESTIMATES[protocol] for config, protocol in CONFIG_PROTOCOLS.items()},
    "imagenet_cls": {"seconds": 1800, "source": "assumption: fc7 features of 1.33M images at ~3x the train "
                                                "step's rate (~11 min) and a new fc8 trained on them"},
    "induction": {"seconds": 900, "source": "assumption: fc7 features of ImageNet train + val and a kNN search"},
    "coarse_fine": {"seconds": 900, "source": "assumption: fc7 features and nearest neighbours, as induction"},
    "subpop": {"seconds": 600, "source": "assumption: as imagenet_cls on a BREEDS set's images (entity30: 120 "
                                         "source classes to train on, 240 to test), plus process start"},
    "probe": {"seconds": 600, "source": "assumption: penultimate features of one suite dataset (<= 100k images, "
                                        "once, cached) and 45 warm-started L-BFGS fits per seed"},
    "finetune": {"seconds": 19_531 * 256 / 1_770,
                 "source": "one seed: 19,531 steps of 256 images at ~1,770 img/s (FFCV's ResNet-50 rate per A100 "
                           "scaled by pixels to 224 px; an estimate, not measured here)"},
}


def synth_roots(plan, results_dir) -> dict:
    """Where `--synth` generates the plan's data: RESULTS/data/<key>."""
    return {key: Path(results_dir).resolve() / "data" / key for key in plan.data}


def data_roots(plan, data, results_dir, synth=False, dry_run=False) -> dict:
    if synth and data:
        raise UsageError("--data and --synth exclude each other: either real data roots or generated ones")
    if synth:
        return synth_roots(plan, results_dir)
    if not data and dry_run:
        return {key: Path("DATA") / key for key in plan.data}  # a dry run reads no data
    if not data:
        raise UsageError("--data is required (DIR holding imagenet/ voc/ sun/, or KEY=PATH ...); "
                         "or --synth to generate synthetic data")
    return parse_data_roots(data, plan)


def check_same_arch(plan, results_dir) -> None:
    """A results folder holds one network's study: its steps.json's plan must have been expanded for the same
    --arch. The step ids are the same for every network (pretrain/full, ...), so a second network in the same
    store would re-run and overwrite the first's runs, and the dry run would price one with the other's times."""
    path = Path(results_dir) / STEPS_FILE
    if not path.is_file():
        return
    try:
        stored = json.loads(path.read_text())["plan"]
        name, arch = stored["name"], stored.get("arch")   # steps files before --arch: the plan as written
    except (ValueError, KeyError, TypeError):
        return   # not a steps file this fastload reads: prepare rewrites it, as before
    if arch != plan.arch:
        def said(a):
            return f"--arch {a}" if a else "no --arch (the plan's own recipes)"
        raise FastloadError(f"{path}: {results_dir} holds plan {name}, expanded with {said(arch)}; this run asks "
                            f"for {said(plan.arch)}: one results folder holds one network's study, so give "
                            "another --out (or the same --arch)")


def prepare(plan_name, data, results_dir, synth=False, only=None, arch=None):
    """The plan (with network `arch`, see plan.ARCH_VARIANTS), every step, and the selected steps; writes
    RESULTS/steps.json."""
    plan = load_plan(plan_name, arch)
    check_same_arch(plan, results_dir)
    roots = data_roots(plan, data, results_dir, synth=synth)
    steps = build_steps(plan, roots, results_dir, synth=synth)
    write_steps(results_dir, plan, steps, roots)
    return plan, steps, select_steps(steps, only)


def reproduce(plan_name, data, results_dir, launcher="local", only=None, synth=False, sbatch_args=(),
              wait=False, gpus=None, jobs=1, jobs_per_gpu=1, arch=None, log=print) -> dict:
    if launcher not in LAUNCHERS:
        raise UsageError(f"--launcher {launcher!r}: allowed values are {', '.join(LAUNCHERS)}")
    if results_dir is None:
        raise UsageError("--out is required (the results folder; reuse it to resume)")
    DevicePool(gpus or (), jobs_per_gpu, jobs)  # bad --jobs / --jobs-per-gpu: refused before anything is written
    with OutputLock(results_dir, "fastload reproduce"):
        plan, steps, selected = prepare(plan_name, data, results_dir, synth=synth, only=only, arch=arch)
        store = ResultsStore(results_dir)
        log(f"plan {plan.name} ({plan.path}): {len(selected)} of {len(steps)} steps; results in {store.path}")
        if launcher == "local":
            stop_on_sigterm()
            where = f"GPUs {','.join(gpus)} x {jobs_per_gpu} job(s) each, " if gpus else "no GPU, "
            log(f"local: {where}{jobs} CPU job(s) at a time")
            counts = run_local(selected, store, gpus=gpus or (), jobs=jobs, jobs_per_gpu=jobs_per_gpu, log=log)
        else:
            counts = run_slurm(selected, store, sbatch_args=sbatch_args, wait=wait, log=log)
    log("summary: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return counts


# ---------------------------------------------------------------- dry run: what the plan costs
# Each step is priced by its kind's `price` (plan.KINDS), a key of PRICERS below; the pricing reads the fields of the
# steps (recipe, epochs, manifest, the manifest step's selection, config), never their argv.

@functools.lru_cache(maxsize=None)
def recipe_settings(recipe: str) -> dict:
    from .recipe import load_recipe
    return load_recipe(recipe)


def step_recipe(step) -> dict:
    """The settings of a pre-training step's recipe (a steps file without one: the default recipe, 'paper')."""
    return recipe_settings(step.recipe or "paper")


def pretrain_work(step, steps_by_id) -> tuple:
    """(images seen over the run, crop side in pixels, how the image count was found) of a pre-training step."""
    cfg = step_recipe(step)
    epochs = int(step.epochs if step.epochs is not None else cfg["epochs"])
    side = (int(cfg["min_res"]) + int(cfg["max_res"])) / 2  # progressive resizing: about the mean side
    images, how = manifest_images(step.manifest, steps_by_id)
    return images * epochs, side, how


def manifest_images(manifest, steps_by_id) -> tuple:
    """(training images, how they were counted): the built manifest's rows, else its selection's arithmetic."""
    if manifest and Path(manifest).is_file():
        from .manifest import load_manifest
        return load_manifest(manifest).num_images, "rows of the built manifest"
    builder = next((s for s in steps_by_id.values() if s.selection is not None and manifest in s.outputs), None)
    sel = (builder.selection if builder is not None else None) or {}
    if sel.get("budget"):
        return int(sel["budget"]), "the manifest's budget"
    classes, mean_per_class = int(sel.get("classes") or IMAGENET_CLASSES), IMAGENET_TRAIN_IMAGES / IMAGENET_CLASSES
    if sel.get("per_class"):
        return round(min(int(sel["per_class"]), mean_per_class) * classes), "images per class x classes"
    return round(mean_per_class * classes), "all images of its classes (a label set that drops classes costs less)"


def pretrain_arch(step) -> str:
    """The network a pre-training step trains: the steps file's record of it, else its recipe's."""
    return step.arch or step_recipe(step)["arch"]


def priced_by_images(step) -> bool:
    """A step priced by images x epochs at a pixel rate (pre-training) whose recipe fastload reads."""
    return KINDS[step.kind].price == "images" and readable_recipe(step)


def pixel_rate_of(arch, steps_by_id, store, bench_json) -> tuple:
    """(images x pixels per second on one GPU, where it comes from) for pre-training network `arch`: the store's
    done runs of it, else `fastload bench train --json` files of it (the fastest end-to-end pipeline), else
    ESTIMATES; (None, why) when none of them prices it."""
    rates = []
    for r in (store.records() if store else []):
        step = steps_by_id.get(r["step"])
        if r["status"] == "done" and step is not None and r.get("wall_s") and priced_by_images(step) and \
                pretrain_arch(step) == arch:
            work, side, _ = pretrain_work(step, steps_by_id)
            rates.append(work * side ** 2 / (float(r["wall_s"]) * max(step.gpus, 1)))
    if rates:
        return statistics.median(rates), f"measured: {len(rates)} {arch} pre-training run(s) in {store.path}"
    candidates = [c for path in bench_json or () for c in bench_candidates(path) if c[2] == arch]
    if candidates:
        return max(candidates, key=lambda c: c[0])[:2]
    est = ESTIMATES["pretrain"].get(arch)
    if est is None:
        return None, f"no estimate for pre-training {arch} (its record's pretrain_estimate, fastload.models.networks)"
    return est["images_per_s"] * est["px"] ** 2, "estimated: " + est["source"]


def bench_candidates(path) -> list:
    """[(images x pixels per second, source, arch)] of each end-to-end pipeline in a `fastload bench train --json`
    file (a file without 'arch' measured bench train's default network, alexnet_caffe)."""
    try:
        result = json.loads(Path(path).read_text())
        side = int(result["resolution"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FastloadError(f"--bench-json {path}: not a `fastload bench train --json` file ({e})") from None
    arch = str(result.get("arch", "alexnet_caffe"))
    found = [(result[key]["images_per_s"] * side ** 2,
              f"measured: `fastload bench train` {path}: {arch} {key} end to end, "
              f"{result[key]['images_per_s']:,.0f} img/s at {side} px on {result.get('device', '?')}, scaled by "
              "pixels", arch)
             for key in ("ffcv", "raw-gpu") if isinstance(result.get(key), dict) and "images_per_s" in result[key]]
    if not found:
        raise FastloadError(f"--bench-json {path}: no end-to-end result (run bench train with --pipeline ffcv, "
                            f"raw-gpu or both)")
    return found


def check_bench_archs(steps, bench_json) -> None:
    """A --bench-json file measured a network the plan pre-trains: one measured on another would price nothing."""
    archs = {pretrain_arch(s) for s in steps if priced_by_images(s)}
    for path in bench_json or ():
        measured = {c[2] for c in bench_candidates(path)}
        if archs and not measured & archs:
            raise FastloadError(f"--bench-json {path}: measured {', '.join(sorted(measured))}; the plan pre-trains "
                                f"{', '.join(sorted(archs))} (a measured rate prices its own network only)")


@dataclass
class Pricing:
    """What the pricers share over one plan: its steps by id, the measured wall times of done steps by class, the
    store and bench files, and each network's pixel rate once found."""
    by_id: dict
    walls: dict
    store: object = None
    bench_json: tuple = ()
    pixel_rates: dict = field(default_factory=dict)   # arch -> (rate, source)

    def measured(self, step):
        """(wall, GPU-seconds, source) from the done steps of the step's class, or None when none is done."""
        walls = self.walls.get(step_class(step.id))
        if not walls:
            return None
        wall = statistics.median(walls)
        return wall, wall * step.gpus if step.gpus else None, \
            f"measured: median of {len(walls)} done step(s) in {self.store.path}"


def price_by_images(step, pricing: Pricing) -> tuple:
    """Pre-training: images x epochs x pixels of its recipe at its network's pixel rate (pixel_rate_of); data-parallel
    GPUs add up. A recipe fastload cannot read (a plan's own command) is priced by its class's done steps only."""
    if not readable_recipe(step):
        return pricing.measured(step) or \
            (None, None, f"no estimate: recipe {step.recipe!r} is not one fastload reads")
    arch = pretrain_arch(step)
    if arch not in pricing.pixel_rates:
        pricing.pixel_rates[arch] = pixel_rate_of(arch, pricing.by_id, pricing.store, pricing.bench_json)
    pixel_rate, source = pricing.pixel_rates[arch]
    if pixel_rate is None:
        return None, None, source
    work, side, _ = pretrain_work(step, pricing.by_id)
    gpu_s = work * side ** 2 / pixel_rate
    return gpu_s / max(step.gpus, 1), gpu_s if step.gpus else None, source


def price_by_estimate(step, pricing: Pricing) -> tuple:
    """Its class's done steps, else the entry of ESTIMATES that price_key names (the seconds of one step)."""
    measured = pricing.measured(step)
    if measured:
        return measured
    key = price_key(step)
    est = ESTIMATES.get(key)
    if est is None:
        return None, None, f"no estimate for {key}"
    return est["seconds"], est["seconds"] * step.gpus if step.gpus else None, f"estimated ({key}): {est['source']}"


def price_by_measurement(step, pricing: Pricing) -> tuple:
    """A user's command: only the wall times of its class's done steps price it."""
    return pricing.measured(step) or (None, None, f"no estimate for {step.kind}")


# plan.Kind.price -> how a step of that kind is priced: (wall seconds or None, GPU-seconds or None, source)
PRICERS = {"images": price_by_images, "estimate": price_by_estimate, "config": price_by_estimate,
           "measured": price_by_measurement}


def price_steps(steps: list, store=None, bench_json=()) -> dict:
    """step id -> (wall seconds or None, GPU-seconds or None, source): what each step takes on its GPUs."""
    walls = {}
    for r in (store.records() if store else []):
        if r["status"] == "done" and r.get("wall_s") is not None:
            walls.setdefault(step_class(r["step"]), []).append(float(r["wall_s"]))
    pricing = Pricing({s.id: s for s in steps}, walls, store, bench_json)
    return {step.id: PRICERS[KINDS[step.kind].price](step, pricing) for step in steps}


def readable_recipe(step) -> bool:
    """A pre-training step's recipe is one fastload reads (a plan's own pretrain command may name any)."""
    if step.arch is not None:
        return True
    try:
        step_recipe(step)
    except UsageError:
        return False
    return True


def price_key(step) -> str:
    """The entry of ESTIMATES a step is priced by: a 'config' kind's config file name (the plan's `config`, whatever
    command runs it), else its kind."""
    return Path(step.config).name if KINDS[step.kind].price == "config" and step.config else step.kind


# ---------------------------------------------------------------- dry run: bounds (data path, shared GPU)

# A step that shares its GPU with K - 1 others (--jobs-per-gpu K) runs at most at 1/K of its speed alone: K steps
# on one GPU add no GPU. Applied to estimated rates; a measured wall already holds whatever sharing it ran under.
def shared_gpu_speed(jobs_per_gpu: int) -> float:
    return 1.0 / max(int(jobs_per_gpu), 1)


# Training images each transfer protocol reads (TRANSFER_ESTIMATES' schedules)
PROTOCOL_IMAGES = {"faster-rcnn_70k_iter-size2": 140_000, "faster-rcnn_70k-1img": 70_000,
                   "faster-rcnn_fpn_1x_voc07": FPN_1X_VOC07_IMAGES, "rstarcnn_70k": 140_000,
                   "sun397_50k": 50_000 * 50}
# The CPU side of each transfer's data path: training images/s per core, from `fastload bench transfer`
# (docs/transfer-data.md) with 1 worker on this project's 2-core machine, shared with other jobs (load ~5), on
# synthetic data, 2026-12-06: low figures (a core of its own does more), measured alike for every path.
BENCH_TRANSFER = "`fastload bench transfer`, 1 worker, a quiet 2-core machine, synthetic data, 2026-12-06"
DATA_RATES = {
    "sun397_files": {"per_core": 425, "source": "SUN-CLS file pipeline (LoadImageFromFile, Resize 256x256, crop, "
                                                f"flip, pack) on 640x480 JPEGs: {BENCH_TRANSFER}"},
    "sun397_beton": {"per_core": 8_927, "source": "SUN-CLS over the compiled beton (a window copy and a flip): "
                                                  f"{BENCH_TRANSFER}"},
    "voc07_det": {"per_core": 231, "source": "PASCAL-DET train pipeline (decode, resize to 1000x600, flip, pack) on "
                                             f"~200x150 JPEGs (VOC's are ~500x375: a ceiling): {BENCH_TRANSFER}"},
    "voc12_action": {"per_core": 233, "source": "PASCAL-ACT-CLS train pipeline (as detection, plus regions): "
                                                f"{BENCH_TRANSFER}"},
}
CONFIG_DATA_PATHS = {config: ("sun397_beton" if "beton" in config else "sun397_files") if protocol == "sun397_50k"
                     else "voc12_action" if protocol == "rstarcnn_70k" else "voc07_det"
                     for config, protocol in CONFIG_PROTOCOLS.items()}


def data_seconds(step, cores: float):
    """(seconds the step's data path needs on `cores` cores, data path) or (None, None) without a declared rate."""
    key = price_key(step)
    if key not in CONFIG_DATA_PATHS:
        return None, None
    path = CONFIG_DATA_PATHS[key]
    return PROTOCOL_IMAGES[CONFIG_PROTOCOLS[key]] / (DATA_RATES[path]["per_core"] * cores), path


def bound_steps(steps, priced: dict, pool, cpus: int) -> dict:
    """step id -> (wall seconds or None, bound): the slower of the step's GPU time (slowed by a shared GPU) and its
    data path's CPU time on the cores it gets (--cpus shared evenly by the steps running at once)."""
    slots = len(pool.gpus) * pool.jobs_per_gpu if pool.gpus else pool.jobs
    cores = cpus / max(slots, 1)
    out = {}
    for step in steps:
        wall, _, source = priced[step.id]
        if wall is None:
            out[step.id] = (None, "unpriced")
            continue
        shared = pool.gpus and step.gpus == 1 and pool.jobs_per_gpu > 1 and not source.startswith("measured")
        compute = wall / shared_gpu_speed(pool.jobs_per_gpu) if shared else wall
        data, path = data_seconds(step, cores)
        label = "GPU" if pool.gpus and step.gpus else "compute"
        if shared:
            label += f" (shared: 1/{pool.jobs_per_gpu} speed)"
        if data is not None and data > compute:
            out[step.id] = (data, f"CPU data ({path}, {cores:g} cores)")
        else:
            out[step.id] = (compute, label + (f"; data {format_duration(data)} on {cores:g} cores" if data else ""))
    return out


def dry_run(plan_name, data=None, results_dir=None, gpus=(), jobs=1, jobs_per_gpu=1, synth=False, only=None,
            bench_json=(), arch=None, cpus=None, log=print) -> dict:
    """Print the plan's steps by class with their hours, the GPU-hours and the makespan on `gpus`; runs nothing
    and writes nothing. Returns {'gpu_hours': h, 'makespan_h': h, 'unpriced': n}."""
    plan = load_plan(plan_name, arch)
    if results_dir:
        check_same_arch(plan, results_dir)
    out = results_dir or "RESULTS"
    steps = select_steps(build_steps(plan, data_roots(plan, data, out, synth, dry_run=True), out, synth=synth), only)
    pool = DevicePool(gpus, jobs_per_gpu, jobs)
    pool.check(steps)
    check_bench_archs(steps, bench_json)
    store = ResultsStore(results_dir) if results_dir and ResultsStore(results_dir).path.exists() else None
    priced = price_steps(steps, store, bench_json)
    cpus = cpus or os.cpu_count() or 1
    bounds = bound_steps(steps, priced, pool, cpus)
    priced = {sid: (bounds[sid][0], gpu_s, source) for sid, (_, gpu_s, source) in priced.items()}
    log(f"plan {plan.name} ({plan.path}): {len(steps)} steps, priced for {len(gpus)} GPU(s) x {jobs_per_gpu} "
        f"job(s) each, {jobs} CPU job(s) and {cpus} CPU core(s)")
    notes = price_table(steps, priced, log)
    gpu_hours = sum(g for _, g, _ in priced.values() if g) / 3600
    measured = sum(g for _, g, src in priced.values() if g and src.startswith("measured")) / 3600
    unpriced = [sid for sid, (w, _, _) in priced.items() if w is None]
    makespan = simulate(steps, {sid: w or 0.0 for sid, (w, _, _) in priced.items()}, pool) / 3600
    log(f"GPU-hours: {gpu_hours:,.1f} ({measured:,.1f} measured, {gpu_hours - measured:,.1f} estimated)")
    log(f"makespan on {len(gpus)} GPU(s): {format_duration(makespan * 3600)} ({makespan / 24:.1f} days), "
        f"scheduled as the local launcher would (GPU-hours / GPUs: {gpu_hours / max(len(gpus), 1):,.1f} h)"
        + (f"; {len(unpriced)} step(s) without a price count 0" if unpriced else ""))
    for i, note in enumerate(notes, 1):
        log(f"[{i}] {note}")
    log_bounds(steps, bounds, log)
    by_id = {s.id: s for s in steps}
    counted = collections.Counter(pretrain_work(s, by_id)[2] for s in steps if priced_by_images(s))
    if counted:
        log("pre-training images per run: " + "; ".join(f"{n} run(s): {how}" for how, n in counted.items()))
    return {"gpu_hours": gpu_hours, "makespan_h": makespan, "unpriced": len(unpriced)}


def log_bounds(steps, bounds: dict, log) -> None:
    """Which bound each step class hits (GPU or CPU data), and the data rates used."""
    seen, used = {}, set()
    for step in steps:
        seen.setdefault(step_class(step.id), bounds[step.id][1])
        used.update(path for path in DATA_RATES if f"({path}," in bounds[step.id][1] or step.config and
                    CONFIG_DATA_PATHS.get(price_key(step)) == path)
    width = max([14] + [len(name) + 1 for name in seen])
    for name, bound in seen.items():
        log(f"bound {name:<{width}}{bound}")
    for path in sorted(used):
        log(f"data rate {path}: {DATA_RATES[path]['per_core']:,} images/s per core ({DATA_RATES[path]['source']})")


def price_table(steps, priced, log) -> list:
    """One line per step class (the first part of its id), in plan order; returns the footnotes (sources)."""
    classes, notes = {}, []
    for step in steps:
        classes.setdefault(step_class(step.id), []).append(step)
    # columns as wide as the longest step class and kind (a plan's evaluation names are the user's)
    width_name = max([14] + [len(name) + 1 for name in classes])
    width_kind = max([14] + [len(members[0].kind) + 1 for members in classes.values()])
    log(f"{'steps':<{width_name}}{'kind':<{width_kind}}{'count':>6}{'GPUs':>6}{'wall each':>14}{'GPU-hours':>11}"
        "  source")
    for name, members in classes.items():
        walls = [priced[s.id][0] for s in members if priced[s.id][0] is not None]
        gpu_s = sum(priced[s.id][1] or 0 for s in members)
        sources = sorted({priced[s.id][2] for s in members})
        refs = []
        for src in sources:
            if src not in notes:
                notes.append(src)
            refs.append(f"{src.split()[0].rstrip(':')} [{notes.index(src) + 1}]")
        wall = "?" if not walls else format_duration(min(walls)) if max(walls) - min(walls) < 60 else \
            f"{format_duration(min(walls))}-{format_duration(max(walls))}"
        gpus = sorted({s.gpus for s in members})
        log(f"{name:<{width_name}}{members[0].kind:<{width_kind}}{len(members):>6}{','.join(map(str, gpus)):>6}{wall:>14}"
            f"{gpu_s / 3600 if gpu_s else 0:>11,.1f}  {', '.join(refs)}")
    return notes

"""fastload bench manifest: every manifest of a plan, Numba kernels versus the NumPy/Python reference.

Builds a synthetic ImageNet-sized TRAIN index (1,281,167 rows over the 1000 ILSVRC classes, 732..1300 images
per class like the real one, rows grouped by class as `fastload compile` writes them), builds every manifest of the
plan with fastload.manifest and with fastload.manifest_reference, checks they are identical, and prints the time
of each, per kind and in total, with the ratio. Target: the whole paper plan in under 2 s (JIT excluded).
"""
import time

IMAGENET_TRAIN_ROWS = 1_281_167
MIN_PER_CLASS, MAX_PER_CLASS = 732, 1300
TARGET_S = 2.0


def configure(p):
    p.add_argument("--plan", default="paper", help="'paper' or a plan YAML (default: paper)")
    p.add_argument("--repeat", type=int, default=3,
                   help="times to build the plan with Numba; the fastest run counts (default: 3)")
    p.add_argument("--reference-repeat", type=int, default=1, help="times to build it with the reference (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic index (default: 0)")


def synthetic_class_ids(seed=0, num_rows=IMAGENET_TRAIN_ROWS, num_classes=1000):
    """class_id per row: most classes at 1300 images, a seeded few lower (one at 732), summing to num_rows."""
    import numpy as np
    rng = np.random.default_rng(seed)
    counts = np.full(num_classes, MAX_PER_CLASS, np.int64)
    short = rng.choice(num_classes, size=max(2, num_classes // 10), replace=False)
    counts[short[0]] = MIN_PER_CLASS  # the smallest class, as in ILSVRC-2012
    share = rng.random(len(short) - 1)
    counts[short[1:]] -= np.floor(share / share.sum() * (counts.sum() - num_rows)).astype(np.int64)
    np.clip(counts, MIN_PER_CLASS, MAX_PER_CLASS, out=counts)
    for c in short[1:]:  # put the rounding remainder where there is room
        counts[c] -= int(np.clip(counts.sum() - num_rows, counts[c] - MAX_PER_CLASS, counts[c] - MIN_PER_CLASS))
    if counts.sum() != num_rows:
        raise RuntimeError(f"cannot spread {num_rows} rows over {num_classes} classes of "
                           f"{MIN_PER_CLASS}..{MAX_PER_CLASS} images")
    return np.repeat(np.arange(num_classes, dtype=np.int32), counts)


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def _numba_runs(class_id, wnids, plan, repeat):
    """Fastest of `repeat` runs: (setup seconds, {name: seconds}, {name: manifest}); each run uses a fresh builder."""
    from ..manifest import ManifestBuilder
    best = None
    for _ in range(repeat):
        builder, setup = _timed(ManifestBuilder, class_id, wnids)
        times, built = {}, {}
        for name, _, sel in plan:
            built[name], times[name] = _timed(builder.build, sel)
        if best is None or setup + sum(times.values()) < best[0] + sum(best[1].values()):
            best = (setup, times, built)
    return best


def _reference_build(class_id, wnids, sel):
    from ..manifest import class_labels, label_names, resolve_label_set
    from ..manifest_reference import select_reference
    mapped = class_labels(resolve_label_set(sel.label_set, wnids), wnids)
    indices, lookup, kept = select_reference(class_id, mapped, sel)
    return indices, lookup, kept, label_names(kept)


def _reference_runs(class_id, wnids, plan, repeat):
    times, built = {}, {}
    for name, _, sel in plan:
        runs = [_timed(_reference_build, class_id, wnids, sel) for _ in range(repeat)]
        built[name], times[name] = runs[0][0], min(t for _, t in runs)
    return times, built


def _check_equal(numba_built, reference_built):
    import numpy as np

    from ..errors import FastloadError
    for name, m in numba_built.items():
        indices, lookup, kept, _ = reference_built[name]
        same = np.array_equal(m.indices, indices) and np.array_equal(m.label_lookup, lookup)
        if not (same and list(m.label_wnids) == kept):
            raise FastloadError(f"manifest '{name}': Numba and reference selections differ")


def run(args):
    import numpy as np

    from ..errors import UsageError
    from ..labelsets import builtin_label_sets
    from ..manifest import compile_kernels, plan_path, read_plan
    from ..resources import imagenet_wnids

    if args.repeat < 1 or args.reference_repeat < 1:
        raise UsageError(f"--repeat and --reference-repeat must be >= 1, got {args.repeat} and {args.reference_repeat}")
    plan = read_plan(plan_path(args.plan))
    class_id, wnids = synthetic_class_ids(args.seed), np.asarray(imagenet_wnids())
    counts = np.bincount(class_id)
    print(f"synthetic index: {len(class_id):,} rows, {len(wnids)} classes, {counts.min()}..{counts.max()} per class")
    _, t_labelsets = _timed(builtin_label_sets)
    print(f"label sets from WordNet (once, cached in-process; not counted below): {t_labelsets:.2f} s")
    _, t_jit = _timed(compile_kernels)
    print(f"Numba kernels: JIT compile, or load of the cache=True cache if present (not counted below): {t_jit:.2f} s")

    setup, numba_t, numba_built = _numba_runs(class_id, wnids, plan, args.repeat)
    ref_t, ref_built = _reference_runs(class_id, wnids, plan, args.reference_repeat)
    _check_equal(numba_built, ref_built)
    _print_results(plan, setup, numba_t, ref_t, numba_built)
    return 0


def _print_results(plan, setup, numba_t, ref_t, built):
    print(f"\n{'manifest':<22} {'kind':<17} {'labels':>6} {'images':>9} {'numba ms':>9} {'ref ms':>9} {'ratio':>7}")
    for name, kind, _ in plan:
        m = built[name]
        print(f"{name:<22} {kind:<17} {m.num_labels:>6} {m.num_images:>9,} {numba_t[name] * 1e3:>9.1f} "
              f"{ref_t[name] * 1e3:>9.1f} {ref_t[name] / numba_t[name]:>6.1f}x")
    print(f"\n{'kind':<22} {'manifests':>9} {'numba ms':>9} {'ref ms':>9} {'ratio':>7}")
    kinds = list(dict.fromkeys(kind for _, kind, _ in plan))
    for kind in kinds:
        names = [name for name, k, _ in plan if k == kind]
        nt, rt = sum(numba_t[n] for n in names), sum(ref_t[n] for n in names)
        print(f"{kind:<22} {len(names):>9} {nt * 1e3:>9.1f} {rt * 1e3:>9.1f} {rt / nt:>6.1f}x")
    total_n, total_r = setup + sum(numba_t.values()), sum(ref_t.values())
    print(f"{'index setup (counts)':<22} {'':>9} {setup * 1e3:>9.1f}")
    print(f"{'TOTAL':<22} {len(plan):>9} {total_n * 1e3:>9.1f} {total_r * 1e3:>9.1f} {total_r / total_n:>6.1f}x")
    verdict = "meets" if total_n < TARGET_S else "MISSES"
    print(f"\nall {len(plan)} manifests identical to the reference; Numba total {total_n:.3f} s {verdict} the "
          f"{TARGET_S:.0f} s target; reference {total_r:.2f} s")

"""fastload bench manifest: every manifest of a manifest list, Numba kernels versus the NumPy/Python reference.

Builds a synthetic ImageNet-sized TRAIN index (1,281,167 rows over the 1000 ILSVRC classes, 732..1300 images
per class like the real one, rows grouped by class as `fastload compile` writes them), builds every manifest of the
list with fastload.manifest and with fastload.manifest_reference, checks they are identical, and prints the time
of each, per kind and in total, with the ratio. Target: the paper's whole manifest list in under 2 s (JIT excluded).
"""
import time

IMAGENET_TRAIN_ROWS = 1_281_167
MIN_PER_CLASS, MAX_PER_CLASS = 732, 1300
TARGET_S = 2.0


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


def _numba_runs(class_id, wnids, entries, repeat):
    """Fastest of `repeat` runs: (setup seconds, {name: seconds}, {name: manifest}); each run uses a fresh builder."""
    from ..manifest import ManifestBuilder
    best = None
    for _ in range(repeat):
        builder, setup = _timed(ManifestBuilder, class_id, wnids)
        times, built = {}, {}
        for name, _, sel in entries:
            built[name], times[name] = _timed(builder.build, sel)
        if best is None or setup + sum(times.values()) < best[0] + sum(best[1].values()):
            best = (setup, times, built)
    return best


def _reference_build(class_id, wnids, sel):
    from ..labelsets import class_labels, resolve_label_set
    from ..manifest import label_names
    from ..manifest_reference import select_reference
    mapped = class_labels(resolve_label_set(sel.label_set, wnids), wnids)
    indices, lookup, kept = select_reference(class_id, mapped, sel)
    return indices, lookup, kept, label_names(kept)


def _reference_runs(class_id, wnids, entries, repeat):
    times, built = {}, {}
    for name, _, sel in entries:
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


def bench_manifest(manifests: str = "paper", repeat: int = 3, reference_repeat: int = 1, seed: int = 0) -> dict:
    """Build every manifest of the manifest list `manifests` ('paper' or a YAML file) over a synthetic
    ImageNet-sized index with Numba (fastest of `repeat` runs) and with the reference (fastest of
    `reference_repeat`), check they are identical, print the table; returns {"numba_s", "reference_s"}."""
    import numpy as np

    from ..errors import UsageError
    from ..labelsets import builtin_label_sets
    from ..manifest import compile_kernels, load_manifest_list
    from ..resources import imagenet_wnids

    if repeat < 1 or reference_repeat < 1:
        raise UsageError(f"--repeat and --reference-repeat must be >= 1, got {repeat} and {reference_repeat}")
    entries = load_manifest_list(manifests)
    class_id, wnids = synthetic_class_ids(seed), np.asarray(imagenet_wnids())
    counts = np.bincount(class_id)
    print(f"synthetic index: {len(class_id):,} rows, {len(wnids)} classes, {counts.min()}..{counts.max()} per class")
    _, t_labelsets = _timed(builtin_label_sets)
    print(f"label sets from WordNet (once, cached in-process; not counted below): {t_labelsets:.2f} s")
    _, t_jit = _timed(compile_kernels)
    print(f"Numba kernels: JIT compile, or load of the cache=True cache if present (not counted below): {t_jit:.2f} s")

    setup, numba_t, numba_built = _numba_runs(class_id, wnids, entries, repeat)
    ref_t, ref_built = _reference_runs(class_id, wnids, entries, reference_repeat)
    _check_equal(numba_built, ref_built)
    _print_results(entries, setup, numba_t, ref_t, numba_built)
    return {"numba_s": setup + sum(numba_t.values()), "reference_s": sum(ref_t.values())}


def _print_results(entries, setup, numba_t, ref_t, built):
    print(f"\n{'manifest':<22} {'kind':<17} {'labels':>6} {'images':>9} {'numba ms':>9} {'ref ms':>9} {'ratio':>7}")
    for name, kind, _ in entries:
        m = built[name]
        print(f"{name:<22} {kind:<17} {m.num_labels:>6} {m.num_images:>9,} {numba_t[name] * 1e3:>9.1f} "
              f"{ref_t[name] * 1e3:>9.1f} {ref_t[name] / numba_t[name]:>6.1f}x")
    print(f"\n{'kind':<22} {'manifests':>9} {'numba ms':>9} {'ref ms':>9} {'ratio':>7}")
    kinds = list(dict.fromkeys(kind for _, kind, _ in entries))
    for kind in kinds:
        names = [name for name, k, _ in entries if k == kind]
        nt, rt = sum(numba_t[n] for n in names), sum(ref_t[n] for n in names)
        print(f"{kind:<22} {len(names):>9} {nt * 1e3:>9.1f} {rt * 1e3:>9.1f} {rt / nt:>6.1f}x")
    total_n, total_r = setup + sum(numba_t.values()), sum(ref_t.values())
    print(f"{'index setup (counts)':<22} {'':>9} {setup * 1e3:>9.1f}")
    print(f"{'TOTAL':<22} {len(entries):>9} {total_n * 1e3:>9.1f} {total_r * 1e3:>9.1f} {total_r / total_n:>6.1f}x")
    verdict = "meets" if total_n < TARGET_S else "MISSES"
    print(f"\nall {len(entries)} manifests identical to the reference; Numba total {total_n:.3f} s {verdict} the "
          f"{TARGET_S:.0f} s target; reference {total_r:.2f} s")

"""A straightforward NumPy/Python implementation of manifest selection: the reference for fastload.manifest.

Same specification, different algorithm, written for clarity rather than speed: a row's key is its position in
the seeded permutation, rows are sorted by (unit, key) with one `np.lexsort`, and a Python loop over units takes
each unit's first images; the budget level comes from a sorted water-filling loop; labels are renumbered with a
dict. Tests assert identical output; `fastload bench manifest` times both.
"""
import numpy as np

from .errors import UsageError


def row_keys(num_rows: int, sel) -> np.ndarray:
    """key[row] = the row's position in the seeded permutation of all rows (same stream as the Numba path)."""
    entropy = [sel.seed, 0] if sel.nested else [sel.seed, 0, sel.per_class or 0, sel.budget or 0]
    order = np.random.default_rng(entropy).permutation(num_rows)
    key = np.empty(num_rows, np.int64)
    key[order] = np.arange(num_rows)
    return key


def unit_sequence(num_units: int, sel) -> list:
    entropy = [sel.seed, 1] if sel.nested else [sel.seed, 1, sel.classes or 0, sel.budget or 0]
    return np.random.default_rng(entropy).permutation(num_units).tolist()


def budget_caps(avail: dict, chosen: list, budget: int) -> dict:
    """Water-filling: fill the smallest units completely while the rest can share the budget evenly."""
    left, open_units = budget, len(chosen)
    level = max(avail[u] for u in chosen) if chosen else 0
    for a in sorted(avail[u] for u in chosen):
        if a * open_units <= left:
            left -= a
            open_units -= 1
        else:
            level = left // open_units
            break
    caps = {u: min(avail[u], level) for u in chosen}
    extra = budget - sum(caps.values())
    for u in chosen:
        if extra and avail[u] > level:
            caps[u] += 1
            extra -= 1
    return caps


def select_reference(class_id, class_to_label: list, sel):
    """(indices, label_lookup, label_wnids) for `sel`, given each class's label wnid (None = excluded)."""
    class_id = np.asarray(class_id)
    present = sorted({lab for lab in class_to_label if lab is not None})
    if sel.unit == "class":
        unit_of_class = [c if lab is not None else -1 for c, lab in enumerate(class_to_label)]
        num_units = len(class_to_label)
    else:
        position = {lab: i for i, lab in enumerate(present)}
        unit_of_class = [position[lab] if lab is not None else -1 for lab in class_to_label]
        num_units = len(present)
    unit_of_row = np.asarray(unit_of_class, dtype=np.int64)[class_id]
    counts = np.bincount(unit_of_row[unit_of_row >= 0], minlength=num_units)
    avail = {u: int(counts[u]) for u in range(num_units)}

    eligible = [u for u in unit_sequence(num_units, sel) if avail[u] > 0]
    if sel.classes is not None and sel.classes > len(eligible):
        raise UsageError(f"classes={sel.classes} but only {len(eligible)} units are eligible")
    chosen = eligible if sel.classes is None else eligible[:sel.classes]
    if sel.budget is not None:
        if sel.budget > sum(avail[u] for u in chosen):
            raise UsageError(f"budget={sel.budget} exceeds the chosen units' images")
        caps = budget_caps(avail, chosen, sel.budget)
    else:
        caps = {u: avail[u] if sel.per_class is None else min(avail[u], sel.per_class) for u in chosen}

    key = row_keys(len(class_id), sel)
    by_unit = np.lexsort((key, unit_of_row))  # rows grouped by unit, lowest key first
    starts = np.searchsorted(unit_of_row[by_unit], np.arange(num_units))
    picked = [by_unit[starts[u]:starts[u] + caps[u]] for u in chosen]
    indices = np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)

    got = set(np.unique(class_id[indices]).tolist())
    kept = sorted({class_to_label[c] for c in got})
    new_id = {lab: i for i, lab in enumerate(kept)}
    lookup = np.array([new_id[lab] if c in got else -1 for c, lab in enumerate(class_to_label)], dtype=np.int32)
    return indices.astype(np.int64), lookup, kept

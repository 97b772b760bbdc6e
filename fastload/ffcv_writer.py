"""Writing FFCV betons: fastload's overrides of FFCV's private writer internals, all in this one module.

Written against ffcv 1.0.2 (FFCV_VERSION; pyproject pins it). FFCV's DatasetWriter leaves a compile hanging when a
worker dies (its parent waits for a row count that never comes), leaks /dev/shm segments when killed, and its
workers outlive a killed parent. The overrides, each relying on private names of that release:
- `watched_writer_class`: a DatasetWriter subclass overriding `prepare` (swapping `ffcv.writer.shared_memory` for
  AnonymousMemory while it runs) and `_write_common` (run_watched: its body, with a parent that watches its workers);
- `writer_worker`: `ffcv.writer.worker_job_indexed_dataset` rewritten around `ffcv.writer.handle_sample` and
  `ffcv.memory_allocator.MemoryAllocator`, dying with the parent and reporting the row it failed on;
- `stored_image_field`: an RGBImageField whose `encode` copies an already-encoded record (StoredImages reads those
  records through `ffcv.reader.Reader`'s metadata and allocation table), for materialize.
`check_ffcv` runs before the first write: a missing private name is one FastloadError naming it, another ffcv
version with every name present a warning.
"""
import functools
import multiprocessing
import os
import signal
import time
import warnings
from pathlib import Path

import numpy as np

from .errors import FastloadError
from .files import DISK_FULL_ERRNOS, atomic_path
from .stepwatch import die_with_parent

FFCV_VERSION = "1.0.2"
MIN_PAGE_SIZE = 1 << 23  # FFCV's default page (8 MiB); grown when one raw image would not fit
# the private names the overrides below use, with the parameters they pass (None: only its presence matters)
PRIVATE_NAMES = {
    "ffcv.writer.shared_memory": None,
    "ffcv.writer.handle_sample": ("sample", "dest_ix", "field_names", "metadata", "allocator", "fields"),
    "ffcv.writer.DatasetWriter.prepare": ("self",),
    "ffcv.writer.DatasetWriter._write_common": ("self", "num_samples", "queue_content", "work_fn",
                                                "extra_worker_args"),
    "ffcv.writer.DatasetWriter.finalize": ("self", "allocations"),
    "ffcv.memory_allocator.MemoryAllocator": ("fname", "offset_start", "page_size"),
    "ffcv.fields.RGBImageField.encode": ("self", "destination", "image", "malloc"),
}


@functools.lru_cache(maxsize=None)
def check_ffcv() -> None:
    """FastloadError when the installed ffcv lacks a private name (or takes other parameters) the overrides here
    rely on; a warning when its version is not FFCV_VERSION although every name is there. Checked once."""
    import importlib
    import importlib.metadata
    import inspect
    missing = []
    for dotted, params in PRIVATE_NAMES.items():
        module_name, _, rest = dotted.partition(".")
        parts = rest.split(".")
        try:
            obj = importlib.import_module(f"{module_name}.{parts[0]}")
            for part in parts[1:]:
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            missing.append(f"{dotted} (missing)")
            continue
        if params is not None:
            try:
                got = tuple(inspect.signature(obj).parameters)
            except (TypeError, ValueError):
                got = None
            if got != params:
                missing.append(f"{dotted} (takes {got}, expected {params})")
    try:
        installed = importlib.metadata.version("ffcv")
    except importlib.metadata.PackageNotFoundError:
        installed = "unknown"
    if missing:
        raise FastloadError(f"ffcv {installed} differs from ffcv {FFCV_VERSION}, which fastload's beton writer "
                            f"(fastload/ffcv_writer.py) was written against: {'; '.join(missing)}; install "
                            f"ffcv=={FFCV_VERSION} (./setup.sh)")
    if installed != FFCV_VERSION:
        warnings.warn(f"ffcv {installed} is installed; fastload's beton writer was written against ffcv "
                      f"{FFCV_VERSION} (the private names it uses are all there)", stacklevel=2)


# ---------------------------------------------------------------------------------------------- the watched writer

def page_size_for(max_raw_bytes: int) -> int:
    """FFCV needs every sample inside one page: a power of two >= 8 MiB and >= 4x the largest raw image."""
    size = MIN_PAGE_SIZE
    while size < 4 * max_raw_bytes:
        size *= 2
    return size


class AnonymousMemory:
    """Stands in for multiprocessing.shared_memory.SharedMemory in FFCV's writer: an anonymous shared mapping that
    forked workers inherit and the kernel frees with the last process; nothing in /dev/shm to leak."""

    def __init__(self, create=True, size=0):
        import mmap
        self.buf = mmap.mmap(-1, max(1, size))
        self.size = size

    def close(self):
        self.buf.close()

    def unlink(self):
        pass


def writer_worker(slot, current, errors, parent_pid, input_queue, metadata_sm, metadata_type, fields, allocator,
                  done_number, allocations_queue, dataset):
    """FFCV's worker_job_indexed_dataset, plus: dies with the parent, records the row it is on in current[slot],
    and on an exception reports it (with that row) and exits at once, leaving no page half-flushed to wait for."""
    from ffcv.writer import handle_sample
    die_with_parent(signal.SIGKILL, parent_pid)
    metadata = np.frombuffer(metadata_sm.buf, dtype=metadata_type)
    try:
        with allocator:  # leaving it flushes the last page: a full disk can fail there, after the last row
            for chunk in iter(input_queue.get, None):
                for dest_ix, source_ix in chunk:
                    current[slot] = source_ix
                    try:
                        handle_sample(dataset[source_ix], dest_ix, metadata_type.names, metadata, allocator, fields)
                    except OSError as e:
                        if e.errno in DISK_FULL_ERRNOS:
                            raise  # the output's fault, not the image's
                        report_worker_error(errors, source_ix, e)
                    except BaseException as e:  # reported to the parent, which fails the compile naming the file
                        report_worker_error(errors, source_ix, e)
                with done_number.get_lock():
                    done_number.value += len(chunk)
    except OSError as e:  # writing a page: a full disk (or another write error) names the output, not an image
        report_worker_error(errors, -1, e)
    current[slot] = -1
    allocations_queue.put(allocator.allocations)


def report_worker_error(errors, row, error) -> None:
    """In a writer process: hand (row or -1, message, errno) to the parent and exit at once (no traceback)."""
    errors.put((int(row), f"{type(error).__name__}: {error}", getattr(error, "errno", None)))
    errors.close()
    errors.join_thread()
    os._exit(1)


def watched_writer_class():
    """ffcv.writer.DatasetWriter with watched workers (a subclass built on first use: ffcv imports late)."""
    from ffcv.writer import DatasetWriter

    class WatchedWriter(DatasetWriter):
        """A worker that dies (signal, exception) fails the write at once with the file it was on; workers die with
        this process; the metadata lives in anonymous shared memory."""

        def prepare(self):
            import ffcv.writer
            original = ffcv.writer.shared_memory
            ffcv.writer.shared_memory = type("AnonymousSharedMemory", (), {"SharedMemory": AnonymousMemory})
            try:
                super().prepare()
            finally:
                ffcv.writer.shared_memory = original

        def _write_common(self, num_samples, queue_content, work_fn, extra_worker_args):
            run_watched(self, num_samples, queue_content, extra_worker_args[0])

    return WatchedWriter


def run_watched(writer, num_samples, queue_content, dataset) -> None:
    """The body of DatasetWriter._write_common with a parent that watches its workers."""
    import ctypes

    from ffcv.memory_allocator import MemoryAllocator
    ctx = multiprocessing.get_context("fork")
    writer.num_samples = num_samples
    writer.prepare()
    work, allocations, errors = ctx.Queue(), ctx.Queue(), ctx.Queue()
    for todo in queue_content:
        work.put(todo)
    for _ in range(writer.num_workers):
        work.put(None)
    done = ctx.Value(ctypes.c_uint64, 0)
    current = ctx.Array("q", [-1] * writer.num_workers, lock=False)
    allocator = MemoryAllocator(writer.fname, writer.data_region_start, writer.page_size)
    workers = [ctx.Process(target=writer_worker, daemon=True,
                           args=(k, current, errors, os.getpid(), work, writer.metadata_sm, writer.metadata_type,
                                 writer.fields, allocator, done, allocations, dataset))
               for k in range(writer.num_workers)]
    try:
        for p in workers:
            p.start()
        wait_for_rows(workers, done, num_samples, current, errors, dataset, writer.progress_label)
        allocation_list = []
        for _ in workers:
            allocation_list.extend(get_watched(allocations, workers, current, errors, dataset))
        writer.finalize(allocation_list)
    finally:
        for p in workers:
            if p.is_alive():
                p.kill()
            p.join()
        writer.metadata_sm.close()


def wait_for_rows(workers, done, total: int, current, errors, dataset, desc: str) -> None:
    """Follow the workers' row count with a progress bar (images/s), checking every 50 ms that none has died."""
    from tqdm import tqdm
    previous = 0
    with tqdm(total=total, desc=desc, unit="img", smoothing=0.1) as bar:  # closed (line ended) before any error
        while previous != total:
            check_workers(workers, current, errors, dataset)
            value = done.value
            if value > previous:
                bar.update(value - previous)
                previous = value
            time.sleep(0.05)


def get_watched(queue, workers, current, errors, dataset):
    import queue as queue_mod
    while True:
        try:
            return queue.get(timeout=0.2)
        except queue_mod.Empty:
            check_workers(workers, current, errors, dataset)


def check_workers(workers, current, errors, dataset) -> None:
    """Raise FastloadError naming the file when a worker has died before finishing."""
    import queue as queue_mod
    for slot, p in enumerate(workers):
        if p.exitcode is None or p.exitcode == 0:
            continue
        row, message, error_number = int(current[slot]), "", None
        try:
            row, message, error_number = errors.get(timeout=1.0)
        except queue_mod.Empty:
            pass
        if error_number in DISK_FULL_ERRNOS:  # write_beton's atomic_path turns it into one DiskFullError
            raise OSError(error_number, os.strerror(error_number))
        if row < 0 and message:
            raise FastloadError(f"a beton writer process failed writing its output: {message}")
        how = (f"killed by {signal.Signals(-p.exitcode).name}" if p.exitcode < 0 else f"exit status {p.exitcode}")
        where = dataset.describe(row) if row >= 0 else "an unknown row"
        raise FastloadError(f"a beton writer process ({how}) failed on {where}"
                            f"{': ' + message if message else ''}; remove or replace that file and rerun")


def write_beton(dataset, fields: dict, out_path: Path, num_workers: int, page_size: int, desc: str,
                expected_bytes: int = None) -> None:
    """Write `dataset` (with a `describe(row)` naming each row's source) as an FFCV beton, atomically. A full disk
    is one DiskFullError naming `out_path` and `expected_bytes` (the estimated size, when given)."""
    check_ffcv()
    with atomic_path(out_path, expected_bytes=expected_bytes) as tmp:
        writer = watched_writer_class()(str(tmp), fields, page_size=page_size, num_workers=num_workers)
        writer.progress_label = desc
        writer.from_indexed_dataset(dataset, chunksize=max(1, min(100, len(dataset) // (4 * num_workers))))


# ---------------------------------------------------------------------------------------------- copying records

class StoredImages:
    """Rows of an existing beton as (stored image record, label): the compressed or raw bytes are copied as they
    are, so a materialized beton decodes to exactly the same pixels as the base beton."""

    def __init__(self, beton_path, rows):
        from ffcv.reader import Reader
        reader = Reader(str(beton_path))
        self.path, self.rows = str(beton_path), np.asarray(rows, dtype=np.int64)
        self.metadata = reader.metadata
        order = np.argsort(reader.alloc_table["ptr"])
        self.ptrs = reader.alloc_table["ptr"][order]
        self.sizes = reader.alloc_table["size"][order]
        self.names = reader.field_names
        self._file = None

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        if self._file is None:  # opened in the writer process, after the fork
            self._file = np.memmap(self.path, dtype=np.uint8, mode="r")
        record = self.metadata[self.rows[i]]
        image = record[self.names.index("image")]
        ptr = image["data_ptr"]
        size = self.sizes[np.searchsorted(self.ptrs, ptr)]
        payload = np.array(self._file[ptr:ptr + size])
        return (int(image["mode"]), int(image["width"]), int(image["height"]), payload), \
            int(record[self.names.index("label")])

    def describe(self, i) -> str:
        return f"row {self.rows[i]} of {self.path}"


def copy_stored_image(destination, stored, malloc):
    """RGBImageField.encode for an already-encoded record (mode, width, height, payload bytes)."""
    mode, width, height, payload = stored
    destination["mode"], destination["width"], destination["height"] = mode, width, height
    destination["data_ptr"], storage = malloc(payload.nbytes)
    storage[:] = payload


def stored_image_field():
    """An RGBImageField that stores StoredImages' records as they are (same field type id, so readers decode it as
    any RGBImageField)."""
    from ffcv.fields import RGBImageField
    field = RGBImageField()
    field.encode = copy_stored_image
    return field

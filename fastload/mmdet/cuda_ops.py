"""CUDA paths for the mmcv ops that the shipped transfer configs reach: mmcv's compiled ops on CUDA tensors go through
torchvision's CUDA kernels, so `fastload transfer` runs on a GPU with the mmcv that setup.sh builds.

setup.sh builds mmcv 2.1.0 with its CPU kernels only (FORCE_CUDA=0: no nvcc needed, one wheel for every machine).
Its `nms` then fails on CUDA tensors ("nms_impl: implementation for device cuda:0 not found"), and mmdet's RPN and
test-time NMS (`mmcv.ops.batched_nms` -> `mmcv.ops.nms` -> `ext_module.nms`) call it. torchvision, installed with
torch as a CUDA build, carries the same op with CPU and CUDA kernels. Importing this module (fastload.mmdet does)
calls `install()`, which gives mmcv.ops.nms an `ext_module` whose `nms` sends CUDA tensors to `torchvision.ops.nms`
and everything else to mmcv's own kernels (CPU runs stay bit-for-bit mmcv's). The RoI layers of the configs are
torchvision's already (fastload.mmdet.backbone.TorchvisionRoIExtractor): RoIPool for the AlexNet detectors and every
R*CNN, RoIAlign for the ResNet FPN detectors.

CONFIG_OPS lists every compiled op a forward and backward pass of each shipped config reaches, measured by
`record_ops` (tests/test_cuda.py runs every config under it on CPU and compares): mmcv ext functions by name, and
torchvision dispatcher ops. `op_devices` says on which devices each of them can run here (`fastload doctor`).
"""
import contextlib

import torch

# mmcv ext function -> the torchvision op that computes the same result on CUDA tensors
ROUTES = {"nms": "torchvision::nms"}
# what the shipped configs reach (tests/test_cuda.py::test_shipped_configs_reach_only_ops_with_a_cuda_path checks)
CONFIG_OPS = {
    "mmcv": ("nms",),
    "torchvision": ("torchvision::nms", "torchvision::roi_pool", "torchvision::_roi_pool_backward",
                    "torchvision::roi_align", "torchvision::_roi_align_backward"),
}


class RoutedExt:
    """Stands in for mmcv's `_ext` module inside mmcv.ops.nms: `nms` on CUDA tensors runs torchvision's kernel."""

    def __init__(self, ext):
        self.ext = ext

    def __getattr__(self, name):  # softnms, nms_match, ...: mmcv's own
        return getattr(self.ext, name)

    def nms(self, boxes, scores, iou_threshold, offset=0):
        if not boxes.is_cuda:
            return self.ext.nms(boxes, scores, iou_threshold=iou_threshold, offset=offset)
        return torchvision_nms(boxes, scores, iou_threshold, offset)


def torchvision_nms(boxes, scores, iou_threshold: float, offset: int = 0):
    """mmcv's nms semantics (indices by decreasing score; width = x2 - x1 + offset) on torchvision's kernels."""
    import torchvision.ops

    if offset:  # torchvision measures x2 - x1: moving x2, y2 by `offset` gives mmcv's areas and overlaps
        boxes = torch.cat([boxes[:, :2], boxes[:, 2:] + offset], dim=1)
    return torchvision.ops.nms(boxes, scores, float(iou_threshold))


def install() -> None:
    """Route mmcv.ops.nms's compiled calls through RoutedExt (idempotent)."""
    mmcv_nms = nms_module()
    if not isinstance(mmcv_nms.ext_module, RoutedExt):
        mmcv_nms.ext_module = RoutedExt(mmcv_nms.ext_module)


def nms_module():
    """The module mmcv/ops/nms.py (`import mmcv.ops.nms as m` gives the function mmcv.ops exports by that name)."""
    import importlib
    return importlib.import_module("mmcv.ops.nms")


def has_kernel(op: str, device: str) -> bool:
    """Whether the dispatcher op (e.g. 'torchvision::nms') has a kernel for device 'cpu' or 'cuda'."""
    import torchvision  # noqa: F401  (registers the torchvision:: ops)

    return torch._C._dispatch_has_kernel_for_dispatch_key(op, device.upper())


def mmcv_cuda_kernels() -> bool:
    """Whether this mmcv was built with its CUDA kernels."""
    from mmcv.ops import get_compiling_cuda_version

    return get_compiling_cuda_version() not in ("", "not available")


def op_devices() -> dict:
    """{op: [devices it runs on here]} for every op in CONFIG_OPS; mmcv ops count their torchvision route."""
    devices = {}
    for op in CONFIG_OPS["torchvision"]:
        devices[op] = [d for d in ("cpu", "cuda") if has_kernel(op, d)]
    for name in CONFIG_OPS["mmcv"]:
        route = ROUTES.get(name)
        cuda = mmcv_cuda_kernels() or (route is not None and has_kernel(route, "cuda"))
        how = f" (via {route})" if route and not mmcv_cuda_kernels() else ""
        devices[f"mmcv.{name}"] = ["cpu"] + ([f"cuda{how}"] if cuda else [])
    return devices


@contextlib.contextmanager
def record_ops():
    """Collect the mmcv ext functions and torchvision dispatcher ops called inside the block.

    Yields {'mmcv': set of ext function names, 'torchvision': set of 'torchvision::op' names}. mmcv's ext functions
    are wrapped on the shared `mmcv._ext` module (every mmcv.ops module looks them up there at call time); dispatcher
    ops are seen through a TorchDispatchMode, which also sees the backward pass's ops.
    """
    import mmcv._ext as ext
    from torch.utils._python_dispatch import TorchDispatchMode

    seen = {"mmcv": set(), "torchvision": set()}

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func._schema.name
            if name.startswith("torchvision::"):
                seen["torchvision"].add(name)
            return func(*args, **(kwargs or {}))

    originals = {n: getattr(ext, n) for n in dir(ext) if not n.startswith("_") and callable(getattr(ext, n))}
    for name, fn in originals.items():
        setattr(ext, name, _recording(fn, name, seen["mmcv"]))
    try:
        with Recorder():
            yield seen
    finally:
        for name, fn in originals.items():
            setattr(ext, name, fn)


def _recording(fn, name, names):
    def call(*args, **kwargs):
        names.add(name)
        return fn(*args, **kwargs)
    return call


install()

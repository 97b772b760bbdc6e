"""SUN-CLS (paper sec. 3): fine-tune a fastload AlexNet or ResNet on SUN397 scene classification, in MMEngine's Runner.

Importing this module registers, in mmdet's registries (configs use default_scope='mmdet' and
custom_imports=dict(imports=['fastload.mmdet.classification'])):
- DATASETS: SUN397Dataset, the standard SUN397/ image folder with the official partition files;
- TRANSFORMS: ClsRandomCrop, ClsCenterCrop, PackClsInputs;
- MODELS: FastloadImageClassifier, the whole network with its last layer replaced by a new N(0, 0.01) one outside
  `net` (`fc8` for both AlexNets, so that one optimizer key, 'fc8.', names it for both; `fc` for the ResNets), all
  fine-tuned;
- METRICS: MeanPerClassAccuracy, SUN397's metric (mean over classes of each class's top-1 accuracy).

Data layout (as the SUN397 and Partitions archives unpack; `fastload synth sun OUT` writes the same):
    DATA_ROOT/SUN397/a/abbey/sun_aaalbzqrimafwbiv.jpg ...
    DATA_ROOT/Partitions/Training_01.txt ... Training_10.txt, Testing_01.txt ... Testing_10.txt (50 + 50 images
    per class each, lines like /a/abbey/sun_aaalbzqrimafwbiv.jpg), optionally ClassName.txt (/a/abbey, ...).
Class ids are positions in ClassName.txt when present, otherwise in the sorted class folders of the partition.
"""
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from mmcv.transforms import BaseTransform
from mmdet.registry import DATASETS, METRICS, MODELS, TRANSFORMS
from mmengine.dataset import BaseDataset
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement
from torch import nn

from ..errors import FastloadError, UsageError
from ..models.build import build_model
from ..models.checkpoint import blurpool_to_build
from ..models.networks import network
from .backbone import CHECKPOINT_KEYS, _require_checkpoint, load_pretrained_layers
from .resnet import load_resnet_weights

SPLITS = {"train": "Training", "test": "Testing"}
NUM_PARTITIONS = 10
PRETRAINED_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")
# the ResNets' top-level modules with parameters, below the new fc (torchvision's names)
RESNET_LAYERS = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")
# the pre-trained layers below the new last layer, per network family: the names `frozen_layers` takes
FAMILY_LAYERS = {"alexnet": PRETRAINED_LAYERS, "resnet": RESNET_LAYERS}


# ---- data ---------------------------------------------------------------------------------------------------

def partition_file(data_root, split: str, partition: int) -> Path:
    if split not in SPLITS:
        raise UsageError(f"SUN397 split '{split}': choose one of {', '.join(SPLITS)}")
    if not 1 <= int(partition) <= NUM_PARTITIONS:
        raise UsageError(f"SUN397 partition {partition}: choose 1..{NUM_PARTITIONS}")
    path = Path(data_root) / "Partitions" / f"{SPLITS[split]}_{int(partition):02d}.txt"
    if not path.is_file():
        raise FastloadError(f"SUN397 partition file {path} does not exist (data_root must hold SUN397/ and "
                            "Partitions/ as the official archives unpack)")
    return path


def read_partition(path: Path) -> list:
    """Image paths of a partition file, as written there ('/a/abbey/sun_x.jpg')."""
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise FastloadError(f"SUN397 partition file {path} is empty")
    bad = [line for line in lines if not line.startswith("/") or line.count("/") < 3]
    if bad:
        raise FastloadError(f"{path}: line {bad[0]!r} is not a SUN397 image path like /a/abbey/sun_x.jpg")
    return lines


def class_of(image_path: str) -> str:
    return image_path.rsplit("/", 1)[0]  # '/a/abbey/sun_x.jpg' -> '/a/abbey'


def read_class_names(data_root, partition: int) -> list:
    """ClassName.txt when present, else the sorted classes of the partition's train and test files."""
    names_file = Path(data_root) / "Partitions" / "ClassName.txt"
    if names_file.is_file():
        return [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
    paths = [p for split in SPLITS for p in read_partition(partition_file(data_root, split, partition))]
    return sorted({class_of(p) for p in paths})


@DATASETS.register_module()
class SUN397Dataset(BaseDataset):
    """SUN397 scene classification: one partition's train or test images.

    Args:
        data_root (str): folder holding SUN397/ and Partitions/.
        split (str): 'train' (Training_XX.txt) or 'test' (Testing_XX.txt). Defaults to 'train'.
        partition (int): the official partition, 1..10. Defaults to 1.
        pipeline (list): data transforms. Other arguments as mmengine's BaseDataset.
    """

    def __init__(self, data_root: str, split: str = "train", partition: int = 1, pipeline=(), **kwargs):
        self.split = split
        self.partition = int(partition)
        partition_file(data_root, split, partition)  # check the arguments before BaseDataset loads anything
        super().__init__(data_root=data_root, pipeline=list(pipeline), **kwargs)

    def load_data_list(self) -> list:
        classes = read_class_names(self.data_root, self.partition)
        class_id = {name: i for i, name in enumerate(classes)}
        path = partition_file(self.data_root, self.split, self.partition)
        images_dir = Path(self.data_root) / "SUN397"
        data_list = []
        for line in read_partition(path):
            name = class_of(line)
            if name not in class_id:
                raise FastloadError(f"{path}: class {name} of {line} is not among the {len(classes)} SUN397 classes")
            img_path = images_dir / line.lstrip("/")
            data_list.append(dict(img_path=str(img_path), gt_label=class_id[name]))
        missing = [d["img_path"] for d in data_list if not os.path.isfile(d["img_path"])]
        if missing:
            raise FastloadError(f"{len(missing)} images listed in {path} do not exist, e.g. {missing[0]}")
        self._metainfo["classes"] = tuple(classes)
        return data_list


@TRANSFORMS.register_module()
class ClsRandomCrop(BaseTransform):
    """A random `crop_size` x `crop_size` window of results['img'] (which must be at least that large)."""

    def __init__(self, crop_size: int):
        self.crop_size = int(crop_size)

    def window_origin(self, h: int, w: int):
        return np.random.randint(0, h - self.crop_size + 1), np.random.randint(0, w - self.crop_size + 1)

    def transform(self, results: dict) -> dict:
        img = results["img"]
        h, w = img.shape[:2]
        if h < self.crop_size or w < self.crop_size:
            raise FastloadError(f"{results.get('img_path')}: image {w}x{h} is smaller than the {self.crop_size} "
                                "crop; resize first")
        top, left = self.window_origin(h, w)
        results["img"] = img[top:top + self.crop_size, left:left + self.crop_size]
        results["img_shape"] = results["img"].shape[:2]
        return results


@TRANSFORMS.register_module()
class ClsCenterCrop(ClsRandomCrop):
    """The central `crop_size` x `crop_size` window of results['img']."""

    def window_origin(self, h: int, w: int):
        return (h - self.crop_size) // 2, (w - self.crop_size) // 2


@TRANSFORMS.register_module()
class PackClsInputs(BaseTransform):
    """HWC image -> CHW uint8 tensor 'inputs'; 'data_samples' holds gt_label (int64 [1]) and the image's meta."""

    META_KEYS = ("img_path", "ori_shape", "img_shape")

    def transform(self, results: dict) -> dict:
        img = results["img"]
        if img.ndim == 2:
            img = img[..., None]
        inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        sample = BaseDataElement(metainfo={k: results[k] for k in self.META_KEYS if k in results})
        sample.gt_label = torch.tensor([int(results["gt_label"])], dtype=torch.long)
        return dict(inputs=inputs, data_samples=sample)


# ---- model --------------------------------------------------------------------------------------------------

@MODELS.register_module()
class FastloadImageClassifier(BaseModel):
    """A fastload network for image classification: everything but the last layer from a fastload checkpoint
    (`net`, whose own last layer is an Identity), and a new last layer (`new_fc`): `fc8` for the AlexNets, `fc` for
    the ResNets, their last layer's name in the pre-trained network. The SUN configs give it 10x the base lr for
    its weights and 20x for its biases (custom_keys 'fc8.weight' / 'fc8.bias', 'fc.weight' / 'fc.bias'), as
    Caffe's fine-tuning example does.

    Args:
        arch (str): 'alexnet_caffe', 'alexnet_tv', 'resnet18' or 'resnet50'; must match the checkpoint's.
            Defaults to 'alexnet_caffe'.
        num_classes (int): outputs of the new last layer (397 for SUN397). Defaults to 397.
        checkpoint (str | None): fastload checkpoint (RUN/last.pt), filled in by `fastload transfer --checkpoint`,
            or 'random' for a network trained from scratch; None is an error at weight initialisation.
        new_fc_std (float): standard deviation of the new last layer's Gaussian weights (BVLC's 0.01); bias 0.
        blurpool (bool | None): ResNets only: build the network with fastload's BlurPool. None: as the checkpoint
            records it; True/False: as set (a mismatch is an error at weight initialisation). Defaults to None.
        frozen_layers (sequence of str): pre-trained layers kept fixed: AlexNet's conv1 .. fc7, a ResNet's conv1,
            bn1, layer1 .. layer4. Their parameters get requires_grad=False (autograd computes no gradient below the
            lowest trained layer, so freezing everything up to fc7 makes a linear probe cost a forward pass) and
            their BatchNorm layers stay in eval mode (the pre-trained statistics, neither used from the batch nor
            updated). AlexNet's dropout is no layer's: drop6/drop7 act as configured. Defaults to () (all trained).
        data_preprocessor (dict): normally ImgDataPreprocessor with the ImageNet mean/std and bgr_to_rgb=True.
    """

    def __init__(self, arch: str = "alexnet_caffe", num_classes: int = 397, checkpoint=None,
                 new_fc_std: float = 0.01, blurpool=None, frozen_layers=(), data_preprocessor=None,
                 init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.network_record = network(arch, error=UsageError)
        if int(num_classes) < 2:
            raise UsageError(f"num_classes must be >= 2, got {num_classes}")
        self.arch = arch
        self.num_classes = int(num_classes)
        self.checkpoint = checkpoint
        self.new_fc_std = float(new_fc_std)
        if self.network_record.blurpool:  # a network that may have been pre-trained with BlurPool
            blurpool = blurpool_to_build(blurpool, checkpoint)
        self.net = build_model(self.arch, self.num_classes, blurpool=bool(blurpool))
        # the net now ends below its classifier: an AlexNet at fc7 (after its ReLU and dropout), a ResNet at the
        # pooled layer4 features
        self.new_fc_name = self.network_record.classifier_name
        features = self.net.get_submodule(self.network_record.classifier).in_features
        self.net.set_submodule(self.network_record.classifier, nn.Identity())
        self.add_module(self.new_fc_name, nn.Linear(features, self.num_classes))
        self.frozen_layers = self._check_layer_names(frozen_layers)
        for name in self.frozen_layers:
            for p in self._layer(name).parameters():
                p.requires_grad = False

    def _check_layer_names(self, names) -> tuple:
        names = (names,) if isinstance(names, str) else tuple(names)
        known = FAMILY_LAYERS[self.network_record.family]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UsageError(f"FastloadImageClassifier frozen_layers: {', '.join(map(repr, unknown))} are not layers "
                             f"of {self.arch}: choose from {', '.join(known)}")
        return names

    def train(self, mode: bool = True):
        super().train(mode)
        for name in self.frozen_layers:  # BatchNorm of a frozen layer keeps its pre-trained statistics
            self._layer(name).eval()
        return self

    @property
    def new_fc(self) -> nn.Linear:
        return getattr(self, self.new_fc_name)

    def _layer(self, name: str):
        """The module of a layer named as in `frozen_layers`."""
        if self.network_record.family == "resnet":  # torchvision's own names
            return self.net.get_submodule(name)
        return self.net.get_submodule(CHECKPOINT_KEYS[self.arch][name])

    def init_weights(self):
        super().init_weights()
        checkpoint = _require_checkpoint(self.checkpoint, "FastloadImageClassifier")
        if checkpoint is not None:
            if self.network_record.family == "resnet":
                load_resnet_weights(self.net, checkpoint, self.arch, "FastloadImageClassifier")
            else:
                load_pretrained_layers(checkpoint, self.arch, {n: self._layer(n) for n in PRETRAINED_LAYERS})
        with torch.no_grad():
            self.new_fc.weight.normal_(0.0, self.new_fc_std)
            self.new_fc.bias.zero_()

    def forward(self, inputs, data_samples=None, mode: str = "tensor"):
        logits = self.new_fc(self.net(inputs))
        if mode == "tensor":
            return logits
        if mode == "loss":
            labels = torch.cat([s.gt_label for s in data_samples]).to(logits.device)
            if labels.max() >= self.num_classes:
                raise FastloadError(f"the dataset has class id {int(labels.max())} but the model has "
                                    f"num_classes={self.num_classes}: set model.num_classes to the dataset's classes")
            return {"loss": F.cross_entropy(logits.float(), labels)}
        if mode == "predict":
            scores = logits.float().softmax(dim=1)
            for sample, score in zip(data_samples, scores):
                sample.pred_score = score
                sample.pred_label = score.argmax().view(1)
            return data_samples
        raise UsageError(f"forward mode '{mode}': choose tensor, loss or predict")


# ---- metric -------------------------------------------------------------------------------------------------

def mean_per_class_accuracy(targets, predictions, num_classes: int) -> dict:
    """{'mean_class_acc': mean over classes present of their top-1 accuracy, 'accuracy': over all images}."""
    targets, predictions = np.asarray(targets), np.asarray(predictions)
    per_class = [np.mean(predictions[targets == c] == c) for c in range(num_classes) if np.any(targets == c)]
    if not per_class:
        raise FastloadError("no test images were evaluated")
    return {"mean_class_acc": float(np.mean(per_class)), "accuracy": float(np.mean(predictions == targets))}


@METRICS.register_module()
class MeanPerClassAccuracy(BaseMetric):
    """Mean over classes of the per-class top-1 accuracy (SUN397's standard metric), plus plain accuracy.

    Reported as '<prefix>/mean_class_acc' and '<prefix>/accuracy', fractions in [0, 1]. Defaults prefix 'cls'.
    """
    default_prefix = "cls"

    def process(self, data_batch, data_samples) -> None:
        for sample in data_samples:
            self.results.append((int(sample["gt_label"].reshape(-1)[0]), int(sample["pred_label"].reshape(-1)[0])))

    def compute_metrics(self, results: list) -> dict:
        classes = (self.dataset_meta or {}).get("classes")
        targets, predictions = zip(*results)
        num_classes = len(classes) if classes else max(max(targets), max(predictions)) + 1
        return mean_per_class_accuracy(targets, predictions, num_classes)

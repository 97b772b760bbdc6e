"""fastload's MMDetection components; configs load them with custom_imports=dict(imports=['fastload.mmdet']).

Importing this package registers, in mmdet's registries:
- MODELS: FastloadAlexNet (conv1..conv5 backbone), AlexNetBBoxHead (fc6/fc7 box head), TorchvisionRoIExtractor,
  FastloadResNet (mmdet's ResNet with fastload's optional BlurPool), PyFasterRCNNRPNHead (py-faster-rcnn's
  proposal-size filter), RStarCNN (action classifier), FastloadResNetC4 and ResNetRes5Head (its ResNet trunk and
  per-region head, the C4 split)
- TASK_UTILS: PyFasterRCNNAnchorGenerator (py-faster-rcnn's anchors)
- DATASETS: CheckedVOCDataset (VOC detection with fastload's bad-input policy), VOCActionDataset
- TRANSFORMS: LoadActionAnnotations, PackActionInputs
- METRICS: VOCActionMetric
- HOOKS: RecordMetricsHook
- WEIGHT_INITIALIZERS (mmengine's): FastloadPretrained (a fastload ResNet checkpoint, loaded strictly; .resnet)
- RUNNERS (mmengine's): FastloadRunner (copies the config's data_root, img_scale and checkpoint down at build time,
  so mmdet's own tools/train.py and tools/test.py run the shipped configs; .runner)

It also lets torch's weights-only unpickler read what mmengine's own checkpoints hold (the MessageHub's
HistoryBuffer, numpy arrays and scalars): mmengine 0.10.7 calls torch.load without `weights_only`, which torch >= 2.6
takes as True, so `tools/test.py CONFIG WORK_DIR/iter_N.pth` and `tools/train.py --resume` could not read a work dir's
checkpoints. The allow-list (fastload.transfer.checkpoint_safe_globals) is added to torch's safe globals; weights-only
loading stays on, so a checkpoint holding anything else is still refused and never runs code.
"""
from ..transfer import allow_checkpoint_globals
from . import action, backbone, hooks, resnet, rpn, runner, voc  # noqa: F401  (imported for their registrations)
from . import cuda_ops  # noqa: F401  (mmcv's nms on CUDA tensors -> torchvision's kernel; tests/test_cuda.py)

allow_checkpoint_globals()

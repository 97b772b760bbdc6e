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
"""
from . import action, backbone, hooks, resnet, rpn, voc  # noqa: F401  (imported for their registrations)
from . import cuda_ops  # noqa: F401  (mmcv's nms on CUDA tensors -> torchvision's kernel; tests/test_cuda.py)

"""fastload's MMDetection components; configs load them with custom_imports=dict(imports=['fastload.mmdet']).

Importing this package registers, in mmdet's registries:
- MODELS: FastloadAlexNet (conv1..conv5 backbone), AlexNetBBoxHead (fc6/fc7 box head), TorchvisionRoIExtractor,
  RStarCNN (action classifier)
- DATASETS: CheckedVOCDataset (VOC detection with fastload's bad-input policy), VOCActionDataset
- TRANSFORMS: LoadActionAnnotations, PackActionInputs
- METRICS: VOCActionMetric
- HOOKS: RecordMetricsHook
"""
from . import action, backbone, hooks, voc  # noqa: F401  (imported for their registrations)

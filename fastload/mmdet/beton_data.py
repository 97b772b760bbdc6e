"""Classification transfer data from compiled betons inside MMEngine's Runner (configs: transfer/*-beton.py).

Importing this module registers, in mmdet's registries:
- DATASETS: ClsBetonBatches, a torch IterableDataset over one split of a `fastload compile cls` folder that yields
  whole batches, dict(inputs=uint8 N x 3 x crop x crop RGB tensor, data_samples=[BaseDataElement(gt_label)]), the
  shape FastloadImageClassifier's data preprocessor and MeanPerClassAccuracy read (as PackClsInputs +
  pseudo_collate give them);
- FUNCTIONS (mmengine's, which every scope searches last): 'beton_batch', the dataloader's collate_fn: the batch as the dataset made it.

How it fits the Runner: Runner.build_dataloader builds a torch DataLoader from the config dict; with
batch_size=1 (one of the dataset's batches per item), num_workers=0, sampler=None and
collate_fn=dict(type='beton_batch') that DataLoader only hands on what ClsBetonBatches yields (FFCV's own threads
decode, `num_workers` of the dataset). batch_size=1 rather than None keeps a batch_sampler on the DataLoader, which
MMEngine's DistSamplerSeedHook looks into. A training split is endless
(InfiniteSampler's role: one FFCV epoch after another, each in a new order, so IterBasedTrainLoop never restarts the
DataLoader and never sleeps at an epoch's end). `len()` is the images of one epoch, as for any dataset: the
evaluator keeps that many results (the DataLoader's length, which MMEngine's log shows as the validation's
iteration count, is then the number of images too, not of batches). The seed is the Runner's
(cfg.randomness.seed, which `fastload transfer --seeds` sets): read from torch.initial_seed() when the dataset
starts iterating, unless the config gives `seed`.
"""
import torch
from mmdet.registry import DATASETS
from mmengine.registry import FUNCTIONS
from mmengine.structures import BaseDataElement
from torch.utils.data import IterableDataset

from ..beton import read_classes
from ..errors import UsageError
from ..transfer_data.loader import cls_loader, split_beton


@DATASETS.register_module()
class ClsBetonBatches(IterableDataset):
    """Batches of one split of a `fastload compile cls` folder.

    Args:
        data_root (str): the compile folder (holding {split}.beton and classes.txt).
        split (str): 'train', 'test', ... (a beton of the folder). Defaults to 'train'.
        crop_size (int): side of the crops (227 for AlexNet, 224 for the ResNets). Defaults to 227.
        train (bool): random crop + flip, shuffled, endless (True) or centre crop, in order, one pass (False).
            Defaults to True.
        batch_size (int): images per batch. Defaults to 50.
        num_workers (int): FFCV decoding threads. Defaults to 4.
        seed (int | None): None: the Runner's seed (torch.initial_seed()). Defaults to None.
        test_mode (bool): accepted for MMEngine's dataset configs; `train` decides. Defaults to False.
    """

    def __init__(self, data_root: str, split: str = "train", crop_size: int = 227, train: bool = True,
                 batch_size: int = 50, num_workers: int = 4, seed=None, test_mode: bool = False):
        super().__init__()
        self.data_root, self.split, self.crop_size, self.train = str(data_root), split, int(crop_size), bool(train)
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), seed
        self.beton = split_beton(self.data_root, split)  # a missing or damaged beton fails before training
        self.metainfo = dict(classes=read_classes(self.data_root))
        self._loader = None

    def loader(self):
        """The FFCV Loader, built on first use (after the Runner has seeded torch)."""
        if self._loader is None:
            seed = torch.initial_seed() % (2 ** 31) if self.seed is None else int(self.seed)
            self._loader = cls_loader(self.data_root, self.split, self.batch_size, self.crop_size, self.train,
                                      seed=seed, num_workers=self.num_workers)
        return self._loader

    def __len__(self):
        """Images per epoch (every row for a test split; whole batches only for training), as a dataset's length
        is: MMEngine's evaluator keeps the first len(dataset) results."""
        loader = self.loader()
        return len(loader) * self.batch_size if self.train else len(loader.indices)

    def __iter__(self):
        if self.train and len(self.loader()) == 0:
            # an endless split without one whole batch would spin forever on empty epochs
            raise UsageError(f"{self.beton}: {len(self.loader().indices)} training images, fewer than one batch of "
                             f"{self.batch_size}: lower train_dataloader.dataset.batch_size")
        while True:
            for images, labels in self.loader():
                yield pack_batch(images, labels)
            if not self.train:
                return


def pack_batch(images, labels) -> dict:
    """(uint8 NHWC images, N x 1 labels) -> dict(inputs=NCHW uint8, data_samples=[...]) as PackClsInputs +
    pseudo_collate would make them (the tensor stacked already)."""
    samples = []
    for label in labels.view(-1).tolist():
        sample = BaseDataElement()
        sample.gt_label = torch.tensor([label], dtype=torch.long)
        samples.append(sample)
    return dict(inputs=images.permute(0, 3, 1, 2), data_samples=samples)


@FUNCTIONS.register_module(name="beton_batch")
def beton_batch(items):
    """A DataLoader collate_fn for datasets that yield whole batches, with the DataLoader's batch_size=1: the one
    batch, unchanged."""
    if not (isinstance(items, (list, tuple)) and len(items) == 1 and isinstance(items[0], dict)):
        raise UsageError("collate_fn 'beton_batch' goes with dataset ClsBetonBatches and the dataloader's "
                         "batch_size=1 (the batch size is the dataset's)")
    return items[0]

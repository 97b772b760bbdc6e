# SUN-CLS exactly as alexnet-caffe_50k_sun397.py (model, schedule, optimiser, metric, the same images in the same
# split), reading compiled betons instead of JPEG files: the default SUN config of the plans. Every image is stored
# already warped to 256 x 256 (raw RGB, the file pipeline's Resize(keep_ratio=False) output), so a training crop is a
# byte copy: random 227 crop + flip for training, the centre crop for testing, batch 50. Docs: docs/transfer-data.md.
#   fastload compile cls sun397 /data/sun /data/sun397_beton            (once: partition 1, ~3.9 GB)
#   fastload transfer transfer/alexnet-caffe_50k_sun397-beton.py --checkpoint runs/NAME/last.pt \
#       --work-dir work/sun_NAME --cfg-options data_root=/data/sun397_beton/ --seeds 0 1 2
_base_ = ['./alexnet-caffe_50k_sun397.py']
custom_imports = dict(imports=['fastload.mmdet', 'fastload.mmdet.classification', 'fastload.mmdet.beton_data'],
                      allow_failed_imports=False)
# the folder `fastload compile cls` wrote (`fastload transfer` copies data_root into the datasets)
data_root = 'data/sun397_beton/'
# ClsBetonBatches (fastload/mmdet/beton_data.py) yields whole batches; the torch DataLoader only hands them on
# (batch_size=1: one of the dataset's batches per item; no workers, no sampler, collate_fn 'beton_batch'). Batch
# size, crop and FFCV decoding threads are the dataset's; training is endless (InfiniteSampler's role), seeded by
# the Runner's seed.
beton_loader = dict(_delete_=True, batch_size=1, num_workers=0, sampler=None, collate_fn=dict(type='beton_batch'))
train_dataloader = dict(
    **beton_loader,
    dataset=dict(type='ClsBetonBatches', data_root=data_root, split='train', crop_size={{_base_.crop_size}},
                 train=True, batch_size=50, num_workers=4))
val_dataloader = dict(
    **beton_loader,
    dataset=dict(type='ClsBetonBatches', data_root=data_root, split='test', crop_size={{_base_.crop_size}},
                 train=False, batch_size=50, num_workers=4))
test_dataloader = val_dataloader
# the betons hold RGB (the file pipeline's cv2 images are BGR): the network sees the same normalised tensor
model = dict(data_preprocessor=dict(bgr_to_rgb=False))

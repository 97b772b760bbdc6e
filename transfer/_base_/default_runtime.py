# Runtime shared by every fastload transfer config (MMDetection 3.x style).
default_scope = 'mmdet'
custom_imports = dict(imports=['fastload.mmdet'], allow_failed_imports=False)
# fastload/mmdet/runner.py: copies the top-level data_root, img_scale and checkpoint below into the dataloaders and
# the model when the run is built, so mmdet's tools/train.py and tools/test.py take them from --cfg-options too
runner_type = 'FastloadRunner'
# the fastload pre-training checkpoint (RUN/last.pt; 'random': no pre-training) that fills every `checkpoint` of the
# model: `--cfg-options checkpoint=RUN/last.pt` (`fastload transfer --checkpoint RUN/last.pt` sets it)
checkpoint = None
# `fastload transfer --seeds` sets the seed per run; mmdet's tools/train.py runs this one unless told otherwise
randomness = dict(seed=0, deterministic=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # one resumable checkpoint every 10k iterations, only the latest kept (a 70k run keeps ~0.5 GB)
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=10000, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
# every validation result is appended to WORK_DIR/val_metrics.jsonl; `fastload transfer` reads the last one
custom_hooks = [dict(type='RecordMetricsHook')]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
# no fixed name: each seed's Runner gets its own visualizer (a named one would be shared across runs in a process)
visualizer = dict(type='DetLocalVisualizer', vis_backends=vis_backends)
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False

# Runtime shared by every fastload transfer config (MMDetection 3.x style).
default_scope = 'mmdet'
custom_imports = dict(imports=['fastload.mmdet'], allow_failed_imports=False)

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

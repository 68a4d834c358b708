"""VJE on ImageNet-1K (Section 5.2: ResNet-50, 100 epochs, 10 warm-up epochs,
lr 0.05 at batch 256 scaled linearly with the global batch, wd 5e-6, beta 1,
nu 3, blur on, bottleneck 512).

  python train.py --config configs/vje_imagenet.py --workdir gs://bucket/vje_in1k \
      --config.batch_size=1024 --config.model.compute_dtype=bfloat16
  python train.py --config configs/vje_imagenet.py:smoke --workdir /tmp/vje_in1k_smoke

Needs the TFDS ``imagenet2012`` data set prepared offline (``--config.dataset.data_dir=DIR``).
"""

from configs._vje_paper import vje_paper_config


def get_config(variant: str = ""):
  c = vje_paper_config("imagenet2012", "resnet50", "imagenet", 100.0, variant)
  c.optim.warmup_epochs = 10.0
  return c

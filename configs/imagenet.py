"""Every method on ImageNet-1K with the VJE paper's recipe (Section 5.2: ResNet-50,
100 epochs, 10 warm-up epochs, lr 0.05 at batch 256 scaled linearly with the
global batch, wd 5e-6; VJE with beta 1, nu 3, blur on, bottleneck 512),
composed (``configs/_compose.py``):

  python train.py --config configs/imagenet.py:method=vje --workdir /data/workdirs/vje_in1k \
      --config.batch_size=1024 --config.model.compute_dtype=bfloat16
  python train.py --config configs/imagenet.py:method=byol --workdir workdirs/byol_in1k
  python train.py --config configs/imagenet.py:method=vje,variant=smoke --workdir /tmp/vje_in1k_smoke
  python -m gjax.scale.compile --config configs/imagenet.py:method=simclr --topology v5e-256

``method=vje`` should reach 65.6 +- 0.4 % linear top-1 (the paper's Table 1).
Nothing of it has trained here (no ImageNet, no accelerator on these
machines); ``results/tpu_compile.md`` sizes these recipes on TPU slices
(VJE: 34 chip-hours on a v4-8 at batch 256, by the compiler's estimate).
``method=gmje`` is ``configs/gmje_imagenet.py``. Needs the TFDS ``imagenet2012`` data set prepared offline
(``--config.dataset.data_dir=DIR``).
"""

from configs._baselines import baseline_paper_config
from configs._compose import compose
from configs._vje_paper import vje_paper_config


def _imagenet(config):
  config.optim.warmup_epochs = 10.0
  return config


def get_config(spec: str = "method=vje"):
  return compose(
    "imagenet",
    spec,
    lambda method, variant: _imagenet(vje_paper_config("imagenet2012", "resnet50", "imagenet", 100.0, variant, method)),
    lambda method, variant: _imagenet(
      baseline_paper_config(method, "imagenet2012", "resnet50", "imagenet", 100.0, variant)
    ),
  )

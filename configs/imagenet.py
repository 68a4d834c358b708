"""Every method on ImageNet-1K with the VJE paper's recipe (ResNet-50, 100
epochs, 10 warm-up epochs, batch 256), composed (``configs/_compose.py``):

  python train.py --config configs/imagenet.py:method=byol --workdir workdirs/byol_in1k
  python -m gjax.scale.compile --config configs/imagenet.py:method=simclr --topology v5e-256

``method=vje`` and ``method=gmje`` are ``configs/vje_imagenet.py`` and
``configs/gmje_imagenet.py``. Needs the TFDS ``imagenet2012`` data set
prepared offline (``--config.dataset.data_dir=DIR``).
"""

from configs._baselines import baseline_paper_config
from configs._compose import compose
from configs._vje_paper import vje_paper_config


def _imagenet(config):
  config.optim.warmup_epochs = 10.0
  return config


def get_config(spec: str = "method=vje"):
  return compose(
      "imagenet", spec,
      lambda method, variant: _imagenet(vje_paper_config("imagenet2012", "resnet50", "imagenet", 100.0, variant,
                                                         method)),
      lambda method, variant: _imagenet(baseline_paper_config(method, "imagenet2012", "resnet50", "imagenet", 100.0,
                                                              variant)))

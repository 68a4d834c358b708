"""I-JEPA on Fashion-MNIST (CPU-sized): the 4-block ViT ``vit_tiny_cpu`` (width 96,
4 heads, patch 4: 7 x 7 patches), a 2-block predictor of width 48, M = 4
target blocks (3 x 3 patches on this grid, 9 kept each), 13 context patches,
the momentum target from τ = 0.996.

  python train.py --config configs/ijepa_fashion_mnist.py:compare --workdir workdirs/compare/vit_ijepa_adamw
  python train.py --config configs/ijepa_fashion_mnist.py:compare --workdir workdirs/compare/vit_ijepa_mdn \
      --config.ijepa.predictor_loss=mdn --config.ijepa.marginal_weight=1.0 $SGD

The views are I-JEPA's: a random resized crop only (scale 0.3 to 1; no flip,
colour or blur), and only the first view is used. The optimiser is the
paper's AdamW (lr 1e-3 at batch 256, weight decay 0.04 on the matrices only,
not tuned), warm-up 1 epoch, gradients clipped to norm 1: its best measured
setting. ``compare`` (5 epochs, 1170 steps) took 15 min of training here,
alone on 2 cores, and reached k-NN30 76.3 %, linear 78.6 % (eval.py on the
full splits); with gjax's SGD instead (``SGD="--config.optim.optimizer=sgd
--config.optim.base_learning_rate=0.05 --config.optim.weight_decay=5e-6"``,
the first rows' recipe) 65.6 % / 69.8 %, and the mixture predictor with SGD
66.8 % / 73.2 % (results/compare_vit_fashion_mnist). Variants as
``configs/_fashion_mnist.py`` (``compare``: 5 epochs, k-NN after each;
``smoke``: 60 steps on 4096 images).
"""

from configs._fashion_mnist import fashion_mnist_config


def vit_fashion_mnist(c, encoder: str = "vit_tiny_cpu"):
  """The CPU ViT in place of the ResNet (its width is its name's)."""
  c.model.encoder = encoder
  c.model.width_multiplier = 1.0
  return c


def get_config(variant: str = ""):
  c = vit_fashion_mnist(fashion_mnist_config("ijepa", variant))
  c.ijepa.predictor_dim = 48
  c.ijepa.predictor_depth = 2
  c.ijepa.predictor_heads = 4
  c.ijepa.num_components = 4
  c.augment.crop_scale_min = 0.3
  c.augment.flip_prob = (0.0, 0.0)
  c.augment.jitter_prob = (0.0, 0.0)
  c.augment.grayscale_prob = (0.0, 0.0)
  c.augment.blur_prob = (0.0, 0.0)
  c.optim.grad_clip_norm = 1.0
  c.optim.optimizer = "adamw"
  c.optim.base_learning_rate = 1e-3
  c.optim.weight_decay = 0.04
  return c

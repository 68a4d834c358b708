"""MoCo v2 two-view augmentation in pure JAX (runs on the accelerator, under jit).

The pipeline follows MoCo v2 (Chen et al. 2020b), the augmentation the VJE
paper uses, in torchvision's order::

  RandomResizedCrop(S, scale=(0.2, 1.0), ratio=(3/4, 4/3))   bilinear, antialiased
  RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1), p=0.8)        random op order
  RandomGrayscale(p=0.2)
  RandomApply(GaussianBlur(sigma in [0.1, 2.0]), p=0.5)      off at <= 32x32
  RandomHorizontalFlip(p=0.5)
  Normalize(mean, std)

Every example gets its own PRNG key (``jax.random.split`` then ``jax.vmap``);
each example's key is split into a fixed number of sub-keys whatever the
config, so e.g. turning blur off leaves the crop, jitter, grayscale and flip
draws unchanged.

Details and deviations from torchvision:

* Crop: up to 10 (area, log-ratio) draws as in torchvision, the first that fits
  is used, else torchvision's central fallback crop. Crop sizes and offsets are
  continuous (torchvision rounds them to whole pixels). The crop-and-resize is
  one ``jax.image.scale_and_translate`` (separable resampling matrices, no
  gather), so it jits with a static output size and traced crop boxes.
* Colour jitter: torchvision's ``ColorJitter`` semantics on [0, 1] floats,
  with its four ops applied in a random order drawn per example (as
  torchvision does). Factors are uniform in ``[max(0, 1 - s), 1 + s]``
  (hue: ``[-h, h]``, shifting hue in HSV space).
* Grayscale inputs (C=1): brightness and contrast jitter apply as usual;
  saturation, hue and random grayscale are identities (a one-channel image is
  already gray). Their random draws are still made, so keys line up with C=3.
* Blur: separable Gaussian with reflect padding, kernel size
  :func:`blur_kernel_size` (about 10% of the output size, odd, >= 3), sigma
  uniform in ``blur_sigma`` (pixels of the output image).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from gjax.data.datasets import IMAGENET_MEAN, IMAGENET_STD, get_dataset

_NUM_CROP_TRIES = 10
# ITU-R 601-2 luma, as torchvision's rgb_to_grayscale.
_LUMA = (0.299, 0.587, 0.114)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Static, hashable augmentation settings (usable as a jit static argument).

  Defaults are MoCo v2 at ImageNet scale; see :meth:`for_dataset` for presets.
  ``mean``/``std`` have one entry per channel (or one entry for all channels).
  ``eval_crop_fraction`` is the side of the central square kept by
  :func:`eval_preprocess`, relative to the shorter image side (0.875 is the
  usual ImageNet resize-256/crop-224).
  """

  output_size: int = 224
  crop_scale: tuple[float, float] = (0.2, 1.0)
  crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
  flip_prob: float = 0.5
  brightness: float = 0.4
  contrast: float = 0.4
  saturation: float = 0.4
  hue: float = 0.1
  jitter_prob: float = 0.8
  grayscale_prob: float = 0.2
  blur: bool = True
  blur_prob: float = 0.5
  blur_sigma: tuple[float, float] = (0.1, 2.0)
  mean: tuple[float, ...] = IMAGENET_MEAN
  std: tuple[float, ...] = IMAGENET_STD
  eval_crop_fraction: float = 1.0

  def __post_init__(self):
    for name in ("crop_scale", "crop_ratio", "blur_sigma", "mean", "std"):
      object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
    if self.output_size < 1:
      raise ValueError(f"output_size must be >= 1, got {self.output_size}.")
    for name in ("flip_prob", "jitter_prob", "grayscale_prob", "blur_prob"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}.")
    if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
      raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}.")
    if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
      raise ValueError(f"crop_ratio must satisfy 0 < lo <= hi, got {self.crop_ratio}.")
    if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
      raise ValueError(f"blur_sigma must satisfy 0 < lo <= hi, got {self.blur_sigma}.")
    if len(self.mean) != len(self.std) or min(self.std) <= 0:
      raise ValueError(f"mean {self.mean} and std {self.std} must have equal lengths and std > 0.")
    if not 0 < self.eval_crop_fraction <= 1:
      raise ValueError(f"eval_crop_fraction must be in (0, 1], got {self.eval_crop_fraction}.")

  @classmethod
  def for_dataset(cls, name_or_spec, **overrides) -> AugmentConfig:
    """The MoCo v2 views of a data set (a registered name or a
    :class:`gjax.data.datasets.DatasetSpec`): its output size, blur flag,
    mean / std and evaluation crop, then ``overrides``."""
    spec = get_dataset(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    fields = dict(
      output_size=spec.image_size,
      blur=spec.blur,
      mean=spec.mean,
      std=spec.std,
      eval_crop_fraction=spec.eval_crop_fraction,
    )
    fields.update(overrides)
    if not fields["output_size"]:
      raise ValueError(f"data set {spec.name!r} has no fixed image size: pass output_size")
    return cls(**fields)


def blur_kernel_size(image_size: int) -> int:
  """Odd Gaussian-blur kernel size of about 10% of ``image_size`` (at least 3)."""
  return max(3, (image_size // 10) // 2 * 2 + 1)


# ----------------------------------------------------------------------------
# Single-image ops on float32 [H, W, C] in [0, 1].


def _to_gray(image: jax.Array) -> jax.Array:
  """[H, W, 1] luma of an RGB image (identity for one channel)."""
  if image.shape[-1] == 1:
    return image
  return jnp.tensordot(image, jnp.asarray(_LUMA, image.dtype), axes=1)[..., None]


def _crop_box(key: jax.Array, height: int, width: int, config: AugmentConfig):
  """Random-resized-crop box ``(y0, x0, h, w)`` in continuous pixel units."""
  k_area, k_ratio, k_pos = jax.random.split(key, 3)
  area = height * width
  scale = jax.random.uniform(k_area, (_NUM_CROP_TRIES,), minval=config.crop_scale[0], maxval=config.crop_scale[1])
  log_lo, log_hi = math.log(config.crop_ratio[0]), math.log(config.crop_ratio[1])
  ratio = jnp.exp(jax.random.uniform(k_ratio, (_NUM_CROP_TRIES,), minval=log_lo, maxval=log_hi))
  w = jnp.sqrt(area * scale * ratio)
  h = jnp.sqrt(area * scale / ratio)
  fits = (w <= width) & (h <= height)
  first = jnp.argmax(fits)
  # torchvision's fallback: the largest central crop with a ratio in range.
  w_fallback = min(width, height * config.crop_ratio[1])
  h_fallback = min(height, width / config.crop_ratio[0])
  any_fits = jnp.any(fits)
  w = jnp.where(any_fits, w[first], w_fallback)
  h = jnp.where(any_fits, h[first], h_fallback)
  u = jax.random.uniform(k_pos, (2,))
  y0 = u[0] * (height - h)
  x0 = u[1] * (width - w)
  return y0, x0, h, w


def _resample(image: jax.Array, y0, x0, h, w, size: int) -> jax.Array:
  """Bilinear (antialiased) resize of the box ``[y0, y0+h) x [x0, x0+w)`` to size^2."""
  scale = jnp.stack([size / h, size / w]).astype(jnp.float32)
  translation = -jnp.stack([y0, x0]).astype(jnp.float32) * scale
  out_shape = (size, size, image.shape[-1])
  return jax.image.scale_and_translate(image, out_shape, (0, 1), scale, translation, method="linear", antialias=True)


def _adjust_brightness(image, factor):
  return jnp.clip(image * factor, 0.0, 1.0)


def _adjust_contrast(image, factor):
  mean = jnp.mean(_to_gray(image))
  return jnp.clip(factor * image + (1.0 - factor) * mean, 0.0, 1.0)


def _adjust_saturation(image, factor):
  if image.shape[-1] == 1:
    return image
  return jnp.clip(factor * image + (1.0 - factor) * _to_gray(image), 0.0, 1.0)


def _rgb_to_hsv(rgb):
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  maxc = jnp.max(rgb, axis=-1)
  delta = maxc - jnp.min(rgb, axis=-1)
  s = jnp.where(maxc > 0, delta / jnp.where(maxc > 0, maxc, 1.0), 0.0)
  safe = jnp.where(delta > 0, delta, 1.0)
  rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
  h = jnp.where(r == maxc, bc - gc, jnp.where(g == maxc, 2.0 + rc - bc, 4.0 + gc - rc))
  h = jnp.where(delta > 0, jnp.mod(h / 6.0, 1.0), 0.0)
  return h, s, maxc


def _hsv_to_rgb(h, s, v):
  h6 = h * 6.0
  sector = jnp.floor(h6)
  f = h6 - sector
  sector = jnp.mod(sector, 6.0)
  p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))

  def pick(*values):  # value for sectors 0..5, without a gather
    return sum(jnp.where(sector == i, val, 0.0) for i, val in enumerate(values))

  return jnp.stack([pick(v, q, p, p, t, v), pick(t, v, v, q, p, p), pick(p, p, t, v, v, q)], axis=-1)


def _adjust_hue(image, delta):
  if image.shape[-1] == 1:
    return image
  h, s, v = _rgb_to_hsv(image)
  return jnp.clip(_hsv_to_rgb(jnp.mod(h + delta, 1.0), s, v), 0.0, 1.0)


def _color_jitter(key: jax.Array, image: jax.Array, config: AugmentConfig) -> jax.Array:
  """torchvision ``ColorJitter``: the four ops in a random order per example."""
  k_factors, k_order = jax.random.split(key)
  lo = jnp.asarray(
    [max(0.0, 1.0 - config.brightness), max(0.0, 1.0 - config.contrast), max(0.0, 1.0 - config.saturation), -config.hue]
  )
  hi = jnp.asarray([1.0 + config.brightness, 1.0 + config.contrast, 1.0 + config.saturation, config.hue])
  factors = jax.random.uniform(k_factors, (4,), minval=lo, maxval=hi)
  ops = (_adjust_brightness, _adjust_contrast, _adjust_saturation, _adjust_hue)
  branches = [lambda img, i=i, op=op: op(img, factors[i]) for i, op in enumerate(ops)]
  order = jax.random.permutation(k_order, 4)
  # One loop body, not four unrolled copies: under vmap each switch computes all four ops and
  # selects, so unrolling put sixteen ops (four HSV round trips) in the program; the loop
  # compiles them once instead of four times.
  return jax.lax.fori_loop(0, 4, lambda position, img: jax.lax.switch(order[position], branches, img), image)


def _gaussian_blur(key: jax.Array, image: jax.Array, config: AugmentConfig) -> jax.Array:
  """Separable Gaussian blur, random sigma, reflect padding, static kernel size."""
  size = blur_kernel_size(image.shape[0])
  radius = size // 2
  sigma = jax.random.uniform(key, (), minval=config.blur_sigma[0], maxval=config.blur_sigma[1])
  taps = jnp.arange(size, dtype=jnp.float32) - radius
  weights = jnp.exp(-0.5 * jnp.square(taps / sigma))
  weights = weights / jnp.sum(weights)
  height, width = image.shape[:2]
  padded = jnp.pad(image, ((radius, radius), (0, 0), (0, 0)), mode="reflect")
  image = sum(weights[t] * padded[t : t + height] for t in range(size))
  padded = jnp.pad(image, ((0, 0), (radius, radius), (0, 0)), mode="reflect")
  return sum(weights[t] * padded[:, t : t + width] for t in range(size))


def _augment_one(key: jax.Array, image: jax.Array, config: AugmentConfig) -> jax.Array:
  """One MoCo v2 view of one float image in [0, 1]; returns [S, S, C] in [0, 1]."""
  (k_crop, k_jitter_on, k_jitter, k_gray_on, k_blur_on, k_blur, k_flip) = jax.random.split(key, 7)
  height, width, channels = image.shape
  box = _crop_box(k_crop, height, width, config)
  image = jnp.clip(_resample(image, *box, config.output_size), 0.0, 1.0)

  jittered = _color_jitter(k_jitter, image, config)
  image = jnp.where(jax.random.bernoulli(k_jitter_on, config.jitter_prob), jittered, image)

  gray_on = jax.random.bernoulli(k_gray_on, config.grayscale_prob)
  if channels > 1:
    image = jnp.where(gray_on, jnp.broadcast_to(_to_gray(image), image.shape), image)

  blur_on = jax.random.bernoulli(k_blur_on, config.blur_prob)
  if config.blur:
    image = jnp.where(blur_on, _gaussian_blur(k_blur, image, config), image)

  flip_on = jax.random.bernoulli(k_flip, config.flip_prob)
  return jnp.where(flip_on, image[:, ::-1], image)


# ----------------------------------------------------------------------------
# Batched public API. Inputs are uint8 [B, H, W, C].


def _to_unit_float(images) -> jax.Array:
  images = jnp.asarray(images)
  if images.ndim != 4:
    raise ValueError(f"images must be [B, H, W, C], got shape {images.shape}.")
  return images.astype(jnp.float32) / 255.0


def normalize(images: jax.Array, config: AugmentConfig) -> jax.Array:
  """``(images - mean) / std`` per channel, for float images in [0, 1]."""
  channels = images.shape[-1]
  if len(config.mean) not in (1, channels):
    raise ValueError(f"config.mean has {len(config.mean)} entries for {channels}-channel images.")
  mean = jnp.asarray(config.mean, images.dtype)
  std = jnp.asarray(config.std, images.dtype)
  return (images - mean) / std


def augment_batch(rng: jax.Array, images, config: AugmentConfig, normalize_output: bool = True) -> jax.Array:
  """One random MoCo v2 view per example.

  Args:
    rng: a PRNG key; example ``i`` uses ``jax.random.split(rng, B)[i]``.
    images: uint8 ``[B, H, W, C]`` (C = 1 or 3).
    config: static augmentation settings.
    normalize_output: if False, return the view in [0, 1] before the mean/std
      normalisation (for inspection and tests).

  Returns:
    float32 ``[B, S, S, C]`` with ``S = config.output_size``.
  """
  x = _to_unit_float(images)
  return _augment_examples(jax.random.split(rng, x.shape[0]), x, config, normalize_output)


def _augment_examples(keys: jax.Array, x: jax.Array, config: AugmentConfig, normalize_output: bool) -> jax.Array:
  """Example ``i`` of the float images ``x`` augmented with ``keys[i]``."""
  views = jax.vmap(_augment_one, in_axes=(0, 0, None))(keys, x, config)
  return normalize(views, config) if normalize_output else views


def two_views(
  rng: jax.Array, images, config: AugmentConfig | tuple[AugmentConfig, AugmentConfig], normalize_output: bool = True
) -> tuple[jax.Array, jax.Array]:
  """Two independent views of each example (keys ``jax.random.split(rng)``);
  ``config`` is one augmentation for both or a pair, one per view (BYOL's
  asymmetric views)."""
  config_1, config_2 = (config, config) if isinstance(config, AugmentConfig) else config
  k1, k2 = jax.random.split(rng)
  if config_1 != config_2:
    return (
      augment_batch(k1, images, config_1, normalize_output),
      augment_batch(k2, images, config_2, normalize_output),
    )
  # The same settings for both views: the augmentation vmapped over the two views' keys
  # (``jax.random.split(k1 or k2, B)[i]`` for example i), so the program holds one copy of it.
  x = _to_unit_float(images)
  keys = jnp.stack([jax.random.split(k1, x.shape[0]), jax.random.split(k2, x.shape[0])])
  views = jax.vmap(lambda view_keys: _augment_examples(view_keys, x, config_1, normalize_output))(keys)
  return views[0], views[1]


def eval_preprocess(images, config: AugmentConfig, normalize_output: bool = True) -> jax.Array:
  """Deterministic evaluation view: central square, resize, normalise.

  Keeps the central square of side ``eval_crop_fraction * min(H, W)`` and
  resizes it (bilinear, antialiased) to ``output_size``; an image that already
  has the output size with ``eval_crop_fraction == 1`` is only normalised.
  """
  x = _to_unit_float(images)
  height, width = x.shape[1:3]
  size = config.output_size
  side = config.eval_crop_fraction * min(height, width)
  if not (height == width == size and config.eval_crop_fraction == 1.0):
    y0, x0 = (height - side) / 2, (width - side) / 2
    x = jax.vmap(lambda im: _resample(im, y0, x0, side, side, size))(x)
    x = jnp.clip(x, 0.0, 1.0)
  return normalize(x, config) if normalize_output else x

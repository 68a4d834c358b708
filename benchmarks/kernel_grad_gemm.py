"""A 3x3 convolution's kernel gradient three ways, timed in one process: XLA's
own (``jax.vjp`` of ``lax.conv_general_dilated``), nine GEMMs over shifted
slices of the padded input, and one GEMM over ``conv_general_dilated_patches``;
each checked against XLA's result. The issue's "kernel gradient as GEMMs" idea.

  python benchmarks/kernel_grad_gemm.py
  GJAX_XLA_CPU_DEFAULTS=0 python benchmarks/kernel_grad_gemm.py   # XLA's default convolution path
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import gjax  # noqa: F401  (applies the XLA CPU flag)


def conv(x, w):
  return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def xla_kgrad(x, w, g):
  _, vjp = jax.vjp(lambda w: conv(x, w), w)
  return vjp(g)[0]


def gemm_kgrad(x, w, g):
  kh, kw, ci, co = w.shape
  n, h, wd, _ = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  g2 = g.reshape(-1, co)
  out = [
    jnp.einsum("mc,md->cd", xp[:, i : i + h, j : j + wd, :].reshape(-1, ci), g2) for i in range(kh) for j in range(kw)
  ]
  return jnp.stack(out).reshape(kh, kw, ci, co)


def patches_kgrad(x, w, g):
  kh, kw, ci, co = w.shape
  p = lax.conv_general_dilated_patches(
    x, (kh, kw), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
  )  # (n,h,w, ci*kh*kw) ordered (ci, kh, kw)
  r = jnp.einsum("nhwk,nhwd->kd", p, g)
  return r.reshape(ci, kh, kw, co).transpose(1, 2, 0, 3)


for shape in [(128, 32, 32, 16), (128, 16, 16, 32), (128, 32, 32, 64)]:
  n, h, wd, c = shape
  x = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
  w = jnp.asarray(np.random.default_rng(1).normal(size=(3, 3, c, c)), jnp.float32)
  g = jnp.asarray(np.random.default_rng(2).normal(size=shape), jnp.float32)
  fs = {k: jax.jit(f) for k, f in (("xla", xla_kgrad), ("gemm9", gemm_kgrad), ("patches", patches_kgrad))}
  ref = fs["xla"](x, w, g)
  res = {}
  for k, f in fs.items():
    out = f(x, w, g).block_until_ready()
    err = float(jnp.abs(out - ref).max() / jnp.abs(ref).max())
    ts = []
    for _ in range(7):
      t = time.perf_counter()
      f(x, w, g).block_until_ready()
      ts.append(time.perf_counter() - t)
    res[k] = (1e3 * statistics.median(ts), err)
  print(shape, {k: f"{v[0]:.1f}ms err {v[1]:.1e}" for k, v in res.items()})

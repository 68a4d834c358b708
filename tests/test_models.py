"""Tests for gjax.models: ResNet encoders and heads (tiny widths, small inputs).

Keys use the "rbg" PRNG: on CPU, compiling threefry sampling for every distinct
parameter shape dominates the runtime of these tests; the models do not care.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gjax.models import (
  MLP,
  BasicBlock,
  Bottleneck,
  GaussianPosteriorNetwork,
  Projector,
  build_encoder,
  embedding_dim,
  get_activation,
)

TINY = 0.125


def _key(seed=0):
  return jax.random.key(seed, impl="rbg")


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def _flat(tree):
  return flax.traverse_util.flatten_dict(tree)


def _images(batch=4, size=16, seed=0):
  return jax.random.normal(_key(seed), (batch, size, size, 3))


def _init_shapes(model, x):
  return jax.eval_shape(lambda: model.init(_key(0), x, train=False))


@pytest.fixture(scope="module")
def tiny18():
  model = build_encoder("resnet18", "cifar", TINY)
  variables = model.init(_key(0), _images(), train=False)
  return model, variables


# ---------------------------------------------------------------- encoders


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
def test_output_shape_and_embedding_dim(name, stem):
  model = build_encoder(name, stem, TINY)
  x = jnp.zeros((2, 32, 32, 3))
  variables = _init_shapes(model, x)
  out = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  expected = {"resnet18": 64, "resnet34": 64, "resnet50": 256}[name]
  assert embedding_dim(name, TINY) == expected
  assert out.shape == (2, expected) and out.dtype == jnp.float32


def test_embedding_dim_full_width():
  assert embedding_dim("resnet18", 1.0) == 512
  assert embedding_dim("resnet34", 1.0) == 512
  assert embedding_dim("resnet50", 1.0) == 2048
  assert embedding_dim("resnet18", 0.25) == 128
  assert embedding_dim("resnet18", 1e-4) == 1  # widths are at least 1


def test_real_forward_matches_declared_dim(tiny18):
  model, variables = tiny18
  z = model.apply(variables, _images(), train=False)
  assert z.shape == (4, embedding_dim("resnet18", TINY))
  assert bool(jnp.all(jnp.isfinite(z)))


@pytest.mark.parametrize(
  "name,stem,expected",
  [
    ("resnet18", "cifar", 11_168_832),  # torchvision 11,689,512 - fc - 7x7 stem
    ("resnet50", "imagenet", 23_508_032),  # torchvision 25,557,032 - fc
    ("resnet34", "imagenet", 21_284_672),  # torchvision 21,797,672 - fc
  ],
)
def test_parameter_counts_match_torchvision(name, stem, expected):
  variables = _init_shapes(build_encoder(name, stem, 1.0), jnp.zeros((1, 64, 64, 3)))
  assert _count(variables["params"]) == expected


def test_last_bn_of_every_block_has_zero_scale(tiny18):
  params = tiny18[1]["params"]
  blocks = [k for k in params if k.startswith("layer")]
  assert len(blocks) == 8
  for block in blocks:
    assert not np.any(params[block]["bn2"]["scale"]), block
    assert np.all(params[block]["bn1"]["scale"] == 1.0), block


def test_resnet50_last_bn_scale_initialisers():
  # Trace-only (no parameter values): record every BatchNorm's scale_init.
  scale_inits = {}

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, flax.linen.BatchNorm):
      scale_inits[context.module.scope.path] = context.module.scale_init
    return next_fun(*args, **kwargs)

  with flax.linen.intercept_methods(record):
    _init_shapes(build_encoder("resnet50", "imagenet", TINY), jnp.zeros((1, 32, 32, 3)))
  zero = {p for p, f in scale_inits.items() if f is flax.linen.initializers.zeros}
  assert zero == {p for p in scale_inits if p[-1] == "bn3"}
  assert len(zero) == 16


@pytest.mark.parametrize("block_cls,features", [(BasicBlock, 8), (Bottleneck, 2)])
def test_fresh_residual_block_is_identity_on_shortcut(block_cls, features):
  x = jax.random.normal(_key(2), (2, 8, 8, 8))
  block = block_cls(features=features, strides=1)
  variables = block.init(_key(1), x, train=False)
  assert "downsample_conv" not in variables["params"]  # identity shortcut
  out = block.apply(variables, x, train=False)
  np.testing.assert_allclose(out, jax.nn.relu(x), atol=1e-6)


def test_no_conv_kernel_before_bn_has_a_bias():
  for name in ("resnet18", "resnet50"):
    params = _init_shapes(build_encoder(name, "imagenet", TINY), jnp.zeros((1, 32, 32, 3)))["params"]
    paths = list(_flat(params))
    convs = {p[:-1] for p in paths if p[-1] == "kernel"}
    assert convs and all("conv" in p[-1] for p in convs)
    assert not [p for p in paths if p[-1] == "bias" and p[:-1] in convs]


def test_train_updates_batch_stats_eval_does_not(tiny18):
  model, variables = tiny18
  x = _images(seed=3)
  _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
  changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"], updates["batch_stats"])
  assert all(jax.tree_util.tree_leaves(changed))

  z1, same = model.apply(variables, x, train=False, mutable=["batch_stats"])
  z2 = model.apply(variables, x, train=False)
  np.testing.assert_array_equal(z1, z2)
  jax.tree_util.tree_map(np.testing.assert_array_equal, variables["batch_stats"], same["batch_stats"])


def test_batchnorm_statistics_are_global_over_sharded_batch(tiny18):
  model, variables = tiny18
  devices = jax.devices()
  assert len(devices) == 8
  x = _images(batch=8, seed=4)

  def step(v, images):
    return model.apply(v, images, train=True, mutable=["batch_stats"])

  single = jax.jit(step)(jax.device_put(variables, devices[0]), jax.device_put(x, devices[0]))

  mesh = Mesh(np.array(devices), ("data",))
  x_sharded = jax.device_put(x, NamedSharding(mesh, P("data")))
  v_replicated = jax.device_put(variables, NamedSharding(mesh, P()))
  sharded = jax.jit(step)(v_replicated, x_sharded)
  assert len(sharded[0].sharding.device_set) == 8

  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), single, sharded)

  # Per-shard (local) statistics would differ: the check above is meaningful.
  _, local = step(variables, x[:1])
  assert not np.allclose(local["batch_stats"]["bn1"]["mean"], single[1]["batch_stats"]["bn1"]["mean"], atol=1e-5)


def test_bfloat16_compute_float32_params_and_output(tiny18):
  model = build_encoder("resnet18", "cifar", TINY, dtype=jnp.bfloat16)
  x = _images()
  shapes = _init_shapes(model, x)
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(shapes))
  variables = tiny18[1]  # same parameter tree as the float32 model
  for train in (True, False):
    z, _ = model.apply(variables, x, train=train, mutable=["batch_stats"])
    assert z.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(z)))
  z32 = tiny18[0].apply(variables, x, train=False)
  np.testing.assert_allclose(z, z32, rtol=0.1, atol=0.1)


def test_bad_encoder_names_raise():
  with pytest.raises(ValueError, match="resnet101.*resnet18"):
    build_encoder("resnet101", "cifar", 1.0)
  with pytest.raises(ValueError, match="'tiny'.*imagenet"):
    build_encoder("resnet18", "tiny", 1.0)
  with pytest.raises(ValueError, match="vit"):
    embedding_dim("vit", 1.0)
  with pytest.raises(ValueError, match="width_multiplier"):
    build_encoder("resnet18", "cifar", 0.0)


# ------------------------------------------------------------------- heads


def test_inference_network_shapes_and_layernorm():
  net = GaussianPosteriorNetwork(latent_dim=16, bottleneck=8)
  z = jax.random.normal(_key(0), (4, 16))
  variables = net.init(_key(1), z)
  assert set(variables) == {"params"}  # no batch statistics anywhere
  out = net.apply(variables, z)
  assert set(out) == {"mu", "var", "var_raw"}
  for value in out.values():
    assert value.shape == (4, 16) and value.dtype == jnp.float32
  assert bool(jnp.all(out["var"] >= 1e-6))

  trunk = variables["params"]["trunk"]
  assert [trunk[f"dense{i}"]["kernel"].shape[1] for i in range(3)] == [8, 8, 16]
  for i in range(3):
    assert set(trunk[f"norm{i}"]) == {"scale", "bias"}  # LayerNorm per layer
  assert variables["params"]["mu_head"]["kernel"].shape == (16, 16)
  assert variables["params"]["var_head"]["kernel"].shape == (16, 16)


@pytest.mark.parametrize("raw", [-1e4, 0.0, 1e4])
def test_inference_network_variance_floor_and_finite(raw):
  net = GaussianPosteriorNetwork(latent_dim=4, bottleneck=8, activation="gelu")
  z = jnp.ones((2, 4))
  params = net.init(_key(0), z)["params"]
  params["var_head"] = {"kernel": jnp.zeros((4, 4)), "bias": jnp.full((4,), raw)}
  out = net.apply({"params": params}, z)
  np.testing.assert_allclose(out["var_raw"], raw)
  assert bool(jnp.all(jnp.isfinite(out["var"])))
  assert bool(jnp.all(out["var"] >= 1e-6))


def test_inference_network_bfloat16_outputs_float32():
  net = GaussianPosteriorNetwork(latent_dim=8, bottleneck=4, dtype=jnp.bfloat16)
  z = jnp.ones((2, 8))
  out = net.apply(net.init(_key(0), z), z)
  assert all(v.dtype == jnp.float32 for v in out.values())
  assert all(bool(jnp.all(jnp.isfinite(v))) for v in out.values())


def test_projector_shapes_and_layernorm():
  proj = Projector(hidden_dim=12, out_dim=6)
  x = jnp.ones((3, 5))
  variables = proj.init(_key(0), x)
  params = variables["params"]["mlp"]
  assert set(params) == {"dense0", "norm0", "dense1"}
  assert set(params["norm0"]) == {"scale", "bias"}
  assert proj.apply(variables, x).shape == (3, 6)
  default = jax.eval_shape(lambda: Projector().init(_key(0), x))
  assert default["params"]["mlp"]["dense1"]["kernel"].shape == (2048, 2048)


def test_mlp_batchnorm_variant():
  # SimSiam-style projector: BN after every layer, last BN without affine.
  mlp = MLP((8, 8, 4), norm="batch", norm_last=True, last_norm_affine=False)
  x = jax.random.normal(_key(0), (6, 5))
  variables = mlp.init(_key(1), x, train=False)
  params = variables["params"]
  assert all("bias" not in params[f"dense{i}"] for i in range(3))
  assert "norm2" not in params and "norm2" in variables["batch_stats"]
  y, updates = mlp.apply(variables, x, train=True, mutable=["batch_stats"])
  assert y.shape == (6, 4)
  np.testing.assert_allclose(jnp.mean(y, axis=0), 0.0, atol=1e-5)
  assert set(updates["batch_stats"]) == {"norm0", "norm1", "norm2"}

  plain = MLP((8, 3), norm="none")
  params = plain.init(_key(0), x, train=False)["params"]
  assert set(params) == {"dense0", "dense1"} and "bias" in params["dense0"]


def test_bad_head_names_raise():
  with pytest.raises(ValueError, match="'swishy'.*relu"):
    get_activation("swishy")
  assert get_activation(jnp.tanh) is jnp.tanh
  x = jnp.ones((2, 3))
  with pytest.raises(ValueError, match="'group'.*batch"):
    MLP((4,), norm="group").init(_key(0), x, train=False)
  with pytest.raises(ValueError, match="'mish'"):
    GaussianPosteriorNetwork(latent_dim=3, bottleneck=4, activation="mish").init(_key(0), x)

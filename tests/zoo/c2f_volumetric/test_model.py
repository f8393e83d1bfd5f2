"""Tests for zoo/c2f_volumetric/model.py and its registration and presets."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo import base
from zoo import registry
from zoo import skeleton as skel
from zoo.c2f_volumetric import C2FConfig
from zoo.c2f_volumetric import config as config_lib

VARIANTS = ('c2f_volumetric', 'volumetric_stacked', 'coordinate_regression',
            'decoupled_volumetric')


def _build(name, preset='smoke', **overrides):
  entry = registry.get(name)
  model = entry.build(entry.config(preset, **overrides))
  model.build()
  return model


def _dataset(model, features_fn, n=4, seed=0):
  f = features_fn(n, model.config.input_size, seed=seed)
  return tf.data.Dataset.from_tensor_slices(f).batch(2).map(model.targets)


def _expected_shapes(name, cfg, batch):
  h = cfg.heatmap_size
  if name == 'coordinate_regression':
    return {'coords_norm': (batch, 17, 3)}
  return {f'volume_{i}': (batch, h, h, d, 17)
          for i, d in enumerate(cfg.depth_schedule)}


def test_registered_with_presets():
  for name in VARIANTS:
    entry = registry.get(name)
    assert entry.config_class is C2FConfig
    assert set(entry.presets) >= {'paper', 'cpu', 'smoke'}
  paper = registry.get('c2f_volumetric').config('paper')
  assert (paper.input_size, paper.heatmap_size,
          paper.num_features) == (256, 64, 256)
  assert paper.depth_schedule == (1, 2, 4, 64) and paper.hourglass_depth == 4
  assert (paper.train.optimizer, paper.train.learning_rate,
          paper.train.batch_size) == ('rmsprop', 2.5e-4, 4)
  naive = registry.get('volumetric_stacked').config('paper')
  assert naive.depth_schedule == (64,) * 4
  cpu = registry.get('volumetric_stacked').config('cpu')
  assert cpu.depth_schedule == (16, 16) and cpu.input_size == 64
  c2f_cpu = registry.get('c2f_volumetric').config('cpu')
  assert c2f_cpu.depth_schedule == (1, 16)
  # The lift preset keeps the 32 bins its bundled checkpoint was trained at.
  lift = registry.get('decoupled_volumetric').config('lift')
  assert lift.depth_schedule == (1, 32)
  # The paper evaluates with the flip test; the cpu preset adds appearance
  # augmentation against over-fitting the five training subjects.
  assert paper.flip_test and c2f_cpu.flip_test
  assert paper.augment.color_permute_prob == paper.augment.occlusion_prob == 0
  assert (c2f_cpu.augment.color_permute_prob, c2f_cpu.augment.grayscale_prob,
          c2f_cpu.augment.occlusion_prob) == (1., 0.1, 0.3)
  assert (c2f_cpu.augment.hue_delta,
          tuple(c2f_cpu.augment.saturation_range)) == (0.5, (0.6, 1.4))
  assert paper.augment.hue_delta == 0


def test_paper_presets_build_with_output_shapes():
  """Weights are created from the config alone (deferred initialisation)."""
  params = {}
  for name in VARIANTS:
    entry = registry.get(name)
    cfg = entry.config('paper')
    model = entry.build(cfg)
    with keras.StatelessScope():
      model.build({'image': (None, 256, 256, 3), 'intrinsics': (None, 3, 3)})
    assert model.compute_output_shape({'image': (1, 256, 256, 3)}) == \
        _expected_shapes(name, cfg, 1)
    params[name] = model.count_params()
    print(f'{name} paper preset: {params[name]:,} parameters')
  # A 4-stack, 256-wide hourglass network has ~13 M parameters (Newell's
  # 8-stack one ~26 M); heads grow with d, so naive stacking is largest.
  assert 10e6 < params['c2f_volumetric'] < 16e6
  assert params['volumetric_stacked'] > params['c2f_volumetric']
  # The paper: c2f with two hourglasses uses less than half the parameters
  # of four naively stacked ones.
  two = registry.get('c2f_volumetric').build(
      registry.get('c2f_volumetric').config(
          'paper', num_stacks=2, depth_schedule=(1, 64)))
  with keras.StatelessScope():
    two.build()
  assert two.count_params() < 0.5 * params['volumetric_stacked']


@pytest.mark.parametrize('name', VARIANTS)
def test_smoke_forward_shapes_and_stable_names(name):
  keras.utils.set_random_seed(0)
  model = _build(name)
  cfg = model.config
  s = cfg.input_size
  out = model({'image': tf.zeros([1, s, s, 3]),
               'intrinsics': tf.eye(3, batch_shape=[1])}, training=False)
  assert {k: tuple(v.shape) for k, v in out.items()} == \
      _expected_shapes(name, cfg, 1)
  assert all(v.dtype == tf.float32 for v in out.values())
  assert model.get_layer('stem') is model.stem
  assert model.get_layer('hourglass_0') is model.hourglasses[0]
  # Freezing the backbone leaves the last stack (or the head) trainable.
  n_all = len(model.trainable_weights)
  for layer in model.backbone:
    layer.trainable = False
  assert 0 < len(model.trainable_weights) < n_all


def test_smoke_fit_graph_mode(features_fn):
  """One compiled model.fit (the trainer's path); the loss goes down."""
  keras.utils.set_random_seed(0)
  model = _build('c2f_volumetric')
  model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
  model.optimizer.build(model.trainable_variables)
  history = model.fit(_dataset(model, features_fn), epochs=2, verbose=0,
                      shuffle=False)
  losses = history.history['loss']
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_smoke_fit_network2_mocap_keeps_network1_frozen(features_fn):
  """One eager step of decoupled_volumetric's mocap mode. (The joint mode
  of every variant takes an eager fit step, with finite loss and poses, in
  tests/zoo/test_contract.py; the graph path is covered above.)"""
  name, mode = 'decoupled_volumetric', 'network2_mocap'
  keras.utils.set_random_seed(0)
  model = _build(name, train_mode=mode)
  ds = _dataset(model, features_fn, n=2)
  model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
  frozen = [w.numpy() for w in model.stem.weights]
  history = model.fit(ds, epochs=1, verbose=0, shuffle=False)
  assert np.all(np.isfinite(history.history['loss']))
  poses = model.predict_poses(next(iter(ds))[0])
  assert set(poses) == set(base.OUTPUT_KEYS)
  assert all(np.all(np.isfinite(v.numpy())) for v in poses.values())
  # Network 1 gets no loss and stays frozen; network 2 learns.
  assert all(np.array_equal(a, w.numpy())
             for a, w in zip(frozen, model.stem.weights))
  assert 'heatmaps2d_input' in next(iter(ds))[0]


def test_loss_is_the_sum_of_per_stack_mses(features_fn):
  from zoo import heatmaps
  from zoo.c2f_volumetric import targets as targets_lib
  keras.utils.set_random_seed(0)
  model = _build('c2f_volumetric')
  cfg = model.config
  x, y = model.targets(features_fn(2, cfg.input_size, seed=3))
  y_pred = model(x, training=False)
  loss = model.compute_loss(x, y, y_pred).numpy()
  expected = 0.
  for i, d in enumerate(cfg.depth_schedule):  # materialised Gaussians
    z = targets_lib.rescale_depth_index(y['joints_vox'][..., 2],
                                        cfg.num_depth_bins, d)
    centers = tf.concat([y['joints_vox'][..., :2], z[..., None]], -1)
    target = heatmaps.gaussian_volume(centers, 16, 16, d, cfg.sigma,
                                      cfg.sigma_z(d))
    valid = (y['valid_2d'] if d == 1 else y['valid_3d'])[:, None, None, None]
    expected += np.mean((y_pred[f'volume_{i}'] - target) ** 2 * valid)
  np.testing.assert_allclose(loss, expected, rtol=1e-4)
  assert cfg.sigma_z(1) == cfg.sigma_z_coarse and cfg.sigma_z(8) == cfg.sigma


@pytest.mark.parametrize('heatmap_w,integral_w', [(0.5, 2.), (0., 1.)])
def test_loss_weights_mix_the_mse_and_integral_terms(features_fn, heatmap_w,
                                                     integral_w):
  from zoo import heatmaps
  from zoo.c2f_volumetric import targets as targets_lib
  keras.utils.set_random_seed(0)
  model = _build('c2f_volumetric', heatmap_loss_weight=heatmap_w,
                 integral_loss_weight=integral_w)
  cfg = model.config
  x, y = model.targets(features_fn(2, cfg.input_size, seed=5))
  y_pred = model(x, training=False)
  loss = model.compute_loss(x, y, y_pred).numpy()
  expected = 0.
  for i, d in enumerate(cfg.depth_schedule):
    z = targets_lib.rescale_depth_index(y['joints_vox'][..., 2],
                                        cfg.num_depth_bins, d)
    centers = tf.concat([y['joints_vox'][..., :2], z[..., None]], -1)
    target = heatmaps.gaussian_volume(centers, 16, 16, d, cfg.sigma,
                                      cfg.sigma_z(d))
    valid = (y['valid_2d'] if d == 1 else y['valid_3d']).numpy()
    mse = np.mean((y_pred[f'volume_{i}'] - target) ** 2
                  * valid[:, None, None, None])
    # Integral term by numpy: softmax over each joint's voxels, expected
    # voxel vs target, L1 over the volume's extent (x, y; z if d > 1).
    v = cfg.integral_beta * y_pred[f'volume_{i}'].numpy()
    p = np.exp(v - v.max(axis=(1, 2, 3), keepdims=True))
    p /= p.sum(axis=(1, 2, 3), keepdims=True)
    ex = (p.sum(axis=(1, 3)) * np.arange(16)[None, :, None]).sum(1)
    ey = (p.sum(axis=(2, 3)) * np.arange(16)[None, :, None]).sum(1)
    ez = (p.sum(axis=(1, 2)) * np.arange(d)[None, :, None]).sum(1)
    c = centers.numpy()
    l1 = (np.abs(ex - c[..., 0]) / 16 + np.abs(ey - c[..., 1]) / 16
          ) * y['valid_2d'].numpy()
    if d > 1:
      l1 += np.abs(ez - c[..., 2]) / d * valid
    expected += heatmap_w * mse + integral_w * l1.mean()
  np.testing.assert_allclose(loss, expected, rtol=1e-4)


def test_heatmap_flip_test_is_mirror_consistent(features_fn):
  """Flip-averaged predictions of a mirrored crop are the mirrored ones."""
  keras.utils.set_random_seed(0)
  model = _build('c2f_volumetric')
  f = features_fn(2, 64, seed=7)
  inputs = {'image': tf.constant(f['image']),
            'intrinsics': tf.constant(f['intrinsics'])}
  poses = model.predict_poses(inputs, flip_test=True)
  mirrored = model.predict_poses(base.flip_inputs(inputs), flip_test=True)
  back = base.unflip_poses(mirrored, image_width=64)
  np.testing.assert_allclose(back['poses2d_px'].numpy(),
                             poses['poses2d_px'].numpy(), atol=1e-3)
  np.testing.assert_allclose(back['confidence'].numpy(),
                             poses['confidence'].numpy(), atol=1e-5)
  np.testing.assert_allclose(back['poses3d_rel_mm'].numpy(),
                             poses['poses3d_rel_mm'].numpy(), atol=1.)
  plain = model.predict_poses(inputs)
  assert not np.allclose(plain['confidence'].numpy(),
                         poses['confidence'].numpy())


def test_invalid_configs_are_named():
  entry = registry.get('c2f_volumetric')
  with pytest.raises(ValueError, match='heatmap_size'):
    entry.build(entry.config('smoke', input_size=128))
  with pytest.raises(ValueError, match='depth_schedule'):
    entry.build(entry.config('smoke', num_stacks=3))
  with pytest.raises(ValueError, match='network 1'):
    registry.get('decoupled_volumetric').build(
        entry.config('smoke', depth_schedule=(2, 8)))
  with pytest.raises(ValueError, match='decoding'):
    config_lib.validate(entry.config('smoke', decoding='mean'))
  with pytest.raises(ValueError, match='nothing is trained'):
    config_lib.validate(entry.config('smoke', heatmap_loss_weight=0.,
                                     integral_loss_weight=0.))
  with pytest.raises(KeyError, match='presets'):
    entry.config('large')


def test_flip_permutation_swaps_sides():
  # The heatmap flip relies on the skeleton's permutation being an involution.
  perm = skel.FLIP_PERMUTATION
  np.testing.assert_array_equal(perm[perm], np.arange(17))

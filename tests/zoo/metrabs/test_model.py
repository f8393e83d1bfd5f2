"""Tests for zoo/metrabs/model.py: decoding, the paper build, training, weights."""
import numpy as np
import pytest
import tensorflow as tf
import keras

from zoo import config as config_lib
from zoo import geometry
from zoo import registry
from zoo import skeleton as skel
from zoo.metrabs import Metrabs
from zoo.metrabs import presets as presets_lib

J = skel.NUM_JOINTS


def _smoke(**overrides):
  return config_lib.replace(presets_lib.PRESETS['smoke'], **overrides)


def _planted_logits(cells_xyz, height, width, depth, peak=60.):
  """One-hot-ish logits: joint j peaks at cell cells_xyz[j] = (x, y, z)."""
  logits3d = np.zeros((1, height, width, depth, J), np.float32)
  logits2d = np.zeros((1, height, width, J), np.float32)
  for j, (x, y, z) in enumerate(cells_xyz):
    logits3d[0, y, x, z, j] = peak
    logits2d[0, y, x, j] = peak
  return {'logits2d': tf.constant(logits2d), 'logits3d': tf.constant(logits3d)}


def test_decode_planted_peaks_in_mm_and_px():
  config = _smoke()
  model = Metrabs(config)
  size, box = config.input_size, config.box_size_mm
  h = config.heatmap_size
  d = config.depth_bins
  stride = size // h
  rng = np.random.default_rng(0)
  cells = np.stack([rng.integers(0, h, J), rng.integers(0, h, J),
                    rng.integers(0, d, J)], -1)
  # A common z bin, and intrinsics under which the planted 2D cells are the
  # exact projections of the planted 3D cells at depth 5000 mm + z.
  cells[:, 2] = 1
  # Independent expectations: a 2D cell covers pixels [s c, s c + s - 1], its
  # centre is their mean; x/y bins split the cube side into h bins (centres),
  # z bins are D samples from -box/2 to box/2.
  px = np.array([np.arange(stride * c, stride * c + stride).mean()
                 for c in range(h)])
  edges = np.linspace(-box / 2, box / 2, h + 1)
  xy_mm = (edges[:-1] + edges[1:]) / 2
  z_mm = np.linspace(-box / 2, box / 2, d)
  want2d = np.stack([px[cells[:, 0]], px[cells[:, 1]]], -1)
  want3d = np.stack([xy_mm[cells[:, 0]], xy_mm[cells[:, 1]],
                     z_mm[cells[:, 2]]], -1)
  depth = 5000. + z_mm[1]
  focal = depth * size / box
  k = np.array([[[focal, 0., (size - 1) / 2], [0., focal, (size - 1) / 2],
                 [0., 0., 1.]]], np.float32)
  assert np.allclose(geometry.project(want3d + [0., 0., 5000.], k[0]), want2d,
                     atol=1e-3)  # the construction is consistent

  poses = model.decode(_planted_logits(cells, h, h, d), {'intrinsics': k})
  np.testing.assert_allclose(poses['poses2d_px'][0], want2d, atol=1e-3)
  np.testing.assert_allclose(poses['poses3d_rel_mm'][0],
                             want3d - want3d[skel.ROOT], atol=1e-2)
  np.testing.assert_allclose(poses['poses3d_cam_mm'][0],
                             want3d + [0., 0., 5000.], rtol=2e-3, atol=1.)
  np.testing.assert_allclose(poses['confidence'][0], 1., atol=1e-4)
  for key, shape in (('poses3d_rel_mm', (1, J, 3)), ('poses3d_cam_mm',
                     (1, J, 3)), ('poses2d_px', (1, J, 2)),
                     ('confidence', (1, J))):
    assert poses[key].shape == shape and poses[key].dtype == tf.float32


def test_confidence_of_uniform_heatmap_is_best_window_share():
  logits = tf.zeros([2, 4, 4, J])
  np.testing.assert_allclose(Metrabs.confidence(logits), 9. / 16., atol=1e-6)


def test_paper_preset_builds_with_paper_shapes():
  entry = registry.get('metrabs')
  config = entry.config('paper')
  assert (config.backbone, config.input_size, config.depth_bins,
          config.box_size_mm, config.train.batch_size,
          config.train.optimizer) == ('resnet50v2', 256, 8, 2200., 32, 'adamw')
  model = entry.build(config)
  assert model.backbone_model.output_shape == (None, 8, 8, 2048)
  head = model.get_layer('heatmap_head')
  assert head.kernel.shape == (1, 1, 2048, J * 9)
  inputs = {'image': tf.random.uniform([1, 256, 256, 3]),
            'intrinsics': tf.constant([[[300., 0., 127.5], [0., 300., 127.5],
                                        [0., 0., 1.]]])}
  out = model(inputs, training=False)
  assert out['logits2d'].shape == (1, 8, 8, J)
  assert out['logits3d'].shape == (1, 8, 8, 8, J)
  poses = model.decode(out, inputs)
  assert poses['poses3d_cam_mm'].shape == (1, J, 3)
  assert np.all(np.isfinite(poses['poses3d_cam_mm'].numpy()))


def _features(config, batch=4, seed=0):
  """A batch in the shared pipeline's feature format (consistent labels)."""
  rng = np.random.default_rng(seed)
  size = config.input_size
  focal = 1.2 * size
  k = np.tile(np.array([[focal, 0., (size - 1) / 2], [0., focal, (size - 1) / 2],
                        [0., 0., 1.]], np.float32), (batch, 1, 1))
  rel = rng.normal(0., 250., (batch, J, 3)).astype(np.float32)
  rel -= rel[:, :1]
  cam = rel + np.float32([0., 0., 4000.])
  p2 = geometry.project(cam, k).astype(np.float32)
  in_crop = np.all((p2 > -0.5) & (p2 < size - 0.5), -1).astype(np.float32)
  return {
      'image': rng.uniform(0, 1, (batch, size, size, 3)).astype(np.float32),
      'intrinsics': k, 'joints2d_px': p2, 'joints3d_cam_mm': cam,
      'joints3d_rel_mm': rel, 'joint_valid_2d': np.ones((batch, J), np.float32),
      'joint_valid_3d': np.ones((batch, J), np.float32),
      'joint_in_crop': in_crop, 'has_3d': np.ones((batch,), np.float32),
      'action': np.array(['walking'] * batch)}


def test_smoke_trains_end_to_end_with_fit():
  entry = registry.get('metrabs')
  config = entry.config('smoke')
  model = entry.build(config)
  feats = _features(config, batch=8)
  ds = tf.data.Dataset.from_tensor_slices(feats).repeat().batch(
      config.train.batch_size, drop_remainder=True).map(model.targets)
  model.compile(optimizer=keras.optimizers.AdamW(config.train.learning_rate))
  before = [w.numpy().copy() for w in model.trainable_weights]
  history = model.fit(ds, steps_per_epoch=config.train.steps, epochs=1,
                      verbose=0, shuffle=False)
  for key in ('loss', 'loss3d', 'loss2d', 'loss_abs'):
    assert np.isfinite(history.history[key][-1]), key
  assert history.history['loss_abs'][-1] > 0
  assert int(model.optimizer.iterations) == config.train.steps
  changed = [not np.allclose(b, w.numpy()) for b, w in
             zip(before, model.trainable_weights)]
  assert all(changed)
  # Decoding and the truncation metrics on the same features.
  poses = model.predict_poses({'image': feats['image'],
                               'intrinsics': feats['intrinsics']})
  extra = model.extra_metrics(poses, feats)
  assert extra['mpjpe_truncated_mm'].shape == (8, J)


def test_absolute_loss_has_no_gradient_before_warmup():
  config = _smoke()
  model = Metrabs(config)
  x, y = model.targets({k: tf.constant(v) for k, v in
                        _features(config, batch=2).items()})
  kernel = model.get_layer('heatmap_head').kernel
  for with_grad in (False, True):
    with tf.GradientTape() as tape:
      losses = model.loss_terms(x, y, model(x, training=True),
                                with_abs_gradient=with_grad)
    grad = tape.gradient(losses['loss_abs'], kernel)
    assert np.isfinite(losses['loss_abs'].numpy())
    if with_grad:
      assert grad is not None and np.abs(grad.numpy()).max() > 0
    else:
      assert grad is None or np.abs(grad.numpy()).max() == 0


@pytest.mark.parametrize('backbone', ['resnet18', 'mobilenetv3small'])
def test_backbone_weights_load_from_a_local_file(tmp_path, backbone):
  config = _smoke(backbone=backbone, output_stride=16 if backbone == 'resnet18'
                  else 32)
  source = Metrabs(config)
  # Make the weights distinctive (BN statistics included).
  for w in source.backbone_model.weights:
    w.assign(tf.random.normal(w.shape, seed=1) * 0.1 + 0.5)
  path = str(tmp_path / 'backbone.weights.h5')
  source.backbone_model.save_weights(path)
  loaded = Metrabs(config_lib.replace(config, backbone_weights=path))
  fresh = Metrabs(config)
  for a, b, c in zip(source.backbone_model.weights,
                     loaded.backbone_model.weights,
                     fresh.backbone_model.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert not all(np.array_equal(a.numpy(), c.numpy()) for a, c in
                 zip(source.backbone_model.weights,
                     fresh.backbone_model.weights))
  # A rebuilt model (e.g. from a checkpoint's config) does not need the file.
  rebuilt = Metrabs.from_config(loaded.get_config())
  assert rebuilt.config.backbone_weights is None


def test_backbone_weights_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='does not exist'):
    Metrabs(_smoke(backbone_weights=str(tmp_path / 'missing.weights.h5')))
  with pytest.raises(ValueError, match='.h5'):
    Metrabs(_smoke(backbone_weights=str(tmp_path / 'weights.ckpt')))
  with pytest.raises(ValueError, match='no ImageNet weights'):
    Metrabs(_smoke(backbone_weights='imagenet'))


def test_extra_metrics_truncated_joints():
  config = _smoke()
  model = Metrabs(config)
  feats = _features(config, batch=2)
  feats['joint_in_crop'][:] = 1.
  feats['joint_in_crop'][0, [3, 6]] = 0.   # two truncated joints
  feats['joint_valid_3d'][0, 6] = 0.       # ... one of them unlabelled
  pred = feats['joints3d_rel_mm'].copy()
  pred[0, 3] += [30., 40., 0.]             # 50 mm error
  pred[1, 2] += [0., 0., 20.]
  poses = {'poses3d_rel_mm': pred}
  extra = {k: v.numpy() for k, v in model.extra_metrics(poses, feats).items()}
  truncated = extra['mpjpe_truncated_mm']
  assert np.isfinite(truncated).sum() == 1
  assert truncated[0, 3] == pytest.approx(50., abs=1e-3)
  in_crop = extra['mpjpe_in_crop_mm']
  assert np.isfinite(in_crop).sum() == 2 * J - 2
  assert in_crop[1, 2] == pytest.approx(20., abs=1e-3)
  np.testing.assert_allclose(extra['truncated_joint_fraction'],
                             [1. / (J - 1), 0.], atol=1e-6)

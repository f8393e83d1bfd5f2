"""Tests for the lifting_deep network (zoo/lifting_deep/model.py, presets,
registration, the prepare hook)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo import base
from zoo import geometry
from zoo import registry
from zoo import skeleton as skel
from zoo.data import synthetic
from zoo.lifting_deep import model as model_lib
from zoo.lifting_deep import prepare
from zoo.lifting_deep.prior import PosePrior

J = skel.NUM_JOINTS


@pytest.fixture(scope='module')
def smoke_config():
  entry = registry.get('lifting_deep')
  return prepare(entry.config('smoke'))


def _features(batch: int, size: int, seed: int = 0) -> dict:
  """Pipeline-format features of projected synthetic poses (random images)."""
  rng = np.random.default_rng(seed)
  world = synthetic.poses(batch, 'test', seed=seed).astype(np.float64)
  cams, pts = [], []
  focal = size * 2.2
  k = np.array([[focal, 0, (size - 1) / 2], [0, focal, (size - 1) / 2],
                [0, 0, 1]])
  for pose in world:
    az = rng.uniform(0, 2 * np.pi)
    eye = pose[0] + [4500 * np.cos(az), 4500 * np.sin(az), 0.]
    eye[2] = 1000.
    cam = geometry.world_to_camera(pose, geometry.look_at(eye, pose[0]))
    cams.append(cam)
    pts.append(geometry.project(cam, k))
  cams = np.stack(cams).astype(np.float32)
  return {
      'image': rng.random((batch, size, size, 3)).astype(np.float32),
      'intrinsics': np.tile(k[None], (batch, 1, 1)).astype(np.float32),
      'joints2d_px': np.stack(pts).astype(np.float32),
      'joints3d_cam_mm': cams,
      'joints3d_rel_mm': cams - cams[:, :1],
      'joint_valid_2d': np.ones((batch, J), np.float32),
      'joint_valid_3d': np.ones((batch, J), np.float32),
      'joint_in_crop': np.ones((batch, J), np.float32),
      'has_3d': np.ones((batch,), np.float32)}


def test_registered_with_presets_and_prepare():
  entry = registry.get('lifting_deep')
  assert set(entry.presets) >= {'paper', 'cpu', 'smoke'}
  assert entry.prepare is not None
  paper = entry.config('paper')
  assert (paper.input_size, paper.heatmap_size, paper.num_stages) == (368, 46,
                                                                      6)
  assert (paper.num_components, paper.num_basis, paper.num_angles) == (3, 25,
                                                                       80)


def test_prepare_caches_the_prior(smoke_config):
  again = prepare(registry.get('lifting_deep').config('smoke'))
  assert again.prior_path == smoke_config.prior_path
  prior = PosePrior.load(smoke_config.prior_path)
  assert (prior.num_components, prior.num_basis) == (2, 4)


def test_builds_at_paper_preset_without_forward():
  entry = registry.get('lifting_deep')
  config = entry.config('paper')
  model = entry.build(config)   # no prior: weights would come from a file
  model.build({'image': (None, 368, 368, 3)})
  shapes = model.compute_output_shape({'image': (2, 368, 368, 3)})
  assert shapes == {f'beliefs_{t}': (2, 46, 46, 15) for t in range(6)}
  assert model.trunk.compute_output_shape((2, 368, 368, 3)) == (2, 46, 46,
                                                                128)
  assert len(model.stages) == 6 and len(model.fusions) == 6
  assert model.stage1_trunk is not None
  # Later stages: five 7x7 convs of 128 channels (CPM), then 1x1 convs.
  convs = [l for l in model.stages[1].blocks
           if isinstance(l, keras.layers.Conv2D)]
  assert [c.kernel_size for c in convs[:5]] == [(7, 7)] * 5
  assert all(c.filters == 128 for c in convs[:6]) and convs[-1].filters == 15
  # The lifting layer holds the prior's weights (non-trainable) only.
  assert not model.lifting.trainable_weights
  assert model.lifting.get_config()['num_angles'] == 80
  trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
  assert trainable > 20_000_000
  assert set(model.backbone) == {model.trunk, model.stage1_trunk}


def test_targets_render_belief_maps(smoke_config):
  model = registry.get('lifting_deep').build(smoke_config)
  feats = _features(2, smoke_config.input_size)
  x, y = model.targets({k: tf.constant(v) for k, v in feats.items()})
  assert set(x) == {'image', 'intrinsics'}
  maps = model.target_maps(y).numpy()
  assert maps.shape == (2, 8, 8, 15)
  stride = smoke_config.stride
  sigma = smoke_config.belief_sigma_px / stride
  cpm = feats['joints2d_px'][:, model_lib.CPM_TO_H36M]
  hm = (cpm + 0.5) / stride - 0.5
  yy, xx = np.mgrid[:8, :8]
  for b in range(2):
    for j in range(14):
      want = np.exp(-((xx - hm[b, j, 0]) ** 2 + (yy - hm[b, j, 1]) ** 2)
                    / (2 * sigma ** 2))
      np.testing.assert_allclose(maps[b, :, :, j], want, atol=1e-5)
  np.testing.assert_allclose(maps[..., 14],
                             np.maximum(0, 1 - maps[..., :14].max(-1)),
                             atol=1e-6)


def test_smoke_trains_end_to_end_and_fusion_gets_gradients(smoke_config):
  keras.utils.set_random_seed(0)
  model = registry.get('lifting_deep').build(smoke_config)
  feats = _features(4, smoke_config.input_size, seed=1)
  ds = tf.data.Dataset.from_tensor_slices(feats).batch(2).map(
      model.targets).repeat()
  model.compile(optimizer=keras.optimizers.Adam(1e-2))
  x, y = next(iter(ds))
  with tf.GradientTape() as tape:
    loss = model.compute_loss(x, y, model(x, training=True))
  fusion_vars = [v for f in model.fusions for v in (f.w_cnn, f.w_proj)]
  grads = tape.gradient(loss, fusion_vars)
  assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0
             for g in grads)
  before = [v.numpy().copy() for v in model.trainable_weights]
  history = model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0,
                      shuffle=False)
  losses = history.history['loss']
  assert np.all(np.isfinite(losses))
  after = [v.numpy() for v in model.trainable_weights]
  assert any(not np.allclose(a, b) for a, b in zip(after, before))
  assert not np.allclose(model.fusions[0].w_proj.numpy(), 0.5)
  # The contract's decode, in-graph.
  x = {'image': tf.constant(feats['image']),
       'intrinsics': tf.constant(feats['intrinsics'])}
  poses = model.predict_poses(x)
  assert set(poses) == set(base.OUTPUT_KEYS)
  assert poses['poses3d_rel_mm'].shape == (4, J, 3)
  assert poses['poses2d_px'].shape == (4, J, 2)
  for value in poses.values():
    assert value.dtype == tf.float32
    assert np.all(np.isfinite(value.numpy()))
  conf = poses['confidence'].numpy()
  assert conf.shape == (4, J) and conf.min() >= 0 and conf.max() <= 1
  np.testing.assert_allclose(poses['poses3d_rel_mm'].numpy()[:, 0], 0,
                             atol=1e-3)
  # The absolute pose reprojects onto the 2D output.
  reproj = geometry.project(poses['poses3d_cam_mm'].numpy(),
                            feats['intrinsics'])
  np.testing.assert_allclose(reproj, poses['poses2d_px'].numpy(), atol=0.05)
  extra = model.extra_metrics(poses, feats)
  assert extra['mean_error_2d_cpm14_px'].shape == (4,)


def test_lifting_inside_model_equals_prior_lift(smoke_config):
  model = registry.get('lifting_deep').build(smoke_config)
  prior = PosePrior.load(smoke_config.prior_path)
  rng = np.random.default_rng(3)
  feats = _features(5, smoke_config.input_size, seed=3)
  landmarks = feats['joints2d_px'][:, model_lib.CPM_TO_H36M] + rng.normal(
      size=(5, 14, 2)).astype(np.float32)
  out = model.lift_landmarks(tf.constant(landmarks))
  joints17 = model_lib.cpm_to_h36m(tf.constant(landmarks)).numpy()
  c = smoke_config
  want = prior.lift(joints17, visibility=model_lib.IS_CPM_JOINT,
                    num_angles=c.num_angles, lift_noise=c.lift_noise,
                    refine_steps=c.lift_refine_steps, return_details=True)
  np.testing.assert_allclose(out['poses3d_mm'].numpy(), want['poses3d_mm'],
                             atol=1e-3)
  np.testing.assert_allclose(out['projection_2d'].numpy(),
                             want['projection_2d'], atol=1e-3)


def test_decode_uses_landmarks_for_cpm_joints(smoke_config):
  model = registry.get('lifting_deep').build(smoke_config)
  feats = _features(2, smoke_config.input_size, seed=4)
  _, y = model.targets({k: tf.constant(v) for k, v in feats.items()})
  maps = model.target_maps(y)   # perfect belief maps
  outputs = {f'beliefs_{t}': maps for t in range(smoke_config.num_stages)}
  poses = model.decode(outputs, {'intrinsics': tf.constant(
      feats['intrinsics'])})
  cpm = model_lib.CPM_TO_H36M
  err = np.abs(poses['poses2d_px'].numpy()[:, cpm] - feats['joints2d_px'][:,
                                                                          cpm])
  # argmax + quarter-cell refinement at stride 4: within 2 px.
  assert err.max() <= 0.75 * smoke_config.stride


def test_fusion_off_is_a_plain_cpm(smoke_config):
  from zoo import config as config_lib
  config = config_lib.replace(smoke_config, fusion=False)
  model = registry.get('lifting_deep').build(config)
  assert model.fusions == []
  out = model({'image': tf.zeros([1, 32, 32, 3]),
               'intrinsics': tf.eye(3, batch_shape=[1])})
  assert set(out) == {'beliefs_0', 'beliefs_1'}


def test_gradients_through_lifting_are_optional(smoke_config):
  from zoo import config as config_lib
  feats = _features(2, smoke_config.input_size, seed=5)
  _, y = registry.get('lifting_deep').build(smoke_config).targets(
      {k: tf.constant(v) for k, v in feats.items()})
  for landmarks, through in (('argmax', False), ('soft_argmax', True)):
    config = config_lib.replace(smoke_config, landmarks=landmarks,
                                lift_gradients=through)
    model = registry.get('lifting_deep').build(config)
    # Blurred target maps as "CNN output": soft-argmax has a gradient there.
    maps = tf.Variable(model.target_maps(y) * 0.8 + 0.05)
    with tf.GradientTape() as tape:
      projected = model.projected_beliefs(maps)
      loss = tf.reduce_sum(projected[..., :14] * tf.range(
          8, dtype=tf.float32)[None, None, :, None])
    grad = tape.gradient(loss, maps)
    if through:
      assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0
    else:
      assert grad is None or float(tf.reduce_max(tf.abs(grad))) == 0


def test_integral_loss_adds_the_soft_argmax_l1_of_every_stage(smoke_config):
  """loss(w) - loss(0) = w * sum over stages of the batch mean of
  sum_j (|x - x*| + |y - y*|) / (map side * 14), soft-argmax under
  softmax(soft_argmax_beta * maps), computed here in NumPy."""
  from zoo import config as config_lib
  weight, beta = 3., 7.
  config = config_lib.replace(smoke_config, integral_loss_weight=weight,
                              soft_argmax_beta=beta)
  model = registry.get('lifting_deep').build(config)
  feats = _features(2, config.input_size, seed=2)
  x, y = model.targets({k: tf.constant(v) for k, v in feats.items()})
  y['valid'] = tf.constant(np.r_[np.ones(14), np.r_[np.ones(10), np.zeros(4)]]
                           .reshape(2, 14), tf.float32)
  outputs = model(x)
  with_term = float(model.compute_loss(x, y, outputs))
  model.config = config_lib.replace(config, integral_loss_weight=0.)
  without = float(model.compute_loss(x, y, outputs))
  side = config.heatmap_size
  want = 0.
  cells = np.arange(side, dtype=np.float64)
  for t in range(config.num_stages):
    maps = outputs[f'beliefs_{t}'].numpy().astype(np.float64)[..., :14]
    logits = beta * maps
    p = np.exp(logits - logits.max((1, 2), keepdims=True))
    p /= p.sum((1, 2), keepdims=True)
    xs = np.einsum('bhwj,w->bj', p, cells)
    ys = np.einsum('bhwj,h->bj', p, cells)
    err = (np.abs(xs - y['joints_hm'].numpy()[..., 0])
           + np.abs(ys - y['joints_hm'].numpy()[..., 1])) / side
    want += np.mean(np.sum(err * y['valid'].numpy(), -1) / 14)
  assert with_term - without == pytest.approx(weight * want, rel=1e-4)
  assert want > 0
  with pytest.raises(ValueError, match='integral_loss_weight'):
    registry.get('lifting_deep').build(
        config_lib.replace(smoke_config, integral_loss_weight=-1.))

"""Every zoo model's loss honours has_3d and the per-joint masks.

A 2D-only example (has_3d = 0, as MPII's) must train only the 2D parts and
contribute nothing to any 3D term; a batch mixing 3D and 2D-only examples
gives the weighted sum of the two halves' losses.
"""
from __future__ import annotations

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from zoo import registry  # noqa: E402
from zoo import skeleton as skel  # noqa: E402

J = skel.NUM_JOINTS
B = 4
HAS_3D = np.array([1., 1., 0., 0.], np.float32)  # two 3D, two 2D-only


def _config(name):
  entry = registry.get(name)
  config = entry.config('smoke')
  if entry.prepare is not None:
    config = entry.prepare(config)
  return entry, config


def _features(config, seed=0):
  """A batch of pipeline features: joints inside the crop, some masks 0."""
  rng = np.random.default_rng(seed)
  s = config.input_size
  joints2d = rng.uniform(0.2 * s, 0.8 * s, (B, J, 2)).astype(np.float32)
  rel = rng.uniform(-400, 400, (B, J, 3)).astype(np.float32)
  rel[:, skel.ROOT] = 0
  cam = rel + np.array([0, 0, 4000.], np.float32)
  valid_2d = np.ones((B, J), np.float32)
  valid_2d[0, 3] = valid_2d[2, 5] = 0.
  valid_3d = np.ones((B, J), np.float32)
  valid_3d[1, 12] = 0.  # a 3D example lacking one joint's 3D label
  valid_3d[2:] = 0.
  focal = 2. * s
  intrinsics = np.tile(np.array([[focal, 0, s / 2], [0, focal, s / 2],
                                 [0, 0, 1]], np.float32), (B, 1, 1))
  return {
      'image': rng.uniform(0, 1, (B, s, s, 3)).astype(np.float32),
      'intrinsics': intrinsics, 'joints2d_px': joints2d,
      'joints3d_cam_mm': cam, 'joints3d_rel_mm': rel,
      'joint_valid_2d': valid_2d, 'joint_valid_3d': valid_3d,
      'joint_in_crop': valid_2d, 'has_3d': HAS_3D,
      'dataset': np.array([b'h36m'] * 2 + [b'mpii'] * 2),
      'source': np.array([b'h36m'] * 2 + [b'mpii'] * 2),
  }


def _take(tree, rows):
  return tf.nest.map_structure(lambda v: tf.gather(v, rows), tree)


@pytest.fixture(scope='module', params=sorted(registry.zoo_names()))
def setup(request):
  name = request.param
  entry, config = _config(name)
  model = entry.build(config)
  model.build({'image': (None, config.input_size, config.input_size, 3)})
  features = {k: tf.constant(v) for k, v in _features(config).items()}
  x, y = model.targets(features)
  y_pred = model(x, training=False)
  return name, model, config, features, x, y, y_pred


def _loss(model, x, y, y_pred):
  return float(model.compute_loss(x, y, y_pred, None, training=True))


def _three_d_only_variables(name, model, config):
  """(variable, index into it or None) that only 3D terms can reach."""
  if name == 'coordinate_regression':
    head = model.regression_head
    return [(head.kernel, (slice(None), slice(2, None, 3))),
            (head.bias, (slice(2, None, 3),))]
  if name == 'decoupled_volumetric':
    k = config.network1_stacks
    layers = [model.net2_in, model.net2_res]
    for i in range(k, config.num_stacks):
      layers += [model.hourglasses[i], model.posts[i], model.lins[i],
                 model.heads[i]]
    return [(v, None) for layer in layers for v in layer.trainable_variables]
  if name == 'metrabs':
    return [(model.head.kernel, (Ellipsis, slice(J, None))),
            (model.head.bias, (slice(J, None),))]
  return []


def test_2d_only_loss_is_finite_and_3d_only_parameters_get_no_gradient(
    setup):
  name, model, config, features, x, y, _ = setup
  rows = [2, 3]
  x2, y2 = _take(x, rows), _take(y, rows)
  with tf.GradientTape() as tape:
    loss = model.compute_loss(x2, y2, model(x2, training=False), None,
                              training=True)
  assert np.isfinite(float(loss)) and float(loss) > 0
  targets = _three_d_only_variables(name, model, config)
  if not targets:
    return
  grads = tape.gradient(loss, [v for v, _ in targets])
  for (variable, index), grad in zip(targets, grads):
    grad = np.zeros(variable.shape) if grad is None else np.asarray(grad)
    part = grad if index is None else grad[index]
    assert np.all(part == 0), f'{name}: {variable.path} gets a gradient'
  # ... while the 3D examples do reach them.
  x3, y3 = _take(x, [0, 1]), _take(y, [0, 1])
  with tf.GradientTape() as tape:
    loss3 = model.compute_loss(x3, y3, model(x3, training=False), None,
                               training=True)
  grads = tape.gradient(loss3, [v for v, _ in targets])
  assert any(g is not None and np.any(np.asarray(g) != 0) for g in grads)


def test_2d_only_examples_never_see_depth(setup):
  """The loss of 2D-only examples ignores the 3D labels and, for volumes,
  the distribution along depth (only image-plane marginals count)."""
  name, model, config, features, x, y, y_pred = setup
  rows = [2, 3]
  x2, y_pred2 = _take(x, rows), _take(y_pred, rows)
  feats = _take(features, rows)
  loss = _loss(model, x2, model.targets(feats)[1], y_pred2)
  scrambled = dict(feats)
  scrambled['joints3d_cam_mm'] = feats['joints3d_cam_mm'][:, ::-1] * 1.7
  scrambled['joints3d_rel_mm'] = feats['joints3d_rel_mm'][:, ::-1] * 1.7
  assert _loss(model, x2, model.targets(scrambled)[1], y_pred2) == \
      pytest.approx(loss, rel=1e-6)
  volumes = [k for k, v in y_pred2.items() if v.shape.rank == 5 and
             v.shape[3] > 1]
  if name in ('c2f_volumetric', 'volumetric_stacked', 'decoupled_volumetric'):
    assert volumes
    flipped = {k: (tf.reverse(v, [3]) if k in volumes else v)
               for k, v in y_pred2.items()}
    y2 = model.targets(feats)[1]
    assert _loss(model, x2, y2, flipped) == pytest.approx(loss, rel=1e-5)
    # Depth does matter for the 3D examples.
    x3, y3, p3 = _take(x, [0, 1]), _take(y, [0, 1]), _take(y_pred, [0, 1])
    flipped3 = {k: (tf.reverse(v, [3]) if k in volumes else v)
                for k, v in p3.items()}
    assert _loss(model, x3, y3, flipped3) != pytest.approx(
        _loss(model, x3, y3, p3), rel=1e-6)


def test_masked_joints_add_nothing(setup):
  """A joint without any label does not change the loss, whatever is
  predicted for it (here: joint 5 of example 2, 2D-only and unlabelled)."""
  name, model, config, features, x, y, y_pred = setup
  base_loss = _loss(model, x, y, y_pred)
  j = 5
  changed = {}
  for key, value in y_pred.items():
    value = value.numpy().copy()
    if name == 'lifting_deep':
      cpm = list(model.targets(features)[1]['valid'].numpy()[2]).index(0.)
      value[2, ..., cpm] += 3.
    elif name == 'coordinate_regression':
      value[2, j] += 3.
    elif name == 'metrabs':
      continue
    else:
      value[2, ..., j] += 3.
    changed[key] = tf.constant(value)
  if name == 'metrabs':
    # Its 2D head's soft-argmax of joint 5: shift the logits' peak.
    logits = y_pred['logits2d'].numpy().copy()
    logits[2, 0, 0, j] += 10.
    changed = dict(y_pred, logits2d=tf.constant(logits))
  assert _loss(model, x, y, changed) == pytest.approx(base_loss, rel=1e-6)


def test_mixed_batch_is_the_weighted_sum(setup):
  name, model, config, features, x, y, y_pred = setup
  halves = [[0, 1], [2, 3]]
  if name != 'metrabs':
    # A per-example mean: the mixed loss is the mean of the halves' losses
    # weighted by their example counts.
    parts = [_loss(model, _take(x, r), _take(y, r), _take(y_pred, r))
             for r in halves]
    assert _loss(model, x, y, y_pred) == pytest.approx(
        (2 * parts[0] + 2 * parts[1]) / 4, rel=1e-5)
    return
  # MeTRAbs averages each term over the batch's labelled joints: the 3D
  # terms come from the 3D half alone, the 2D term is the joint-count
  # weighted mean of both halves.
  terms = [model.loss_terms(_take(x, r), _take(y, r), _take(y_pred, r))
           for r in halves]
  whole = model.loss_terms(x, y, y_pred)
  counts = [float(tf.reduce_sum(_take(y, r)['valid_2d'])) for r in halves]
  assert float(whole['loss3d']) == pytest.approx(float(terms[0]['loss3d']),
                                                 rel=1e-5)
  assert float(whole['loss_abs']) == pytest.approx(
      float(terms[0]['loss_abs']), rel=1e-5)
  assert float(terms[1]['loss3d']) == 0 and float(terms[1]['loss_abs']) == 0
  want_2d = (counts[0] * float(terms[0]['loss2d'])
             + counts[1] * float(terms[1]['loss2d'])) / sum(counts)
  assert float(whole['loss2d']) == pytest.approx(want_2d, rel=1e-5)

"""Tests for zoo/metrabs/reconstruction.py: the least-squares root translation.

Ground truth comes from an independent pinhole projection (zoo.geometry's
NumPy `project`) of a known relative pose placed at a known translation.
"""
import numpy as np
import pytest
import tensorflow as tf

from zoo import geometry
from zoo.metrabs import reconstruction


def _scene(batch=6, seed=0, focal=(300., 320.), centre=(127.5, 120.)):
  rng = np.random.default_rng(seed)
  rel = rng.normal(0., 300., (batch, 17, 3))
  rel -= rel[:, :1]
  translation = np.stack([rng.uniform(-600, 600, batch),
                          rng.uniform(-400, 400, batch),
                          rng.uniform(2500, 8000, batch)], -1)
  k = np.array([[focal[0], 0., centre[0]], [0., focal[1], centre[1]],
                [0., 0., 1.]])
  k = np.tile(k, (batch, 1, 1))
  points2d = geometry.project(rel + translation[:, None], k)
  f32 = lambda a: a.astype(np.float32)  # noqa: E731
  return f32(rel), f32(translation), f32(k), f32(points2d)


def test_recovers_known_translation_exactly():
  rel, translation, k, points2d = _scene()
  got = reconstruction.solve_translation(points2d, rel, k,
                                         l2_regularizer=1e-7).numpy()
  np.testing.assert_allclose(got, translation, atol=0.05)  # mm
  # The default regulariser biases depth by well under 0.1 %.
  got = reconstruction.solve_translation(points2d, rel, k).numpy()
  np.testing.assert_allclose(got, translation, rtol=1e-3, atol=2.)


def test_reference_point_is_arbitrary():
  """Any reference point of the relative pose gives the matching T."""
  rel, translation, k, points2d = _scene(seed=1)
  offset = np.float32([150., -80., 40.])
  got = reconstruction.solve_translation(points2d, rel + offset, k,
                                         l2_regularizer=1e-7).numpy()
  np.testing.assert_allclose(got, translation - offset, atol=0.05)


def test_zero_weight_joints_are_ignored():
  rel, translation, k, points2d = _scene(seed=2)
  corrupted = points2d.copy()
  corrupted[:, :5] += 40.  # five joints with wrong 2D
  weights = np.ones((rel.shape[0], 17), np.float32)
  weights[:, :5] = 0.
  got = reconstruction.solve_translation(corrupted, rel, k, weights,
                                         l2_regularizer=1e-7).numpy()
  np.testing.assert_allclose(got, translation, atol=0.05)
  unweighted = reconstruction.solve_translation(corrupted, rel, k,
                                                l2_regularizer=1e-7).numpy()
  assert np.abs(unweighted - translation).max() > 10.


def test_degrades_gracefully_with_2d_noise():
  rel, translation, k, points2d = _scene(batch=64, seed=3)
  rng = np.random.default_rng(4)
  unit_noise = rng.normal(size=points2d.shape).astype(np.float32)
  sigmas = (0.25, 0.5, 1., 2., 4.)
  errors = []
  for sigma in sigmas:
    got = reconstruction.solve_translation(points2d + sigma * unit_noise, rel,
                                           k).numpy()
    errors.append(np.linalg.norm(got - translation, axis=-1).mean())
  errors = np.array(errors)
  # Smooth: strictly increasing, about linear for small noise (ratio ~2 per
  # doubling; noise in the 2D also enters the system matrix, so depth becomes
  # biased towards the camera and the ratio grows slowly with the noise),
  # and bounded: at 1 px, under 2 % of the mean depth.
  assert np.all(np.diff(errors) > 0), errors
  ratios = errors[1:] / errors[:-1]
  assert np.all((ratios > 1.5) & (ratios < 3.5)), ratios
  assert ratios[0] < 2.5, ratios
  assert errors[sigmas.index(1.)] < 0.02 * translation[:, 2].mean(), errors


def test_gradients_flow_and_match_finite_differences():
  rel, _, k, points2d = _scene(batch=2, seed=5)
  rel_t = tf.Variable(rel)
  p2_t = tf.Variable(points2d)
  with tf.GradientTape() as tape:
    t = reconstruction.solve_translation(p2_t, rel_t, k)
    loss = tf.reduce_sum(t[:, 2]) + 0.5 * tf.reduce_sum(t[:, 0])
  g_rel, g_2d = tape.gradient(loss, [rel_t, p2_t])
  for g in (g_rel, g_2d):
    assert np.all(np.isfinite(g.numpy())) and np.abs(g.numpy()).max() > 0

  def f(p2):
    t = reconstruction.solve_translation(p2, rel, k).numpy().astype(np.float64)
    return t[:, 2].sum() + 0.5 * t[:, 0].sum()
  eps = 0.05
  for b, j, c in ((0, 3, 0), (1, 10, 1)):
    plus, minus = points2d.copy(), points2d.copy()
    plus[b, j, c] += eps
    minus[b, j, c] -= eps
    numeric = (f(plus) - f(minus)) / (2 * eps)
    assert g_2d.numpy()[b, j, c] == pytest.approx(numeric, rel=0.05, abs=0.5)


def test_singular_inputs_stay_finite():
  """All weights zero, or all 2D joints on one pixel: the ridge keeps T finite."""
  rel, _, k, points2d = _scene(batch=2, seed=6)
  zero_w = np.zeros((2, 17), np.float32)
  t = reconstruction.solve_translation(points2d, rel, k, zero_w).numpy()
  assert np.all(np.isfinite(t))
  same = np.broadcast_to(points2d[:, :1], points2d.shape).copy()
  t = reconstruction.solve_translation(same, rel, k).numpy()
  assert np.all(np.isfinite(t))


def test_inside_crop_mask():
  pts = np.array([[[0., 0.], [-0.6, 5.], [63.4, 63.4], [63.6, 10.],
                   [20., 30.]]], np.float32)
  np.testing.assert_array_equal(
      reconstruction.inside_crop_mask(pts, 64).numpy(), [[1, 0, 1, 0, 1]])
  np.testing.assert_array_equal(
      reconstruction.inside_crop_mask(pts, 64, border_px=12.).numpy(),
      [[0, 0, 0, 0, 1]])


def test_reconstruct_absolute_pose_and_mixing():
  rel, translation, k, points2d = _scene(seed=7)
  weights = np.ones(rel.shape[:2], np.float32)
  poses, t = reconstruction.reconstruct_absolute(points2d, rel, k, weights,
                                                 l2_regularizer=1e-7)
  np.testing.assert_allclose(poses.numpy(), rel + translation[:, None],
                             atol=0.1)
  # Consistent inputs: the 2D rays at the 3D depths are the 3D points, so any
  # mixing inside the crop gives the same pose.
  inside = np.zeros_like(weights)
  inside[:, ::2] = 1.
  mixed, _ = reconstruction.reconstruct_absolute(
      points2d, rel, k, weights, l2_regularizer=1e-7, mix_3d_inside=0.,
      inside=inside)
  np.testing.assert_allclose(mixed.numpy(), poses.numpy(), atol=0.5)
  # With wrong 2D on the inside joints, mix 0 follows the 2D rays there.
  shifted = points2d + np.float32([5., 0.])
  mixed, _ = reconstruction.reconstruct_absolute(
      shifted, rel, k, np.zeros_like(weights) + 1., l2_regularizer=1e-7,
      mix_3d_inside=0., inside=inside)
  reproj = geometry.project(mixed.numpy().astype(np.float64), k)
  np.testing.assert_allclose(reproj[:, ::2], shifted[:, ::2], atol=1e-2)
  with pytest.raises(ValueError, match='inside'):
    reconstruction.reconstruct_absolute(points2d, rel, k, weights,
                                        mix_3d_inside=0.5)

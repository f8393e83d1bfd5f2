"""Tests for zoo/heatmaps.py against NumPy loops and materialised targets."""
import numpy as np
import pytest
import tensorflow as tf

from zoo import heatmaps


def _numpy_heatmaps(joints, height, width, sigma, valid):
  out = np.zeros((joints.shape[0], height, width, joints.shape[1]))
  for b in range(joints.shape[0]):
    for j in range(joints.shape[1]):
      if not valid[b, j]:
        continue
      for y in range(height):
        for x in range(width):
          d2 = (x - joints[b, j, 0]) ** 2 + (y - joints[b, j, 1]) ** 2
          out[b, y, x, j] = np.exp(-d2 / (2 * sigma ** 2))
  return out


def test_gaussian_1d_matches_formula():
  centers = np.array([[0., 3.3], [7.9, -2.]], np.float32)
  got = heatmaps.gaussian_1d(centers, 9, 1.5).numpy()
  assert got.shape == (2, 2, 9)
  i = np.arange(9)
  for idx in np.ndindex(2, 2):
    want = np.exp(-(i - centers[idx]) ** 2 / (2 * 1.5 ** 2))
    np.testing.assert_allclose(got[idx], want, rtol=1e-5, atol=1e-7)


def test_render_heatmaps_2d_matches_double_loop():
  rng = np.random.default_rng(0)
  joints = rng.uniform(-2, 14, size=(2, 5, 2)).astype(np.float32)
  valid = np.array([[1, 1, 0, 1, 1], [1, 0, 1, 1, 1]], np.float32)
  got = heatmaps.render_heatmaps_2d(joints, 10, 12, 2.0, valid=valid).numpy()
  want = _numpy_heatmaps(joints, 10, 12, 2.0, valid)
  assert got.shape == (2, 10, 12, 5)
  assert got.dtype == np.float32
  np.testing.assert_allclose(got, want, atol=1e-6)
  # Without a mask every joint is rendered.
  got_all = heatmaps.render_heatmaps_2d(joints, 10, 12, 2.0).numpy()
  np.testing.assert_allclose(got_all, _numpy_heatmaps(
      joints, 10, 12, 2.0, np.ones((2, 5))), atol=1e-6)


def test_gaussian_volume_matches_loop():
  centers = np.array([[[2.2, 1.5, 3.0], [0.0, 4.0, 0.5]]], np.float32)
  got = heatmaps.gaussian_volume(centers, 5, 6, 4, 1.5, 0.8).numpy()
  want = np.zeros((1, 5, 6, 4, 2))
  for y, x, z, j in np.ndindex(5, 6, 4, 2):
    cx, cy, cz = centers[0, j]
    want[0, y, x, z, j] = np.exp(
        -((x - cx) ** 2 + (y - cy) ** 2) / (2 * 1.5 ** 2)
        - (z - cz) ** 2 / (2 * 0.8 ** 2))
  np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize('depth', [1, 4, 16])
def test_separable_mse_equals_materialised(depth):
  rng = np.random.default_rng(depth)
  b, h, w, j = 3, 12, 10, 4
  pred = rng.normal(size=(b, h, w, depth, j)).astype(np.float32) * 0.3
  centers = np.stack([rng.uniform(-1, w, (b, j)), rng.uniform(-1, h, (b, j)),
                      rng.uniform(-1, depth, (b, j))], -1).astype(np.float32)
  centers[0, 0] = [0., 0., 0.]                      # corner
  centers[1, 1] = [w - 1, h - 1, depth - 1]         # opposite corner
  centers[2, 2] = [w + 0.5, -0.7, depth + 0.3]      # just outside
  valid = np.ones((b, j), np.float32)
  valid[1, 3] = 0
  target = heatmaps.gaussian_volume(centers, h, w, depth, 2.0, 1.3).numpy()
  sq = (pred - target) ** 2 * valid[:, None, None, None, :]
  want = sq.mean(axis=(1, 2, 3, 4))
  got = heatmaps.separable_gaussian_mse(pred, centers, 2.0, 1.3, valid).numpy()
  assert got.shape == (b,)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  # Unmasked version and the mask's effect.
  got_all = heatmaps.separable_gaussian_mse(pred, centers, 2.0, 1.3).numpy()
  np.testing.assert_allclose(got_all, ((pred - target) ** 2).mean((1, 2, 3, 4)),
                             rtol=1e-4, atol=1e-6)


def test_separable_mse_depth_one_ignores_z_and_is_zero_at_target():
  centers = np.array([[[3., 4., 17.], [1.5, 2.5, -3.]]], np.float32)
  target2d = heatmaps.render_heatmaps_2d(centers[..., :2], 8, 8, 2.0)
  pred = target2d[:, :, :, tf.newaxis, :]
  got = heatmaps.separable_gaussian_mse(pred, centers, 2.0, 1.0).numpy()
  np.testing.assert_allclose(got, [0.], atol=1e-6)


def test_separable_mse_gradient_and_half_precision():
  rng = np.random.default_rng(3)
  pred = tf.constant(rng.normal(size=(2, 6, 6, 4, 3)), tf.float32)
  centers = tf.constant(rng.uniform(0, 4, (2, 3, 3)), tf.float32)
  target = heatmaps.gaussian_volume(centers, 6, 6, 4, 1.5, 1.5)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(pred)
    sep = tf.reduce_sum(heatmaps.separable_gaussian_mse(pred, centers, 1.5, 1.5))
    mat = tf.reduce_sum(tf.reduce_mean(tf.square(pred - target), [1, 2, 3, 4]))
  np.testing.assert_allclose(tape.gradient(sep, pred).numpy(),
                             tape.gradient(mat, pred).numpy(), atol=1e-6)
  for dtype in (tf.bfloat16, tf.float16):
    out = heatmaps.separable_gaussian_mse(tf.cast(pred, dtype), centers, 1.5,
                                          1.5)
    assert out.dtype == tf.float32
    # Same as float32 maths on the rounded inputs: nothing computed in `dtype`.
    want = heatmaps.separable_gaussian_mse(
        tf.cast(tf.cast(pred, dtype), tf.float32), centers, 1.5, 1.5)
    np.testing.assert_allclose(out.numpy(), want.numpy(), rtol=1e-6)


def test_soft_argmax_2d_sharp_peak():
  logits = np.full((2, 9, 11, 3), -1e3, np.float32)
  peaks = [[(3, 7), (0, 0), (10, 8)], [(5, 2), (6, 6), (1, 4)]]  # (x, y)
  for b, row in enumerate(peaks):
    for j, (x, y) in enumerate(row):
      logits[b, y, x, j] = 50.
  got = heatmaps.soft_argmax_2d(logits).numpy()
  np.testing.assert_allclose(got, np.array(peaks, np.float32), atol=0.01)
  # In a graph and with half precision input.
  fn = tf.function(heatmaps.soft_argmax_2d)
  got16 = fn(tf.constant(logits, tf.bfloat16)).numpy()
  assert got16.dtype == np.float32
  np.testing.assert_allclose(got16, np.array(peaks, np.float32), atol=0.01)


def test_soft_argmax_3d_sharp_peak_and_expectation():
  logits = np.full((1, 6, 7, 5, 2), -1e3, np.float32)
  logits[0, 4, 2, 3, 0] = 40.   # x=2, y=4, z=3
  logits[0, 0, 6, 4, 1] = 40.   # x=6, y=0, z=4
  got = heatmaps.soft_argmax_3d(logits).numpy()
  np.testing.assert_allclose(got, [[[2, 4, 3], [6, 0, 4]]], atol=0.01)
  # expectation of a two-point distribution.
  probs = np.zeros((1, 6, 7, 5, 1), np.float32)
  probs[0, 1, 2, 3, 0] = 0.25
  probs[0, 5, 6, 1, 0] = 0.75
  np.testing.assert_allclose(heatmaps.expectation_3d(probs).numpy(),
                             [[[0.25 * 2 + 0.75 * 6, 0.25 * 1 + 0.75 * 5,
                                0.25 * 3 + 0.75 * 1]]], atol=1e-6)
  probs2d = probs[:, :, :, 3, :] / 0.25
  np.testing.assert_allclose(heatmaps.expectation_2d(probs2d).numpy(),
                             [[[2., 1.]]], atol=1e-6)


def test_soft_argmax_of_smooth_gaussian_is_its_centre():
  centers = np.array([[[10.3, 12.6], [7.5, 9.25]]], np.float32)
  maps = heatmaps.render_heatmaps_2d(centers, 24, 20, 1.5)
  # log of a Gaussian is a quadratic: its softmax is the same Gaussian.
  logits = tf.math.log(maps + 1e-30)
  np.testing.assert_allclose(heatmaps.soft_argmax_2d(logits).numpy(), centers,
                             atol=1e-3)


def test_argmax_recovers_planted_peak():
  rng = np.random.default_rng(1)
  maps = rng.uniform(0, 0.5, (2, 8, 9, 3)).astype(np.float32)
  maps[0, 5, 2, 0] = 3.
  maps[0, 0, 8, 1] = 2.
  maps[0, 7, 0, 2] = 1.
  maps[1, 3, 3, :] = [0.9, 0.8, 0.7]
  coords, conf = heatmaps.argmax_2d(maps)
  np.testing.assert_array_equal(coords.numpy(), [
      [[2, 5], [8, 0], [0, 7]], [[3, 3]] * 3])
  np.testing.assert_allclose(conf.numpy(), [[3, 2, 1], [0.9, 0.8, 0.7]])
  assert coords.dtype == tf.float32

  vol = rng.uniform(0, 0.5, (2, 5, 6, 7, 2)).astype(np.float32)
  vol[0, 4, 1, 6, 0] = 5.
  vol[0, 0, 5, 0, 1] = 4.
  vol[1, 2, 3, 4, 0] = 3.
  vol[1, 1, 0, 2, 1] = 2.
  coords, conf = tf.function(heatmaps.argmax_3d)(tf.constant(vol))
  np.testing.assert_array_equal(coords.numpy(), [
      [[1, 4, 6], [5, 0, 0]], [[3, 2, 4], [0, 1, 2]]])
  np.testing.assert_allclose(conf.numpy(), [[5, 4], [3, 2]])


def test_bad_ranks_raise_clear_errors():
  with pytest.raises(ValueError, match=r'pred must be \[B, H, W, D, J\]'):
    heatmaps.separable_gaussian_mse(np.zeros((1, 4, 4, 2), np.float32),
                                    np.zeros((1, 2, 3)), 2., 2.)
  with pytest.raises(ValueError, match='centers_vox must be'):
    heatmaps.separable_gaussian_mse(np.zeros((1, 4, 4, 1, 2), np.float32),
                                    np.zeros((1, 2, 2)), 2., 2.)
  with pytest.raises(ValueError, match='heatmaps must be'):
    heatmaps.argmax_2d(np.zeros((1, 4, 4, 2, 3)))
  with pytest.raises(ValueError, match='logits must be'):
    heatmaps.soft_argmax_3d(np.zeros((1, 4, 4, 3)))


def _numpy_integral_l1(pred, centers, beta, valid_xy, valid_z):
  """Softmax and expectation by loops over every voxel, then the L1."""
  b_n, h, w, d, j_n = pred.shape
  out = np.zeros(b_n)
  for b in range(b_n):
    for j in range(j_n):
      logits = beta * pred[b, ..., j].astype(np.float64)
      p = np.exp(logits - logits.max())
      p /= p.sum()
      mean = np.zeros(3)
      for y in range(h):
        for x in range(w):
          for z in range(d):
            mean += p[y, x, z] * np.array([x, y, z])
      err = np.abs(mean - centers[b, j]) / np.array([w, h, d])
      out[b] += (err[0] + err[1]) * valid_xy[b, j]
      if valid_z is not None and d > 1:
        out[b] += err[2] * valid_z[b, j]
  return out / j_n


@pytest.mark.parametrize('depth', [1, 4])
def test_integral_l1_matches_loops(depth):
  rng = np.random.default_rng(3)
  pred = rng.normal(size=(2, 5, 6, depth, 3)).astype(np.float32)
  centers = rng.uniform(0, 4, size=(2, 3, 3)).astype(np.float32)
  valid_xy = np.array([[1, 0, 1], [1, 1, 1]], np.float32)
  valid_z = np.array([[1, 1, 0], [0, 1, 1]], np.float32)
  got = heatmaps.integral_l1(pred, centers, 2.5, valid_xy, valid_z).numpy()
  want = _numpy_integral_l1(pred, centers, 2.5, valid_xy, valid_z)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # Without a z mask the depth axis is left out.
  got_xy = heatmaps.integral_l1(pred, centers, 2.5, valid_xy).numpy()
  want_xy = _numpy_integral_l1(pred, centers, 2.5, valid_xy, None)
  np.testing.assert_allclose(got_xy, want_xy, rtol=1e-5, atol=1e-6)


def test_integral_l1_is_zero_at_a_sharp_peak_and_has_gradients():
  pred = np.zeros((1, 8, 8, 8, 1), np.float32)
  pred[0, 5, 2, 6, 0] = 1.
  centers = np.array([[[2., 5., 6.]]], np.float32)
  assert heatmaps.integral_l1(pred, centers, 100., None, None).numpy()[0] \
      == pytest.approx(0., abs=1e-6)
  x = tf.Variable(np.zeros((1, 8, 8, 8, 1), np.float32))
  with tf.GradientTape() as tape:
    loss = heatmaps.integral_l1(x, centers, 1., None, np.ones((1, 1)))
  grad = tape.gradient(loss, x).numpy()
  assert np.count_nonzero(grad) == grad.size   # every voxel gets a gradient
  assert grad[0, 5, 2, 6, 0] < 0               # the target's score goes up

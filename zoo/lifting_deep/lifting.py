"""Lifting 2D joints under the pose prior: the NumPy constants (float64) and
the batched TensorFlow solver (`lift_core`).

The lifting cost per (component k, angle theta), with 2D input y normalised
to the model's scale (weighted centroid removed, weighted RMS radius r0), is

  min_{s, c}  sum_j w_j |y_j - (s P R mu_k + sum_b c_b P R e_kb)_j|^2
              + eps s^2 + tau^2 sum_b c_b^2 / lambda_kb,

(c = s a linearises the product of scale and coefficients; the model side is
centred on the same weighted centroid, which eliminates the translation) and
the selection score is cost / (2 tau^2) + 1/2 sum_b log lambda_kb - log pi_k.
With a fixed visibility pattern the solve of every (k, theta) is the same
linear map of y, so the cost is a precomputed quadratic form: the whole
search for a batch is one matmul. The best angle is then refined by a
parabola through its neighbours' scores, snapped to a precomputed grid
`refine_steps` times finer (an addition; the paper keeps the best of its 80
angles), and the output pose is mean + basis coefficients c / s (shrunk if
implausibly far out, see _MAX_MAHA_MARGIN), rotated into the camera frame.
Per-pose visibility weights are handled by grouping binary patterns (tables
built once per distinct pattern) or, for other weights, by per-pose normal
equations.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from zoo import skeleton as skel
from zoo.lifting_deep.normalise import NUM_JOINTS


# Minimum fitted weak-perspective scale for a solution to count. The 2D input
# is normalised to the model's projected RMS radius, so plausible fits have
# s near 1; s <= 0 is upside down and tiny s a degenerate fit whose
# coefficients c / s explode.
_MIN_SCALE = 0.05
# Coefficient vectors a are shrunk to Mahalanobis norm |a / sqrt(lambda)| <=
# sqrt(B) + _MAX_MAHA_MARGIN (for true poses about sqrt(B) +- 0.7), so that
# garbage 2D input (e.g. an untrained network's landmarks) never lifts to a
# metres-wide pose.
_MAX_MAHA_MARGIN = 5.
_BIG = 1e30


def _design(v: np.ndarray, angles: np.ndarray) -> np.ndarray:
  """[K*R, J, 2, P] projections P R(theta) of mean + basis poses [K,P,J,3]."""
  c, s = np.cos(angles), np.sin(angles)
  ax = (c[None, :, None, None] * v[:, None, ..., 0]
        - s[None, :, None, None] * v[:, None, ..., 1])        # [K, R, P, J]
  ay = np.broadcast_to(-v[:, None, ..., 2], ax.shape)
  a = np.stack([ax, ay], -1)                                # [K, R, P, J, 2]
  k, r, p, j, _ = a.shape
  return np.transpose(a, (0, 1, 3, 4, 2)).reshape(k * r, j, 2, p)


def quad_pairs(pattern: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Index pairs (i <= j) of flattened 2D coordinates of weighted joints."""
  coords = np.nonzero(np.repeat(np.asarray(pattern), 2) > 0)[0]
  ii, jj = np.triu_indices(len(coords))
  return coords[ii].astype(np.int32), coords[jj].astype(np.int32)


def pattern_constants(consts: dict[str, np.ndarray], pattern: np.ndarray,
                      refine_steps: int = 9) -> dict[str, np.ndarray]:
  """Per-visibility-pattern solve constants for the batched fast path.

  For every (k, angle) the regularised solve is u = M y (y: normalised,
  centred 2D, flattened [2J]) and the cost y^T H y. Computed in float64 on
  a fine angle grid of R * refine_steps angles (the coarse search grid is
  every refine_steps-th of them):
    quad_coef [Q, K*R]: coarse quadratic-form coefficients over the pairs
      (quad_pairs) of weighted coordinates (off-diagonal terms doubled);
    lin_s [2J, K*R]: coarse rows of M giving the scale s;
    fine_coef [K*R*S, Q], fine_lin_s [K*R*S, 2J], fine_solve [K*R*S, P, 2J].
  """
  w = np.asarray(pattern, np.float64)
  if w.shape != (NUM_JOINTS,) or np.any(w < 0) or w.sum() <= 0:
    raise ValueError(f'visibility pattern must be [{NUM_JOINTS}] non-negative '
                     f'weights with a positive sum, got {pattern!r}')
  steps = int(refine_steps)
  if steps < 1 or steps % 2 == 0:
    raise ValueError(f'refine_steps must be a positive odd number, got '
                     f'{refine_steps}')
  v = consts['basis_v'].astype(np.float64)
  k_num, p = v.shape[:2]
  r_num = len(consts['angles'])
  fine = np.arange(r_num * steps) * (2 * np.pi / (r_num * steps))
  a = _design(v, fine)                                      # [KRS, J, 2, P]
  kr = a.shape[0]
  a = a - np.einsum('j,rjdp->rdp', w, a)[:, None] / w.sum()  # weighted centring
  a = a.reshape(kr, 2 * NUM_JOINTS, p)
  d = np.repeat(w, 2)                                       # [2J]
  tik = np.repeat(consts['tikhonov'].astype(np.float64), r_num * steps,
                  axis=0)                                   # [KRS, P]
  gram = np.einsum('rip,i,riq->rpq', a, d, a) + tik[:, :, None] * np.eye(p)
  solve = np.linalg.solve(gram, np.transpose(a, (0, 2, 1)) * d)  # [KRS, P, 2J]
  h = np.diag(d)[None] - (d[None, :, None] * a) @ solve     # [KRS, 2J, 2J]
  h = 0.5 * (h + np.transpose(h, (0, 2, 1)))
  qi, qj = quad_pairs(w)
  coef = h[:, qi, qj] * np.where(qi == qj, 1., 2.)[None]    # [KRS, Q]
  coarse = lambda x: x.reshape((k_num, r_num, steps) + x.shape[1:])[:, :, 0] \
      .reshape((k_num * r_num,) + x.shape[1:])
  return {'pattern': w.astype(np.float32),
          'quad_coef': coarse(coef).T.astype(np.float32),
          'lin_s': coarse(solve[:, 0, :]).T.astype(np.float32),
          'fine_coef': coef.astype(np.float32),
          'fine_lin_s': solve[:, 0, :].astype(np.float32),
          'fine_solve': solve.astype(np.float32)}


def _normalise_2d(y, w, r0):
  """Weighted centring and RMS scaling of [N, J, 2] y to radius r0."""
  sw = tf.maximum(tf.reduce_sum(w, -1, keepdims=True), 1e-12)[..., None]
  centroid = tf.reduce_sum(w[..., None] * y, -2, keepdims=True) / sw
  yc = y - centroid
  rms = tf.sqrt(tf.reduce_sum(w[..., None] * yc ** 2, [-2, -1],
                              keepdims=True) / sw)
  rms = tf.maximum(rms, 1e-9)
  return yc * (r0 / rms), centroid, rms


def _solve_at(yn, w, vk, tik, theta):
  """Exact per-pose regularised solve at given component poses and angles.

  yn [N, J, 2] normalised 2D; w [N, J]; vk [N, P, J, 3] (mean and basis of
  each pose's component); tik [N, P]; theta [N]. Returns (u [N, P], cost [N]).
  """
  c = tf.cos(theta)[:, None, None]
  s = tf.sin(theta)[:, None, None]
  a = tf.stack([c * vk[..., 0] - s * vk[..., 1], -vk[..., 2]], -1)
  sw = tf.maximum(tf.reduce_sum(w, -1), 1e-12)[:, None, None, None]
  a = a - tf.reduce_sum(w[:, None, :, None] * a, 2, keepdims=True) / sw
  n = tf.shape(a)[0]
  p = tf.shape(a)[1]
  af = tf.reshape(a, [n, p, -1])                            # [N, P, 2J]
  wf = tf.repeat(w, 2, axis=-1)[:, None, :]                 # [N, 1, 2J]
  gram = tf.matmul(af * wf, af, transpose_b=True) + tf.linalg.diag(tik)
  yf = tf.reshape(yn, [n, -1, 1])
  b = tf.matmul(af * wf, yf)                                # [N, P, 1]
  u = tf.linalg.cholesky_solve(tf.linalg.cholesky(gram), b)[..., 0]
  # Residual form (no cancellation, unlike |y|^2 - b.u in float32).
  resid = yf[..., 0] - tf.linalg.matvec(af, u, transpose_a=True)
  cost = (tf.reduce_sum(wf[:, 0, :] * resid ** 2, -1)
          + tf.reduce_sum(tik * u ** 2, -1))
  return u, cost


def _grid_scores_general(yn, w, consts, chunk: int = 64):
  """Costs and scales [N, K*R] for per-pose weights, by normal equations."""
  v = consts['basis_v']                                     # [K, P, J, 3]
  angles = consts['angles']
  k_num = tf.shape(v)[0]
  p = tf.shape(v)[1]
  r_num = tf.shape(angles)[0]
  c = tf.cos(angles)[None, :, None, None]
  s = tf.sin(angles)[None, :, None, None]
  ax = c * v[:, None, ..., 0] - s * v[:, None, ..., 1]      # [K, R, P, J]
  ay = tf.broadcast_to(-v[:, None, ..., 2], tf.shape(ax))
  a = tf.reshape(tf.stack([ax, ay], -1), [k_num * r_num, p, -1, 2])
  quad = tf.einsum('rpjd,rqjd->rjpq', a, a)                 # [KR, J, P, P]
  tik = tf.repeat(consts['tikhonov'], r_num, axis=0)        # [KR, P]
  n = tf.shape(yn)[0]
  pad = (-n) % chunk
  ync = tf.reshape(tf.pad(yn, [[0, pad], [0, 0], [0, 0]]),
                   [-1, chunk, NUM_JOINTS, 2])
  wc = tf.reshape(tf.pad(w, [[0, pad], [0, 0]], constant_values=1.),
                  [-1, chunk, NUM_JOINTS])

  def one(args):
    yc, wcc = args
    sw = tf.maximum(tf.reduce_sum(wcc, -1), 1e-12)          # [C]
    m = tf.einsum('cj,rpjd->crpd', wcc, a) / sw[:, None, None, None]
    gram = (tf.einsum('cj,rjpq->crpq', wcc, quad)
            - sw[:, None, None, None] * tf.einsum('crpd,crqd->crpq', m, m)
            + tf.linalg.diag(tik)[None])
    b = tf.einsum('rpjd,cjd->crp', a, wcc[..., None] * yc)
    u = tf.linalg.cholesky_solve(tf.linalg.cholesky(gram), b[..., None])[..., 0]
    # Residual form (no cancellation, unlike |y|^2 - b.u in float32).
    fit = (tf.einsum('rpjd,crp->crjd', a, u)
           - tf.einsum('crpd,crp->crd', m, u)[:, :, None])
    resid = yc[:, None] - fit
    cost = (tf.einsum('cj,crjd->cr', wcc, resid ** 2)
            + tf.reduce_sum(tik[None] * u ** 2, -1))
    return cost, u[..., 0]

  cost, scale = tf.map_fn(one, (ync, wc),
                          fn_output_signature=(tf.float32, tf.float32))
  cost = tf.reshape(cost, [-1, k_num * r_num])[:n]
  scale = tf.reshape(scale, [-1, k_num * r_num])[:n]
  return cost, scale


def _design_tf(consts):
  """[K*R, J, 2, P] float64 projections P R(theta) of mean and basis poses."""
  v = tf.cast(consts['basis_v'], tf.float64)                # [K, P, J, 3]
  angles = tf.cast(consts['angles'], tf.float64)
  c = tf.cos(angles)[None, :, None, None]
  s = tf.sin(angles)[None, :, None, None]
  ax = c * v[:, None, ..., 0] - s * v[:, None, ..., 1]      # [K, R, P, J]
  ay = tf.broadcast_to(-v[:, None, ..., 2], tf.shape(ax))
  a = tf.stack([ax, ay], -1)                                # [K, R, P, J, 2]
  k_num, p = v.shape[0], v.shape[1]
  r_num = consts['angles'].shape[0]
  return tf.reshape(tf.transpose(a, [0, 1, 3, 4, 2]),
                    [k_num * r_num, NUM_JOINTS, 2, p])


def _grid_scores_grouped(yn, w, consts):
  """Costs and scales [N, K*R] for binary per-pose weights, per pattern.

  Poses are grouped by visibility pattern (tf.unique of the bit codes); for
  each pattern the solve matrices are built once (float64, as in
  `pattern_constants`) and its poses' costs are one matmul.
  """
  a_all = _design_tf(consts)                                # [KR, J, 2, P]
  kr, p = a_all.shape[0], a_all.shape[3]
  r_num = consts['angles'].shape[0]
  tik = tf.repeat(tf.cast(consts['tikhonov'], tf.float64), r_num, axis=0)
  n = tf.shape(yn)[0]
  yf = tf.reshape(yn, [n, 2 * NUM_JOINTS])
  bits = tf.cast(w > 0, tf.int32)
  codes = tf.reduce_sum(bits * (2 ** tf.range(NUM_JOINTS)), -1)
  uniq, group = tf.unique(codes)

  def tables(pattern):
    w64 = tf.cast(pattern, tf.float64)
    mean = tf.einsum('j,rjdp->rdp', w64, a_all) / tf.reduce_sum(w64)
    a = tf.reshape(a_all - mean[:, None], [kr, 2 * NUM_JOINTS, p])
    d = tf.repeat(w64, 2)
    gram = tf.einsum('rip,i,riq->rpq', a, d, a) + tf.linalg.diag(tik)
    solve = tf.linalg.solve(gram, tf.transpose(a, [0, 2, 1]) * d)
    h = tf.linalg.diag(d)[None] - (d[None, :, None] * a) @ solve
    h = tf.reshape(h, [kr, -1])
    return tf.cast(tf.transpose(h), tf.float32), tf.cast(
        tf.transpose(solve[:, 0, :]), tf.float32)

  def body(u, cost, scale):
    sel = tf.where(tf.equal(group, u))[:, 0]
    h, lin_s = tables(tf.cast(tf.gather(bits, sel[0]), tf.float32))
    yu = tf.gather(yf, sel)
    yy = tf.reshape(yu[:, :, None] * yu[:, None, :], [tf.shape(yu)[0], -1])
    cost = tf.tensor_scatter_nd_update(cost, sel[:, None], tf.matmul(yy, h))
    scale = tf.tensor_scatter_nd_update(scale, sel[:, None],
                                        tf.matmul(yu, lin_s))
    return u + 1, cost, scale

  zeros = tf.zeros([n, kr], tf.float32)
  _, cost, scale = tf.while_loop(
      lambda u, *_: u < tf.size(uniq), body, (tf.constant(0), zeros, zeros))
  return cost, scale


def _parabolic_offset(score, best, base, ridx, r_num):
  """Sub-step offset in [-0.5, 0.5] of the minimum of a parabola through
  the scores at angles ridx - 1, ridx, ridx + 1 (0 where not convex)."""
  s0 = tf.gather(score, best, batch_dims=1)
  s_minus = tf.gather(score, base + (ridx - 1) % r_num, batch_dims=1)
  s_plus = tf.gather(score, base + (ridx + 1) % r_num, batch_dims=1)
  curv = s_minus - 2. * s0 + s_plus
  ok = (curv > 0) & (s_minus < _BIG) & (s_plus < _BIG)
  delta = tf.where(ok, 0.5 * (s_minus - s_plus) / tf.where(ok, curv, 1.), 0.)
  return tf.clip_by_value(delta, -0.5, 0.5)


def _finish(u, comp, theta, w, centroid, rms, consts):
  """3D pose (camera frame, mm) and fitted 2D projection from a solution."""
  v = consts['basis_v']
  k_num, p = v.shape[0], v.shape[1]
  n = tf.shape(u)[0]
  s = u[:, 0]
  s_safe = tf.where(s > _MIN_SCALE, s, _MIN_SCALE)
  a = u[:, 1:] / s_safe[:, None]
  # Coefficient variances lambda = tau^2 / Tikhonov weight (see
  # lift_constants); shrink implausibly large coefficient vectors.
  tik = tf.gather(consts['tikhonov'], comp)[:, 1:]
  maha = tf.sqrt(tf.reduce_sum(a ** 2 * tik, -1) / consts['tau2'])
  limit = math.sqrt(p - 1) + _MAX_MAHA_MARGIN
  a = a * tf.minimum(1., limit / tf.maximum(maha, 1e-12))[:, None]
  coeffs = tf.concat([tf.ones_like(u[:, :1]), a], 1)
  onehot = tf.one_hot(comp, k_num, dtype=tf.float32)
  full = tf.reshape(onehot[:, :, None] * coeffs[:, None, :], [n, k_num * p])
  pose = tf.reshape(tf.matmul(full, tf.reshape(v, [k_num * p, -1])),
                    [n, NUM_JOINTS, 3])                     # model frame
  c, sn = tf.cos(theta)[:, None], tf.sin(theta)[:, None]
  px, py, pz = pose[..., 0], pose[..., 1], pose[..., 2]
  rx, ry = c * px - sn * py, sn * px + c * py
  cam = tf.stack([rx, -pz, ry], -1)
  cam = (cam - cam[:, skel.ROOT:skel.ROOT + 1]) * consts['scale_mm']
  # A u = s P R (pose - weighted centroid): the fitted projection.
  sw = tf.maximum(tf.reduce_sum(w, -1, keepdims=True), 1e-12)
  img = tf.stack([rx, -pz], -1)
  img = img - (tf.reduce_sum(w[..., None] * img, 1, keepdims=True)
               / sw[..., None])
  proj = s_safe[:, None, None] * img * (rms / consts['r0']) + centroid
  return cam, proj, s


def lift_core(poses_2d, consts: dict[str, tf.Tensor], visibility=None,
              refine: bool = True) -> dict[str, tf.Tensor]:
  """The TF lifting, shared by PosePrior.lift and LiftingLayer.

  Args:
    poses_2d: [N, 17, 2] image-plane joints (any float dtype).
    consts: tensors from `PosePrior.lift_constants` plus `pattern_constants`
      and `quad_i`, `quad_j` (from `quad_pairs` of the pattern).
    visibility: None (the fixed pattern: one matmul for the whole search), or
      [N, 17] per-pose weights: binary weights are grouped by pattern (solve
      matrices built once per distinct pattern, then one matmul per group);
      other weights use per-pose normal equations (slow: hundreds of poses/s).
    refine: refine the best angle by a parabola through the neighbouring
      scores (fixed pattern: snapped to the precomputed fine grid; per-pose
      weights: an exact solve at the refined angle); kept where it lowers
      the score.

  Returns dict: poses3d_mm [N, 17, 3] (camera frame, root-relative, mm),
  projection_2d [N, 17, 2] (the fitted weak-perspective projection of the
  3D pose, in the input's units), component [N] int32, angle [N] (rad),
  scale [N] (normalised units), score [N].
  """
  y = tf.cast(poses_2d, tf.float32)
  n = tf.shape(y)[0]
  k_num = consts['basis_v'].shape[0]
  r_num = consts['angles'].shape[0]
  inv2tau2 = 0.5 / consts['tau2']
  fixed = visibility is None
  if fixed:
    w = tf.broadcast_to(consts['pattern'][None], [n, NUM_JOINTS])
  else:
    w = tf.broadcast_to(tf.cast(visibility, tf.float32), [n, NUM_JOINTS])
  yn, centroid, rms = _normalise_2d(y, w, consts['r0'])
  yf = tf.reshape(yn, [n, 2 * NUM_JOINTS])
  if fixed:
    yt = tf.transpose(yf)
    yy = tf.transpose(tf.gather(yt, consts['quad_i']) *
                      tf.gather(yt, consts['quad_j']))      # [N, Q]
    cost = tf.matmul(yy, consts['quad_coef'])
    scale = tf.matmul(yf, consts['lin_s'])
  else:
    binary = tf.reduce_all((w == 0.) | (w == 1.))
    cost, scale = tf.cond(
        binary, lambda: _grid_scores_grouped(yn, w, consts),
        lambda: _grid_scores_general(yn, w, consts))
  offset = tf.repeat(consts['offset'], r_num)               # [KR]
  score = tf.where(scale > _MIN_SCALE, cost * inv2tau2 + offset[None], _BIG)
  best = tf.argmin(score, axis=1, output_type=tf.int32)
  best_score = tf.gather(score, best, batch_dims=1)
  comp = best // r_num
  ridx = best % r_num
  offk = tf.gather(consts['offset'], comp)
  step = 2. * math.pi / r_num
  if fixed:
    steps = consts['fine_solve'].shape[0] // (k_num * r_num)
    fine_n = r_num * steps
    fidx = comp * fine_n + ridx * steps
    if refine and steps > 1:
      delta = _parabolic_offset(score, best, comp * r_num, ridx, r_num)
      off = tf.clip_by_value(tf.cast(tf.round(delta * steps), tf.int32),
                             -(steps // 2), steps // 2)
      fidx_r = comp * fine_n + (ridx * steps + off) % fine_n
      cost_r = tf.reduce_sum(yy * tf.gather(consts['fine_coef'], fidx_r), -1)
      s_r = tf.reduce_sum(yf * tf.gather(consts['fine_lin_s'], fidx_r), -1)
      score_r = cost_r * inv2tau2 + offk
      better = (score_r < best_score) & (s_r > _MIN_SCALE)
      fidx = tf.where(better, fidx_r, fidx)
      best_score = tf.where(better, score_r, best_score)
    u = tf.linalg.matvec(tf.gather(consts['fine_solve'], fidx), yf)
    theta = tf.cast(fidx % fine_n, tf.float32) * (2. * math.pi / fine_n)
  else:
    theta = tf.gather(consts['angles'], ridx)
    vk = tf.gather(consts['basis_v'], comp)
    tik = tf.gather(consts['tikhonov'], comp)
    u, ucost = _solve_at(yn, w, vk, tik, theta)
    best_score = ucost * inv2tau2 + offk
    if refine:
      delta = _parabolic_offset(score, best, comp * r_num, ridx, r_num)
      theta_r = theta + delta * step
      u_r, cost_r = _solve_at(yn, w, vk, tik, theta_r)
      score_r = cost_r * inv2tau2 + offk
      better = (score_r < best_score) & (u_r[:, 0] > _MIN_SCALE)
      theta = tf.where(better, theta_r, theta)
      u = tf.where(better[:, None], u_r, u)
      best_score = tf.where(better, score_r, best_score)
  cam, proj, s = _finish(u, comp, theta, w, centroid, rms, consts)
  return {'poses3d_mm': cam, 'projection_2d': proj, 'component': comp,
          'angle': tf.math.floormod(theta, 2. * math.pi), 'scale': s,
          'score': best_score}

"""The probabilistic 3D pose model of "Lifting from the Deep" and its lifting.

What: a mixture of probabilistic PCA models (Tipping & Bishop) over 17x3
H36M-17 poses, fitted on motion capture only, and a fast batched lifting of 2D
image-plane joints to 3D under it (weak perspective, exhaustive search over
mixture components x yaw angles with a closed-form regularised least squares
for scale and basis coefficients). Why: the paper's network lifts every
stage's landmarks with this model and projects the result back, so lifting
must be cheap enough to sit inside a training step.

Frames and units.
- Model frame: x, y span the ground plane, z points up; poses are
  root-relative (pelvis at the origin) and normalised so that the sum of
  squared limb lengths is 1 ("unit" poses). `scale_mm`, the mean
  normalisation factor seen while fitting, converts unit poses to mm.
- The camera of the upright model is CAMERA_FROM_MODEL = [[1,0,0],[0,0,-1],
  [0,1,0]]: camera x = model x, camera y (down) = -model z, camera z
  (forward) = model y. A yaw R(theta) about model z precedes it.
- `lift` takes [N, 17, 2] image-plane joints (x right, y down, any scale and
  offset) and returns [N, 17, 3] root-relative camera-frame poses (x right,
  y down, z forward) in mm.

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
import os
import tempfile
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from zoo import skeleton as skel

NUM_JOINTS = skel.NUM_JOINTS
CAMERA_FROM_MODEL = np.array([[1., 0., 0.], [0., 0., -1.], [0., 1., 0.]])
_LIMBS = np.array(skel.H36M17.limbs)
_FORMAT_VERSION = 1
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
# Tikhonov weight on the scale unknown (keeps the normal equations regular).
_SCALE_RIDGE = 1e-6
_BIG = 1e30


# ----------------------------------------------------------------------------
# Pose preprocessing
# ----------------------------------------------------------------------------

def limb_norm(poses: np.ndarray) -> np.ndarray:
  """sqrt(sum of squared limb lengths) of [..., 17, 3] poses."""
  d = poses[..., _LIMBS[:, 1], :] - poses[..., _LIMBS[:, 0], :]
  return np.sqrt(np.sum(d ** 2, axis=(-2, -1)))


def to_model_frame(poses: np.ndarray, up_axis: str = 'z') -> np.ndarray:
  """Re-expresses [..., 17, 3] poses in a right-handed z-up model frame.

  up_axis: 'z' (world frames such as zoo.data.synthetic's, unchanged), 'y'
  (y up, e.g. many mocap exports) or '-y' (camera frames, y down).
  """
  p = np.asarray(poses, np.float64)
  if up_axis == 'z':
    return p.copy()
  if up_axis == 'y':     # (x, y, z) -> (x, -z, y)
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], -1)
  if up_axis == '-y':    # (x, y, z) -> (x, z, -y)
    return np.stack([p[..., 0], p[..., 2], -p[..., 1]], -1)
  raise ValueError(f"up_axis must be 'z', 'y' or '-y', got {up_axis!r}")


def mirror(poses_model: np.ndarray) -> np.ndarray:
  """Left-right mirrored copies: x -> -x in the model frame, joints swapped."""
  return poses_model[..., skel.FLIP_PERMUTATION, :] * np.array([-1., 1., 1.])


def normalise(poses_mm: np.ndarray, up_axis: str = 'z'
              ) -> tuple[np.ndarray, np.ndarray]:
  """Root-relative, model-frame, unit sum of squared limb lengths.

  Returns (unit poses [N, 17, 3] float64, per-pose factors [N] in mm).
  """
  p = to_model_frame(poses_mm, up_axis)
  p = p - p[..., skel.ROOT:skel.ROOT + 1, :]
  norm = limb_norm(p)
  if np.any(norm <= 0):
    raise ValueError('poses with all limbs of zero length cannot be normalised')
  return p / norm[..., None, None], norm


def yaw_matrix(theta) -> np.ndarray:
  """[..., 3, 3] rotation by theta about the model's up (z) axis."""
  c, s = np.cos(theta), np.sin(theta)
  o, z = np.ones_like(c), np.zeros_like(c)
  return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1),
                   np.stack([z, z, o], -1)], -2)


def _rotate_yaw(poses: np.ndarray, theta: np.ndarray) -> np.ndarray:
  """Rotates [N, J, 3] poses by per-pose theta [N] about z."""
  c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
  x, y = poses[..., 0], poses[..., 1]
  return np.stack([c * x - s * y, s * x + c * y, poses[..., 2]], -1)


# ----------------------------------------------------------------------------
# Fitting: PPCA, yaw alignment, k-centre, EM
# ----------------------------------------------------------------------------

def _ppca(x: np.ndarray, num_basis: int, weights: np.ndarray | None = None):
  """Closed-form (weighted) PPCA of [M, D] data.

  Returns (mean [D], basis [b, D] orthonormal rows, variances [b] (total
  variance along each basis vector), noise variance).
  """
  if weights is None:
    mean = x.mean(0)
    xc = x - mean
    cov = xc.T @ xc / len(x)
  else:
    total = max(weights.sum(), 1e-12)
    mean = weights @ x / total
    xs = (x - mean) * np.sqrt(weights)[:, None]
    cov = xs.T @ xs / total  # X^T X form: BLAS syrk, far faster than gemm
  evals, evecs = np.linalg.eigh(cov)
  evals, evecs = evals[::-1], evecs[:, ::-1]
  rest = evals[num_basis:]
  noise = max(float(rest.mean()) if len(rest) else 0., 1e-10 *
              max(float(evals[0]), 1e-12), 1e-12)
  lam = np.maximum(evals[:num_basis], noise * (1 + 1e-6))
  return mean, evecs[:, :num_basis].T.copy(), lam, noise


def _ppca_log_density(x: np.ndarray, mean, basis, lam, noise) -> np.ndarray:
  """log N(x; mean, U diag(lam) U^T + noise (I - U U^T)) for [M, D] x."""
  dim = x.shape[1]
  d = x - mean
  proj = d @ basis.T
  sq = np.sum(d * d, 1)
  psq = np.sum(proj * proj, 1)
  maha = np.sum(proj * proj / lam, 1) + np.maximum(sq - psq, 0.) / noise
  logdet = np.sum(np.log(lam)) + (dim - len(lam)) * np.log(noise)
  return -0.5 * (maha + logdet + dim * np.log(2 * np.pi))


def _tomasi_kanade_mean(poses: np.ndarray) -> np.ndarray:
  """Mean pose [J, 3] with the yaw of every pose factored out.

  Interleaves each pose's ground-plane coordinates into M [2N, J], takes its
  rank-2 factorisation M ~ A S, upgrades A metrically (each row pair as close
  to orthonormal as one 2x2 correction allows), replaces each row pair by
  the closest rotation and averages R_i^T M_i. The up coordinate is the mean
  of the up coordinates (yaw does not change it).
  """
  x, y = poses[..., 0], poses[..., 1]                     # [N, J]
  mtm = x.T @ x + y.T @ y
  _, evecs = np.linalg.eigh(mtm)
  v2 = evecs[:, ::-1][:, :2]                              # [J, 2]
  a = np.stack([x @ v2, y @ v2], 1)                       # [N, 2, 2]: A_i
  # Metric upgrade: C (2x2 SPD) with A_i C A_i^T ~ I, linear in (c11, c12, c22).
  r0, r1 = a[:, 0], a[:, 1]

  def row(p, q):
    return np.stack([p[:, 0] * q[:, 0], p[:, 0] * q[:, 1] + p[:, 1] * q[:, 0],
                     p[:, 1] * q[:, 1]], -1)

  design = np.concatenate([row(r0, r0), row(r1, r1), row(r0, r1)])
  rhs = np.concatenate([np.ones(len(a)), np.ones(len(a)), np.zeros(len(a))])
  c11, c12, c22 = np.linalg.lstsq(design, rhs, rcond=None)[0]
  cmat = np.array([[c11, c12], [c12, c22]])
  try:
    q = np.linalg.cholesky(cmat)
  except np.linalg.LinAlgError:
    q = np.eye(2) / max(np.sqrt(np.mean(np.sum(a ** 2, (1, 2))) / 2), 1e-12)
  aq = a @ q
  if np.mean(np.linalg.det(aq) < 0) > 0.5:  # keep rotations proper
    q = q @ np.diag([1., -1.])
    aq = a @ q
  u, _, vt = np.linalg.svd(aq)
  det = np.linalg.det(u @ vt)
  fix = np.ones((len(a), 2))
  fix[:, 1] = det
  rot = u @ (fix[:, :, None] * vt)                        # [N, 2, 2]
  m = np.stack([x, y], 1)                                 # [N, 2, J]
  mean_xy = np.mean(np.swapaxes(rot, 1, 2) @ m, 0)        # [2, J]
  return np.stack([mean_xy[0], mean_xy[1], poses[..., 2].mean(0)], -1)


def _best_yaw(poses: np.ndarray, mean: np.ndarray, basis: np.ndarray,
              num_grid: int = 64, num_newton: int = 4,
              chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
  """Per-pose yaw minimising the residual off the affine subspace mean+span.

  R(-theta) X = cos P + sin Q + Z with P = (x, y, 0), Q = (y, -x, 0),
  Z = (0, 0, z), so the residual |d|^2 - |U d|^2 (d = R(-theta) X - mean) is a
  trigonometric polynomial of degree 2 in theta, five coefficients per pose:
  exact global search on a grid (one matmul), then Newton. Returns
  (theta [N], residual [N]).
  """
  n, j = poses.shape[:2]
  b = len(basis)
  theta_out = np.empty(n)
  res_out = np.empty(n)
  ub = basis.reshape(b, j, 3)
  ux, uy, uz = ub[..., 0].T, ub[..., 1].T, ub[..., 2].T      # [J, b]
  mux, muy, muz = mean[:, 0], mean[:, 1], mean[:, 2]
  umu = basis @ mean.reshape(-1)                            # [b]
  grid = np.linspace(0., 2 * np.pi, num_grid, endpoint=False)
  fns = np.stack([np.ones_like(grid), np.cos(grid), np.sin(grid),
                  np.cos(2 * grid), np.sin(2 * grid)])       # [5, G]
  for start in range(0, n, chunk):
    x, y, z = (poses[start:start + chunk, :, i] for i in range(3))
    pp = x @ ux + y @ uy                                    # U P
    pq = y @ ux - x @ uy                                    # U Q
    pz = z @ uz - umu                                       # U (Z - mean)
    zc = z - muz
    const = (np.sum(x * x + y * y, 1) + np.sum(zc * zc, 1)
             + np.sum(mux ** 2 + muy ** 2) - np.sum(pz * pz, 1))
    a_c = -2 * (x @ mux + y @ muy) - 2 * np.sum(pp * pz, 1)
    a_s = -2 * (y @ mux - x @ muy) - 2 * np.sum(pq * pz, 1)
    a_cc = -np.sum(pp * pp, 1)
    a_ss = -np.sum(pq * pq, 1)
    a_cs = -2 * np.sum(pp * pq, 1)
    # c^2 = (1 + cos 2t) / 2, s^2 = (1 - cos 2t) / 2, cs = sin 2t / 2.
    coef = np.stack([const + 0.5 * (a_cc + a_ss), a_c, a_s,
                     0.5 * (a_cc - a_ss), 0.5 * a_cs], 1)    # [n, 5]
    theta = grid[np.argmin(coef @ fns, 1)]
    step_max = 2 * np.pi / num_grid
    for _ in range(num_newton):
      c, s = np.cos(theta), np.sin(theta)
      c2, s2 = np.cos(2 * theta), np.sin(2 * theta)
      d1 = -coef[:, 1] * s + coef[:, 2] * c - 2 * coef[:, 3] * s2 \
          + 2 * coef[:, 4] * c2
      d2 = -coef[:, 1] * c - coef[:, 2] * s - 4 * coef[:, 3] * c2 \
          - 4 * coef[:, 4] * s2
      step = np.where(d2 > 1e-12, -d1 / np.maximum(d2, 1e-12), 0.)
      theta = theta + np.clip(step, -step_max, step_max)
    value = (coef[:, 0] + coef[:, 1] * np.cos(theta)
             + coef[:, 2] * np.sin(theta)
             + coef[:, 3] * np.cos(2 * theta) + coef[:, 4] * np.sin(2 * theta))
    theta_out[start:start + chunk] = np.mod(theta, 2 * np.pi)
    res_out[start:start + chunk] = np.maximum(value, 0.)
  return theta_out, res_out


def align_yaw(poses: np.ndarray, num_basis: int, iters_per_size: int = 1,
              final_iters: int = 4, progress: bool = True
              ) -> tuple[np.ndarray, dict[str, Any]]:
  """Joint ground-plane alignment of unit poses [N, J, 3] (model frame).

  Tomasi-Kanade initialisation of the mean, then alternating closed-form
  PPCA and exact per-pose yaw updates while the basis grows from 1 to
  num_basis. Returns (yaw angles [N] such that rotating pose i by -theta_i
  aligns it, info dict with the final mean residual).
  """
  mean = _tomasi_kanade_mean(poses)
  theta, res = _best_yaw(poses, mean, np.zeros((0, poses.shape[1] * 3)))
  poses = np.ascontiguousarray(poses)
  schedule = [b for b in range(1, num_basis + 1) for _ in range(iters_per_size)]
  schedule += [num_basis] * final_iters
  bar = tqdm(schedule, desc='prior: yaw alignment', disable=not progress,
             leave=False)
  flat_dim = poses.shape[1] * 3
  for b in bar:
    aligned = _rotate_yaw(poses, -theta).reshape(len(poses), flat_dim)
    mu, basis, _, _ = _ppca(aligned, b)
    theta, res = _best_yaw(poses, mu.reshape(-1, 3), basis)
    bar.set_postfix(basis=b, residual=f'{res.mean():.3g}')
  bar.close()
  return theta, {'mean_residual': float(res.mean())}


def greedy_k_centres(points: np.ndarray, k: int, separation: float = 1.0
                     ) -> np.ndarray:
  """Greedy selection of k centres among [n, D] points (indices [k]).

  Each step adds the candidate that most lowers sum_i min_s d(p_i, s),
  skipping candidates closer to an existing centre than `separation` times
  the current median point-to-centre distance (so a dominant mode gets one
  centre); if every candidate is that close, the best one is taken anyway.
  """
  sq = np.sum(points ** 2, 1)
  dist = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * points @ points.T, 0))
  current = np.full(len(points), np.inf)
  chosen: list[int] = []
  for _ in range(min(k, len(points))):
    totals = np.minimum(current[:, None], dist).sum(0)
    order = np.argsort(totals)
    pick = None
    if chosen:
      threshold = separation * np.median(current)
      near = dist[:, chosen].min(1)
      for cand in order:
        if cand not in chosen and near[cand] >= threshold:
          pick = int(cand)
          break
    if pick is None:
      pick = int(next(c for c in order if c not in chosen))
    chosen.append(pick)
    current = np.minimum(current, dist[:, pick])
  return np.array(chosen, np.int64)


def fit_mppca(x: np.ndarray, num_components: int, num_basis: int,
              seed: int = 0, iterations: int = 50, tol: float = 1e-6,
              kcentre_subsample: int = 2000, separation: float = 1.0,
              progress: bool = True) -> dict[str, np.ndarray]:
  """EM for a mixture of PPCA on [M, D] data, k-centre initialised.

  Returns means [K, D], bases [K, b, D], variances [K, b], noise [K],
  weights [K], and the per-iteration mean log-likelihood.
  """
  rng = np.random.default_rng(seed)
  m = len(x)
  sub = rng.choice(m, size=min(kcentre_subsample, m), replace=False)
  centres = x[sub[greedy_k_centres(x[sub], num_components, separation)]]
  sq = np.sum(x ** 2, 1)
  d2 = sq[:, None] + np.sum(centres ** 2, 1)[None] - 2 * x @ centres.T
  assign = np.argmin(d2, 1)
  resp = np.eye(num_components)[assign]
  history = []
  bar = tqdm(range(iterations + 1), desc='prior: EM (mixture of PPCA)',
             disable=not progress, leave=False)
  params = None
  for it in bar:
    # M-step (the first one from the hard k-centre assignment).
    weights = resp.sum(0)
    comps = []
    for k in range(num_components):
      if weights[k] < 2 * num_basis + 2:   # degenerate cluster: reseed
        weights[k] = 1.
        w = np.ones(m)
      else:
        w = resp[:, k]
      comps.append(_ppca(x, num_basis, w))
    pis = weights / weights.sum()
    params = comps, pis
    # E-step.
    logp = np.stack([_ppca_log_density(x, *c) for c in comps], 1) + np.log(pis)
    top = logp.max(1, keepdims=True)
    lse = top[:, 0] + np.log(np.sum(np.exp(logp - top), 1))
    resp = np.exp(logp - lse[:, None])
    history.append(float(lse.mean()))
    bar.set_postfix(loglik=f'{history[-1]:.4f}')
    if it > 1 and abs(history[-1] - history[-2]) < tol * abs(history[-2]):
      break
  bar.close()
  comps, pis = params
  return {'means': np.stack([c[0] for c in comps]),
          'bases': np.stack([c[1] for c in comps]),
          'variances': np.stack([c[2] for c in comps]),
          'noise': np.array([c[3] for c in comps]),
          'weights': pis, 'loglik': np.array(history)}


# ----------------------------------------------------------------------------
# Lifting constants (NumPy, float64) and the TF lifting core
# ----------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------

class PosePrior:
  """A mixture of PPCA over unit, yaw-aligned, root-relative H36M-17 poses.

  Component k: mean[k] [17, 3] plus orthonormal basis[k] [B, 17, 3] (as
  51-vectors) with per-basis standard deviations basis_std[k] [B] and an
  isotropic noise standard deviation noise_std[k]; covariance
  basis^T diag(basis_std^2) basis + noise_std^2 I. Mixing weights [K].
  """

  def __init__(self, mean: np.ndarray, basis: np.ndarray,
               basis_std: np.ndarray, noise_std: np.ndarray,
               weights: np.ndarray, scale_mm: float,
               num_angles: int = 80, lift_noise: float = 0.05):
    mean = np.asarray(mean, np.float64)
    basis = np.asarray(basis, np.float64)
    k = mean.shape[0] if mean.ndim == 3 else -1
    if mean.shape != (k, NUM_JOINTS, 3) or k < 1:
      raise ValueError(f'mean must be [K, {NUM_JOINTS}, 3], got {mean.shape}')
    if basis.ndim != 4 or basis.shape[0] != k or basis.shape[2:] != (
        NUM_JOINTS, 3):
      raise ValueError(f'basis must be [K={k}, B, {NUM_JOINTS}, 3], got '
                       f'{basis.shape}')
    b = basis.shape[1]
    basis_std = np.asarray(basis_std, np.float64)
    noise_std = np.asarray(noise_std, np.float64).reshape(-1)
    weights = np.asarray(weights, np.float64).reshape(-1)
    if basis_std.shape != (k, b):
      raise ValueError(f'basis_std must be [K={k}, B={b}], got '
                       f'{basis_std.shape}')
    if noise_std.shape != (k,) or weights.shape != (k,):
      raise ValueError(f'noise_std and weights must be [K={k}], got '
                       f'{noise_std.shape} and {weights.shape}')
    if np.any(noise_std <= 0) or np.any(weights < 0) or weights.sum() <= 0:
      raise ValueError('noise_std must be positive and weights non-negative '
                       'with a positive sum')
    self.mean = mean
    self.basis = basis
    self.basis_std = basis_std
    self.noise_std = noise_std
    self.weights = weights / weights.sum()
    self.scale_mm = float(scale_mm)
    self.num_angles = int(num_angles)
    self.lift_noise = float(lift_noise)
    self._distribution = None
    self._lift_cache: dict[Any, Any] = {}

  @property
  def num_components(self) -> int:
    return self.mean.shape[0]

  @property
  def num_basis(self) -> int:
    return self.basis.shape[1]

  # --- fitting ------------------------------------------------------------
  @classmethod
  def fit(cls, poses_mm: np.ndarray, num_components: int = 3,
          num_basis: int = 25, seed: int = 0, up_axis: str = 'z',
          mirror_poses: bool = True, em_iterations: int = 50,
          align_iters_per_size: int = 1, align_final_iters: int = 4,
          kcentre_subsample: int = 2000, separation: float = 1.0,
          progress: bool = True, **lift_options) -> 'PosePrior':
    """Fits the paper's model on motion capture [N, 17, 3] (mm).

    Normalise (root-relative, unit sum of squared limb lengths), add
    left-right mirrored copies, align yaw jointly with a growing PPCA, then
    EM for the mixture of PPCA from a greedy k-centre initialisation.
    """
    poses_mm = np.asarray(poses_mm)
    if poses_mm.ndim != 3 or poses_mm.shape[1:] != (NUM_JOINTS, 3):
      raise ValueError(f'poses_mm must be [N, {NUM_JOINTS}, 3] (H36M-17, mm), '
                       f'got {poses_mm.shape}')
    if not np.all(np.isfinite(poses_mm)):
      raise ValueError('poses_mm contains NaN or infinite values')
    if num_basis < 1 or num_basis >= NUM_JOINTS * 3:
      raise ValueError(f'num_basis must be in [1, {NUM_JOINTS * 3 - 1}], got '
                       f'{num_basis}')
    if len(poses_mm) < max(4 * num_components, num_basis + 2):
      raise ValueError(f'need more poses than {len(poses_mm)} to fit '
                       f'{num_components} components of {num_basis} bases')
    unit, norms = normalise(poses_mm, up_axis)
    if mirror_poses:
      unit = np.concatenate([unit, mirror(unit)])
    theta, _ = align_yaw(unit, num_basis, align_iters_per_size,
                         align_final_iters, progress)
    aligned = _rotate_yaw(unit, -theta).reshape(len(unit), -1)
    mix = fit_mppca(aligned, num_components, num_basis, seed, em_iterations,
                    kcentre_subsample=kcentre_subsample,
                    separation=separation, progress=progress)
    noise = mix['noise']
    basis_std = np.sqrt(np.maximum(mix['variances'] - noise[:, None], 1e-12))
    return cls(mean=mix['means'].reshape(num_components, NUM_JOINTS, 3),
               basis=mix['bases'].reshape(num_components, num_basis,
                                          NUM_JOINTS, 3),
               basis_std=basis_std, noise_std=np.sqrt(noise),
               weights=mix['weights'], scale_mm=float(norms.mean()),
               **lift_options)

  # --- the distribution ---------------------------------------------------
  @property
  def distribution(self):
    """tfd.MixtureSameFamily of PPCA Gaussians over flattened [51] unit poses.

    Event: a unit, aligned, root-relative model-frame pose reshaped from
    [17, 3] (joint-major). Covariance per component: W W^T + noise^2 I with
    W = basis^T diag(basis_std).
    """
    if self._distribution is None:
      # Lazy: tfp imports tf_keras and takes seconds.
      import tensorflow_probability as tfp
      tfd = tfp.distributions
      k, b = self.num_components, self.num_basis
      loc = self.mean.reshape(k, -1)
      w = np.transpose(self.basis.reshape(k, b, -1), (0, 2, 1)) * \
          self.basis_std[:, None, :]
      diag = np.broadcast_to(self.noise_std[:, None], loc.shape)
      self._distribution = tfd.MixtureSameFamily(
          mixture_distribution=tfd.Categorical(
              probs=tf.constant(self.weights, tf.float32)),
          components_distribution=(
              tfd.MultivariateNormalDiagPlusLowRankCovariance(
                  loc=tf.constant(loc, tf.float32),
                  cov_diag_factor=tf.constant(diag ** 2, tf.float32),
                  cov_perturb_factor=tf.constant(w, tf.float32))),
          name='pose_prior')
    return self._distribution

  def log_prob(self, poses_unit: np.ndarray) -> np.ndarray:
    """log density of [N, 17, 3] unit aligned poses (model frame)."""
    x = np.asarray(poses_unit, np.float32).reshape(len(poses_unit), -1)
    return self.distribution.log_prob(x).numpy()

  def sample(self, num: int, seed: int = 0) -> np.ndarray:
    """[num, 17, 3] unit aligned poses drawn from the mixture (model frame)."""
    x = self.distribution.sample(num, seed=seed).numpy()
    return x.reshape(num, NUM_JOINTS, 3)

  # --- persistence --------------------------------------------------------
  def save(self, path: str) -> None:
    """Writes an .npz atomically (temporary file, then os.replace)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix='.tmp')
    try:
      with os.fdopen(fd, 'wb') as f:
        np.savez(f, version=_FORMAT_VERSION, mean=self.mean, basis=self.basis,
                 basis_std=self.basis_std, noise_std=self.noise_std,
                 weights=self.weights, scale_mm=self.scale_mm,
                 num_angles=self.num_angles, lift_noise=self.lift_noise)
      os.replace(tmp, path)
    except BaseException:
      if os.path.exists(tmp):
        os.remove(tmp)
      raise

  @classmethod
  def load(cls, path: str) -> 'PosePrior':
    if not os.path.exists(path):
      raise FileNotFoundError(f'pose prior file {path!r} does not exist')
    with np.load(path) as data:
      missing = [key for key in ('mean', 'basis', 'basis_std', 'noise_std',
                                 'weights', 'scale_mm') if key not in data]
      if missing:
        raise ValueError(f'{path}: not a pose prior file; missing keys '
                         f'{missing}')
      version = int(data['version']) if 'version' in data else 0
      if version > _FORMAT_VERSION:
        raise ValueError(f'{path}: format version {version} is newer than '
                         f'this code ({_FORMAT_VERSION})')
      return cls(data['mean'], data['basis'], data['basis_std'],
                 data['noise_std'], data['weights'], float(data['scale_mm']),
                 num_angles=int(data['num_angles']),
                 lift_noise=float(data['lift_noise']))

  @classmethod
  def from_official_mat(cls, path: str, scale_mm: float | None = None,
                        **lift_options) -> 'PosePrior':
    """Imports the model file released with the paper (MATLAB v5 .mat).

    Layout: `mu` [K, 51] (each row 3x17 row-major: all x, then y, then z),
    `e` [K, B, 51] (same per basis vector), `sigma` [K, B+1] (per-basis
    standard deviations, then the data-noise standard deviation). Mixing
    weights are uniform unless a `weights` [K] entry exists. Bases that are
    not orthonormal are orthonormalised preserving the covariance.
    `scale_mm` defaults to the ratio of the H36M mean skeleton's
    sqrt(sum of squared limb lengths) to the file's mean pose's.
    """
    import scipy.io  # pylint: disable=g-import-not-at-top
    if not os.path.exists(path):
      raise FileNotFoundError(f'model file {path!r} does not exist')
    data = scipy.io.loadmat(path)
    for key in ('mu', 'e', 'sigma'):
      if key not in data:
        raise ValueError(f'{path}: missing key {key!r}; expected mu [K, 51], '
                         f'e [K, B, 51], sigma [K, B+1]')
    mu = np.asarray(data['mu'], np.float64)
    e = np.asarray(data['e'], np.float64)
    sigma = np.asarray(data['sigma'], np.float64)
    if mu.ndim == 1:
      mu = mu[None]
    if e.ndim == 2:
      e = e[None]
    if sigma.ndim == 1:
      sigma = sigma[None]
    k = mu.shape[0]
    if mu.shape != (k, 3 * NUM_JOINTS):
      raise ValueError(f'{path}: key mu has shape {mu.shape}, expected '
                       f'[K, {3 * NUM_JOINTS}]')
    if e.ndim != 3 or e.shape[0] != k or e.shape[2] != 3 * NUM_JOINTS:
      raise ValueError(f'{path}: key e has shape {e.shape}, expected '
                       f'[K={k}, B, {3 * NUM_JOINTS}]')
    b = e.shape[1]
    if sigma.shape != (k, b + 1):
      raise ValueError(f'{path}: key sigma has shape {sigma.shape}, expected '
                       f'[K={k}, B+1={b + 1}]')
    mean = np.transpose(mu.reshape(k, 3, NUM_JOINTS), (0, 2, 1))
    basis = np.transpose(e.reshape(k, b, 3, NUM_JOINTS), (0, 1, 3, 2))
    basis_std = np.abs(sigma[:, :b])
    noise_std = np.abs(sigma[:, b])
    flat = basis.reshape(k, b, -1)
    gram = flat @ np.transpose(flat, (0, 2, 1))
    if not np.allclose(gram, np.eye(b), atol=1e-4):
      w = np.transpose(flat, (0, 2, 1)) * basis_std[:, None, :]  # [K, 51, B]
      u, sv, _ = np.linalg.svd(w, full_matrices=False)
      basis = np.transpose(u, (0, 2, 1)).reshape(k, b, NUM_JOINTS, 3)
      basis_std = sv
    weights = (np.asarray(data['weights'], np.float64).reshape(-1)
               if 'weights' in data else np.full(k, 1. / k))
    if scale_mm is None:
      ref = np.sqrt(np.sum(skel.mean_bone_lengths_mm().astype(np.float64) ** 2))
      scale_mm = float(ref / np.mean(limb_norm(mean)))
    return cls(mean, basis, basis_std, noise_std, weights, scale_mm,
               **lift_options)

  # --- lifting ------------------------------------------------------------
  def lift_constants(self, num_angles: int | None = None,
                     lift_noise: float | None = None) -> dict[str, np.ndarray]:
    """Pattern-independent lifting constants (float32 NumPy arrays).

    basis_v [K, B+1, 17, 3] (mean then basis), tikhonov [K, B+1], offset [K]
    (score prior term), angles [R], scale_mm, r0 (normalised 2D RMS radius),
    tau2 (2D noise variance in normalised units).
    """
    num_angles = self.num_angles if num_angles is None else int(num_angles)
    lift_noise = self.lift_noise if lift_noise is None else float(lift_noise)
    if num_angles < 1:
      raise ValueError(f'num_angles must be >= 1, got {num_angles}')
    if lift_noise <= 0:
      raise ValueError(f'lift_noise must be positive, got {lift_noise}')
    v = np.concatenate([self.mean[:, None], self.basis], 1)
    lam = self.basis_std ** 2 + self.noise_std[:, None] ** 2  # coefficient var
    angles = np.arange(num_angles) * (2 * np.pi / num_angles)
    # r0: RMS radius of the projected mean poses over components and angles.
    a = _design(v[:, :1], angles)[..., 0]                     # [KR, J, 2]
    a = a - a.mean(1, keepdims=True)
    r0 = float(np.sqrt(np.mean(np.sum(a ** 2, -1))))
    tau2 = (lift_noise * r0) ** 2
    tik = np.concatenate([np.full((self.num_components, 1), _SCALE_RIDGE),
                          tau2 / lam], 1)
    offset = 0.5 * np.sum(np.log(lam), 1) - np.log(self.weights)
    return {'basis_v': v.astype(np.float32),
            'tikhonov': tik.astype(np.float32),
            'offset': offset.astype(np.float32),
            'angles': angles.astype(np.float32),
            'scale_mm': np.float32(self.scale_mm), 'r0': np.float32(r0),
            'tau2': np.float32(tau2)}

  def lift(self, poses_2d, visibility=None, refine: bool = True,
           return_details: bool = False, num_angles: int | None = None,
           lift_noise: float | None = None, refine_steps: int = 9):
    """Lifts [N, 17, 2] image-plane joints to [N, 17, 3] camera-frame mm.

    visibility: None (all joints weight 1), a [17] pattern shared by the
    batch (precomputed fast path), or [N, 17] per-pose weights (per-pose
    normal equations; slower). Zero-weight joints are still reconstructed.
    With `return_details`, returns lift_core's dict of NumPy arrays.
    """
    y = np.asarray(poses_2d, np.float32)
    if y.ndim != 3 or y.shape[1:] != (NUM_JOINTS, 2):
      raise ValueError(f'poses_2d must be [N, {NUM_JOINTS}, 2], got {y.shape}')
    if not np.all(np.isfinite(y)):
      raise ValueError('poses_2d contains NaN or infinite values')
    vis = None if visibility is None else np.asarray(visibility, np.float32)
    if vis is not None and vis.shape not in ((NUM_JOINTS,),
                                             (len(y), NUM_JOINTS)):
      raise ValueError(f'visibility must be [{NUM_JOINTS}] or '
                       f'[N={len(y)}, {NUM_JOINTS}], got {vis.shape}')
    pattern = np.ones(NUM_JOINTS, np.float32) if vis is None or vis.ndim == 2 \
        else vis
    fns = self._lift_functions(pattern, refine, num_angles, lift_noise,
                               refine_steps)
    if vis is not None and vis.ndim == 2:
      out = fns['general'](tf.constant(y), tf.constant(vis))
    else:
      out = fns['fixed'](tf.constant(y))
    out = {key: value.numpy() for key, value in out.items()}
    return out if return_details else out['poses3d_mm']

  def tf_constants(self, pattern=None, num_angles: int | None = None,
                   lift_noise: float | None = None,
                   refine_steps: int = 9) -> dict[str, np.ndarray]:
    """All constants lift_core needs for a fixed pattern (NumPy)."""
    pattern = np.ones(NUM_JOINTS, np.float32) if pattern is None else pattern
    consts = self.lift_constants(num_angles, lift_noise)
    consts.update(pattern_constants(consts, pattern, refine_steps))
    consts['quad_i'], consts['quad_j'] = quad_pairs(pattern)
    return consts

  def _lift_functions(self, pattern, refine, num_angles, lift_noise,
                      refine_steps):
    key = (tuple(np.round(pattern, 6)), bool(refine), num_angles, lift_noise,
           refine_steps)
    if key not in self._lift_cache:
      consts = {k: tf.constant(v) for k, v in self.tf_constants(
          pattern, num_angles, lift_noise, refine_steps).items()}

      parts = _parallel_chunks()

      @tf.function(input_signature=[
          tf.TensorSpec([None, NUM_JOINTS, 2], tf.float32)])
      def fixed(y):
        # Independent chunks run concurrently on TF's inter-op threads (one
        # chunk's ops barely use a second core); padding rows lift to zeros.
        n = tf.shape(y)[0]
        padded = tf.pad(y, [[0, (-n) % parts], [0, 0], [0, 0]])
        outs = [lift_core(chunk, consts, None, refine)
                for chunk in tf.split(padded, parts)]
        return {key: tf.concat([o[key] for o in outs], 0)[:n]
                for key in outs[0]}

      @tf.function(input_signature=[
          tf.TensorSpec([None, NUM_JOINTS, 2], tf.float32),
          tf.TensorSpec([None, NUM_JOINTS], tf.float32)])
      def general(y, vis):
        return lift_core(y, consts, vis, refine)

      self._lift_cache[key] = {'fixed': fixed, 'general': general}
    return self._lift_cache[key]


def _parallel_chunks() -> int:
  """Batch chunks lifted concurrently by PosePrior.lift (2 to 8)."""
  return max(2, min(8, os.cpu_count() or 2))


# ----------------------------------------------------------------------------
# The plain per-pose reference (for speed comparisons and tests)
# ----------------------------------------------------------------------------

def lift_reference(prior: PosePrior, poses_2d: np.ndarray,
                   visibility: np.ndarray | None = None,
                   num_angles: int | None = None,
                   lift_noise: float | None = None) -> np.ndarray:
  """Per-pose NumPy loop over components and angles (no refinement).

  Written independently of the TF path (explicit design matrix, weighted
  translation as an unknown, np.linalg.solve per (pose, component, angle)),
  like the released code's structure. Returns [N, 17, 3] camera-frame mm.
  """
  consts = prior.lift_constants(num_angles, lift_noise)
  v = consts['basis_v'].astype(np.float64)
  k_num, p = v.shape[:2]
  angles = consts['angles'].astype(np.float64)
  r0, tau2 = float(consts['r0']), float(consts['tau2'])
  out = np.zeros(poses_2d.shape[:1] + (NUM_JOINTS, 3))
  for i, y in enumerate(np.asarray(poses_2d, np.float64)):
    w = np.ones(NUM_JOINTS) if visibility is None else np.broadcast_to(
        np.asarray(visibility, np.float64), (len(poses_2d), NUM_JOINTS))[i]
    cen = w @ y / w.sum()
    rms = np.sqrt(np.sum(w[:, None] * (y - cen) ** 2) / w.sum())
    yn = ((y - cen) * r0 / max(rms, 1e-9)).reshape(-1)
    sw = np.repeat(np.sqrt(w), 2)
    best = (np.inf, None)
    for k in range(k_num):
      lam_diag = consts['tikhonov'][k].astype(np.float64)
      for theta in angles:
        rot = CAMERA_FROM_MODEL @ yaw_matrix(theta)
        cols = [(v[k, q] @ rot.T)[:, :2].reshape(-1) for q in range(p)]
        design = np.stack(cols, 1)
        # Translation unknowns (x, y), unregularised: equivalent to centring.
        trans = np.tile(np.eye(2), (NUM_JOINTS, 1))
        full = np.concatenate([design, trans], 1) * sw[:, None]
        reg = np.diag(np.sqrt(np.concatenate([lam_diag, [0., 0.]])))
        lhs = np.concatenate([full, reg])
        rhs = np.concatenate([yn * sw, np.zeros(p + 2)])
        sol = np.linalg.solve(lhs.T @ lhs, lhs.T @ rhs)
        cost = np.sum((lhs @ sol - rhs) ** 2)
        score = cost / (2 * tau2) + consts['offset'][k]
        if sol[0] > _MIN_SCALE and score < best[0]:
          best = (score, (k, theta, sol))
    if best[1] is None:  # degenerate input: the first mean pose
      best = (0., (0, 0., np.concatenate([[1.], np.zeros(p - 1)])))
    k, theta, sol = best[1]
    a = sol[1:p] / sol[0]
    lam = tau2 / consts['tikhonov'][k, 1:].astype(np.float64)
    maha = np.sqrt(np.sum(a ** 2 / lam))
    a = a * min(1., (np.sqrt(p - 1) + _MAX_MAHA_MARGIN) / max(maha, 1e-12))
    coeff = np.concatenate([[1.], a])
    pose = np.einsum('pjc,p->jc', v[k], coeff)
    cam = pose @ (CAMERA_FROM_MODEL @ yaw_matrix(theta)).T
    out[i] = (cam - cam[skel.ROOT]) * float(consts['scale_mm'])
  return out.astype(np.float32)


# ----------------------------------------------------------------------------
# Keras layer
# ----------------------------------------------------------------------------

# Saved with the layer (the prior itself); everything else is derived from
# these and the layer's config, and recomputed when weights are loaded.
_RAW = ('mean_basis', 'basis_std', 'noise_std', 'mix_weights', 'scale_mm')
_DERIVED = ('tikhonov', 'offset', 'angles', 'r0', 'tau2', 'pattern',
            'quad_coef', 'lin_s', 'fine_coef', 'fine_lin_s', 'fine_solve')


@keras.saving.register_keras_serializable(package='pose3d_zoo')
class LiftingLayer(keras.layers.Layer):
  """The prior's lifting as a Keras layer; the prior lives in its weights.

  The prior's parameters (mean and basis poses, standard deviations, mixing
  weights, mm scale) are non-trainable float32 weights that checkpoints
  carry; the fast path's derived constants (Tikhonov rows, score offsets,
  the quadratic forms of the layer's fixed visibility `pattern`) are
  non-trainable weights too but are not written: they are recomputed
  (float64 NumPy) from the prior whenever weights are loaded or `set_prior`
  is called. A layer built with prior=None lifts nothing useful until
  weights are loaded. Always computes in float32 (also under mixed
  precision); no trainable weights.

  call(poses_2d [B, 17, 2], visibility=None | [B, 17]) -> dict (see
  `lift_core`): poses3d_mm, projection_2d, component, angle, scale, score.
  """

  def __init__(self, num_components: int, num_basis: int,
               num_angles: int = 80, pattern=None, refine: bool = True,
               refine_steps: int = 9, lift_noise: float = 0.05,
               prior: PosePrior | None = None, **kwargs):
    kwargs['dtype'] = 'float32'
    kwargs['trainable'] = False
    super().__init__(**kwargs)
    self.num_components = int(num_components)
    self.num_basis = int(num_basis)
    self.num_angles = int(num_angles)
    self.pattern = (np.ones(NUM_JOINTS, np.float32) if pattern is None
                    else np.asarray(pattern, np.float32).reshape(-1))
    if self.pattern.shape != (NUM_JOINTS,):
      raise ValueError(f'pattern must be [{NUM_JOINTS}], got '
                       f'{self.pattern.shape}')
    self.refine = bool(refine)
    self.refine_steps = int(refine_steps)
    self.lift_noise = float(lift_noise)
    qi, qj = quad_pairs(self.pattern)
    self._quad_i = tf.constant(qi)
    self._quad_j = tf.constant(qj)
    k, b, r, s = (self.num_components, self.num_basis, self.num_angles,
                  self.refine_steps)
    p, j2 = b + 1, 2 * NUM_JOINTS
    shapes = {'mean_basis': (k, p, NUM_JOINTS, 3), 'basis_std': (k, b),
              'noise_std': (k,), 'mix_weights': (k,), 'scale_mm': (),
              'tikhonov': (k, p), 'offset': (k,), 'angles': (r,), 'r0': (),
              'tau2': (), 'pattern': (NUM_JOINTS,),
              'quad_coef': (len(qi), k * r), 'lin_s': (j2, k * r),
              'fine_coef': (k * r * s, len(qi)),
              'fine_lin_s': (k * r * s, j2), 'fine_solve': (k * r * s, p, j2)}
    self._vars = {name: self.add_weight(name=name, shape=shapes[name],
                                        initializer='zeros', trainable=False,
                                        dtype='float32')
                  for name in _RAW + _DERIVED}
    if prior is not None:
      self.set_prior(prior)
    else:  # finite placeholders: an empty layer lifts to zeros, never NaN
      self._vars['r0'].assign(1.)
      self._vars['tau2'].assign(1.)

  def set_prior(self, prior: PosePrior) -> None:
    """Assigns a prior's parameters and recomputes the derived constants."""
    if (prior.num_components, prior.num_basis) != (self.num_components,
                                                   self.num_basis):
      raise ValueError(f'prior has {prior.num_components} components of '
                       f'{prior.num_basis} bases; the layer expects '
                       f'{self.num_components} of {self.num_basis}')
    raw = {'mean_basis': np.concatenate([prior.mean[:, None], prior.basis], 1),
           'basis_std': prior.basis_std, 'noise_std': prior.noise_std,
           'mix_weights': prior.weights, 'scale_mm': prior.scale_mm}
    consts = prior.tf_constants(self.pattern, self.num_angles,
                                self.lift_noise, self.refine_steps)
    for name in _RAW:
      self._vars[name].assign(np.asarray(raw[name], np.float32))
    for name in _DERIVED:
      self._vars[name].assign(np.asarray(consts[name], np.float32))

  @property
  def prior(self) -> PosePrior:
    """The PosePrior held in the layer's weights."""
    mb = self._vars['mean_basis'].numpy()
    return PosePrior(mb[:, 0], mb[:, 1:], self._vars['basis_std'].numpy(),
                     self._vars['noise_std'].numpy(),
                     self._vars['mix_weights'].numpy(),
                     float(self._vars['scale_mm'].numpy()),
                     num_angles=self.num_angles, lift_noise=self.lift_noise)

  def save_own_variables(self, store):
    for i, name in enumerate(_RAW):
      store[str(i)] = self._vars[name].numpy()

  def load_own_variables(self, store):
    if len(store.keys()) != len(_RAW):
      raise ValueError(f'LiftingLayer {self.name!r}: expected {len(_RAW)} '
                       f'saved arrays ({", ".join(_RAW)}), got '
                       f'{len(store.keys())}')
    for i, name in enumerate(_RAW):
      self._vars[name].assign(np.asarray(store[str(i)], np.float32))
    if float(self._vars['mix_weights'].numpy().sum()) > 0:
      self.set_prior(self.prior)

  def call(self, poses_2d, visibility=None):
    consts = {name: tf.convert_to_tensor(self._vars[name])
              for name in _DERIVED + ('scale_mm',)}
    consts['basis_v'] = tf.convert_to_tensor(self._vars['mean_basis'])
    consts['quad_i'] = self._quad_i
    consts['quad_j'] = self._quad_j
    return lift_core(poses_2d, consts, visibility, self.refine)

  def compute_output_spec(self, poses_2d, visibility=None):
    batch = poses_2d.shape[0]
    spec = keras.KerasTensor
    return {'poses3d_mm': spec((batch, NUM_JOINTS, 3)),
            'projection_2d': spec((batch, NUM_JOINTS, 2)),
            'component': spec((batch,), dtype='int32'),
            'angle': spec((batch,)), 'scale': spec((batch,)),
            'score': spec((batch,))}

  def get_config(self):
    cfg = super().get_config()
    cfg.update(num_components=self.num_components, num_basis=self.num_basis,
               num_angles=self.num_angles, pattern=self.pattern.tolist(),
               refine=self.refine, refine_steps=self.refine_steps,
               lift_noise=self.lift_noise)
    cfg.pop('trainable', None)
    return cfg

"""Fitting the pose prior: probabilistic PCA, yaw alignment (Tomasi-Kanade
mean), greedy k-centre initialisation and EM for the mixture of PPCA.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from tqdm.auto import tqdm

from zoo.lifting_deep.normalise import _rotate_yaw


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

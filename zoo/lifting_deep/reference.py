"""A plain per-pose NumPy lifting under the pose prior, written
independently of the TensorFlow path: the reference the tests and
benchmarks/bench_lifting.py compare it with.
"""
from __future__ import annotations

import numpy as np

from zoo import skeleton as skel
from zoo.lifting_deep.lifting import _MAX_MAHA_MARGIN
from zoo.lifting_deep.lifting import _MIN_SCALE
from zoo.lifting_deep.normalise import CAMERA_FROM_MODEL
from zoo.lifting_deep.normalise import NUM_JOINTS
from zoo.lifting_deep.normalise import yaw_matrix
from zoo.lifting_deep.prior import PosePrior


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

"""The probabilistic 3D pose model of "Lifting from the Deep" and its lifting.

What: a mixture of probabilistic PCA models (Tipping & Bishop) over 17x3
H36M-17 poses, fitted on motion capture only, and a fast batched lifting of 2D
image-plane joints to 3D under it (weak perspective, exhaustive search over
mixture components x yaw angles with a closed-form regularised least squares
for scale and basis coefficients). Why: the paper's network lifts every
stage's landmarks with this model and projects the result back, so lifting
must be cheap enough to sit inside a training step.

This module: the PosePrior class (fit, distribution, sampling, lifting) and
its I/O (.npz, the released .mat). Its parts: zoo.lifting_deep.normalise
(frames and units), .fitting (PPCA, EM), .lifting (the solver), .layer (the
Keras layer).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import tensorflow as tf

from zoo import fileio
from zoo import host
from zoo import skeleton as skel
from zoo.lifting_deep.fitting import align_yaw
from zoo.lifting_deep.fitting import fit_mppca
from zoo.lifting_deep.lifting import _design
from zoo.lifting_deep.lifting import lift_core
from zoo.lifting_deep.lifting import pattern_constants
from zoo.lifting_deep.lifting import quad_pairs
from zoo.lifting_deep.normalise import NUM_JOINTS
from zoo.lifting_deep.normalise import _rotate_yaw
from zoo.lifting_deep.normalise import limb_norm
from zoo.lifting_deep.normalise import mirror
from zoo.lifting_deep.normalise import normalise


_FORMAT_VERSION = 1
# Tikhonov weight on the scale unknown (keeps the normal equations regular).
_SCALE_RIDGE = 1e-6


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
    """Writes an .npz atomically (zoo.fileio.atomic_path)."""
    with fileio.atomic_path(path) as tmp:
      with open(tmp, 'wb') as f:
        np.savez(f, version=_FORMAT_VERSION, mean=self.mean, basis=self.basis,
                 basis_std=self.basis_std, noise_std=self.noise_std,
                 weights=self.weights, scale_mm=self.scale_mm,
                 num_angles=self.num_angles, lift_noise=self.lift_noise)

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
  return max(2, min(8, host.available_cores()))

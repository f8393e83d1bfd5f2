"""The pose prior's lifting as a Keras layer; the prior lives in its weights.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from zoo.lifting_deep.lifting import lift_core
from zoo.lifting_deep.lifting import quad_pairs
from zoo.lifting_deep.normalise import NUM_JOINTS
from zoo.lifting_deep.prior import PosePrior


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

"""Adam and AdamW whose per-variable update is one fused kernel.

Keras 3's Adam builds its update from about 40 small ops per variable (the
bias-correction powers, casts and the moment updates each recomputed for
every variable). For a model with hundreds of variables (an hourglass
network has about 250 trainable ones) that is about 10,000 ops, two thirds of
the training step's graph, and much of the tracing and graph optimisation
before the first step (BENCHMARKS.md, "Start-up of a training run").

These classes compute the shared scalars once per step (and device) and
update each variable with TensorFlow's fused `ResourceApplyAdam` kernel,
which implements the same rule as Keras's Adam:

  m <- m + (1 - beta_1) (g - m);  v <- v + (1 - beta_2) (g^2 - v)
  w <- w - lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)

Everything else is Keras's: the variables (same names and order, so
checkpoints of either load into the other), weight decay (applied before
the update, as for keras.optimizers.AdamW), gradient clipping, loss scaling,
distribution strategies and serialisation. `amsgrad=True` falls back to
Keras's own update.
"""
from __future__ import annotations

import keras
import tensorflow as tf


class _FusedAdamUpdate:
  """The fused update step, mixed into a keras Adam class."""

  _step_scalars: dict | None = None

  def _backend_update_step(self, grads, trainable_variables, learning_rate):
    # One step's scalars, keyed by dtype and device, shared by its variables.
    self._step_scalars = {}
    try:
      super()._backend_update_step(grads, trainable_variables, learning_rate)
    finally:
      self._step_scalars = None

  def _scalars(self, variable, learning_rate) -> dict[str, tf.Tensor]:
    # A distribution strategy updates each replica's copy on its device.
    dtype = variable.dtype
    key = (dtype, variable.device)
    scalars = self._step_scalars.get(key)
    if scalars is None:
      step = tf.cast(self.iterations + 1, dtype)
      beta_1 = tf.cast(self.beta_1, dtype)
      beta_2 = tf.cast(self.beta_2, dtype)
      scalars = self._step_scalars[key] = {
          'beta1_power': tf.pow(beta_1, step),
          'beta2_power': tf.pow(beta_2, step),
          'lr': tf.cast(learning_rate, dtype), 'beta1': beta_1,
          'beta2': beta_2, 'epsilon': tf.cast(self.epsilon, dtype)}
    return scalars

  def update_step(self, gradient, variable, learning_rate):
    if self.amsgrad or self._step_scalars is None:
      return super().update_step(gradient, variable, learning_rate)
    index = self._get_variable_index(variable)
    m, v = self._momentums[index], self._velocities[index]
    tf.raw_ops.ResourceApplyAdam(
        var=variable.handle, m=m.value.handle, v=v.value.handle,
        grad=tf.cast(gradient, variable.dtype),
        **self._scalars(variable, learning_rate))


@keras.saving.register_keras_serializable(package='pose3d_zoo')
class Adam(_FusedAdamUpdate, keras.optimizers.Adam):
  """keras.optimizers.Adam with a fused per-variable update."""


@keras.saving.register_keras_serializable(package='pose3d_zoo')
class AdamW(_FusedAdamUpdate, keras.optimizers.AdamW):
  """keras.optimizers.AdamW with a fused per-variable update."""

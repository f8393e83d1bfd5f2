"""zoo/optimizers.py: the fused Adam / AdamW take the same steps as Keras's
own classes (eager, traced, weight decay, a bfloat16 gradient, amsgrad),
with far fewer ops in the traced update, and share checkpoints with them."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo import optimizers

SHAPES = ((3, 3, 4, 8), (8,), (5,), ())


def _variables(seed=0):
  rng = np.random.default_rng(seed)
  return [tf.Variable(rng.normal(size=s).astype(np.float32)) for s in SHAPES]


def _gradients(step, dtype=tf.float32):
  rng = np.random.default_rng(100 + step)
  return [tf.cast(rng.normal(size=s).astype(np.float32), dtype)
          for s in SHAPES]


def _train(optimizer, steps=5, traced=False, dtype=tf.float32):
  variables = _variables()

  def apply(grads):
    optimizer.apply_gradients(zip(grads, variables))

  if traced:
    apply = tf.function(apply)
  for step in range(steps):
    apply(_gradients(step, dtype))
  return [v.numpy() for v in variables]


PAIRS = [
    ('adam', lambda cls: cls(learning_rate=0.01)),
    ('adam_decay', lambda cls: cls(learning_rate=0.01, weight_decay=0.1)),
    ('adamw', lambda cls: cls(learning_rate=0.01, weight_decay=0.05,
                              beta_1=0.8, beta_2=0.99, epsilon=1e-4)),
    ('adam_amsgrad', lambda cls: cls(learning_rate=0.01, amsgrad=True)),
]
CLASSES = {'adam': (optimizers.Adam, keras.optimizers.Adam),
           'adamw': (optimizers.AdamW, keras.optimizers.AdamW)}


@pytest.mark.parametrize('traced', [False, True], ids=['eager', 'traced'])
@pytest.mark.parametrize('name,make', PAIRS, ids=[p[0] for p in PAIRS])
def test_same_steps_as_keras(name, make, traced):
  fused_cls, keras_cls = CLASSES[name.split('_')[0]]
  fused = _train(make(fused_cls), traced=traced)
  reference = _train(make(keras_cls), traced=traced)
  start = [v.numpy() for v in _variables()]
  for a, b, s in zip(fused, reference, start):
    assert not np.allclose(b, s)  # the steps moved the variables
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_bfloat16_gradient_of_a_float32_variable():
  """Mixed precision: the variables stay float32, a gradient may not."""
  fused = _train(optimizers.Adam(learning_rate=0.01), dtype=tf.bfloat16)
  reference = _train(keras.optimizers.Adam(learning_rate=0.01),
                     dtype=tf.bfloat16)
  for a, b in zip(fused, reference):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _update_ops(optimizer, num_variables=24):
  variables = [tf.Variable(tf.zeros([4])) for _ in range(num_variables)]
  optimizer.build(variables)
  apply = tf.function(lambda grads: optimizer.apply_gradients(
      zip(grads, variables)))
  graph = apply.get_concrete_function(
      [tf.TensorSpec([4])] * num_variables).graph
  return len(graph.get_operations())


def test_traced_update_has_far_fewer_ops():
  fused = _update_ops(optimizers.Adam(learning_rate=0.01))
  reference = _update_ops(keras.optimizers.Adam(learning_rate=0.01))
  assert fused * 3 < reference, (fused, reference)


def test_checkpoints_load_across_the_two_classes(tmp_path):
  variables = _variables()
  keras_adam = keras.optimizers.Adam(learning_rate=0.01)
  for step in range(3):
    keras_adam.apply_gradients(zip(_gradients(step), variables))
  path = tf.train.Checkpoint(optimizer=keras_adam).write(
      str(tmp_path / 'ckpt'))
  fused = optimizers.Adam(learning_rate=0.01)
  fused.build(variables)
  tf.train.Checkpoint(optimizer=fused).read(path).assert_consumed()
  # Same variables under the same default name ('adam', uniquified per
  # instance within a process).
  strip = lambda v: (v.path.split('/')[0].rstrip('_0123456789'),
                     v.path.split('/', 1)[1])
  assert [strip(v) for v in fused.variables] == [
      strip(v) for v in keras_adam.variables]
  for a, b in zip(fused.variables, keras_adam.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())

"""The model contract (zoo/base.py): every registered zoo model, at its
`smoke` preset, builds, takes a fit step in float32 and in mixed_bfloat16
(finite float32 loss, float32 outputs), decodes to the zoo's output keys,
and round-trips its weights through save_weights / from_config /
load_weights.

Every registered model's export (a SavedModel whose signatures answer as the
Keras model does, in TF2 and TF1 loaders and through export.serve) is checked
once, by tests/export (the session fixture `exported` in its conftest.py
exports every name of `registry.zoo_names()`); exporting here again would
only repeat that.

What is specific to a paper (its loss terms, decoding, flip test, extra
metrics) is tested in that paper's folder.
"""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from export_helpers import assert_close
from zoo import base
from zoo import config as config_lib
from zoo import geometry
from zoo import registry
from zoo import skeleton as skel

J = skel.NUM_JOINTS
NAMES = registry.zoo_names()
_PREPARED: dict[str, object] = {}


def _smoke_config(name: str, tmp_path_factory):
  """The smoke config after the registry's `prepare` hook (once per model)."""
  if name not in _PREPARED:
    entry = registry.get(name)
    config = entry.config('smoke')
    if entry.prepare is not None:
      config = entry.prepare(
          config, str(tmp_path_factory.mktemp(f'prepare_{name}')), None)
    _PREPARED[name] = config
  return _PREPARED[name]


def _features(size: int, batch: int = 2, seed: int = 0) -> dict[str, tf.Tensor]:
  """A batch in zoo.data.pipeline's feature format, labels consistent: a
  random root-relative pose 4 m in front of a camera aimed at its root."""
  rng = np.random.default_rng(seed)
  focal = 1.2 * size
  k = np.tile(np.array([[focal, 0., (size - 1) / 2],
                        [0., focal, (size - 1) / 2], [0., 0., 1.]],
                       np.float32), (batch, 1, 1))
  rel = rng.normal(0., 250., (batch, J, 3)).astype(np.float32)
  rel -= rel[:, :1]
  rel[..., 2] = np.clip(rel[..., 2], -900., 900.)
  cam = rel + np.float32([0., 0., 4000.])
  joints2d = geometry.project(cam, k).astype(np.float32)
  in_crop = np.all((joints2d > -0.5) & (joints2d < size - 0.5),
                   -1).astype(np.float32)
  ones = np.ones((batch, J), np.float32)
  return {key: tf.constant(value) for key, value in {
      'image': rng.uniform(0., 1., (batch, size, size, 3)).astype(np.float32),
      'intrinsics': k, 'joints2d_px': joints2d, 'joints3d_cam_mm': cam,
      'joints3d_rel_mm': rel, 'joint_valid_2d': ones,
      'joint_valid_3d': ones.copy(), 'joint_in_crop': in_crop,
      'has_3d': np.ones((batch,), np.float32),
      'action': np.array(['walking'] * batch)}.items()}


def _build(name: str, config) -> base.PoseModel:
  model = registry.get(name).build(config)
  size = config.input_size
  model(_features(size, batch=1), training=False)  # creates the variables
  return model


def _fit_step(model) -> tuple[dict, float]:
  """One eager fit step on a smoke batch: (the model's inputs, its loss)."""
  x, y = model.targets(_features(model.config.input_size))
  model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
  history = model.fit(tf.data.Dataset.from_tensors((x, y)), epochs=1,
                      verbose=0, shuffle=False)
  return x, float(history.history['loss'][-1])


def _check_poses(poses: dict, batch: int) -> None:
  assert sorted(poses) == sorted(base.OUTPUT_KEYS)
  shapes = {'poses3d_rel_mm': (batch, J, 3), 'poses3d_cam_mm': (batch, J, 3),
            'poses2d_px': (batch, J, 2), 'confidence': (batch, J)}
  for key, value in poses.items():
    assert value.dtype == tf.float32, key
    assert tuple(value.shape) == shapes[key], key
    assert np.all(np.isfinite(value.numpy())), key


@pytest.mark.parametrize('name', NAMES)
def test_float32_build_fit_decode_and_weights(name, tmp_path,
                                              tmp_path_factory):
  entry = registry.get(name)
  config = _smoke_config(name, tmp_path_factory)
  assert isinstance(config, config_lib.ModelConfig), type(config)
  keras.utils.set_random_seed(0)
  model = _build(name, config)
  assert isinstance(model, base.PoseModel)
  assert model.backbone, 'backbone must name the layers to freeze'

  x, loss = _fit_step(model)
  assert np.isfinite(loss), loss
  outputs = model(x, training=False)
  assert all(v.dtype == tf.float32 for v in outputs.values())
  _check_poses(model.decode(outputs, x), batch=2)
  _check_poses(model.predict_poses(x), batch=2)

  # Weights: save, rebuild from the Keras config, load, same outputs.
  path = str(tmp_path / 'model.weights.h5')
  model.save_weights(path)
  clone = entry.model_class.from_config(model.get_config())
  clone(x, training=False)
  clone.load_weights(path)
  assert clone.name == model.name and clone.config == model.config
  # (equal up to float rounding: oneDNN may order a sum differently)
  assert_close({k: v.numpy() for k, v in clone(x, training=False).items()},
               {k: v.numpy() for k, v in model(x, training=False).items()},
               f'{name} weights round trip', rtol=1e-5)


@pytest.mark.parametrize('name', NAMES)
def test_mixed_bfloat16_fit_step_keeps_float32_loss_and_outputs(
    name, tmp_path_factory):
  config = _smoke_config(name, tmp_path_factory)
  keras.mixed_precision.set_global_policy('mixed_bfloat16')
  try:
    keras.utils.set_random_seed(0)
    model = _build(name, config)
    assert any(layer.compute_dtype == 'bfloat16'
               for layer in model._flatten_layers())  # pylint: disable=protected-access
    x, fit_loss = _fit_step(model)
    assert np.isfinite(fit_loss), fit_loss
    x, y = model.targets(_features(config.input_size, seed=1))
    outputs = model(x, training=True)
    assert all(v.dtype == tf.float32 for v in outputs.values())
    loss = model.compute_loss(x, y, outputs)
    assert loss.dtype == tf.float32 and np.isfinite(loss.numpy())
    _check_poses(model.decode(outputs, x), batch=2)
  finally:
    keras.mixed_precision.set_global_policy('float32')

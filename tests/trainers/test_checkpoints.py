"""Tests for trainers/checkpoints.py: resolve, load_model, sha256, atomicity."""
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import trainer_test_model as tiny
from trainers import checkpoints
from zoo import fileio
from zoo import manifest as manifest_lib
from zoo import registry
from zoo import weights as weights_lib


def _predict(model):
  inputs = weights_lib.dummy_inputs(32, 2)
  inputs['image'] = tf.random.stateless_uniform([2, 32, 32, 3], seed=(1, 2))
  return model(inputs)['rel_m'].numpy()


def _copy_final(workdir, dest):
  os.makedirs(dest)
  for name in ('model.weights.h5', 'manifest.json'):
    shutil.copy(os.path.join(workdir, name), dest)
  return str(dest)


def test_load_model_round_trips_workdir_dir_and_file(trained_run, tmp_path):
  want = _predict(trained_run.model)
  from_workdir = weights_lib.load_model(tiny.NAME, trained_run.workdir)
  np.testing.assert_allclose(_predict(from_workdir), want, rtol=1e-6)
  assert getattr(from_workdir, 'optimizer', None) is None  # not compiled
  bundle = _copy_final(trained_run.workdir, tmp_path / 'bundle')
  from_file = weights_lib.load_model(
      tiny.NAME, os.path.join(bundle, 'model.weights.h5'), preset='smoke')
  np.testing.assert_allclose(_predict(from_file), want, rtol=1e-6)


def test_final_weights_hold_no_optimizer_state(trained_run):
  import h5py
  names = []
  with h5py.File(os.path.join(trained_run.workdir, 'model.weights.h5')) as f:
    f.visit(names.append)
  assert names and not [n for n in names if 'optimizer' in n]


def test_sha256_mismatch_is_a_clear_error(trained_run, tmp_path):
  bundle = _copy_final(trained_run.workdir, tmp_path / 'bundle')
  with open(os.path.join(bundle, 'model.weights.h5'), 'ab') as f:
    f.write(b'\0')  # any change of the bytes
  with pytest.raises(manifest_lib.ChecksumError,
                     match=r'sha256 mismatch .*model.weights.h5.*manifest '
                           r'records [0-9a-f]{64} but the file has'):
    weights_lib.load_model(tiny.NAME, bundle)
  model = weights_lib.load_model(tiny.NAME, bundle, verify=False)
  np.testing.assert_allclose(_predict(model), _predict(trained_run.model),
                             rtol=1e-6)


def test_wrong_model_and_preset_are_rejected(trained_run, tmp_path):
  bundle = _copy_final(trained_run.workdir, tmp_path / 'bundle')
  with pytest.raises(ValueError, match="trained with preset 'smoke', not "
                                       "'paper'"):
    weights_lib.load_model(tiny.NAME, bundle, preset='paper')
  manifest_path = os.path.join(bundle, 'manifest.json')
  manifest = json.load(open(manifest_path))
  manifest['model'] = 'other_model'
  fileio.atomic_write_json(manifest_path, manifest)
  entry = registry.get(tiny.NAME)
  with pytest.raises(ValueError, match="holds model 'other_model', not "
                                       "'trainer_test'"):
    weights_lib.config_for(entry, weights_lib.resolve(bundle))
  os.remove(manifest_path)
  with pytest.raises(ValueError, match='pass preset='):
    weights_lib.load_model(tiny.NAME, bundle)
  with pytest.raises(FileNotFoundError, match='does not exist'):
    weights_lib.load_model(tiny.NAME, str(tmp_path / 'missing'))


def test_resolve_prefers_the_newer_tf_checkpoint(trained_run, tmp_path):
  workdir = str(tmp_path / 'copy')
  shutil.copytree(trained_run.workdir, workdir)
  assert weights_lib.resolve(workdir).kind == 'h5'  # tie at step 4: h5 wins
  model = weights_lib.load_model(tiny.NAME, workdir)
  for v in model.trainable_variables:
    v.assign(v + 1.)
  optimizer = keras.optimizers.Adam()
  optimizer.build(model.trainable_variables)
  ckpt = checkpoints.TrainingCheckpoint(
      os.path.join(workdir, 'checkpoints'), model, optimizer)
  ckpt.save(99)
  source = weights_lib.resolve(workdir)
  assert (source.kind, source.step) == ('tf', 99)
  newer = weights_lib.load_model(tiny.NAME, workdir)
  np.testing.assert_allclose(_predict(newer), _predict(model), rtol=1e-6)


def test_training_checkpoint_restores_into_fresh_objects(tmp_path):
  entry = registry.get(tiny.NAME)
  config = entry.config('smoke')
  model = weights_lib.build_model(entry, config)
  optimizer = keras.optimizers.RMSprop(1e-3)
  optimizer.build(model.trainable_variables)
  for v in optimizer.variables:
    v.assign(tf.fill(v.shape, tf.cast(3, v.dtype)))
  checkpoints.TrainingCheckpoint(str(tmp_path), model, optimizer).save(7)

  other = weights_lib.build_model(entry, config)
  other_opt = keras.optimizers.RMSprop(1e-3)
  other_opt.build(other.trainable_variables)
  ckpt = checkpoints.TrainingCheckpoint(str(tmp_path), other, other_opt)
  assert ckpt.restore_latest() == 7
  for a, b in zip(model.weights + optimizer.variables,
                  other.weights + other_opt.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())

  # A different architecture is a clear error, not a silent partial restore.
  bigger = weights_lib.build_model(entry, entry.config('paper'))
  big_opt = keras.optimizers.RMSprop(1e-3)
  big_opt.build(bigger.trainable_variables)
  with pytest.raises(ValueError, match='does not match the model'):
    checkpoints.TrainingCheckpoint(str(tmp_path), bigger,
                                   big_opt).restore_latest()


def _c2f(random: bool):
  """A c2f smoke model (layers in Python lists) and a built optimizer; every
  model variable random (or zero, for a model to restore into)."""
  entry = registry.get('c2f_volumetric')
  model = weights_lib.build_model(entry, entry.config('smoke'))
  optimizer = keras.optimizers.Adam(1e-3)
  optimizer.build(model.trainable_variables)
  rng = np.random.default_rng(0)
  for v in model.variables:
    v.assign(rng.uniform(0.5, 1.5, v.shape).astype(v.dtype) if random
             else tf.zeros_like(v))
  return model, optimizer


def test_training_checkpoint_saves_every_variable_of_listed_layers(tmp_path):
  """Batch-norm statistics of layers held in lists survive save/restore."""
  model, optimizer = _c2f(random=True)
  moving = [v for v in model.non_trainable_variables if 'moving' in v.path]
  assert any('hourglass' in v.path for v in moving)
  path = checkpoints.TrainingCheckpoint(str(tmp_path), model,
                                        optimizer).save(5)
  fresh, fresh_opt = _c2f(random=False)
  assert checkpoints.TrainingCheckpoint(str(tmp_path), fresh,
                                        fresh_opt).restore_latest() == 5
  for a, b in zip(model.variables, fresh.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
  # Loading the checkpoint as weights (zoo.load, --init_from) too.
  loaded, _ = _c2f(random=False)
  weights_lib.load_weights(loaded, weights_lib.Source('tf', path))
  for a, b in zip(model.variables, loaded.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_older_checkpoints_resume_but_do_not_load_as_weights(tmp_path):
  """A checkpoint written without the `weights` dict (before the fix)."""
  model, optimizer = _c2f(random=True)
  step = tf.Variable(3, dtype=tf.int64)
  legacy = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
  path = tf.train.CheckpointManager(legacy, str(tmp_path), 3).save(3)
  fresh, fresh_opt = _c2f(random=False)
  assert checkpoints.TrainingCheckpoint(str(tmp_path), fresh,
                                        fresh_opt).restore_latest() == 3
  for a, b in zip(model.trainable_variables, fresh.trainable_variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
  with pytest.raises(ValueError, match='older version'):
    weights_lib.load_weights(fresh, weights_lib.Source('tf', path))


def test_atomic_write_json_keeps_old_file_on_failure(tmp_path):
  path = str(tmp_path / 'x.json')
  fileio.atomic_write_json(path, {'a': np.float32(1.5), 'b': np.int64(2)})
  assert json.load(open(path)) == {'a': 1.5, 'b': 2}
  with pytest.raises(TypeError, match='cannot write object'):
    fileio.atomic_write_json(path, {'a': object()})
  assert json.load(open(path)) == {'a': 1.5, 'b': 2}
  assert os.listdir(tmp_path) == ['x.json']  # no temporary left behind


def test_save_weights_atomic_requires_keras_suffix(tmp_path):
  entry = registry.get(tiny.NAME)
  model = weights_lib.build_model(entry, entry.config('smoke'))
  with pytest.raises(ValueError, match='must end in .weights.h5'):
    checkpoints.save_weights_atomic(model, str(tmp_path / 'w.h5'))
  path = checkpoints.save_weights_atomic(model, str(tmp_path / 'w.weights.h5'))
  assert os.listdir(tmp_path) == ['w.weights.h5'] and os.path.getsize(path)


def test_init_weights_without_manifest_warn_and_record_sha256(
    trained_run, tmp_path, caplog):
  from absl import logging as absl_logging
  bundle = _copy_final(trained_run.workdir, tmp_path / 'bundle')
  os.remove(os.path.join(bundle, 'manifest.json'))
  weights = os.path.join(bundle, 'model.weights.h5')
  entry = registry.get(tiny.NAME)
  model = weights_lib.build_model(entry, entry.config('smoke'))
  absl_logging.get_absl_logger().propagate = True
  with caplog.at_level('WARNING'):
    source = checkpoints.load_init_weights(model, weights, tiny.NAME, 'smoke')
  import hashlib
  with open(weights, 'rb') as f:
    want = hashlib.sha256(f.read()).hexdigest()
  assert weights_lib.source_sha256(source) == want
  assert 'cannot be checked' in caplog.text and want in caplog.text
  np.testing.assert_allclose(_predict(model), _predict(trained_run.model),
                             rtol=1e-6)


def test_init_weights_of_another_config_name_both(trained_run):
  entry = registry.get(tiny.NAME)
  other = weights_lib.build_model(entry, entry.config('paper'))  # 8 filters
  with pytest.raises(ValueError) as e:
    checkpoints.load_init_weights(other, trained_run.workdir, tiny.NAME,
                                  'paper')
  message = str(e.value)
  assert "holds model 'trainer_test', preset 'smoke'" in message, message
  assert "this run's model 'trainer_test', preset 'paper'" in message, message

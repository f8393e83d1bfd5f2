"""Faults in training: nothing lost, clear errors.

- SIGKILL mid-run: the rerun resumes from the last complete checkpoint.
- Dying while a checkpoint, the final weights or the manifest is written
  (simulated by making TensorFlow's / Keras' writers die half-way): the
  previous good one stays in use.
- NaN/Inf loss or weights: training stops naming the step; no non-finite
  weights are saved, neither as a checkpoint nor as final weights.
- Bad training records: --on_bad_record=stop names the file and record,
  skip trains on and counts them.
- Flags that do not fit fail at start listing the valid choices (the cases
  test_run.py does not cover).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from absl import app
from absl import flags
import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.checkpoint import checkpoint_management
from tensorflow.python.ops import gen_io_ops

import trainer_test_model as tiny
from trainers import callbacks as callbacks_lib
from trainers import checkpoints
from trainers import run
from trainers import run_config
from zoo import manifest as manifest_lib
from zoo import weights as weights_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))


class _Died(BaseException):
  """Stands for the process dying (not an Exception: nothing handles it)."""


_train = tiny.train
_weights = tiny.weights


class _BeginWeights(keras.callbacks.Callback):

  def on_train_begin(self, logs=None):
    self.weights = _weights(self.model)


def _checkpoint_weights(workdir, step):
  """The model weights in WORKDIR/checkpoints/ckpt-STEP, loaded on their own."""
  entry = run_config.get_entry(tiny.NAME)
  model = weights_lib.build_model(entry, entry.config('smoke'))
  path = os.path.join(str(workdir), 'checkpoints', f'ckpt-{step}')
  weights_lib.load_weights(model, weights_lib.Source('tf', path))
  return _weights(model)


def _assert_same(a, b):
  assert len(a) == len(b) > 0
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)


@pytest.fixture(scope='module')
def run2(tiny_data, tmp_path_factory):
  """A workdir trained to step 2: ckpt-2, final weights and manifest."""
  workdir = tmp_path_factory.mktemp('run2') / 'run'
  _train(workdir, tiny_data, steps=2)
  return workdir


def _copy(run2, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(run2, workdir)
  return workdir


def _env():
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='',
              PYTHONPATH=os.pathsep.join([REPO, HERE,
                                          os.environ.get('PYTHONPATH', '')]))


# ----------------------------------------------------------------------------
# SIGKILL
# ----------------------------------------------------------------------------

def test_sigkill_mid_run_resumes_from_the_last_complete_checkpoint(
    tiny_data, tmp_path):
  workdir = tmp_path / 'run'
  cmd = [sys.executable, '-m', 'trainers.run', '--modules=trainer_test_model',
         f'--model={tiny.NAME}', '--preset=smoke', f'--workdir={workdir}',
         f'--data={tiny_data}', '--steps=1000000', '--strategy=default',
         '--noprogress', '--noevaluate', '--override=train.checkpoint_every=1']
  proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 120
    # Checkpoints are written every step: the kill lands while training and
    # quite possibly while a checkpoint is being written.
    while weights_lib.latest_checkpoint_step(str(workdir))[1] < 3:
      assert proc.poll() is None, 'training exited early'
      assert time.time() < deadline, 'no checkpoint within 120 s'
      time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  _, last = weights_lib.latest_checkpoint_step(str(workdir))
  assert last >= 3
  assert not (workdir / 'model.weights.h5').exists()
  saved = _checkpoint_weights(workdir, last)

  begin = _BeginWeights()
  result = _train(workdir, tiny_data, steps=last + 2,
                  extra_callbacks=[begin],
                  overrides={'train.checkpoint_every': 1})
  assert result.start_step == last and result.step == last + 2
  _assert_same(begin.weights, saved)
  assert int(result.model.optimizer.iterations.numpy()) == last + 2
  assert json.load(open(workdir / 'manifest.json'))['steps'] == last + 2


# ----------------------------------------------------------------------------
# Dying while writing
# ----------------------------------------------------------------------------

def _die(*args, **kwargs):
  raise _Died()


def test_dying_while_writing_a_checkpoint_keeps_the_previous_one(
    run2, tiny_data, tmp_path, monkeypatch):
  workdir = _copy(run2, tmp_path)
  good = _checkpoint_weights(workdir, 2)
  # Death while the data is written: shards are in ckpt-4_temp/, the merge
  # into ckpt-4.index / ckpt-4.data-* never happens.
  with monkeypatch.context() as patch:
    patch.setattr(gen_io_ops, 'merge_v2_checkpoints', _die)
    with pytest.raises(_Died):
      _train(workdir, tiny_data, steps=4)
  names = os.listdir(workdir / 'checkpoints')
  assert 'ckpt-4_temp' in names and 'ckpt-4.index' not in names, names
  assert weights_lib.latest_checkpoint_step(str(workdir))[1] == 2
  # Death after the data, before the `checkpoint` state file names ckpt-4.
  with monkeypatch.context() as patch:
    patch.setattr(checkpoint_management.CheckpointManager, '_record_state',
                  _die)
    with pytest.raises(_Died):
      _train(workdir, tiny_data, steps=4)
  assert 'ckpt-4.index' in os.listdir(workdir / 'checkpoints')
  assert weights_lib.latest_checkpoint_step(str(workdir))[1] == 2

  begin = _BeginWeights()
  result = _train(workdir, tiny_data, steps=6, extra_callbacks=[begin])
  assert result.start_step == 2 and result.step == 6
  _assert_same(begin.weights, good)
  assert weights_lib.latest_checkpoint_step(str(workdir))[1] == 6
  _checkpoint_weights(workdir, 4)  # written whole this time


def _final_bytes(workdir):
  return {name: open(os.path.join(str(workdir), name), 'rb').read()
          for name in ('model.weights.h5', 'manifest.json')}


def test_dying_while_writing_final_weights_keeps_a_good_pair(
    run2, tiny_data, tmp_path, monkeypatch):
  workdir = _copy(run2, tmp_path)
  before = _final_bytes(workdir)
  weights_path = str(workdir / manifest_lib.WEIGHTS_FILE)
  original = keras.Model.save_weights

  def half_then_die(self, path, *args, **kwargs):
    original(self, path, *args, **kwargs)
    with open(path, 'r+b') as f:
      f.truncate(os.path.getsize(path) // 2)
    raise _Died()

  # 1. Death half-way through the weights file: the old pair is untouched.
  with monkeypatch.context() as patch:
    patch.setattr(keras.Model, 'save_weights', half_then_die)
    with pytest.raises(_Died):
      _train(workdir, tiny_data, steps=4)
  assert _final_bytes(workdir) == before
  final = weights_lib.load_model(tiny.NAME, weights_path)  # sha256 checked
  _assert_same(_weights(final), _checkpoint_weights(workdir, 2))

  # 2. Death between the weights' rename and the manifest's (the rerun has
  # nothing to train and writes the final files at once): new weights, old
  # manifest, and the pending manifest that matches the new weights.
  manifest_path = str(workdir / manifest_lib.MANIFEST_FILE)
  pending_path = str(workdir / manifest_lib.PENDING_MANIFEST_FILE)
  replace = os.replace

  def die_before_manifest(src, dst):
    if os.fspath(dst) == manifest_path and os.fspath(src) == pending_path:
      raise _Died()
    replace(src, dst)

  with monkeypatch.context() as patch:
    patch.setattr(os, 'replace', die_before_manifest)
    with pytest.raises(_Died):
      _train(workdir, tiny_data, steps=4)
  assert json.load(open(manifest_path))['steps'] == 2
  source = weights_lib.resolve(weights_path)
  assert source.manifest['steps'] == 4
  weights_lib.verify_sha256(source)  # the pair matches: no ChecksumError
  model = weights_lib.load_model(tiny.NAME, weights_path)
  _assert_same(_weights(model), _checkpoint_weights(workdir, 4))

  # 3. The rerun completes the pair (keeping the new weights) and clears the
  # pending manifest.
  _train(workdir, tiny_data, steps=4)
  assert json.load(open(manifest_path))['steps'] == 4
  assert not os.path.exists(pending_path)

  # A temporary left by a killed writer is never taken for weights.
  bundle = tmp_path / 'bundle'
  bundle.mkdir()
  (bundle / f'.tmp-12345-{manifest_lib.WEIGHTS_FILE}').write_bytes(b'\0' * 64)
  with pytest.raises(FileNotFoundError, match='no weights in'):
    weights_lib.resolve(str(bundle))


# ----------------------------------------------------------------------------
# NaN / Inf
# ----------------------------------------------------------------------------

@pytest.mark.parametrize('learning_rate, error, pattern', [
    # The update of step 3 makes the weights infinite: not saved as ckpt-3,
    # nor (3 is the last step) as final weights.
    ('inf', checkpoints.NonFiniteWeightsError,
     r'weights became NaN/Inf after step 3 .*last good weights are '
     r'\S*ckpt-2'),
    # Huge but finite weights after step 3, an infinite loss at step 4.
    ('1e38', callbacks_lib.NonFiniteLossError,
     r'loss became (inf|nan) at step 4;.*ckpt-3'),
])
def test_nonfinite_training_keeps_the_last_good_weights(
    learning_rate, error, pattern, run2, tiny_data, tmp_path):
  tmp_path = _copy(run2, tmp_path)
  before = _final_bytes(tmp_path)
  with pytest.raises(error, match=pattern):
    _train(tmp_path, tiny_data, steps=3 if learning_rate == 'inf' else 6,
           overrides={'train.learning_rate': learning_rate,
                      'train.checkpoint_every': 1})
  assert _final_bytes(tmp_path) == before  # final weights not replaced
  final = weights_lib.load_model(tiny.NAME,
                                 str(tmp_path / 'model.weights.h5'))
  assert all(np.isfinite(w).all() for w in _weights(final))
  _, last = weights_lib.latest_checkpoint_step(str(tmp_path))
  assert last == (2 if learning_rate == 'inf' else 3)
  for step in range(2, last + 1):
    assert all(np.isfinite(w).all() for w in _checkpoint_weights(tmp_path,
                                                                 step))


# ----------------------------------------------------------------------------
# Bad training records
# ----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def data_with_a_bad_record(tmp_path_factory):
  """The tiny dataset with a NaN-joint record added to a train shard."""
  out = str(tmp_path_factory.mktemp('bad_data'))
  tiny.write_dataset(out)
  shard = os.path.join(out, 'train-00001-of-00002.tfrecord')
  good = list(tf.data.TFRecordDataset(shard).as_numpy_iterator())
  bad = tiny._example(np.random.default_rng(99), 99, 'train')  # pylint: disable=protected-access
  joints = list(bad.features.feature['joints2d_px'].float_list.value)
  joints[5] = float('nan')
  del bad.features.feature['joints2d_px'].float_list.value[:]
  bad.features.feature['joints2d_px'].float_list.value.extend(joints)
  with tf.io.TFRecordWriter(shard) as writer:
    for i, record in enumerate(good):
      writer.write(record)
      if i == 2:
        writer.write(bad.SerializeToString())  # record 3 of the shard
  return out, shard


def test_bad_record_stops_training_naming_it(data_with_a_bad_record,
                                             tmp_path):
  data, shard = data_with_a_bad_record
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'field joints2d_px must be finite.*bad record 3 '
                           rf'of {shard}'):
    _train(tmp_path, data, steps=8)
  assert not (tmp_path / 'model.weights.h5').exists()


def test_skip_trains_on_and_counts_bad_records(data_with_a_bad_record,
                                               tmp_path):
  data, shard = data_with_a_bad_record
  result = _train(tmp_path, data, steps=8, on_bad_record='skip')
  assert result.step == 8
  assert result.bad_records['bad_records'] == 1
  assert result.bad_records['records'][0]['file'] == shard
  assert result.bad_records['records'][0]['record'] == 3
  assert result.bad_records['skipped'] >= 1
  manifest = json.load(open(tmp_path / 'manifest.json'))
  assert manifest['bad_records']['bad_records'] == 1
  assert 'skipping bad record 3 of' in open(tmp_path / 'train.log').read()
  assert all(np.isfinite(w).all() for w in _weights(result.model))


# ----------------------------------------------------------------------------
# Flags that do not fit (test_run.py covers model, preset, precision,
# strategy, optimizer and override keys)
# ----------------------------------------------------------------------------

def _run_cli(argv):
  flags.FLAGS.unparse_flags()
  try:
    flags.FLAGS(['trainers/run.py'] + argv)
    return run.main(['trainers.run'])
  finally:
    flags.FLAGS.unparse_flags()


def test_unknown_on_bad_record_lists_the_choices(tmp_path):
  with pytest.raises(ValueError, match="unknown on_bad_record 'ignore'; "
                                       'valid choices are stop, skip'):
    _train(tmp_path, str(tmp_path), steps=1, on_bad_record='ignore')
  assert not os.listdir(tmp_path)
  with pytest.raises(flags.IllegalFlagValueError,
                     match=r'value should be one of <stop\|skip>'):
    _run_cli([f'--model={tiny.NAME}', '--on_bad_record=ignore'])


def test_multi_worker_without_tf_config_fails_at_start(tmp_path,
                                                       monkeypatch):
  monkeypatch.delenv('TF_CONFIG', raising=False)
  with pytest.raises(app.UsageError, match='TF_CONFIG'):
    _run_cli([f'--model={tiny.NAME}', '--strategy=multi_worker',
              f'--workdir={tmp_path / "w"}'])
  assert not (tmp_path / 'w').exists()


def test_cli_batch_not_divisible_by_replicas_fails_at_start(tiny_data,
                                                            tmp_path):
  # A fresh process: --strategy=mirrored splits the CPU into 2 devices
  # before TensorFlow starts.
  workdir = tmp_path / 'w'
  proc = subprocess.run(
      [sys.executable, '-m', 'trainers.run', '--modules=trainer_test_model',
       f'--model={tiny.NAME}', '--preset=smoke', '--strategy=mirrored',
       '--batch_size=3', f'--workdir={workdir}', f'--data={tiny_data}'],
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  assert 'batch size 3 is not divisible by the 2 replicas of the strategy; ' \
         'choose a multiple of 2' in proc.stderr, proc.stderr
  assert not workdir.exists()

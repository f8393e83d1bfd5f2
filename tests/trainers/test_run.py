"""End-to-end tests of the trainer (trainers/run.py over trainers/train_lib.py).

A tiny test model (trainer_test_model.py) and tiny TFRecords keep every run to
a few seconds; tests that need a fresh process (signals, logical devices) run
the command line in a subprocess.
"""
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from absl import app
from absl import flags
import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

import trainer_test_model as tiny
from trainers import callbacks as callbacks_lib
from trainers import run
from trainers import train_lib
from zoo import manifest as manifest_lib
from zoo import weights as weights_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))

REQUIRED_METRICS = ('model', 'preset', 'steps', 'mpjpe_mm', 'pa_mpjpe_mm',
                    'n_mpjpe_mm', 'pck3d_150', 'auc', 'per_action',
                    'num_eval_examples', 'train_seconds',
                    'train_examples_per_second', 'eval_examples_per_second',
                    'abs_mpjpe_mm', 'pcp3d', 'mean_error_2d_px', 'pckh')


def _train(workdir, data, **kwargs):
  kwargs.setdefault('steps', 4)
  return tiny.train(workdir, data, **kwargs)


_weights = tiny.weights


class _Capture(keras.callbacks.Callback):
  """Records weights and optimizer state when training begins and ends."""

  def on_train_begin(self, logs=None):
    self.begin_weights = _weights(self.model)
    self.begin_optimizer = [v.numpy().copy()
                            for v in self.model.optimizer.variables]
    self.begin_iterations = int(self.model.optimizer.iterations.numpy())

  def on_train_end(self, logs=None):
    self.end_iterations = int(self.model.optimizer.iterations.numpy())


def _subprocess_env():
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join([REPO, HERE,
                                       env.get('PYTHONPATH', '')])
  env['TF_CPP_MIN_LOG_LEVEL'] = '2'
  env['CUDA_VISIBLE_DEVICES'] = ''
  return env


# ----------------------------------------------------------------------------
# End to end
# ----------------------------------------------------------------------------

def test_smoke_run_writes_metrics_manifest_and_logs(trained_run, tiny_data):
  workdir = trained_run.workdir
  with open(os.path.join(workdir, 'metrics.json')) as f:
    metrics = json.load(f)
  missing = [k for k in REQUIRED_METRICS if k not in metrics]
  assert not missing, missing
  assert metrics['model'] == tiny.NAME and metrics['preset'] == 'smoke'
  assert metrics['steps'] == 4 and metrics['num_eval_examples'] == 8
  assert set(metrics['per_action']) == set(tiny.ACTIONS)
  # The model's extra metric (its own per-example MPJPE, computed in TF) is
  # averaged and agrees with zoo.metrics' MPJPE on these full-valid poses.
  assert metrics['extra_mpjpe_mm'] == pytest.approx(metrics['mpjpe_mm'],
                                                    rel=1e-5)
  assert metrics['mean_pose_baseline']['num_train_examples'] == 16
  assert metrics['train_seconds'] > 0 and metrics['train_examples_per_second'] > 0
  assert 100 < metrics['peak_rss_mib'] < 20_000  # MiB, not KiB

  with open(os.path.join(workdir, 'manifest.json')) as f:
    manifest = json.load(f)
  weights = os.path.join(workdir, 'model.weights.h5')
  assert manifest['sha256'] == manifest_lib.sha256_file(weights)
  assert manifest['model'] == tiny.NAME and manifest['steps'] == 4
  assert manifest['config']['train']['steps'] == 4
  assert manifest['data'] == {'name': 'tfrecords',
                              'dir': os.path.abspath(tiny_data), 'seed': 0,
                              'format_version': 1}
  assert manifest['metrics']['mpjpe_mm'] == metrics['mpjpe_mm']
  assert manifest['command'] == 'pytest trained_run'

  # Checkpoints every 2 steps, TensorBoard events, log file, prepare hook.
  path, step = weights_lib.latest_checkpoint_step(workdir)
  assert step == 4 and path.endswith('ckpt-4')
  assert os.path.exists(os.path.join(workdir, 'checkpoints', 'ckpt-2.index'))
  events = os.listdir(os.path.join(workdir, 'tb'))
  assert any(e.startswith('events.out.tfevents') for e in events)
  assert 'Training steps 0 -> 4' in open(
      os.path.join(workdir, 'train.log')).read()
  assert open(os.path.join(workdir, tiny.PREPARED_FILE)).read() == tiny_data
  assert not [f for f in os.listdir(workdir) if f.startswith('.tmp')]
  # The results picture: the loss curve, error per action, test examples.
  picture = cv2.imread(os.path.join(workdir, 'results.png'))
  assert picture is not None and picture.shape[0] > 500
  assert 'results.png (loss curve' in open(
      os.path.join(workdir, 'train.log')).read()


def test_a_finished_run_again_only_evaluates(trained_run, tiny_data,
                                             tmp_path):
  """The same command on a finished run evaluates its final weights again
  and keeps its training figures; where its metrics.json is gone, the
  training time is unknown (NaN), not 0."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(trained_run.workdir, workdir)
  with open(os.path.join(workdir, 'metrics.json')) as f:
    trained = json.load(f)
  weights = os.path.join(workdir, 'model.weights.h5')
  sha256 = manifest_lib.sha256_file(weights)

  def again():
    result = train_lib.train(tiny.NAME, preset='smoke', workdir=workdir,
                             data=tiny_data, steps=4, strategy='default',
                             seed=1, deterministic=True, progress=False,
                             precision='float32', command='pytest again')
    assert (result.start_step, result.step) == (4, 4)
    assert manifest_lib.sha256_file(weights) == sha256  # kept, not rewritten
    return result.metrics

  metrics = again()
  assert metrics['mpjpe_mm'] == pytest.approx(trained['mpjpe_mm'], rel=1e-5)
  for key in ('train_seconds', 'train_examples_per_second'):
    assert metrics[key] == trained[key]
  os.remove(os.path.join(workdir, 'metrics.json'))
  metrics = again()
  assert metrics['mpjpe_mm'] == pytest.approx(trained['mpjpe_mm'], rel=1e-5)
  assert math.isnan(metrics['train_seconds'])
  assert math.isnan(metrics['train_examples_per_second'])


def test_tensorboard_has_loss_lr_and_throughput(trained_run):
  tags = set()
  tb = os.path.join(trained_run.workdir, 'tb')
  for name in os.listdir(tb):
    for event in tf.compat.v1.train.summary_iterator(os.path.join(tb, name)):
      for value in event.summary.value:
        tags.add(value.tag)
  assert {'train/loss', 'train/learning_rate', 'train/examples_per_second',
          'eval/mpjpe_mm'} <= tags


def test_resume_restores_weights_optimizer_and_step(tiny_data, tmp_path):
  first = _train(tmp_path, tiny_data, steps=4)
  saved = _weights(first.model)
  saved_opt = [v.numpy().copy() for v in first.model.optimizer.variables]
  assert int(first.model.optimizer.iterations.numpy()) == 4

  capture = _Capture()
  second = _train(tmp_path, tiny_data, steps=6, extra_callbacks=[capture])
  assert second.start_step == 4 and second.step == 6
  assert capture.begin_iterations == 4 and capture.end_iterations == 6
  for a, b in zip(saved, capture.begin_weights):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(saved_opt, capture.begin_optimizer):
    np.testing.assert_array_equal(a, b)
  assert weights_lib.latest_checkpoint_step(str(tmp_path))[1] == 6
  with open(tmp_path / 'manifest.json') as f:
    assert json.load(f)['steps'] == 6

  # Already at the target: nothing to train, the state is restored as is,
  # and the final weights file is evaluated and kept, not rewritten.
  final = tmp_path / 'model.weights.h5'
  before = os.stat(final)
  third = _train(tmp_path, tiny_data, steps=6)
  assert third.start_step == 6 and third.step == 6
  for a, b in zip(_weights(second.model), _weights(third.model)):
    np.testing.assert_array_equal(a, b)
  after = os.stat(final)
  assert (after.st_ino, after.st_mtime_ns) == (before.st_ino,
                                               before.st_mtime_ns)
  assert third.manifest['sha256'] == second.manifest['sha256']


def test_init_from_fine_tunes_from_trained_weights(trained_run, tiny_data,
                                                   tmp_path):
  capture = _Capture()
  # A temporary of a writer that was killed is removed when the run starts;
  # one of a live process (this one) is left alone.
  import subprocess
  import sys
  dead = subprocess.Popen([sys.executable, '-c', 'pass'])
  dead.wait()
  stale = tmp_path / f'.tmp-{dead.pid}-model.weights.h5'
  stale.write_bytes(b'\0' * 64)
  live = tmp_path / f'.tmp-{os.getpid()}-manifest.json-x'
  live.write_text('{}')
  result = _train(tmp_path, tiny_data, steps=1, init_from=trained_run.workdir,
                  extra_callbacks=[capture])
  assert not stale.exists() and live.exists()
  for a, b in zip(_weights(trained_run.model), capture.begin_weights):
    np.testing.assert_array_equal(a, b)
  assert capture.begin_iterations == 0  # fresh optimizer
  assert result.manifest['init_from']['sha256'] == \
      trained_run.manifest['sha256']


def test_nonfinite_loss_stops_naming_the_step(tiny_data, tmp_path):
  with pytest.raises(callbacks_lib.NonFiniteLossError,
                     match=r'at step 2;.*ckpt-1'):
    _train(tmp_path, tiny_data, steps=5,
           overrides={'train.learning_rate': 1e38,
                      'train.checkpoint_every': 1})
  assert weights_lib.latest_checkpoint_step(str(tmp_path))[1] == 1


def test_mixed_bfloat16_keeps_outputs_and_loss_float32(tiny_data, tmp_path):
  result = _train(tmp_path, tiny_data, steps=2, precision='mixed_bfloat16')
  model = result.model
  assert model.conv1.compute_dtype == 'bfloat16'
  assert keras.mixed_precision.global_policy().name == 'float32'  # restored
  x = weights_lib.dummy_inputs(32, 2)
  out = model(x)
  assert all(v.dtype == tf.float32 for v in out.values())
  y = {'joints3d_rel_mm': tf.zeros([2, 17, 3]),
       'joints2d_px': tf.zeros([2, 17, 2]),
       'joint_valid_3d': tf.ones([2, 17]), 'joint_valid_2d': tf.ones([2, 17])}
  loss = model.compute_loss(x, y, out)
  assert loss.dtype == tf.float32 and np.isfinite(loss.numpy())
  assert all(np.isfinite(w).all() for w in _weights(model))


def test_mixed_float16_runs_on_cpu_with_loss_scaling(tiny_data, tmp_path):
  result = _train(tmp_path, tiny_data, steps=2, precision='mixed_float16')
  assert isinstance(result.model.optimizer,
                    keras.optimizers.LossScaleOptimizer)
  assert result.model.conv1.compute_dtype == 'float16'
  assert all(np.isfinite(w).all() for w in _weights(result.model))
  assert keras.mixed_precision.global_policy().name == 'float32'


# ----------------------------------------------------------------------------
# Flags
# ----------------------------------------------------------------------------

@pytest.mark.parametrize('kwargs, pattern', [
    ({'model': 'no_such_model'}, r"unknown model 'no_such_model'.*trainer_test"),
    ({'preset': 'huge'}, r"unknown preset.*'huge'.*paper, cpu, smoke"),
    ({'precision': 'fp8'},
     r"unknown precision 'fp8'.*float32, mixed_float16, mixed_bfloat16"),
    ({'strategy': 'tpu'},
     r"unknown strategy 'tpu'.*auto, default, mirrored, multi_worker"),
    ({'overrides': ['train.optimizer=lion']},
     r"unknown optimizer 'lion'.*rmsprop, adam, adamw, sgd"),
    ({'overrides': ['train.batch_size=two']}, r'cannot parse as int'),
])
def test_bad_arguments_fail_listing_choices(kwargs, pattern, tmp_path):
  args = dict(model=tiny.NAME, preset='smoke', workdir=str(tmp_path),
              data=str(tmp_path), progress=False)
  args.update(kwargs)
  with pytest.raises(ValueError, match=pattern):
    train_lib.train(args.pop('model'), **args)
  assert not os.listdir(tmp_path)  # failed before writing anything


def test_unknown_override_key_lists_fields(tmp_path):
  with pytest.raises(KeyError, match=r"no field 'stepz'.*'steps'"):
    train_lib.train(tiny.NAME, preset='smoke', workdir=str(tmp_path),
                    overrides='train.stepz=3')


def _run_cli(argv):
  flags.FLAGS.unparse_flags()
  saved_argv = sys.argv
  sys.argv = ['trainers/run.py'] + argv
  try:
    flags.FLAGS(sys.argv)
    return run.main(['trainers.run'])
  finally:
    sys.argv = saved_argv
    flags.FLAGS.unparse_flags()


@pytest.mark.parametrize('argv, pattern', [
    (['--model=nope'], r"unknown model 'nope'; valid choices are .*trainer_test"),
    (['--model=trainer_test', '--preset=big'],
     r"unknown preset .*'big'; valid choices are paper, cpu, smoke"),
    (['--model=trainer_test', '--precision=half'],
     r'valid choices are auto, float32, mixed_float16, mixed_bfloat16'),
    (['--model=trainer_test', '--strategy=x'],
     r'valid choices are auto, default, mirrored, multi_worker'),
    (['--strategy=default'], r'--model is required; valid choices are'),
    (['--model=trainer_test', '--modules=no.such.module'],
     r"cannot import 'no.such.module'"),
])
def test_cli_rejects_bad_flags_with_choices(argv, pattern):
  with pytest.raises(app.UsageError, match=pattern):
    _run_cli(argv)


def test_cli_trains_with_overrides(tiny_data, tmp_path):
  code = _run_cli([f'--model={tiny.NAME}', '--preset=smoke',
                   f'--workdir={tmp_path}', f'--data={tiny_data}',
                   '--steps=2', '--batch_size=2', '--strategy=default',
                   '--noevaluate', '--noprogress',
                   '--override=train.learning_rate=0.01,augment.flip=false'])
  assert code == 0
  with open(tmp_path / 'manifest.json') as f:
    manifest = json.load(f)
  assert manifest['steps'] == 2
  assert manifest['config']['train']['batch_size'] == 2
  assert manifest['config']['train']['learning_rate'] == 0.01
  assert manifest['config']['augment']['flip'] is False
  assert manifest['strategy'] == 'default'
  assert '--override=train.learning_rate=0.01,augment.flip=false' in \
      manifest['command']


# ----------------------------------------------------------------------------
# Subprocesses: signals, logical devices
# ----------------------------------------------------------------------------

def test_sigterm_saves_a_checkpoint_and_the_rerun_resumes(tiny_data, tmp_path):
  workdir = tmp_path / 'run'
  cmd = [sys.executable, '-m', 'trainers.run', '--modules=trainer_test_model',
         f'--model={tiny.NAME}', '--preset=smoke', f'--workdir={workdir}',
         f'--data={tiny_data}', '--steps=1000000', '--strategy=default',
         '--noprogress', '--override=train.checkpoint_every=1000000']
  proc = subprocess.Popen(cmd, cwd=REPO, env=_subprocess_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
  output = []
  try:
    deadline = time.time() + 120
    for line in proc.stdout:  # wait until fit (and the handler) started
      output.append(line)
      if 'Training steps 0 -> 1000000' in line:
        break
      assert time.time() < deadline, ''.join(output)
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
  text = ''.join(output) + rest
  assert proc.returncode == 128 + signal.SIGTERM, text
  match = re.search(r'Stopped by signal 15 at step (\d+)', text)
  assert match, text
  stopped = int(match.group(1))
  path, step = weights_lib.latest_checkpoint_step(str(workdir))
  assert step == stopped > 0, text
  assert not (workdir / 'model.weights.h5').exists()

  result = _train(workdir, tiny_data, steps=stopped + 2)
  assert result.start_step == stopped and result.step == stopped + 2
  assert int(result.model.optimizer.iterations.numpy()) == stopped + 2


# Keras consumes one batch of the fit iterator for a symbolic build under a
# distribution strategy, so the two runs see batches shifted by one. With a
# 4-example train split, no augmentation and batch 4, every batch holds the
# same 4 examples (in some order), so their mean gradients agree anyway.
_MIRRORED_SCRIPT = r'''
import json, sys
from trainers import distribute
distribute.configure_devices('mirrored')
import numpy as np
import trainer_test_model as tiny
from trainers import train_lib
data, workdir = sys.argv[1], sys.argv[2]
data = tiny.write_dataset(workdir + '/data4', num_train=4, num_test=4)
common = dict(preset='smoke', data=data, steps=2, seed=3, deterministic=True,
              progress=False, baseline=False, precision='float32',
              overrides={'train.optimizer': 'sgd', 'train.learning_rate': 0.1,
                         'augment.enabled': False, 'train.batch_size': 4})
mirrored = train_lib.train(tiny.NAME, workdir=workdir + '/m',
                           strategy='mirrored', **common)
single = train_lib.train(tiny.NAME, workdir=workdir + '/s',
                         strategy='default', **common)
diff = max(float(np.abs(a.numpy() - b.numpy()).max())
           for a, b in zip(mirrored.model.weights, single.model.weights))
moved = max(float(np.abs(a.numpy()).max()) for a in mirrored.model.weights)
try:
  train_lib.train(tiny.NAME, workdir=workdir + '/bad', strategy='mirrored',
                  batch_size=3, **common)
  error = ''
except ValueError as e:
  error = str(e)
print('RESULT ' + json.dumps({
    'replicas': mirrored.metrics['replicas'], 'diff': diff,
    'strategy': mirrored.manifest['strategy'],
    'mpjpe_m': mirrored.metrics['mpjpe_mm'],
    'mpjpe_s': single.metrics['mpjpe_mm'], 'error': error}))
'''


def test_mirrored_two_logical_cpus_matches_single_device(tiny_data, tmp_path):
  proc = subprocess.run(
      [sys.executable, '-c', _MIRRORED_SCRIPT, tiny_data, str(tmp_path)],
      cwd=REPO, env=_subprocess_env(), capture_output=True, text=True,
      timeout=300)
  lines = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')]
  assert proc.returncode == 0 and lines, proc.stdout + proc.stderr
  result = json.loads(lines[-1][len('RESULT '):])
  assert result['replicas'] == 2 and result['strategy'] == 'mirrored'
  # Same global batch, gradients all-reduced: the same update as one device.
  assert result['diff'] < 1e-5, result
  assert result['mpjpe_m'] == pytest.approx(result['mpjpe_s'], rel=1e-4)
  assert 'batch size 3 is not divisible by the 2 replicas' in result['error']

"""--strategy=multi_worker: two worker processes on loopback train together.

Each worker runs `train_lib.train(strategy=MultiWorkerMirroredStrategy)` from
its own TF_CONFIG, then dumps its final weights and the input its replica
gets through the strategy (frame numbers per step) to its own files. Both
must finish the same steps with identical weights (the all-reduce keeps them
in sync), equal to the final weights only the chief wrote; the input must be
sharded by file (2 shards, 2 workers): disjoint frames, all of them, at half
the global batch per replica.
"""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import trainer_test_model as tiny
from zoo import weights as weights_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT_S = 240

_WORKER = r'''
import json, sys
import numpy as np
import trainer_test_model as tiny
from trainers import distribute
from trainers import train_lib

data, workdir, out = sys.argv[1:4]
# Before any TensorFlow op (zoo.data.pipeline makes constants on import).
strategy = distribute.make_strategy('multi_worker')
from zoo.data import pipeline
result = train_lib.train(
    tiny.NAME, preset='smoke', workdir=workdir, data=data, steps=4,
    strategy=strategy, seed=3, deterministic=True, progress=False,
    run_evaluation=False, baseline=False, precision='float32',
    overrides={'train.batch_size': 4, 'train.checkpoint_every': 2})
np.savez(out + '.npz', *[v.numpy() for v in result.model.weights])

# The examples this worker's replica gets through the strategy in one epoch.
num, index = distribute.input_pipelines(strategy)
ds = pipeline.make_dataset(data, 'train', input_size=8, batch_size=4,
                           training=True, seed=3, repeat=False,
                           num_input_pipelines=num, input_pipeline_id=index)
frames, batch_sizes = [], []
for batch in strategy.experimental_distribute_dataset(ds):
  for local in strategy.experimental_local_results(batch['frame']):
    frames += local.numpy().tolist()
    batch_sizes.append(int(local.shape[0]))
with open(out + '.json', 'w') as f:
  json.dump({'step': result.step, 'chief': distribute.is_chief(strategy),
             'replicas': strategy.num_replicas_in_sync, 'num': num,
             'index': index, 'frames': frames, 'batch_sizes': batch_sizes}, f)
'''


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(('localhost', 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def test_two_workers_train_in_sync_on_disjoint_input(tiny_data, tmp_path):
  workdir, ports = tmp_path / 'run', _free_ports(2)
  cluster = {'worker': [f'localhost:{p}' for p in ports]}
  procs, logs = [], []
  try:
    for index in range(2):
      env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='',
                 PYTHONPATH=os.pathsep.join([REPO, HERE]),
                 TF_CONFIG=json.dumps({'cluster': cluster, 'task': {
                     'type': 'worker', 'index': index}}))
      log = open(tmp_path / f'worker{index}.log', 'w+')
      logs.append(log)
      procs.append(subprocess.Popen(
          [sys.executable, '-c', _WORKER, tiny_data, str(workdir),
           str(tmp_path / f'worker{index}')],
          cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
    for proc in procs:
      proc.wait(timeout=TIMEOUT_S)
  except subprocess.TimeoutExpired:
    pytest.fail('multi-worker training did not finish in time:\n' +
                '\n'.join(_read(log) for log in logs))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  outputs = [_read(log) for log in logs]
  assert [p.returncode for p in procs] == [0, 0], '\n'.join(outputs)

  results = [json.load(open(tmp_path / f'worker{i}.json')) for i in range(2)]
  assert [r['step'] for r in results] == [4, 4]
  assert [r['chief'] for r in results] == [True, False]
  assert [r['replicas'] for r in results] == [2, 2]
  assert [(r['num'], r['index']) for r in results] == [(2, 0), (2, 1)]

  # Identical weights on both workers, and in the chief's final weights file.
  weights = [np.load(tmp_path / f'worker{i}.npz') for i in range(2)]
  assert len(weights[0].files) == len(weights[1].files) > 0
  for key in weights[0].files:
    np.testing.assert_array_equal(weights[0][key], weights[1][key])
  final = weights_lib.load_model(tiny.NAME, str(workdir))
  for key, value in zip(weights[0].files, final.weights):
    np.testing.assert_array_equal(weights[0][key], value.numpy())

  # Only the chief wrote results; the non-chief's scratch directory is gone.
  manifest = json.load(open(workdir / 'manifest.json'))
  assert manifest['steps'] == 4 and manifest['strategy'] == 'multi_worker'
  assert weights_lib.latest_checkpoint_step(str(workdir))[1] == 4
  assert not (workdir / '.worker_tmp').exists()

  # Input sharded by file: each worker one of the 2 shards, 8 examples each,
  # 2 per replica and step (global batch 4 over 2 replicas).
  frames = [sorted(r['frames']) for r in results]
  assert len(frames[0]) == len(frames[1]) == 8
  assert not set(frames[0]) & set(frames[1])
  assert sorted(frames[0] + frames[1]) == list(range(16))
  assert set(results[0]['batch_sizes']) == {2}
  for index, output in enumerate(outputs):
    assert f'input pipeline {index} of 2 shards by FILE' in output, output


def _read(log) -> str:
  log.flush()
  log.seek(0)
  return log.read()

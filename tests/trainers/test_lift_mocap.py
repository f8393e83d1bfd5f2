"""trainers.lift_mocap: network 2 of decoupled_volumetric trained on mocap."""
import json
import os

import numpy as np
import pytest

from trainers import checkpoints
from trainers import lift_mocap


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  out = str(tmp_path_factory.mktemp('lift_mocap'))
  manifest = lift_mocap.train(out, preset='smoke', steps=3, num_poses=64,
                              num_test=8, progress=False, command='test')
  return out, manifest


def test_writes_a_loadable_checkpoint(trained):
  out, manifest = trained
  assert sorted(f for f in os.listdir(out) if not f.startswith('.')) == \
      ['manifest.json', 'model.weights.h5']
  on_disk = json.load(open(os.path.join(out, 'manifest.json')))
  assert on_disk['sha256'] == manifest['sha256']
  assert on_disk['config']['train_mode'] == 'network2_mocap'
  for key in ('true_2d_mpjpe_mm', 'training_noise_pa_mpjpe_mm'):
    assert np.isfinite(on_disk['metrics'][key]) and \
        on_disk['metrics'][key] > 0
  import zoo
  model = zoo.load('decoupled_volumetric', checkpoint=out)
  from zoo import lift_lib
  lifter = lift_lib.Lifter('decoupled_volumetric', keras_model=model)
  k = np.array([[1000., 0, 500], [0, 1000., 500], [0, 0, 1]], np.float32)
  kp = np.random.default_rng(0).uniform(400, 600, (1, 17, 2))
  res = lifter.lift(kp, np.ones((1, 17)), k[None])
  assert np.all(np.isfinite(res['poses3d_cam_mm']))


def test_only_network2_is_trained(trained, tmp_path):
  """Network 1 is frozen: its weights equal a fresh build's with the same
  seed; network 2's moved."""
  import tensorflow as tf
  from zoo import registry
  out, manifest = trained
  entry = registry.get('decoupled_volumetric')
  from zoo import config as config_lib
  config = config_lib.from_dict(entry.config_class, manifest['config'])
  tf.keras.utils.set_random_seed(0)  # train()'s seed
  fresh = checkpoints.build_model(entry, config)
  loaded = checkpoints.load_model('decoupled_volumetric', out)
  net1 = {id(v) for layer in fresh.backbone for v in layer.weights}
  moved = []
  for a, b in zip(fresh.weights, loaded.weights):
    same = np.array_equal(a.numpy(), b.numpy())
    if id(a) in net1:
      assert same, a.path
    else:
      moved.append(not same)
  assert any(moved)


def test_bad_steps(tmp_path):
  with pytest.raises(ValueError, match='steps'):
    lift_mocap.train(str(tmp_path), preset='smoke', steps=0)
  assert os.listdir(tmp_path) == []

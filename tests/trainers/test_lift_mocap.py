"""trainers.lift_mocap: network 2 of decoupled_volumetric trained on mocap."""
import json
import os

import numpy as np
import pytest

from trainers import lift_mocap
from zoo import weights as weights_lib


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
  fresh = weights_lib.build_model(entry, config)
  loaded = weights_lib.load_model('decoupled_volumetric', out)
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


def _fake_h36m_archive(path, seed=0):
  """A VideoPose3D-style archive (32 joints, metres) holding embedded
  motion-stream poses in the H36M-17 slots."""
  from zoo import skeleton as skel
  from zoo.data import motion
  archive = {}
  for subject, split in (('S1', 'train'), ('S5', 'train'), ('S9', 'test')):
    joints17 = motion.poses(300, split, seed + len(archive))
    joints32 = np.zeros((300, 32, 3), np.float32)
    joints32[:, skel.H36M32_TO_H36M17] = joints17 / 1000.
    archive[subject] = {'Walking': joints32}
  np.savez(path, positions_3d=np.array(archive, dtype=object))
  return path


def test_fit_prior_on_a_motion_archive(tmp_path):
  from zoo import lift_lib
  from zoo.lifting_deep.prior import PosePrior
  motion_file = _fake_h36m_archive(str(tmp_path / 'h36m.npz'))
  prior_path = str(tmp_path / 'prior.npz')
  result = lift_mocap.fit_prior(prior_path, motion_file, preset='smoke',
                                num_test=20, progress=False)
  prior = PosePrior.load(prior_path)
  assert prior.num_components == 2 and prior.num_basis == 4
  # The motion is in mm after loading: mean limb norm of a person in mm.
  assert 500. < prior.scale_mm < 3000.
  assert 0. < result['true_2d']['mpjpe_mm'] < 400.
  with pytest.raises(ValueError, match='lifting_deep'):
    lift_lib.Lifter('decoupled_volumetric', prior_path=prior_path)


def test_motion_file_training_poses_are_the_training_subjects(tmp_path):
  motion_file = _fake_h36m_archive(str(tmp_path / 'h36m.npz'))
  train = lift_mocap.load_poses('train', 10_000, 0, motion_file)
  test = lift_mocap.load_poses('test', 10_000, 0, motion_file)
  assert train.shape == (600, 17, 3) and test.shape == (300, 17, 3)
  assert np.abs(train).max() > 100.  # millimetres


def test_cli_bad_input_exits_2(tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    lift_mocap.main([])
  assert e.value.code == 2
  assert '--out=DIR is required' in capsys.readouterr().err
  out = tmp_path / 'out'
  assert lift_mocap.main([f'--out={out}', '--preset=smoke',
                          '--steps=0']) == 2
  assert 'error: steps must be >= 1' in capsys.readouterr().err
  assert lift_mocap.main([f'--out={out}', '--preset=nope']) == 2
  assert capsys.readouterr().err.startswith(
      "error: model 'decoupled_volumetric' has no preset 'nope'")
  assert not out.exists()

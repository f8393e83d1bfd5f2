"""zoo.lift_lib: lifting with the prior and decoupled network 2, output
files, bad input (the keypoint files themselves: test_keypoints.py)."""
import json
import os

import numpy as np
import pytest

from zoo import geometry
from zoo import keypoints
from zoo import lift_lib
from zoo import metrics
from zoo import skeleton as skel
from zoo import weights as weights_lib
from zoo.data import mocap2d
from zoo.data import motion

H = skel.H36M17.index


def _views(num=6, seed=0):
  poses = motion.poses(num, 'test', seed)
  return mocap2d.sample_views(np.random.default_rng(seed), poses,
                              mocap2d.DetectorNoise.none())


@pytest.fixture(scope='module')
def prior_lifter():
  return lift_lib.Lifter('lifting_deep')  # the bundled checkpoint's prior


@pytest.fixture(scope='module')
def decoupled_model():
  import tensorflow as tf
  from zoo import registry
  entry = registry.get('decoupled_volumetric')
  tf.keras.utils.set_random_seed(3)
  return weights_lib.build_model(
      entry, entry.config('smoke', train_mode='network2_mocap'))


# ----------------------------------------------------------------------------
# Lifting
# ----------------------------------------------------------------------------

def test_prior_lifts_true_2d_and_places_the_pose_on_the_rays(prior_lifter):
  v = _views(8)
  scores = np.ones((8, 17), np.float32)
  out = prior_lifter.lift(v['joints2d_px'], scores, v['intrinsics'])
  gt = geometry.root_relative(v['joints_cam_mm'])
  mean_pose = np.broadcast_to(gt.mean(0), gt.shape)
  err = metrics.mpjpe(out['poses3d_rel_mm'], gt).mean()
  assert err < 0.6 * metrics.mpjpe(mean_pose, gt).mean()
  assert err < 150.
  # The camera-frame pose projects onto the keypoints (independent check).
  proj = geometry.project(out['poses3d_cam_mm'].astype(np.float64),
                          v['intrinsics'].astype(np.float64))
  np.testing.assert_allclose(proj, v['joints2d_px'], atol=0.05)
  assert np.all(out['poses3d_cam_mm'][..., 2] > 500.)
  np.testing.assert_allclose(out['poses3d_rel_mm'][:, skel.ROOT], 0., atol=1e-3)


def test_prior_ignores_missing_joints(prior_lifter):
  v = _views(3, seed=1)
  scores = np.ones((3, 17), np.float32)
  scores[:, H('right_wrist')] = 0.1  # below the threshold: missing
  moved = v['joints2d_px'].copy()
  moved[:, H('right_wrist')] += 300.
  a = prior_lifter.lift(v['joints2d_px'], scores, v['intrinsics'])
  b = prior_lifter.lift(moved, scores, v['intrinsics'])
  np.testing.assert_allclose(a['poses3d_rel_mm'], b['poses3d_rel_mm'],
                             atol=1e-3)
  assert np.all(a['confidence'][:, H('right_wrist')] == 0.)


def test_decoupled_keeps_detected_joints_and_ignores_missing(decoupled_model):
  lifter = lift_lib.Lifter('decoupled_volumetric',
                           keras_model=decoupled_model)
  v = _views(4, seed=2)
  scores = np.ones((4, 17), np.float32)
  scores[:, H('left_ankle')] = 0.
  out = lifter.lift(v['joints2d_px'], scores, v['intrinsics'])
  valid = scores > 0
  np.testing.assert_allclose(out['poses2d_px'][valid],
                             v['joints2d_px'][valid], atol=0.05)
  proj = geometry.project(out['poses3d_cam_mm'].astype(np.float64),
                          v['intrinsics'].astype(np.float64))
  np.testing.assert_allclose(proj, out['poses2d_px'], atol=0.05)
  np.testing.assert_allclose(
      out['poses3d_rel_mm'],
      out['poses3d_cam_mm'] - out['poses3d_cam_mm'][:, :1], atol=1e-2)
  assert np.all(out['confidence'][:, H('left_ankle')] == 0.)
  moved = v['joints2d_px'].copy()
  moved[:, H('left_ankle')] += 200.
  again = lifter.lift(moved, scores, v['intrinsics'])
  np.testing.assert_allclose(again['poses3d_cam_mm'], out['poses3d_cam_mm'],
                             atol=1e-3)


def test_keypoint_crop_centres_the_keypoints():
  v = _views(3, seed=3)
  valid = np.ones((3, 17), np.float32)
  crop = lift_lib.keypoint_crop_tf(v['joints2d_px'], valid, v['intrinsics'],
                                   64, 1.2)
  px = crop['keypoints_crop_px'].numpy()
  extent = px.max(1) - px.min(1)
  # The longer side spans 64 / 1.2 px, centred in the crop.
  np.testing.assert_allclose(extent.max(-1), 64 / 1.2, rtol=0.08)
  np.testing.assert_allclose((px.max(1) + px.min(1)) / 2, 31.5, atol=3.)


# ----------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------

def _write_people(tmp_path, v, few_joints_index=1):
  dets = []
  for i in range(len(v['joints2d_px'])):
    scores = np.full(17, 0.9)
    if i == few_joints_index:
      scores[:12] = 0.05
    dets.append({'image_id': 5, 'persons_note': 'test',
                 'keypoints2d_px': v['joints2d_px'][i].tolist(),
                 'scores': scores.tolist()})
  path = tmp_path / 'people.json'
  path.write_text(json.dumps({'joint_names': list(skel.H36M17.joint_names),
                              'persons': dets}))
  return str(path)


def test_lift_file_writes_json_and_pictures(tmp_path, prior_lifter):
  v = _views(3, seed=4)
  path = _write_people(tmp_path, v)
  out = tmp_path / 'out'
  doc = lift_lib.lift_file(model='lifting_deep', keypoints_path=path,
                           out_dir=str(out), image_size=(1000, 1000),
                           lifter=prior_lifter)
  assert doc['num_lifted'] == 2 and doc['num_failed'] == 1
  data = json.loads((out / 'lift.json').read_text())
  persons = data['persons']
  assert 'only 5 of 17 joints' in persons[1]['error']
  assert 'poses3d_cam_mm' not in persons[1]
  for i in (0, 2):
    assert (out / persons[i]['picture']).is_file()
    assert np.asarray(persons[i]['poses3d_rel_mm']).shape == (17, 3)
    assert 'assumed' in persons[i]['intrinsics_source']
  k = np.asarray(persons[0]['intrinsics'])
  from zoo.data import records
  np.testing.assert_allclose(k, records.default_intrinsics(1000, 1000),
                             rtol=1e-6)
  assert sorted(os.listdir(out)) == ['lift.json', 'person_000.png',
                                     'person_002.png']
  # lift.json reads back as a keypoints file (the lifted persons).
  again = keypoints.read_keypoints(str(out / 'lift.json'))
  assert [p.index for p in again.persons] == [0, 2]


def test_lift_file_bad_input_writes_nothing(tmp_path, prior_lifter):
  v = _views(2, seed=5)
  path = _write_people(tmp_path, v, few_joints_index=-1)
  out = tmp_path / 'out'
  with pytest.raises(keypoints.KeypointsError, match='image size'):
    lift_lib.lift_file(model='lifting_deep', keypoints_path=path,
                       out_dir=str(out), lifter=prior_lifter)
  import cv2
  small = tmp_path / 'small.png'
  cv2.imwrite(str(small), np.zeros((100, 120, 3), np.uint8))
  with pytest.raises(keypoints.KeypointsError, match='another'):
    lift_lib.lift_file(model='lifting_deep', keypoints_path=path,
                       out_dir=str(out), image_path=str(small),
                       lifter=prior_lifter)
  bad = tmp_path / 'bad.json'
  bad.write_text('{"persons": [')
  with pytest.raises(keypoints.KeypointsError, match='not valid JSON'):
    lift_lib.lift_file(model='lifting_deep', keypoints_path=str(bad),
                       out_dir=str(out), lifter=prior_lifter)
  assert not out.exists()


def test_unknown_model_is_rejected():
  with pytest.raises(ValueError, match='lifting_deep'):
    lift_lib.Lifter('metrabs')


@pytest.mark.skipif(not os.path.isdir(lift_lib.lift_checkpoint_dir()),
                    reason='no bundled lifting checkpoint')
def test_bundled_decoupled_lifting_checkpoint():
  """The bundled network 2 loads (sha256 checked) and lifts held-out poses
  far better than the mean pose (its manifest: 89.6 mm on 1000 poses)."""
  import json as json_lib
  manifest = json_lib.load(open(os.path.join(lift_lib.lift_checkpoint_dir(),
                                             'manifest.json')))
  assert manifest['config']['train_mode'] == 'network2_mocap'
  lifter = lift_lib.Lifter('decoupled_volumetric')
  poses = motion.poses(64, 'test', 0)
  result = lift_lib.evaluate_on_mocap(lifter, poses, seed=0)
  v = _views(64)
  gt = geometry.root_relative(v['joints_cam_mm'])
  baseline = metrics.mpjpe(np.broadcast_to(gt.mean(0), gt.shape), gt).mean()
  assert result['mpjpe_mm'] < min(130., 0.6 * baseline), (result, baseline)

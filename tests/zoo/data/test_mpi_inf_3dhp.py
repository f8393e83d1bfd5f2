"""Tests for zoo/data/mpi_inf_3dhp.py, its joint maps and its protocol.

Fixtures are written in the dataset's own formats: the test set's
annot_data.mat as MATLAB v7.3 (HDF5 with MATLAB's 512-byte header, h5py),
the training set's annot.mat as MATLAB v5 (scipy.io.savemat) with cell
arrays, camera.calibration in Skeletool's text format, frames as JPEGs or a
small AVI (cv2.VideoWriter).
"""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import cv2  # noqa: E402
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.io  # noqa: E402
import tensorflow as tf  # noqa: E402

from zoo import geometry  # noqa: E402
from zoo import metrics  # noqa: E402
from zoo import skeleton as skel  # noqa: E402
from zoo.data import mpi_inf_3dhp as dhp  # noqa: E402
from zoo.data import records  # noqa: E402
from zoo.data.posehg import AnnotationError  # noqa: E402

# 3DHP names that H36M calls otherwise.
_RENAME = {'neck': 'thorax', 'head': 'neck'}


def _pose17(rng, depth=4500.):
  """A plausible pose in 3DHP-17 order, camera mm."""
  names = skel.MPI3DHP17.joint_names
  h36m = {'pelvis': (0, 0), 'right_hip': (-130, 0), 'right_knee': (-140, 440),
          'right_ankle': (-150, 870), 'left_hip': (130, 0),
          'left_knee': (140, 440), 'left_ankle': (150, 870),
          'spine': (0, -230), 'neck': (0, -480), 'head': (0, -600),
          'head_top': (0, -720), 'left_shoulder': (150, -470),
          'left_elbow': (300, -250), 'left_wrist': (330, -20),
          'right_shoulder': (-150, -470), 'right_elbow': (-300, -250),
          'right_wrist': (-330, -20)}
  pose = np.array([[*h36m[n], 0.] for n in names]) + rng.normal(0, 15, (17, 3))
  return pose + np.array([rng.uniform(-200, 200), 0, depth])


# --- joint maps and protocol --------------------------------------------------

def test_joint_maps_match_by_name():
  for i, name in enumerate(skel.MPI3DHP17.joint_names):
    want = skel.H36M17.index(_RENAME.get(name, name))
    assert skel.MPI3DHP17_TO_H36M17[i] == want, name
  names28 = np.array(skel.MPI3DHP28_JOINT_NAMES)
  assert list(names28[skel.MPI3DHP28_TO_MPI3DHP17]) == list(
      skel.MPI3DHP17.joint_names)
  rng = np.random.default_rng(0)
  j28 = rng.normal(size=(2, 28, 3))
  out, valid = skel.to_h36m17(j28, 'mpi_inf_3dhp28')
  assert valid.min() == 1
  for i, name in enumerate(skel.MPI3DHP28_JOINT_NAMES):
    if name in skel.MPI3DHP17.joint_names:
      h = skel.H36M17.index(_RENAME.get(name, name))
      np.testing.assert_array_equal(out[:, h], j28[:, i])


def test_protocol_pck_auc_per_activity():
  rng = np.random.default_rng(1)
  gt = rng.normal(0, 300, (6, 17, 3))
  gt -= gt[:, :1]
  pred = gt.copy()
  # Frames 3..5: every non-root joint 102 mm off along x.
  pred[3:, 1:, 0] += 102.
  out = metrics.mpi_inf_3dhp_summary(pred, gt, activities=[1, 1, 1, 3, 3, 3])
  t = np.arange(0, 151, 5)
  exact = np.mean(t > 0)  # error 0 counts below every threshold but 0
  off = (1 * np.mean(t > 0) + 16 * np.mean(t > 102)) / 17
  assert out['pck3d_150'] == pytest.approx(100.)
  assert out['per_activity']['Standing/Walking']['auc'] == pytest.approx(
      100 * exact)
  assert out['per_activity']['Sitting']['auc'] == pytest.approx(100 * off)
  assert out['auc'] == pytest.approx(50 * (exact + off))
  assert out['per_activity']['Sitting']['mpjpe_mm'] == pytest.approx(
      102 * 16 / 17)
  assert out['num_frames'] == 6


def test_published_test_intrinsics():
  k = dhp.testset_intrinsics('TS2')
  np.testing.assert_allclose([k[0, 0], k[1, 1], k[0, 2], k[1, 2]],
                             [1500.172288, 1500.172288, 1017.387, 1043.032],
                             atol=1e-3)
  k = dhp.testset_intrinsics('TS6')
  np.testing.assert_allclose([k[0, 0], k[0, 2], k[1, 2]],
                             [1683.98346, 939.8575, 560.1407], atol=1e-3)


# --- the test set --------------------------------------------------------------

def _write_v73(path, fields):
  """A MATLAB v7.3 file: HDF5 with a 512-byte MATLAB header."""
  with h5py.File(path, 'w', userblock_size=512) as f:
    for key, value in fields.items():
      f.create_dataset(key, data=value)
  header = b'MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test'
  with open(path, 'r+b') as f:
    f.write(header.ljust(116, b' '))


def write_test_sequence(root, name='TS1', num=5, valid=(1, 0, 1, 1, 1),
                        drop=(), image_size=(2048, 2048)):
  rng = np.random.default_rng(2)
  k = dhp.testset_intrinsics(name)
  annot3 = np.stack([_pose17(rng) for _ in range(num)])
  root_ = annot3[:, 14:15]
  univ = (annot3 - root_) * 0.9 + root_  # a rescaled skeleton
  annot2 = geometry.project(annot3, k)
  fields = {'annot2': annot2[:, None], 'annot3': annot3[:, None],
            'univ_annot3': univ[:, None],
            'valid_frame': np.array(valid, np.float64)[:, None],
            'activity_annotation': np.array([1, 2, 2, 7, 3][:num],
                                            np.float64)[:, None]}
  for key in drop:
    fields.pop(key)
  seq = os.path.join(root, name)
  os.makedirs(os.path.join(seq, 'imageSequence'), exist_ok=True)
  _write_v73(os.path.join(seq, 'annot_data.mat'), fields)
  w, h = image_size
  for i in range(num):
    image = np.full((h, w, 3), 40 + 30 * i, np.uint8)
    cv2.imwrite(os.path.join(seq, 'imageSequence', f'img_{i + 1:06d}.jpg'),
                image)
  return {'annot2': annot2, 'annot3': annot3, 'univ': univ, 'k': k}


def _read_split(out_dir, split):
  out = []
  for path in records.list_shards(out_dir, split):
    for raw in tf.data.TFRecordDataset(path):
      ex = records.parse_example(raw)
      ex['image'] = records.decode_image(ex['image/encoded']).numpy()
      out.append({k: (v.numpy() if hasattr(v, 'numpy') else v)
                  for k, v in ex.items()})
  return sorted(out, key=lambda e: e['frame'])


def test_test_set_valid_frames_universal_skeleton(tmp_path):
  truth = write_test_sequence(str(tmp_path / 'test'))
  out = str(tmp_path / 'out')
  manifest = dhp.convert_test(str(tmp_path / 'test'), out, ['TS1'],
                              crop_size=64, num_workers=1)
  got = _read_split(out, 'test')
  assert [e['frame'] for e in got] == [1, 3, 4, 5]  # valid frames only
  assert manifest['counts'] == {'test': 4}
  assert manifest['splits']['test']['reprojection_px']['max'] < 1e-3
  rows = [0, 2, 3, 4]
  univ, _ = skel.to_h36m17(truth['univ'], 'mpi_inf_3dhp17')
  annot3, _ = skel.to_h36m17(truth['annot3'], 'mpi_inf_3dhp17')
  for e, r in zip(got, rows):
    assert e['dataset'] == b'mpi_inf_3dhp' and e['subject'] == b'TS1'
    assert e['action'].decode() == metrics.MPI3DHP_ACTIVITIES[
        [1, 2, 2, 7, 3][r] - 1]
    rel = e['joints3d_cam_mm'] - e['joints3d_cam_mm'][:1]
    np.testing.assert_allclose(rel, univ[r] - univ[r][:1], atol=1e-2)
    np.testing.assert_allclose(e['joints3d_cam_mm'][0], annot3[r][0],
                               atol=1e-2)
    # The stored crop is the frame's: its grey level is the frame's.
    assert abs(np.median(e['image']) - (40 + 30 * r)) <= 3


def test_test_set_annot3_labels_project_onto_the_2d_labels(tmp_path):
  write_test_sequence(str(tmp_path / 'test'))
  out = str(tmp_path / 'out')
  dhp.convert_test(str(tmp_path / 'test'), out, ['TS1'], crop_size=64,
                   skeleton3d='annot3', valid_only=False, num_workers=1)
  got = _read_split(out, 'test')
  assert len(got) == 5
  for e in got:
    k = e['intrinsics']
    np.testing.assert_allclose(geometry.project(e['joints3d_cam_mm'], k),
                               e['joints2d_px'], atol=1e-2)


@pytest.mark.parametrize('drop, pattern', [
    (('univ_annot3',), r"annot_data.mat: field 'univ_annot3' not found"),
    (('valid_frame',), r"field 'valid_frame' not found"),
])
def test_test_set_missing_field(tmp_path, drop, pattern):
  write_test_sequence(str(tmp_path / 'test'), drop=drop, image_size=(64, 64))
  out = tmp_path / 'out'
  with pytest.raises(AnnotationError, match=pattern):
    dhp.convert_test(str(tmp_path / 'test'), str(out), ['TS1'])
  assert not glob.glob(str(out / '*'))


def test_test_set_mismatched_frame_counts(tmp_path):
  write_test_sequence(str(tmp_path / 'test'), valid=(1, 1, 1, 1, 1, 1),
                      image_size=(64, 64))
  with pytest.raises(AnnotationError, match=r'different frame counts .*'
                     r"'annot2': 5.*'valid_frame': 6"):
    dhp.convert_test(str(tmp_path / 'test'), str(tmp_path / 'out'), ['TS1'])


def test_test_set_v5_file_and_missing_image(tmp_path):
  seq = tmp_path / 'test' / 'TS1'
  os.makedirs(seq)
  scipy.io.savemat(str(seq / 'annot_data.mat'), {'annot2': np.zeros(3)})
  with pytest.raises(AnnotationError, match='MATLAB v7.3'):
    dhp.convert_test(str(tmp_path / 'test'), str(tmp_path / 'out'), ['TS1'])
  write_test_sequence(str(tmp_path / 'test2'), image_size=(64, 64))
  os.remove(tmp_path / 'test2' / 'TS1' / 'imageSequence' / 'img_000004.jpg')
  out = tmp_path / 'out2'
  with pytest.raises(FileNotFoundError, match=r'img_000004.jpg: image not '
                     r'found \(1 of the 4 frames of TS1'):
    dhp.convert_test(str(tmp_path / 'test2'), str(out), ['TS1'])
  assert not glob.glob(str(out / '*.tfrecord*'))


# --- the training set ---------------------------------------------------------

CALIBRATION = """Skeletool Camera Calibration File V1.0
name          {cam}
  sensor      10 10
  size        {w} {h}
  animated    0
  intrinsic   {fx} 0 {cx} 0 0 {fy} {cy} 0 0 0 1 0 0 0 0 1
  extrinsic   1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1
  radial      0
"""
VIDEO_SIZE = (96, 72)


def write_train_sequence(root, num=6, video_frames=None, broken_video=False):
  """S1/Seq1 with cameras 0 (a video) and 1 (extracted JPEGs)."""
  rng = np.random.default_rng(3)
  seq = os.path.join(root, 'S1', 'Seq1')
  images = os.path.join(seq, 'imageSequence')
  os.makedirs(images, exist_ok=True)
  w, h = VIDEO_SIZE
  ks, cells = {}, {k: np.empty((2, 1), object) for k in
                   ('annot2', 'annot3', 'univ_annot3')}
  calib = []
  for cam in (0, 1):
    k = np.array([[80. + 10 * cam, 0, 47.], [0, 82., 36.], [0, 0, 1]])
    ks[cam] = k
    text = CALIBRATION.format(cam=cam, w=w, h=h, fx=k[0, 0], fy=k[1, 1],
                              cx=k[0, 2], cy=k[1, 2])
    calib.append(text if cam == 0 else text.split('\n', 1)[1])
    j28 = np.zeros((num, 28, 3))
    for i in range(num):
      pose17 = _pose17(rng, depth=6000.)
      j28[i] = rng.normal(0, 100, (28, 3)) + pose17[14]
      j28[i, skel.MPI3DHP28_TO_MPI3DHP17] = pose17
    cells['annot3'][cam, 0] = j28.reshape(num, -1)
    cells['univ_annot3'][cam, 0] = (j28 * 0.95).reshape(num, -1)
    cells['annot2'][cam, 0] = geometry.project(j28, k).reshape(num, -1)
  scipy.io.savemat(os.path.join(seq, 'annot.mat'),
                   {**cells, 'cameras': np.array([[0, 1]]),
                    'frames': np.arange(num)[:, None]})
  with open(os.path.join(seq, 'camera.calibration'), 'w') as f:
    f.write(''.join(calib))
  video = os.path.join(images, 'video_0.avi')
  if broken_video:
    with open(video, 'wb') as f:
      f.write(b'RIFF not really a video')
  else:
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'MJPG'), 25,
                             VIDEO_SIZE)
    for i in range(num if video_frames is None else video_frames):
      writer.write(np.full((h, w, 3), 30 + 35 * i, np.uint8))
    writer.release()
  for i in range(num):
    cv2.imwrite(os.path.join(images, f'img_1_{i + 1:06d}.jpg'),
                np.full((h, w, 3), 200 - 30 * i, np.uint8))
  return ks


def test_training_set_from_video_and_images(tmp_path):
  ks = write_train_sequence(str(tmp_path / 'train'))
  out = str(tmp_path / 'out')
  manifest = dhp.convert_train(str(tmp_path / 'train'), out, ['S1'],
                               ['Seq1'], cameras=(0, 1), every=2,
                               crop_size=48, num_workers=1)
  assert manifest['counts'] == {'train': 6}
  got = _read_split(out, 'train')
  by_camera = {}
  for e in got:
    by_camera.setdefault(e['camera'].decode(), []).append(e)
  assert sorted(by_camera) == ['0', '1']
  for cam, examples in by_camera.items():
    assert [e['frame'] for e in examples] == [1, 3, 5]
    for e in examples:
      row = e['frame'] - 1
      level = 30 + 35 * row if cam == '0' else 200 - 30 * row
      assert abs(np.median(e['image']) - level) <= 4, (cam, row)
      np.testing.assert_allclose(
          geometry.project(e['joints3d_cam_mm'], e['intrinsics']),
          e['joints2d_px'], atol=1e-2)
      assert e['subject'] == b'S1' and e['action'] == b'Seq1'
  # The crop intrinsics derive from the calibration file's K.
  del ks


def test_unreadable_video_is_a_clear_error(tmp_path):
  write_train_sequence(str(tmp_path / 'train'), broken_video=True)
  out = tmp_path / 'out'
  with pytest.raises(AnnotationError, match=r'video_0.avi: cannot (read|'
                     r'decode).*S1/Seq1 camera 0'):
    dhp.convert_train(str(tmp_path / 'train'), str(out), ['S1'], ['Seq1'],
                      cameras=(0, 1))
  assert not glob.glob(str(out / '*'))


def test_short_video_is_a_clear_error(tmp_path):
  write_train_sequence(str(tmp_path / 'train'), video_frames=3)
  with pytest.raises(AnnotationError, match=r'video_0.avi: 3 frames, but '
                     r'annot.mat of S1/Seq1 labels 6'):
    dhp.convert_train(str(tmp_path / 'train'), str(tmp_path / 'out'), ['S1'],
                      ['Seq1'], cameras=(0,))


def test_training_annotation_errors(tmp_path):
  seq = tmp_path / 'train' / 'S1' / 'Seq1'
  os.makedirs(seq)
  cells = np.empty((1, 1), object)
  cells[0, 0] = np.zeros((4, 56))
  scipy.io.savemat(str(seq / 'annot.mat'), {'annot2': cells})
  with pytest.raises(AnnotationError, match=r"field 'annot3' not found"):
    dhp.read_train_annot(str(seq / 'annot.mat'))
  short = np.empty((1, 1), object)
  short[0, 0] = np.zeros((3, 84))
  scipy.io.savemat(str(seq / 'annot.mat'), {'annot2': cells, 'annot3': short,
                                           'univ_annot3': short})
  with pytest.raises(AnnotationError, match='frame counts differ'):
    dhp.read_train_annot(str(seq / 'annot.mat'))


def test_cli(tmp_path):
  """The converter as a program: the shared output flags reach the writer."""
  write_test_sequence(str(tmp_path / 'test'), num=3, valid=(1, 1, 0),
                      image_size=(256, 256))
  out = tmp_path / 'out'
  proc = subprocess.run(
      [sys.executable, '-m', 'zoo.data.mpi_inf_3dhp',
       f'--test_root={tmp_path / "test"}', '--sequences=TS1',
       f'--out_dir={out}', '--crop_size=48', '--examples_per_shard=1',
       '--num_workers=1'],
      capture_output=True, text=True, timeout=300,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'),
      cwd=os.path.dirname(os.path.dirname(os.path.dirname(
          os.path.dirname(os.path.abspath(__file__))))))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert json.loads(proc.stdout.strip().splitlines()[-1])['counts'] == {
      'test': 2}
  assert len(records.list_shards(str(out), 'test')) == 2  # 1 per shard
  assert all(e['image'].shape == (48, 48, 3)
             for e in _read_split(str(out), 'test'))


def test_cli_bad_input(tmp_path, capsys):
  out = tmp_path / 'out'
  with pytest.raises(SystemExit) as e:  # neither split given
    dhp.main([f'--out_dir={out}'])
  assert e.value.code == 2
  assert 'give --test_root and/or --train_root' in capsys.readouterr().err
  assert dhp.main([f'--test_root={tmp_path / "none"}', '--sequences=TS1',
                   f'--out_dir={out}']) == 2
  assert capsys.readouterr().err.startswith('error: ')
  assert not glob.glob(str(out / '*.tfrecord*'))

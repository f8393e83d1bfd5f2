"""Tests for zoo/data/mpii.py on tiny fixtures in pose-hg-train's HDF5 format.

The joint map is spelled out here from the published MPII and H36M joint
orders (not taken from zoo.skeleton), and the crop and default camera
are recomputed by hand.
"""
import json
import os
import subprocess
import sys

import cv2
import h5py
import numpy as np
import pytest
import tensorflow as tf

from zoo.data import mpii
from zoo.data import records

H, W = 90, 120  # non-square frames catch height/width mix-ups
# MPII-16 joint m lives at H36M-17 index MPII_TO_H36M[m] (upper neck -> neck).
MPII_TO_H36M = [3, 2, 1, 4, 5, 6, 0, 8, 9, 10, 16, 15, 14, 11, 12, 13]
SPINE = 7
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def _image(path, seed):
  img = np.zeros((H, W, 3), np.uint8)
  img[:, :W // 2] = (0, 0, 255)  # BGR red left
  img[:, W // 2:] = (0, 255, 0)  # green right
  img[:5, :5] = seed  # makes each file distinct
  assert cv2.imwrite(str(path), img)


def _write_annot(tmp_path, fname='train.h5', imgname='codes', istrain=None):
  rng = np.random.default_rng(0)
  names = ['000001.jpg', '000001.jpg', '000002.jpg', '000003.jpg',
           '000001.jpg']
  n = len(names)
  part = rng.uniform([35, 20], [85, 70], (n, 16, 2))
  part[0, 9] = 0  # unlabeled head top
  part[1, 0] = -1  # unlabeled right ankle
  part[3] = 0  # a row without any label: skipped
  visible = rng.integers(0, 2, (n, 16)).astype(np.float64)
  center = np.tile([60., 45.], (n, 1)) + rng.uniform(-3, 3, (n, 2))
  scale = rng.uniform(0.3, 0.35, n)
  img_dir = tmp_path / 'images'
  img_dir.mkdir(exist_ok=True)
  for i, nm in enumerate(sorted(set(names))):
    _image(img_dir / nm, 10 * i)
  path = tmp_path / fname
  with h5py.File(path, 'w') as f:
    f['part'] = part
    f['visible'] = visible
    f['center'] = center
    f['scale'] = scale
    f['normalize'] = rng.uniform(10, 20, n)
    f['index'] = np.array([7, 7, 8, 9, 7])
    f['person'] = np.array([0, 1, 0, 0, 2])
    if istrain is not None:
      f['istrain'] = np.asarray(istrain)
    if imgname == 'codes':  # pose-hg-train: 0-padded character codes
      codes = np.zeros((n, 16))
      for i, nm in enumerate(names):
        codes[i, :len(nm)] = [ord(c) for c in nm]
      f['imgname'] = codes
    else:
      f['imgname'] = np.array([nm.encode() for nm in names])
  return str(path), str(img_dir), dict(part=part, visible=visible,
                                        center=center, scale=scale, names=names)


def _read(out_dir, split):
  ds = tf.data.TFRecordDataset(records.list_shards(str(out_dir), split))
  return [{k: v.numpy() for k, v in records.parse_example(s).items()}
          for s in ds]


def test_convert_crop_maps_joints_masks_and_camera(tmp_path):
  annot, images, truth = _write_annot(tmp_path)
  out = tmp_path / 'out'
  manifest = mpii.convert_annot(annot, images, str(out), crop_margin=1.5,
                                crop_size=48, num_workers=2)
  assert manifest['counts'] == {'train': 4}
  assert manifest['skipped_unlabeled_rows'] == 1
  exs = _read(out, 'train')
  assert [int(e['frame']) for e in exs] == [7, 7, 8, 7]
  focal = W / 2 / np.tan(np.deg2rad(55) / 2)  # records.default_intrinsics
  for ex, r in zip(exs, [0, 1, 2, 4]):
    labeled = np.all(truth['part'][r] > 0, -1)
    want_valid = np.zeros(17)
    want_valid[MPII_TO_H36M] = labeled
    assert want_valid[SPINE] == 0
    np.testing.assert_array_equal(ex['joint_valid_2d'], want_valid)
    s = 48 / (200 * truth['scale'][r] * 1.5)
    c = truth['center'][r]
    want = np.zeros((17, 2))
    want[MPII_TO_H36M] = s * (truth['part'][r] - c) + 24
    want *= want_valid[:, None]
    np.testing.assert_allclose(ex['joints2d_px'], want, atol=1e-3)
    occluded = np.zeros(17)
    occluded[MPII_TO_H36M] = labeled & (truth['visible'][r] == 0)
    np.testing.assert_array_equal(ex['joint_self_occluded'], occluded)
    np.testing.assert_array_equal(ex['joint_in_image'], want_valid)
    want_k = np.array([[s * focal, 0, s * ((W - 1) / 2 - c[0]) + 24],
                       [0, s * focal, s * ((H - 1) / 2 - c[1]) + 24],
                       [0, 0, 1]])
    np.testing.assert_allclose(ex['intrinsics'], want_k, rtol=1e-5, atol=1e-3)
    side = 48 / 1.5
    np.testing.assert_allclose(ex['box_xywh'], [24 - side / 2] * 2 + [side] * 2,
                               atol=1e-3)
    assert ex['has_3d'] == 0 and ex['has_camera'] == 0
    assert not ex['joint_valid_3d'].any() and not ex['joints3d_cam_mm'].any()
    assert ex['dataset'] == b'mpii' and ex['subject'] == b''
    img = records.decode_image(ex['image/encoded']).numpy()
    assert img.shape == (48, 48, 3)
    x, y = (int(round(s * (40 - c[0]) + 24)), int(round(s * (45 - c[1]) + 24)))
    assert img[y, x, 0] > 200 and img[y, x, 2] < 60  # red stays red: RGB


def test_split_rules_and_bytes_names(tmp_path):
  annot, images, _ = _write_annot(tmp_path, fname='valid.h5', imgname='bytes')
  out = tmp_path / 'out'
  m = mpii.convert_annot(annot, images, str(out), crop_margin=0)
  assert m['counts'] == {'test': 4}
  ex = _read(out, 'test')[2]
  with open(os.path.join(images, '000002.jpg'), 'rb') as f:
    assert ex['image/encoded'] == f.read()  # full frame: original bytes
  np.testing.assert_allclose(ex['intrinsics'],
                             records.default_intrinsics(H, W), rtol=1e-6)
  assert (ex['image/height'], ex['image/width']) == (H, W)
  # istrain decides when present; train.h5 and valid.h5 merge in one manifest.
  annot, images, _ = _write_annot(tmp_path, istrain=[1, 0, 1, 1, 1])
  m = mpii.convert_annot(annot, images, str(out), crop_size=32)
  assert m['counts'] == {'train': 3, 'test': 1}
  assert [int(e['frame']) for e in _read(out, 'test')] == [7]
  m = mpii.convert_annot(annot, images, str(out), split='extra', crop_size=32)
  assert m['counts'] == {'train': 3, 'test': 1, 'extra': 4}


def test_errors_name_file_key_and_shape(tmp_path):
  with pytest.raises(FileNotFoundError, match='annot.h5: annotation file not'):
    mpii.read_annot(str(tmp_path / 'annot.h5'))
  annot, images, truth = _write_annot(tmp_path)
  with h5py.File(annot, 'a') as f:
    del f['part']
    f['part'] = truth['part'][:, :14]
  with pytest.raises(mpii.AnnotationError,
                     match=r"train.h5: dataset 'part' has shape \(5, 14, 2\), "
                     r"expected \(N, 16, 2\)"):
    mpii.read_annot(annot)
  with h5py.File(annot, 'a') as f:
    del f['part']
    f['part'] = truth['part']
    del f['scale']
  with pytest.raises(mpii.AnnotationError,
                     match=r"train.h5: dataset 'scale' not found.*\(N,\)"):
    mpii.read_annot(annot)
  with h5py.File(annot, 'a') as f:
    f['scale'] = truth['scale']
    del f['imgname']
    f['imgname'] = np.zeros((5, 4, 2))
  with pytest.raises(mpii.AnnotationError, match=r"'imgname'.*\(N, L\)"):
    mpii.read_annot(annot)
  with h5py.File(annot, 'a') as f:
    del f['imgname']
    f['imgname'] = np.array([b'000001.jpg', b'missing.jpg', b'000002.jpg',
                             b'000003.jpg', b'000001.jpg'])
  with pytest.raises(FileNotFoundError, match=r'images/missing.jpg'):
    mpii.convert_annot(annot, images, str(tmp_path / 'o'))
  with pytest.raises(FileNotFoundError, match='nodir: image folder'):
    mpii.convert_annot(annot, str(tmp_path / 'nodir'), str(tmp_path / 'o'))


def test_cli(tmp_path):
  annot, images, truth = _write_annot(tmp_path)
  out = tmp_path / 'out'
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run(
      [sys.executable, '-m', 'zoo.data.mpii', f'--annot={annot}',
       f'--images={images}', f'--out_dir={out}', '--crop_size=40'],
      capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert json.loads(proc.stdout.strip().splitlines()[-1])['counts'] == {
      'train': 4}
  exs = _read(out, 'train')
  assert len(exs) == 4 and exs[0]['image/width'] == 40
  head_top = 10
  assert exs[0]['joint_valid_2d'][head_top] == 0  # unlabeled in row 0


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
  annot, _, _ = _write_annot(tmp_path)
  out = tmp_path / 'out'
  assert mpii.main([f'--annot={annot}', f'--images={tmp_path / "nodir"}',
                    f'--out_dir={out}']) == 2
  assert 'nodir: image folder' in capsys.readouterr().err
  assert not out.exists()

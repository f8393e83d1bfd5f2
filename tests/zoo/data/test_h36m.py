"""Tests for zoo/data/h36m.py on tiny fixtures in the real file formats.

Fixtures: a c2f-style annotation HDF5 (part, S, center, scale, zind, imgname)
whose 2D joints are the projection of its 3D joints by a known camera,
images written with cv2 under H36M file names, and a VideoPose3D-style
motion archive. Expected values are computed here by hand (crop maths,
camera scaling, the 32 -> 17 joint indices from the H36M docs), not with the
converter's own helpers.
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

from zoo import geometry
from zoo.data import h36m
from zoo.data import records

IMG = 100  # fixture frames are H36M's 1000 px frames scaled by 0.1
# Official calibration (fx, fy, cx, cy) of two H36M cameras at 1000 px.
CAMS = {'54138969': (1145.0494384765625, 1143.7811279296875, 512.54150390625,
                     515.4514770507812),
        '55011271': (1149.6756591796875, 1147.5916748046875, 508.8486328125,
                     508.0649108886719)}
# A standing person, root-relative, camera axes (x right, y down), mm.
TEMPLATE = np.array([
    [0, 0, 0], [-130, 10, 20], [-140, 450, 60], [-135, 890, 30],
    [130, 10, -20], [140, 450, 40], [135, 890, -10], [0, -230, -30],
    [0, -490, -20], [0, -610, 10], [0, -720, 40], [150, -490, 30],
    [300, -300, 120], [330, -80, 150], [-150, -490, -30], [-290, -290, -90],
    [-320, -70, -40]], np.float64)
# H36M-17 joints in the 32-joint motion files (the usual 17-joint subset).
H36M32_KEEP = [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]


def _scaled_k(cam):
  fx, fy, cx, cy = CAMS[cam]
  s = IMG / 1000.
  return np.array([[fx * s, 0, (cx + .5) * s - .5],
                   [0, fy * s, (cy + .5) * s - .5], [0, 0, 1]])


def _poses(n, rng):
  poses = TEMPLATE[None] + rng.normal(0, 15, (n, 17, 3))
  trans = np.stack([rng.uniform(-300, 300, n), rng.uniform(-100, 100, n),
                    rng.uniform(4500, 6000, n)], -1)
  return poses + trans[:, None]


def _image(path):
  img = np.zeros((IMG, IMG, 3), np.uint8)
  img[:, :IMG // 2] = (0, 0, 255)  # BGR red on the left half
  img[:, IMG // 2:] = (255, 0, 0)  # BGR blue on the right half
  assert cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 100])


def _write_annot(tmp_path, names, ks=None, imgname='bytes', seed=0,
                 fname='annot.h5'):
  """Writes images + annot.h5; ks: per-row K (default: the named camera's)."""
  rng = np.random.default_rng(seed)
  n = len(names)
  s3d = _poses(n, rng)
  if ks is None:
    ks = [_scaled_k(h36m.parse_image_name(nm)['camera']) for nm in names]
  part = np.stack([geometry.project(s, k) for s, k in zip(s3d, ks)])
  lo, hi = part.min(1), part.max(1)
  center = (lo + hi) / 2
  scale = (hi - lo).max(-1) * 1.2 / 200
  img_dir = tmp_path / 'images'
  img_dir.mkdir(exist_ok=True)
  for nm in names:
    _image(img_dir / nm)
  path = tmp_path / fname
  with h5py.File(path, 'w') as f:
    f['part'] = part
    f['S'] = s3d
    f['center'] = center
    f['scale'] = scale
    f['zind'] = rng.integers(1, 65, (n, 17)).astype(np.float64)
    if imgname == 'bytes':
      f['imgname'] = np.array([nm.encode() for nm in names], 'S40')
    elif imgname == 'codes':  # torch-hdf5 style: 0-padded character codes
      codes = np.zeros((n, 40))
      for i, nm in enumerate(names):
        codes[i, :len(nm)] = [ord(c) for c in nm]
      f['imgname'] = codes
  return str(path), str(img_dir), dict(part=part, S=s3d, center=center,
                                        scale=scale, K=np.stack(ks))


def _read(out_dir, split):
  ds = tf.data.TFRecordDataset(records.list_shards(str(out_dir), split))
  return [{k: v.numpy() for k, v in records.parse_example(s).items()}
          for s in ds]


NAMES = ['S1_Directions_1.54138969_000001.jpg',
         'S1_TakingPhoto.55011271_000006.jpg',
         'S9_Posing_1.55011271_000011.jpg',
         'S2_Eating_2.54138969_000016.jpg',
         'S11_WalkDog_2.54138969_000021.jpg',
         'S5_Sitting_1.55011271_000026.jpg']


def test_parse_image_name():
  assert h36m.parse_image_name('x/S9_Directions_1.54138969_000001.jpg') == {
      'subject': 'S9', 'action': 'Directions', 'subaction': '1',
      'camera': '54138969', 'frame': 1}
  got = h36m.parse_image_name('S1_TakingPhoto.58860488_000321.jpg')
  assert (got['action'], got['subaction'], got['frame']) == ('Photo', '', 321)
  assert h36m.parse_image_name('S11_Walking Dog 1.60457274_12.png')[
      'action'] == 'Walking_Dog'
  assert h36m.parse_image_name('frame_0001.jpg') is None


def test_convert_crops_and_routes_by_subject(tmp_path):
  annot, images, truth = _write_annot(tmp_path, NAMES)
  out = tmp_path / 'out'
  manifest = h36m.convert_annot(annot, images, str(out), crop_margin=1.5,
                                crop_size=64, num_workers=2)
  assert manifest['counts'] == {'train': 3, 'test': 2}
  assert manifest['skipped_subjects'] == {'S2': 1}
  assert manifest['dataset'] == 'h36m'
  assert manifest['splits']['train']['reprojection_px']['max'] < 1e-3
  rows = {'train': [0, 1, 5], 'test': [2, 4]}
  want_meta = {0: ('S1', 'Directions', '54138969', 1),
               1: ('S1', 'Photo', '55011271', 6),
               5: ('S5', 'Sitting', '55011271', 26),
               2: ('S9', 'Posing', '55011271', 11),
               4: ('S11', 'WalkDog', '54138969', 21)}
  for split, idx in rows.items():
    exs = _read(out, split)
    assert len(exs) == len(idx)
    for ex, r in zip(exs, idx):
      meta = (ex['subject'].decode(), ex['action'].decode(),
              ex['camera'].decode(), int(ex['frame']))
      assert meta == want_meta[r]
      # Crop: side = 200 * scale * 1.5 -> 64 px, box centre -> (32, 32).
      s = 64 / (200 * truth['scale'][r] * 1.5)
      c = truth['center'][r]
      np.testing.assert_allclose(ex['joints2d_px'],
                                 s * (truth['part'][r] - c) + 32, atol=1e-3)
      k = truth['K'][r]
      want_k = np.array([[s * k[0, 0], 0, s * (k[0, 2] - c[0]) + 32],
                         [0, s * k[1, 1], s * (k[1, 2] - c[1]) + 32],
                         [0, 0, 1]])
      np.testing.assert_allclose(ex['intrinsics'], want_k, rtol=1e-5, atol=1e-3)
      np.testing.assert_allclose(ex['joints3d_cam_mm'], truth['S'][r],
                                 rtol=1e-6)
      np.testing.assert_allclose(ex['joints3d_world_mm'], truth['S'][r],
                                 rtol=1e-6)
      # 2D labels are the projection of the 3D labels in the stored image.
      np.testing.assert_allclose(
          geometry.project(ex['joints3d_cam_mm'].astype(np.float64),
                           ex['intrinsics'].astype(np.float64)),
          ex['joints2d_px'], atol=2e-3)
      np.testing.assert_allclose(
          ex['box_xywh'], [32 - 64 / 3, 32 - 64 / 3, 64 / 1.5, 64 / 1.5],
          atol=1e-3)
      assert ex['has_3d'] == 1 and ex['has_camera'] == 1
      assert ex['joint_valid_2d'].all() and ex['joint_valid_3d'].all()
      assert ex['joint_in_image'].all()
      assert (ex['image/height'], ex['image/width']) == (64, 64)
      # RGB in the record: the source's left half is red.
      img = records.decode_image(ex['image/encoded']).numpy()
      assert img.shape == (64, 64, 3)
      x = int(round(s * (20 - c[0]) + 32))
      y = int(round(s * (50 - c[1]) + 32))
      assert 0 <= x < 64 and 0 <= y < 64
      r_, g_, b_ = img[y, x].astype(int)
      assert r_ > 200 and b_ < 60 and g_ < 60


def test_full_frame_passthrough_and_codes_imgname(tmp_path):
  names = NAMES[:2]
  annot, images, truth = _write_annot(tmp_path, names, imgname='codes')
  out = tmp_path / 'out'
  h36m.convert_annot(annot, images, str(out), split='train', crop_margin=0,
                     num_workers=1)
  exs = _read(out, 'train')
  assert [e['action'].decode() for e in exs] == ['Directions', 'Photo']
  for ex, nm, r in zip(exs, names, range(2)):
    with open(os.path.join(images, nm), 'rb') as f:
      assert ex['image/encoded'] == f.read()
    np.testing.assert_allclose(ex['joints2d_px'], truth['part'][r], atol=1e-4)
    np.testing.assert_allclose(ex['intrinsics'], truth['K'][r], rtol=1e-6)
    np.testing.assert_allclose(ex['box_xywh'][2], 200 * truth['scale'][r],
                               rtol=1e-5)
    img = records.decode_image(ex['image/encoded']).numpy()
    assert img[50, 10, 0] > 200 and img[50, 10, 2] < 60  # red, RGB order
    assert img[50, 90, 2] > 200 and img[50, 90, 0] < 60  # blue


def test_estimate_generic_and_table_intrinsics(tmp_path):
  rng = np.random.default_rng(3)
  names = ['S1_Eating_1.12345678_000001.jpg', 'S1_Eating_1.12345678_000002.jpg',
           'S9_Eating_1.12345678_000003.jpg']
  ks = [np.array([[f, 0, cx], [0, f * 1.01, cy], [0, 0, 1]]) for f, cx, cy in
        zip(rng.uniform(100, 140, 3), rng.uniform(45, 55, 3),
            rng.uniform(45, 55, 3))]
  annot, images, _ = _write_annot(tmp_path, names, ks=ks)
  out = tmp_path / 'est'
  m = h36m.convert_annot(annot, images, str(out), intrinsics='estimate',
                         crop_margin=0, num_workers=1)
  exs = _read(out, 'train') + _read(out, 'test')
  assert m['splits']['test']['reprojection_px']['max'] < 1e-3
  for ex, k in zip(exs, ks):
    np.testing.assert_allclose(ex['intrinsics'], k, rtol=1e-4, atol=1e-3)
    assert ex['has_camera'] == 1
  # Unknown camera ids fall back to the generic H36M-like guess (a guess:
  # has_camera 0); a user table sets the K and marks it calibrated.
  out = tmp_path / 'gen'
  h36m.convert_annot(annot, images, str(out), crop_margin=0, split='all')
  ex = _read(out, 'all')[0]
  np.testing.assert_allclose(ex['intrinsics'], [[114.5, 0, 49.5],
                                                [0, 114.5, 49.5], [0, 0, 1]],
                             rtol=1e-6)
  assert ex['has_camera'] == 0
  out = tmp_path / 'user'
  h36m.convert_annot(annot, images, str(out), crop_margin=0, split='all',
                     intrinsics={'*': (120., 121., 50., 51.)})
  ex = _read(out, 'all')[0]
  np.testing.assert_allclose(ex['intrinsics'], [[120, 0, 50], [0, 121, 51],
                                                [0, 0, 1]])
  assert ex['has_camera'] == 1


def test_camera_intrinsics_table_scaling():
  k, calibrated = h36m.camera_intrinsics('60457274', 1002, 1000)
  np.testing.assert_allclose(k, [[1145.5113525390625, 0, 514.9682006835938],
                                 [0, 1144.77392578125, 501.88201904296875],
                                 [0, 0, 1]])
  assert calibrated
  k, _ = h36m.camera_intrinsics('58860488', 500, 500)
  np.testing.assert_allclose(k[0], [1149.1407470703125 / 2, 0,
                                    (519.8158569335938 + .5) / 2 - .5])


def test_fit_intrinsics_matches_projection_and_rejects_degenerate():
  rng = np.random.default_rng(0)
  pts = rng.uniform([-500, -800, 3000], [500, 800, 6000], (4, 17, 3))
  k = np.array([[1100., 0, 500], [0, 1120, 490], [0, 0, 1]])
  got = geometry.fit_intrinsics(geometry.project(pts, k), pts)
  np.testing.assert_allclose(got, np.broadcast_to(k, (4, 3, 3)), rtol=1e-9)
  # A single valid point cannot determine focal and centre.
  with pytest.raises(ValueError, match='undetermined'):
    geometry.fit_intrinsics(geometry.project(pts[0], k), pts[0],
                            valid=np.eye(17)[0])


def test_sidecar_image_list_and_names_file(tmp_path):
  names = NAMES[:3]
  annot, images, _ = _write_annot(tmp_path, names, imgname=None,
                                  fname='valid.h5')
  with pytest.raises(h36m.AnnotationError, match='valid_images.txt'):
    h36m.read_annot(annot)
  (tmp_path / 'valid_images.txt').write_text('\n'.join(names) + '\n')
  assert h36m.read_annot(annot).imgname == names
  (tmp_path / 'other.txt').write_text('\n'.join(names[:2]) + '\n')
  with pytest.raises(h36m.AnnotationError, match=r'2 image names.*N = 3'):
    h36m.read_annot(annot, names_file=str(tmp_path / 'other.txt'))


def test_annot_errors_name_file_key_and_shape(tmp_path):
  with pytest.raises(FileNotFoundError, match='nope.h5: annotation file not'):
    h36m.read_annot(str(tmp_path / 'nope.h5'))
  annot, images, truth = _write_annot(tmp_path, NAMES[:5])
  with h5py.File(annot, 'a') as f:
    del f['S']
    f['S'] = truth['S'][:, :16]
  with pytest.raises(h36m.AnnotationError,
                     match=r"annot.h5: dataset 'S' has shape \(5, 16, 3\), "
                     r"expected \(N, 17, 3\)"):
    h36m.read_annot(annot)
  with h5py.File(annot, 'a') as f:
    del f['S']
  with pytest.raises(h36m.AnnotationError,
                     match=r"annot.h5: dataset 'S' not found, expected shape "
                     r"\(N, 17, 3\)"):
    h36m.read_annot(annot)
  with h5py.File(annot, 'a') as f:
    f['S'] = truth['S']
    del f['center']
    f['center'] = truth['center'][:4]
  with pytest.raises(h36m.AnnotationError,
                     match=r"'center' has shape \(4, 2\), expected \(N, 2\) "
                     r"with N = 5"):
    h36m.read_annot(annot)
  with h5py.File(annot, 'a') as f:
    del f['center']
    f['center'] = truth['center']
  os.remove(os.path.join(images, NAMES[2]))
  with pytest.raises(FileNotFoundError, match=NAMES[2]):
    h36m.convert_annot(annot, images, str(tmp_path / 'o'), crop_margin=0)
  _image(os.path.join(images, NAMES[2]))
  with h5py.File(annot, 'a') as f:
    del f['imgname']
    f['imgname'] = np.array([b'frame1.jpg'] * 5)
  with pytest.raises(h36m.AnnotationError, match=r"'frame1.jpg'.*--split"):
    h36m.convert_annot(annot, images, str(tmp_path / 'o'))
  assert not (tmp_path / 'o').exists() or not os.listdir(tmp_path / 'o')


def _write_motion(path, data):
  np.savez_compressed(path, positions_3d=data)


def test_motion_npz_roundtrip(tmp_path):
  rng = np.random.default_rng(1)
  data = {'S9': {'Eating': rng.normal(size=(4, 32, 3)).astype(np.float32)},
          'S1': {'Walking 1': rng.normal(size=(10, 32, 3)).astype(np.float32),
                 'Directions': rng.normal(size=(5, 32, 3)).astype(np.float32)}}
  path = str(tmp_path / 'data_3d_h36m.npz')
  _write_motion(path, data)
  got = h36m.load_motion_npz(path, every=2)
  assert list(got) == ['S1', 'S9']
  assert sorted(got['S1']) == ['Directions', 'Walking 1']
  for subject, acts in data.items():
    for action, arr in acts.items():
      want = arr[::2][:, H36M32_KEEP] * 1000
      np.testing.assert_allclose(got[subject][action], want, rtol=1e-6)
      assert got[subject][action].dtype == np.float32
  poses = h36m.motion_npz_poses(path, subjects=['S9', 'S1'])
  want = np.concatenate([data['S9']['Eating'], data['S1']['Directions'],
                         data['S1']['Walking 1']])[:, H36M32_KEEP] * 1000
  np.testing.assert_allclose(poses, want, rtol=1e-6)


def test_motion_npz_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='none.npz: motion archive'):
    h36m.load_motion_npz(str(tmp_path / 'none.npz'))
  path = str(tmp_path / 'bad.npz')
  np.savez(path, poses=np.zeros((3, 32, 3)))
  with pytest.raises(h36m.AnnotationError,
                     match=r"bad.npz: key 'positions_3d' not found.*poses"):
    h36m.load_motion_npz(path)
  np.savez(path, positions_3d=np.zeros((3, 32, 3)))
  with pytest.raises(h36m.AnnotationError, match='expected a pickled dict'):
    h36m.load_motion_npz(path)
  _write_motion(path, {'S1': {'Sitting 2': np.zeros((3, 17, 3))}})
  with pytest.raises(h36m.AnnotationError,
                     match=r"bad.npz: positions_3d\['S1'\]\['Sitting 2'\] has "
                     r"shape \(3, 17, 3\).*expected \(T, 32, 3\)"):
    h36m.load_motion_npz(path)
  with pytest.raises(h36m.AnnotationError, match=r"no subject\(s\) \['S7'\]"):
    h36m.load_motion_npz(path, subjects=['S7'])


def test_cli(tmp_path):
  annot, images, truth = _write_annot(tmp_path, NAMES[:2], fname='train.h5')
  cams = tmp_path / 'cams.json'
  cams.write_text(json.dumps({'*': {'fx': 115, 'fy': 114, 'cx': 50,
                                    'cy': 49}}))
  out = tmp_path / 'out'
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run(
      [sys.executable, '-m', 'zoo.data.h36m', f'--annot={annot}',
       f'--images={images}', f'--out_dir={out}', '--split=train',
       f'--intrinsics={cams}', '--crop_margin=0'],
      capture_output=True, text=True, env=env, timeout=300,
      cwd=os.path.dirname(os.path.dirname(os.path.dirname(
          os.path.dirname(os.path.abspath(__file__))))))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert json.loads(proc.stdout.strip().splitlines()[-1])['counts'] == {
      'train': 2}
  ex = _read(out, 'train')[1]
  np.testing.assert_allclose(ex['intrinsics'], [[115, 0, 50], [0, 114, 49],
                                                [0, 0, 1]])
  np.testing.assert_allclose(ex['joints2d_px'], truth['part'][1], atol=1e-4)
  assert records.read_manifest(str(out))['counts'] == {'train': 2}


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
  out = tmp_path / 'out'
  missing = tmp_path / 'missing.h5'
  assert h36m.main([f'--annot={missing}', f'--images={tmp_path}',
                    f'--out_dir={out}']) == 2
  assert f'error: {missing}: annotation file not found' in \
      capsys.readouterr().err
  assert not out.exists()
  with pytest.raises(SystemExit) as e:  # a required flag missing
    h36m.main([f'--images={tmp_path}', f'--out_dir={out}'])
  assert e.value.code == 2
  assert '--annot' in capsys.readouterr().err

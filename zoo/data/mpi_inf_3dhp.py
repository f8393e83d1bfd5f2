"""MPI-INF-3DHP converter: the dataset's own files -> zoo TFRecords.

Test set (`mpi_inf_3dhp_test_set/TS1` .. `TS6`): each sequence folder holds
`annot_data.mat`, a MATLAB v7.3 file (HDF5) with, per frame N,
`annot2` [N, 1, 17, 2] px, `annot3` [N, 1, 17, 3] camera-frame mm,
`univ_annot3` [N, 1, 17, 3] (the same poses rescaled to the universal
skeleton the benchmark scores), `valid_frame` [N] and `activity_annotation`
[N] (1..7, zoo.metrics.MPI3DHP_ACTIVITIES); the frames are
`imageSequence/img_000001.jpg` (row i -> img_{i+1:06d}.jpg). Joints are in
the 3DHP-17 order (zoo.skeleton.MPI3DHP17) and are mapped to H36M-17.

Test camera intrinsics, as the test set's calibration gives them in
millimetres and converted here to pixels (f_px = f_mm * width_px /
sensor_width_mm; the principal point is the image centre moved by the
published offset):
- TS1-TS4 (studio, 2048 x 2048 px, 10 x 10 mm sensor): focal 7.32506 mm,
  offset (-0.0322884, 0.0929296) mm, i.e. fx = fy = 1500.17 px,
  (cx, cy) = (1017.39, 1043.03) px;
- TS5-TS6 (outdoors, 1920 x 1080 px, 10 x 5.625 mm sensor): focal
  8.770747185 mm, offset (-0.104908645, 0.104899704) mm, i.e.
  fx = fy = 1683.98 px, (cx, cy) = (939.86, 560.14) px.
`intrinsics='estimate'` fits them per sequence from annot2 / annot3
instead (zoo.geometry.fit_intrinsics); the manifest records the median
reprojection error of annot3 against annot2 under the intrinsics used.

The test split keeps the valid frames only (`valid_only`, the protocol) and
stores the universal skeleton (`skeleton3d='universal'`): joints3d_cam_mm =
univ_annot3 relative to its pelvis + annot3's pelvis, so the root lies where
the camera sees it and the root-relative pose is the scored one. The
activity name goes to `action`, the sequence to `subject`; `dataset` is
'mpi_inf_3dhp', which makes trainers.evaluation add the 3DHP protocol
(PCK3D@150 mm, AUC, per activity).

Training set (`S1` .. `S8` / `Seq1`, `Seq2`): `annot.mat` (MATLAB v5, read
with scipy.io) holds cell arrays over the 14 cameras `annot2` (each
[N, 56] = 28 joints x 2 px), `annot3` and `univ_annot3` ([N, 84], camera
frame mm) and optionally `cameras` (the camera ids of the cells); the
sequence's `camera.calibration` (Skeletool text format: per camera `name`,
`size` W H, `intrinsic` 16 numbers row-major) gives each camera's K. Frames
come from `imageSequence/img_{camera}_{frame:06d}.jpg` (1-based frame) when
extracted, else from `imageSequence/video_{camera}.avi` read with OpenCV.
Every `every`-th frame of cameras `cameras` (default: the eight at chest
height, 0 1 2 4 5 6 7 8) is written; the 28 joints are mapped to H36M-17
(zoo.skeleton 'mpi_inf_3dhp28'); 3D is `annot3` (`skeleton3d`).

Every input is checked before anything is written (fields, shapes, frame
counts, images present, videos readable and long enough); errors name the
file and what was expected. Shards are written under temporary names and
renamed when complete, and the manifest is updated after each split, so a
failure leaves no half-written split.

CLI:
  python -m zoo.data.mpi_inf_3dhp --out_dir=DIR
      [--test_root=mpi_inf_3dhp_test_set] [--train_root=mpi_inf_3dhp]
      [--sequences=TS1,...] [--subjects=S1,...] [--cameras=0,1,2,4,5,6,7,8]
      [--every=10] [--all_frames] [--intrinsics=published|estimate]
      [--crop_margin=1.5] [--crop_size=384]
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterator, Mapping, Sequence

from absl import app
from absl import flags
import numpy as np

from zoo import cli
from zoo import geometry
from zoo import metrics as metrics_lib
from zoo import skeleton as skel
from zoo.data import h36m
from zoo.data import posehg
from zoo.data.posehg import AnnotationError

DATASET = 'mpi_inf_3dhp'
TEST_SEQUENCES = ('TS1', 'TS2', 'TS3', 'TS4', 'TS5', 'TS6')
TRAIN_SUBJECTS = ('S1', 'S2', 'S3', 'S4', 'S5', 'S6', 'S7', 'S8')
TRAIN_SEQUENCES = ('Seq1', 'Seq2')
DEFAULT_TRAIN_CAMERAS = (0, 1, 2, 4, 5, 6, 7, 8)
SKELETONS_3D = ('universal', 'annot3')

# Test cameras as published (mm): focal, sensor (w, h), principal point
# offset from the image centre (x, y), image size (w, h) px.
_TEST_CAMERAS_MM = {
    'studio': (7.32506, (10., 10.), (-0.0322884, 0.0929296), (2048, 2048)),
    'outdoor': (8.770747185, (10., 5.625), (-0.104908645, 0.104899704),
                (1920, 1080)),
}
_TEST_SETTING = {'TS1': 'studio', 'TS2': 'studio', 'TS3': 'studio',
                 'TS4': 'studio', 'TS5': 'outdoor', 'TS6': 'outdoor'}
# Box around the labelled joints: padded by this fraction of its longer side.
_BOX_PAD = 0.15


def testset_intrinsics(sequence: str) -> np.ndarray:
  """K (px) of a test sequence's camera, from the published calibration."""
  if sequence not in _TEST_SETTING:
    raise KeyError(f'unknown test sequence {sequence!r}; expected one of '
                   f'{list(TEST_SEQUENCES)}')
  focal, (sw, _), (ox, oy), (w, h) = _TEST_CAMERAS_MM[_TEST_SETTING[sequence]]
  px_per_mm = w / sw
  f = focal * px_per_mm
  return np.array([[f, 0, w / 2 + ox * px_per_mm],
                   [0, f, h / 2 + oy * px_per_mm], [0, 0, 1]], np.float64)


def joints_box(joints2d_px: np.ndarray) -> np.ndarray:
  """[4] x, y, w, h: the joints' bounding box, padded, at least 1 px."""
  lo, hi = joints2d_px.min(0), joints2d_px.max(0)
  pad = _BOX_PAD * max(hi - lo)
  lo, hi = lo - pad, hi + pad
  return np.concatenate([lo, np.maximum(hi - lo, 1.)]).astype(np.float32)


# ----------------------------------------------------------------------------
# Test set
# ----------------------------------------------------------------------------

@dataclasses.dataclass
class TestSequence:
  """One test sequence's annotations, 3DHP-17 order, all N frames."""
  path: str
  annot2: np.ndarray        # [N, 17, 2] px
  annot3: np.ndarray        # [N, 17, 3] camera mm
  univ_annot3: np.ndarray   # [N, 17, 3] universal skeleton, camera mm
  valid_frame: np.ndarray   # [N] bool
  activity: np.ndarray      # [N] int 1..7

  def __len__(self) -> int:
    return self.annot2.shape[0]


def _read_joint_field(h5, key: str, dims: int) -> np.ndarray:
  path = h5.filename
  if key not in h5:
    raise AnnotationError(
        f'{path}: field {key!r} not found, expected [N, 1, 17, {dims}] '
        f'(annot_data.mat of the MPI-INF-3DHP test set); the file has '
        f'{sorted(h5.keys())}')
  arr = np.asarray(h5[key][()])
  if arr.ndim == 4 and arr.shape[1] == 1:
    arr = arr[:, 0]
  if arr.ndim != 3 or arr.shape[1:] != (17, dims):
    raise AnnotationError(f'{path}: field {key!r} has shape '
                          f'{h5[key].shape}, expected [N, 1, 17, {dims}]')
  return arr.astype(np.float64)


def _read_frame_field(h5, key: str) -> np.ndarray:
  path = h5.filename
  if key not in h5:
    raise AnnotationError(f'{path}: field {key!r} not found, expected one '
                          f'value per frame; the file has {sorted(h5.keys())}')
  arr = np.asarray(h5[key][()])
  if arr.ndim == 2 and 1 in arr.shape:
    arr = arr.reshape(-1)
  if arr.ndim != 1:
    raise AnnotationError(f'{path}: field {key!r} has shape {arr.shape}, '
                          'expected [N] (one value per frame)')
  return arr


def read_test_annot(path: str) -> TestSequence:
  """Reads and checks one test sequence's annot_data.mat (MATLAB v7.3)."""
  try:
    h5 = posehg.open_h5(path)
  except AnnotationError as e:
    raise AnnotationError(f'{e}; annot_data.mat of the MPI-INF-3DHP test '
                          'set is a MATLAB v7.3 (HDF5) file') from None
  with h5:
    fields = {'annot2': _read_joint_field(h5, 'annot2', 2),
              'annot3': _read_joint_field(h5, 'annot3', 3),
              'univ_annot3': _read_joint_field(h5, 'univ_annot3', 3),
              'valid_frame': _read_frame_field(h5, 'valid_frame'),
              'activity_annotation': _read_frame_field(
                  h5, 'activity_annotation')}
  counts = {k: v.shape[0] for k, v in fields.items()}
  if len(set(counts.values())) > 1:
    raise AnnotationError(f'{path}: the fields have different frame counts '
                          f'{counts}; expected one entry per frame in each')
  for key in ('annot2', 'annot3', 'univ_annot3'):
    if not np.all(np.isfinite(fields[key][fields['valid_frame'] > 0])):
      raise AnnotationError(f'{path}: field {key!r} holds NaN/Inf on a '
                            'valid frame')
  return TestSequence(path, fields['annot2'], fields['annot3'],
                      fields['univ_annot3'], fields['valid_frame'] > 0,
                      fields['activity_annotation'].astype(np.int64))


def testset_image_path(sequence_dir: str, row: int) -> str:
  return os.path.join(sequence_dir, 'imageSequence', f'img_{row + 1:06d}.jpg')


def _stored_3d(annot3: np.ndarray, univ: np.ndarray, skeleton3d: str
               ) -> np.ndarray:
  """[N, 17, 3] H36M-17 camera mm: annot3, or the universal skeleton placed
  at annot3's root."""
  root = skel.ROOT
  if skeleton3d == 'annot3':
    return annot3
  return univ - univ[:, root:root + 1] + annot3[:, root:root + 1]


def _intrinsics_mode(intrinsics) -> None:
  if isinstance(intrinsics, Mapping):
    return
  if intrinsics not in ('published', 'estimate'):
    raise ValueError(f"intrinsics must be 'published', 'estimate' or a "
                     f"mapping sequence/camera -> (fx, fy, cx, cy); got "
                     f'{intrinsics!r}')


def _table_k(table: Mapping[str, Any], key: str) -> np.ndarray | None:
  value = table.get(key, table.get('*'))
  if value is None:
    return None
  value = np.asarray(value, np.float64)
  if value.shape == (4,):
    fx, fy, cx, cy = value
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
  if value.shape == (3, 3):
    return value
  raise ValueError(f'intrinsics for {key!r} have shape {value.shape}, '
                   'expected (fx, fy, cx, cy) or 3x3')


def convert_test(test_root: str, out_dir: str,
                 sequences: Sequence[str] = TEST_SEQUENCES, *,
                 valid_only: bool = True, skeleton3d: str = 'universal',
                 intrinsics: str | Mapping[str, Any] = 'published',
                 crop_margin: float | None = 1.5, crop_size: int = 384,
                 split: str = 'test', examples_per_shard: int = 1000,
                 num_workers: int = 4, jpeg_quality: int = 95) -> dict:
  """Converts test sequences into the `split` shards of out_dir.

  Returns the manifest (merged with an existing one of this dataset).
  """
  if skeleton3d not in SKELETONS_3D:
    raise ValueError(f'skeleton3d must be one of {SKELETONS_3D}, got '
                     f'{skeleton3d!r}')
  _intrinsics_mode(intrinsics)
  items, reproj, per_sequence = [], [], {}
  for name in sequences:
    seq_dir = os.path.join(test_root, name)
    annot_path = os.path.join(seq_dir, 'annot_data.mat')
    if not os.path.isfile(annot_path):
      raise FileNotFoundError(f'{annot_path}: annotation file not found '
                              f'(expected TS1..TS6/annot_data.mat under '
                              f'{test_root})')
    seq = read_test_annot(annot_path)
    rows = np.flatnonzero(seq.valid_frame) if valid_only else \
        np.arange(len(seq))
    if rows.size == 0:
      raise AnnotationError(f'{annot_path}: no valid frame (valid_frame is '
                            'all 0)')
    missing = [testset_image_path(seq_dir, r) for r in rows
               if not os.path.isfile(testset_image_path(seq_dir, r))]
    if missing:
      raise FileNotFoundError(
          f'{missing[0]}: image not found ({len(missing)} of the {rows.size} '
          f'frames of {name} are missing; expected imageSequence/'
          f'img_NNNNNN.jpg for rows 1..{len(seq)} of {annot_path})')
    joints2d, _ = skel.to_h36m17(seq.annot2, 'mpi_inf_3dhp17')
    annot3, _ = skel.to_h36m17(seq.annot3, 'mpi_inf_3dhp17')
    univ, _ = skel.to_h36m17(seq.univ_annot3, 'mpi_inf_3dhp17')
    stored3d = _stored_3d(annot3, univ, skeleton3d)
    if isinstance(intrinsics, Mapping):
      k = _table_k(intrinsics, name)
      if k is None:
        raise KeyError(f'no intrinsics for test sequence {name!r} in the '
                       f'given table ({sorted(intrinsics)}; "*" for all)')
    elif intrinsics == 'estimate':
      k = geometry.fit_intrinsics(joints2d[rows].reshape(-1, 2),
                                  annot3[rows].reshape(-1, 3))
    else:
      k = testset_intrinsics(name)
    err = np.linalg.norm(geometry.project(annot3[rows], k) - joints2d[rows],
                         axis=-1).mean(-1)
    reproj.append(err)
    per_sequence[name] = {'frames': int(len(seq)), 'written': int(rows.size),
                          'reprojection_px_median': float(np.median(err)),
                          'intrinsics': k.tolist()}
    for r in rows:
      activity = int(seq.activity[r])
      items.append((testset_image_path(seq_dir, r), {
          'joints2d_px': joints2d[r], 'joints3d_cam_mm': stored3d[r],
          'joints3d_world_mm': stored3d[r], 'extrinsics': np.eye(3, 4),
          'intrinsics': k, 'joint_valid_2d': np.ones(skel.NUM_JOINTS),
          'joint_valid_3d': np.ones(skel.NUM_JOINTS), 'has_3d': 1.,
          'has_camera': 1., 'dataset': DATASET, 'subject': name,
          'action': metrics_lib.mpi3dhp_activity_name(activity),
          'camera': _TEST_SETTING.get(name, ''), 'frame': int(r) + 1}))

  def convert_job(item):
    image_path, fields = item
    image, raw = posehg.read_image(image_path)
    return [_record(image, raw, fields, crop_margin, crop_size, jpeg_quality)]

  count, _ = posehg.write_split(out_dir, split, items, convert_job,
                                len(items), examples_per_shard, num_workers,
                                desc=f'3dhp {split}')
  err = np.concatenate(reproj)
  return posehg.update_manifest(out_dir, DATASET, {split: {
      'count': count, 'source': os.path.abspath(test_root),
      'kind': 'test set', 'valid_only': bool(valid_only),
      'skeleton3d': skeleton3d, 'sequences': per_sequence,
      'reprojection_px': {'median': float(np.median(err)),
                          'max': float(err.max())}}}, {
      'intrinsics': intrinsics if isinstance(intrinsics, str) else 'table',
      'crop': ({'margin': crop_margin, 'size': crop_size} if crop_margin
               and crop_margin > 0 else 'full_frame')})


def _record(image_bgr, raw, fields, crop_margin, crop_size, jpeg_quality):
  """Crops the stored image around the joints' box; maps labels with it."""
  box = joints_box(fields['joints2d_px'])
  encoded, affine, h, w = posehg.person_view(image_bgr, raw, box, crop_margin,
                                             crop_size, jpeg_quality)
  joints2d = geometry.apply_homography(affine, fields['joints2d_px'])
  corners = geometry.apply_homography(
      affine, np.array([box[:2], box[:2] + box[2:]], np.float64))
  out = dict(fields)
  out.update({'image/encoded': encoded, 'image/height': h, 'image/width': w,
              'joints2d_px': joints2d,
              'intrinsics': geometry.transform_intrinsics(
                  fields['intrinsics'], affine),
              'box_xywh': np.concatenate([corners[0], corners[1] - corners[0]]),
              'joint_in_image': posehg.in_image(joints2d, h, w)})
  return out


# ----------------------------------------------------------------------------
# Training set
# ----------------------------------------------------------------------------

def read_calibration(path: str) -> dict[int, dict[str, Any]]:
  """camera.calibration -> {camera id: {'K': 3x3, 'size': (w, h)}}."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: camera calibration not found (expected '
                            'the sequence\'s camera.calibration)')
  cameras: dict[int, dict[str, Any]] = {}
  current = None
  with open(path) as f:
    for line_no, line in enumerate(f, 1):
      parts = line.split()
      if not parts:
        continue
      key, values = parts[0], parts[1:]
      try:
        if key == 'name':
          current = int(values[0])
          cameras[current] = {}
        elif key in ('intrinsic', 'size') and current is not None:
          numbers = [float(v) for v in values]
          if key == 'intrinsic':
            if len(numbers) != 16:
              raise ValueError('expected 16 numbers (4x4 row-major)')
            cameras[current]['K'] = np.array(numbers).reshape(4, 4)[:3, :3]
          else:
            cameras[current]['size'] = (int(numbers[0]), int(numbers[1]))
      except (ValueError, IndexError) as e:
        raise AnnotationError(f'{path}: line {line_no} ({line.strip()!r}) '
                              f'is not readable: {e}') from None
  for cam, entry in cameras.items():
    if 'K' not in entry:
      raise AnnotationError(f'{path}: camera {cam} has no "intrinsic" line')
  if not cameras:
    raise AnnotationError(f'{path}: no camera ("name N" lines) found; '
                          'expected a Skeletool camera calibration file')
  return cameras


@dataclasses.dataclass
class TrainSequence:
  """One training sequence's annotations per camera, 28 joints."""
  path: str
  annot2: dict[int, np.ndarray]       # camera -> [N, 28, 2] px
  annot3: dict[int, np.ndarray]       # camera -> [N, 28, 3] mm
  univ_annot3: dict[int, np.ndarray]  # camera -> [N, 28, 3] mm
  num_frames: int


def _cells(mat: Mapping[str, Any], key: str, path: str) -> list[np.ndarray]:
  if key not in mat:
    raise AnnotationError(
        f'{path}: field {key!r} not found, expected a cell array with one '
        f'[N, 28 * D] array per camera; the file has '
        f'{sorted(k for k in mat if not k.startswith("__"))}')
  cell = np.asarray(mat[key])
  if cell.dtype != object:
    raise AnnotationError(f'{path}: field {key!r} is a {cell.dtype} array of '
                          f'shape {cell.shape}, expected a cell array (one '
                          'entry per camera)')
  return [np.asarray(c) for c in cell.reshape(-1)]


def read_train_annot(path: str) -> TrainSequence:
  """Reads and checks one training sequence's annot.mat (MATLAB v5)."""
  import scipy.io  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: annotation file not found (expected '
                            'S<n>/Seq<m>/annot.mat)')
  try:
    mat = scipy.io.loadmat(path)
  except (ValueError, NotImplementedError, OSError) as e:
    raise AnnotationError(f'{path}: not a readable MATLAB v5 file ({e}); '
                          'annot.mat of the MPI-INF-3DHP training set is '
                          'one') from None
  fields = {}
  for key, dims in (('annot2', 2), ('annot3', 3), ('univ_annot3', 3)):
    cells = _cells(mat, key, path)
    arrays = []
    for cam, arr in enumerate(cells):
      if arr.ndim != 2 or arr.shape[1] != 28 * dims:
        raise AnnotationError(f'{path}: {key}{{{cam + 1}}} has shape '
                              f'{arr.shape}, expected [N, {28 * dims}] (28 '
                              f'joints x {dims})')
      arrays.append(arr.reshape(arr.shape[0], 28, dims).astype(np.float64))
    fields[key] = arrays
  ids = list(range(len(fields['annot2'])))
  if 'cameras' in mat:
    ids = [int(c) for c in np.asarray(mat['cameras']).reshape(-1)]
  counts = {f'{key}{{{i + 1}}}': a.shape[0]
            for key, arrays in fields.items() for i, a in enumerate(arrays)}
  if len(set(counts.values())) > 1 or any(
      len(a) != len(ids) for a in fields.values()):
    raise AnnotationError(
        f'{path}: frame counts differ between cameras or fields '
        f'({dict(list(counts.items())[:6])} ...; {len(ids)} camera ids); '
        'expected the same N frames in every cell')
  return TrainSequence(path, *(dict(zip(ids, fields[k])) for k in (
      'annot2', 'annot3', 'univ_annot3')), next(iter(counts.values())))


def _frame_source(seq_dir: str, camera: int, num_frames: int,
                  rows: np.ndarray, where: str):
  """('images', None) when every needed frame is extracted, else
  ('video', path) after checking the video opens and is long enough."""
  import cv2  # pylint: disable=g-import-not-at-top
  image_dir = os.path.join(seq_dir, 'imageSequence')
  images = [os.path.join(image_dir, f'img_{camera}_{r + 1:06d}.jpg')
            for r in rows]
  if images and all(os.path.isfile(p) for p in images):
    return 'images', None
  video = os.path.join(image_dir, f'video_{camera}.avi')
  if not os.path.isfile(video):
    raise FileNotFoundError(
        f'{where} camera {camera}: neither extracted frames ({images[0]} ...) '
        f'nor the video {video} found')
  capture = cv2.VideoCapture(video)
  try:
    if not capture.isOpened():
      raise AnnotationError(f'{video}: cannot read the video of {where} '
                            f'camera {camera} (expected an AVI that OpenCV '
                            'can decode)')
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, _ = capture.read()
  finally:
    capture.release()
  if not ok:
    raise AnnotationError(f'{video}: cannot decode a frame of the video of '
                          f'{where} camera {camera}')
  if 0 < frames < num_frames:
    raise AnnotationError(f'{video}: {frames} frames, but annot.mat of '
                          f'{where} labels {num_frames}; expected one video '
                          'frame per annotated frame')
  return 'video', video


def _video_frames(video: str, rows: np.ndarray, where: str
                  ) -> Iterator[tuple[int, np.ndarray]]:
  """(row, BGR frame) for the wanted rows, read in order."""
  import cv2  # pylint: disable=g-import-not-at-top
  wanted = set(int(r) for r in rows)
  last = int(rows.max())
  capture = cv2.VideoCapture(video)
  try:
    for index in range(last + 1):
      ok = capture.grab()
      if not ok:
        raise AnnotationError(f'{video}: the video of {where} ends at frame '
                              f'{index}, but frame {last + 1} is labelled')
      if index in wanted:
        ok, frame = capture.retrieve()
        if not ok:
          raise AnnotationError(f'{video}: cannot decode frame {index + 1} '
                                f'of {where}')
        yield index, frame
  finally:
    capture.release()


def convert_train(train_root: str, out_dir: str,
                  subjects: Sequence[str] = TRAIN_SUBJECTS,
                  sequences: Sequence[str] = TRAIN_SEQUENCES, *,
                  cameras: Sequence[int] = DEFAULT_TRAIN_CAMERAS,
                  every: int = 10, skeleton3d: str = 'annot3',
                  crop_margin: float | None = 1.5, crop_size: int = 384,
                  split: str = 'train', examples_per_shard: int = 1000,
                  num_workers: int = 4, jpeg_quality: int = 95) -> dict:
  """Converts training sequences into the `split` shards of out_dir."""
  if every < 1:
    raise ValueError(f'every must be >= 1, got {every}')
  if skeleton3d not in SKELETONS_3D:
    raise ValueError(f'skeleton3d must be one of {SKELETONS_3D}, got '
                     f'{skeleton3d!r}')
  jobs, total, info = [], 0, {}
  for subject in subjects:
    for sequence in sequences:
      where = f'{subject}/{sequence}'
      seq_dir = os.path.join(train_root, subject, sequence)
      seq = read_train_annot(os.path.join(seq_dir, 'annot.mat'))
      calib = read_calibration(os.path.join(seq_dir, 'camera.calibration'))
      rows = np.arange(0, seq.num_frames, every)
      for cam in cameras:
        if cam not in seq.annot2:
          raise AnnotationError(f'{seq.path}: no annotations for camera '
                                f'{cam}; it has {sorted(seq.annot2)}')
        if cam not in calib:
          raise AnnotationError(f'{seq_dir}/camera.calibration: no camera '
                                f'{cam}; it has {sorted(calib)}')
        kind, video = _frame_source(seq_dir, cam, seq.num_frames, rows, where)
        jobs.append((where, seq_dir, cam, kind, video, rows, seq, calib[cam]))
        total += rows.size
      info[where] = {'frames': seq.num_frames, 'written_per_camera':
                     int(rows.size)}

  def convert_job(job):
    where, seq_dir, cam, kind, video, rows, seq, camera = job
    joints2d, _ = skel.to_h36m17(seq.annot2[cam], 'mpi_inf_3dhp28')
    annot3, _ = skel.to_h36m17(seq.annot3[cam], 'mpi_inf_3dhp28')
    univ, _ = skel.to_h36m17(seq.univ_annot3[cam], 'mpi_inf_3dhp28')
    stored3d = _stored_3d(annot3, univ, skeleton3d)
    if kind == 'video':
      frames = _video_frames(video, rows, where)
    else:
      frames = ((r, None) for r in rows)
    out = []
    subject, sequence = where.split('/')
    for row, frame in frames:
      raw = None
      if frame is None:
        frame, raw = posehg.read_image(os.path.join(
            seq_dir, 'imageSequence', f'img_{cam}_{row + 1:06d}.jpg'))
      if raw is None:
        raw = posehg.encode_jpeg(frame, jpeg_quality)
      fields = {
          'joints2d_px': joints2d[row], 'joints3d_cam_mm': stored3d[row],
          'joints3d_world_mm': stored3d[row], 'extrinsics': np.eye(3, 4),
          'intrinsics': camera['K'], 'joint_valid_2d': np.ones(skel.NUM_JOINTS),
          'joint_valid_3d': np.ones(skel.NUM_JOINTS), 'has_3d': 1.,
          'has_camera': 1., 'dataset': DATASET, 'subject': subject,
          'action': sequence, 'camera': str(cam), 'frame': int(row) + 1}
      out.append(_record(frame, raw, fields, crop_margin, crop_size,
                         jpeg_quality))
    return out

  count, _ = posehg.write_split(out_dir, split, jobs, convert_job, total,
                                examples_per_shard, num_workers,
                                desc=f'3dhp {split}')
  return posehg.update_manifest(out_dir, DATASET, {split: {
      'count': count, 'source': os.path.abspath(train_root),
      'kind': 'training set', 'cameras': list(cameras), 'every': every,
      'skeleton3d': skeleton3d, 'sequences': info}}, {
      'crop': ({'margin': crop_margin, 'size': crop_size} if crop_margin
               and crop_margin > 0 else 'full_frame')})


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------

PROGRAM = 'python -m zoo.data.mpi_inf_3dhp'


def define_flags(flag_values: flags.FlagValues) -> None:
  """The command line's flags (zoo.cli: defined only to run the program)."""
  fv = {'flag_values': flag_values}
  flags.DEFINE_string('out_dir', None, 'output directory for TFRecords', **fv)
  flags.DEFINE_string('test_root', None, 'mpi_inf_3dhp_test_set folder '
                      '(holding TS1..TS6): written as the test split', **fv)
  flags.DEFINE_string('train_root', None, 'training set folder (holding '
                      'S1..S8/Seq1,Seq2): written as the train split', **fv)
  flags.DEFINE_list('sequences', list(TEST_SEQUENCES), 'test sequences',
                    **fv)
  flags.DEFINE_list('subjects', list(TRAIN_SUBJECTS), 'training subjects',
                    **fv)
  flags.DEFINE_list('train_sequences', list(TRAIN_SEQUENCES),
                    'training sequences per subject', **fv)
  flags.DEFINE_list('cameras', [str(c) for c in DEFAULT_TRAIN_CAMERAS],
                    'training cameras', **fv)
  flags.DEFINE_integer('every', 10, 'keep every N-th training frame', **fv)
  flags.DEFINE_boolean('all_frames', False, 'test split: also frames whose '
                       'valid_frame is 0 (the protocol scores valid ones)',
                       **fv)
  flags.DEFINE_enum('test_skeleton3d', 'universal', list(SKELETONS_3D),
                    '3D labels of the test split', **fv)
  flags.DEFINE_enum('train_skeleton3d', 'annot3', list(SKELETONS_3D),
                    '3D labels of the train split', **fv)
  flags.DEFINE_string('intrinsics', 'published', "test cameras: 'published',"
                      " 'estimate' or a JSON file {sequence or \"*\": "
                      '[fx, fy, cx, cy]}', **fv)
  posehg.define_output_flags(flag_values)
  flags.mark_flags_as_required(['out_dir'], flag_values=flag_values)


def run(args: flags.FlagValues, argv: Sequence[str] = ()) -> int:
  """Converts as the flags say: 0, or 2 on bad input."""
  if not args.test_root and not args.train_root:
    raise app.UsageError('give --test_root and/or --train_root')

  def convert():
    manifest = None
    if args.test_root:
      mode = args.intrinsics
      if mode not in ('published', 'estimate'):
        mode = h36m.load_intrinsics_json(mode)
      manifest = convert_test(
          args.test_root, args.out_dir, args.sequences,
          valid_only=not args.all_frames, skeleton3d=args.test_skeleton3d,
          intrinsics=mode, crop_margin=args.crop_margin,
          crop_size=args.crop_size,
          examples_per_shard=args.examples_per_shard,
          num_workers=args.num_workers)
    if args.train_root:
      manifest = convert_train(
          args.train_root, args.out_dir, args.subjects, args.train_sequences,
          cameras=[int(c) for c in args.cameras], every=args.every,
          skeleton3d=args.train_skeleton3d, crop_margin=args.crop_margin,
          crop_size=args.crop_size,
          examples_per_shard=args.examples_per_shard,
          num_workers=args.num_workers)
    return manifest
  return posehg.run_converter(convert, args.out_dir)


def main(argv: Sequence[str]) -> int:
  """The program on `argv` (flags only), in this process."""
  return cli.call(define_flags, run, argv, PROGRAM)


if __name__ == '__main__':
  cli.run_program(define_flags, run)

"""Human3.6M converters: annotation HDF5 -> TFRecords; motion archives -> poses.

Two formats that users of Human3.6M commonly hold:

1. The per-image annotation HDF5 of Pavlakos' c2f-vol release (pose-hg style,
   `annot/train.h5`, `annot/valid.h5`) plus its image folder:
   `part` [N, 17, 2] px and `S` [N, 17, 3] camera-frame mm, both in H36M-17
   order; `center` [N, 2] px and `scale` [N] (box side / 200 px); optional
   `zind` [N, 17] (depth bin 1..64, not needed here); image names from
   `imgname` (byte strings or integer character codes) or from the release's
   sidecar list `train_images.txt` / `valid_images.txt`. Names follow
   `S9_Directions_1.54138969_000001.jpg` = subject, action[_subaction],
   camera id, frame. `convert_annot` writes one record per row:
   - 3D labels: `S` as `joints3d_cam_mm`; the file has no extrinsics, so the
     world frame is taken to be that camera frame (identity extrinsics,
     `joints3d_world_mm` = `joints3d_cam_mm`).
   - Intrinsics (annot.h5 has none), `intrinsics=`:
     'h36m' (default): the official calibration of the four H36M cameras
       (54138969, 55011271, 58860488, 60457274; 1000x1000/1002 px frames,
       focal about 1145-1150 px), scaled by image width / 1000 when the
       images were resized; for other camera ids the 'generic' guess.
     'generic': focal 1145 px at 1000 px width (scaled with the width),
       principal point at the image centre; has_camera = 0 (a guess).
     'estimate': per image, least-squares fx, fy, cx, cy from the `part`/`S`
       correspondence (zoo.geometry.fit_intrinsics); exact where, as in the
       real data, `part` is the projection of `S`.
     a mapping camera id (or '*') -> (fx, fy, cx, cy) or a 3x3 K, in the
       pixels of the images in the folder (the CLI takes a JSON file).
     The reprojection error of `S` against `part` under the chosen intrinsics
     is summarised in the manifest, with a warning when it is large.
   - Stored image: by default a square crop around the person (the
     center/scale box enlarged by `crop_margin`, resized to `crop_size`), 2D
     joints, box and intrinsics mapped by the same affine
     (zoo.geometry.box_crop_affine / transform_intrinsics); crop_margin=0
     stores the full frame with the original JPEG bytes.
   - Split: rows of subjects S1 S5 S6 S7 S8 go to 'train', S9 S11 to 'test',
     others are skipped; `split=NAME` writes every row to that split instead
     (for files that are already one split, or names that do not parse).
   - `action` is the canonical H36M action without the subaction suffix
     ('Directions_1' -> 'Directions'; 'TakingPhoto' -> 'Photo', 'WalkingDog'
     -> 'WalkDog'), so per-action metrics group as in the H36M protocols.

2. The 3D-only motion archive (VideoPose3D's `data_3d_h36m.npz`):
   `positions_3d` is a pickled dict in a 0-d object array,
   {subject: {action: float[T, 32, 3] metres}}. `load_motion_npz` and
   `motion_npz_poses` return H36M-17 poses in millimetres, in H36M's WORLD
   frame (the motion-capture frame: z up, floor near z = 0), not a camera
   frame.

CLI:
  python -m zoo.data.h36m --annot=annot/train.h5 --images=images --out_dir=DIR
      [--split=train] [--intrinsics=h36m|generic|estimate|cams.json]
      [--crop_margin=1.5] [--crop_size=384]
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Mapping, Sequence

from absl import flags
from absl import logging
import numpy as np

from zoo import cli
from zoo import geometry
from zoo import skeleton as skel
from zoo.data import posehg
from zoo.data.posehg import AnnotationError

TRAIN_SUBJECTS = ('S1', 'S5', 'S6', 'S7', 'S8')
TEST_SUBJECTS = ('S9', 'S11')
ACTIONS = ('Directions', 'Discussion', 'Eating', 'Greeting', 'Phoning', 'Photo',
           'Posing', 'Purchases', 'Sitting', 'SittingDown', 'Smoking',
           'Waiting', 'WalkDog', 'Walking', 'WalkTogether')
# Names some subjects' files use for the same action.
ACTION_ALIASES = {'TakingPhoto': 'Photo', 'WalkingDog': 'WalkDog'}

# Official H36M intrinsics per camera (as distributed with the dataset and
# reproduced by VideoPose3D): (fx, fy, cx, cy, width, height), pixels.
H36M_CAMERAS = {
    '54138969': (1145.0494384765625, 1143.7811279296875, 512.54150390625,
                 515.4514770507812, 1000, 1002),
    '55011271': (1149.6756591796875, 1147.5916748046875, 508.8486328125,
                 508.0649108886719, 1000, 1000),
    '58860488': (1149.1407470703125, 1148.7989501953125, 519.8158569335938,
                 501.40264892578125, 1000, 1000),
    '60457274': (1145.5113525390625, 1144.77392578125, 514.9682006835938,
                 501.88201904296875, 1000, 1002),
}
GENERIC_FOCAL_PX = 1145.  # at 1000 px image width
_REPROJECTION_WARN_FRACTION = 0.005  # of the image width

_NAME_RE = re.compile(
    r'^(?P<subject>S\d+)_(?P<action>.+?)\.(?P<camera>\d+)_(?P<frame>\d+)'
    r'\.[A-Za-z]+$')


# ----------------------------------------------------------------------------
# Names and cameras
# ----------------------------------------------------------------------------

def parse_image_name(name: str) -> dict[str, Any] | None:
  """Parses `S9_Directions_1.54138969_000001.jpg` (any folder prefix).

  Returns {'subject': 'S9', 'action': 'Directions', 'subaction': '1',
  'camera': '54138969', 'frame': 1}, or None when the name does not follow
  the convention. Spaces in actions ('Directions 1') are read as '_'.
  """
  m = _NAME_RE.match(os.path.basename(name).replace(' ', '_'))
  if not m:
    return None
  action, subaction = m['action'], ''
  sub = re.match(r'^(.*?)_(\d+)$', action)
  if sub:
    action, subaction = sub[1], sub[2]
  action = ACTION_ALIASES.get(action, action)
  return {'subject': m['subject'], 'action': action, 'subaction': subaction,
          'camera': m['camera'], 'frame': int(m['frame'])}


def _k(fx, fy, cx, cy) -> np.ndarray:
  return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64)


def generic_intrinsics(height: int, width: int) -> np.ndarray:
  """H36M-like guess: focal 1145 px per 1000 px of width, centred."""
  f = GENERIC_FOCAL_PX * width / 1000.
  return _k(f, f, (width - 1) / 2, (height - 1) / 2)


def camera_intrinsics(camera: str, height: int, width: int
                      ) -> tuple[np.ndarray, bool]:
  """(K, calibrated) for an H36M camera id in an image of the given size.

  The official calibration is scaled by width / native width for resized
  frames (pixel centres at integers); unknown ids get `generic_intrinsics`.
  """
  if camera not in H36M_CAMERAS:
    return generic_intrinsics(height, width), False
  fx, fy, cx, cy, native_w, _ = H36M_CAMERAS[camera]
  s = width / native_w
  return _k(fx * s, fy * s, (cx + .5) * s - .5, (cy + .5) * s - .5), True


def _user_intrinsics(table: Mapping[str, Any], camera: str,
                     name: str) -> np.ndarray:
  value = table.get(camera, table.get('*'))
  if value is None:
    raise KeyError(f'no intrinsics for camera {camera!r} (image {name}); the '
                   f'given table has {sorted(table)} (use "*" for all cameras)')
  value = np.asarray(value, np.float64)
  if value.shape == (4,):
    return _k(*value)
  if value.shape == (3, 3):
    return value
  raise ValueError(f'intrinsics for camera {camera!r} have shape '
                   f'{value.shape}, expected (fx, fy, cx, cy) or a 3x3 matrix')


def load_intrinsics_json(path: str) -> dict[str, Any]:
  """{camera id or '*': [fx, fy, cx, cy] or 3x3 or {fx, fy, cx, cy}}."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: intrinsics file not found')
  with open(path) as f:
    table = json.load(f)
  if not isinstance(table, dict):
    raise AnnotationError(f'{path}: expected a JSON object camera -> '
                          f'[fx, fy, cx, cy]')
  out = {}
  for cam, v in table.items():
    if isinstance(v, dict):
      try:
        v = [v['fx'], v['fy'], v['cx'], v['cy']]
      except KeyError as e:
        raise AnnotationError(f'{path}: camera {cam!r} lacks key {e}; expected '
                              f'fx, fy, cx, cy') from None
    out[str(cam)] = v
  return out


# ----------------------------------------------------------------------------
# annot.h5 -> TFRecords
# ----------------------------------------------------------------------------

@dataclasses.dataclass
class H36MAnnot:
  """The rows of one annotation file (N people), H36M-17 order."""
  path: str
  imgname: list[str]
  joints2d_px: np.ndarray  # [N, 17, 2] `part`
  joints3d_cam_mm: np.ndarray  # [N, 17, 3] `S`
  center_px: np.ndarray  # [N, 2]
  scale: np.ndarray  # [N]
  zind: np.ndarray | None  # [N, 17]

  def __len__(self) -> int:
    return len(self.imgname)

  @property
  def box_xywh(self) -> np.ndarray:
    return posehg.box_from_center_scale(self.center_px, self.scale)


def read_annot(path: str, names_file: str | None = None) -> H36MAnnot:
  """Reads and validates a c2f/pose-hg style H36M annotation HDF5 file."""
  with posehg.open_h5(path) as h5:
    part = posehg.read_array(h5, 'part', ('N', 17, 2))
    n = part.shape[0]
    s3d = posehg.read_array(h5, 'S', ('N', 17, 3), n)
    center = posehg.read_array(h5, 'center', ('N', 2), n)
    scale = posehg.read_array(h5, 'scale', ('N',), n)
    zind = posehg.read_array(h5, 'zind', ('N', 17), n, optional=True)
    names = posehg.read_image_names(h5, n, names_file)
  base = path
  if np.any(s3d[..., 2] <= 0):
    row = int(np.argwhere(s3d[..., 2] <= 0)[0, 0])
    raise AnnotationError(f"{base}: dataset 'S' row {row} has joints with "
                          f"depth <= 0, expected camera-frame mm (z forward)")
  if np.any(scale <= 0):
    raise AnnotationError(f"{base}: dataset 'scale' row "
                          f"{int(np.argmax(scale <= 0))} is <= 0, expected "
                          f"box side / 200 px > 0")
  return H36MAnnot(path, names, part, s3d, center, scale, zind)


def _route_rows(annot: H36MAnnot, split: str | None,
                train_subjects: Sequence[str], test_subjects: Sequence[str]
                ) -> tuple[dict[str, list[int]], list[dict | None], dict]:
  parsed = [parse_image_name(n) for n in annot.imgname]
  if split:
    return {split: list(range(len(annot)))}, parsed, {}
  routes: dict[str, list[int]] = {'train': [], 'test': []}
  skipped: dict[str, int] = {}
  for i, p in enumerate(parsed):
    if p is None:
      raise AnnotationError(
          f'{annot.path}: image name {annot.imgname[i]!r} '
          f'(row {i}) does not follow S<subject>_<Action>[_<sub>].<camera>_'
          f'<frame>.jpg, so its subject is unknown; pass split=... (--split) '
          f'to write all rows to one split')
    if p['subject'] in train_subjects:
      routes['train'].append(i)
    elif p['subject'] in test_subjects:
      routes['test'].append(i)
    else:
      skipped[p['subject']] = skipped.get(p['subject'], 0) + 1
  if skipped:
    logging.warning('skipping rows of subjects outside both splits: %s',
                    skipped)
  return {k: v for k, v in routes.items() if v}, parsed, skipped


def convert_annot(annot_path: str, image_dir: str, out_dir: str,
                  split: str | None = None,
                  intrinsics: str | Mapping[str, Any] = 'h36m',
                  crop_margin: float | None = 1.5, crop_size: int = 384,
                  names_file: str | None = None,
                  train_subjects: Sequence[str] = TRAIN_SUBJECTS,
                  test_subjects: Sequence[str] = TEST_SUBJECTS,
                  examples_per_shard: int = 1000, num_workers: int = 4,
                  jpeg_quality: int = 95) -> dict:
  """Converts an H36M annotation HDF5 + image folder into zoo TFRecords.

  See the module docstring for the field mapping. Returns the manifest
  written to out_dir (merged with an existing one of the same dataset, so
  train.h5 and valid.h5 can be converted into one directory in two runs).
  """
  if isinstance(intrinsics, str) and intrinsics not in (
      'h36m', 'generic', 'estimate'):
    raise ValueError(f"intrinsics must be 'h36m', 'generic', 'estimate' or a "
                     f"mapping camera -> (fx, fy, cx, cy), got {intrinsics!r}")
  annot = read_annot(annot_path, names_file)
  routes, parsed, skipped = _route_rows(annot, split, train_subjects,
                                        test_subjects)
  posehg.check_images_exist(
      image_dir, (annot.imgname[i] for rows in routes.values() for i in rows),
      annot_path)
  boxes = annot.box_xywh

  def convert_job(job):
    name, rows = job
    image, raw = posehg.read_image(os.path.join(image_dir, name))
    height, width = image.shape[:2]
    out = []
    for r in rows:
      info = parsed[r] or {}
      camera = info.get('camera', '')
      k, calibrated = _intrinsics_for(intrinsics, camera, name, height, width,
                                      annot.joints2d_px[r],
                                      annot.joints3d_cam_mm[r])
      encoded, affine, h, w = posehg.person_view(
          image, raw, boxes[r], crop_margin, crop_size, jpeg_quality)
      joints2d = geometry.apply_homography(affine, annot.joints2d_px[r])
      box = boxes[r].astype(np.float64)
      corners = geometry.apply_homography(
          affine, np.array([box[:2], box[:2] + box[2:]]))
      reproj = np.linalg.norm(
          geometry.project(annot.joints3d_cam_mm[r], k) - annot.joints2d_px[r],
          axis=-1).mean()
      out.append({
          'image/encoded': encoded, 'image/height': h, 'image/width': w,
          'joints2d_px': joints2d,
          'joints3d_cam_mm': annot.joints3d_cam_mm[r],
          'joints3d_world_mm': annot.joints3d_cam_mm[r],
          'extrinsics': np.eye(3, 4),
          'intrinsics': geometry.transform_intrinsics(k, affine),
          'box_xywh': np.concatenate([corners[0], corners[1] - corners[0]]),
          'joint_valid_2d': np.ones(skel.NUM_JOINTS),
          'joint_valid_3d': np.ones(skel.NUM_JOINTS),
          'joint_in_image': posehg.in_image(joints2d, h, w),
          'has_3d': 1., 'has_camera': float(calibrated),
          'dataset': 'h36m', 'subject': info.get('subject', ''),
          'action': info.get('action', ''), 'camera': camera,
          'frame': info.get('frame', r),
          '_info': {'reprojection_px': reproj, 'width': width},
      })
    return out

  split_info = {}
  for split_name, rows in routes.items():
    jobs = posehg.group_consecutive(annot.imgname, rows)
    count, infos = posehg.write_split(
        out_dir, split_name, jobs, convert_job, len(rows),
        examples_per_shard, num_workers, desc=f'h36m {split_name}')
    err = np.array([i['reprojection_px'] for i in infos])
    stats = {'median': float(np.median(err)),
             'p95': float(np.percentile(err, 95)), 'max': float(err.max())}
    limit = _REPROJECTION_WARN_FRACTION * np.median([i['width'] for i in infos])
    if stats['median'] > max(2., limit):
      logging.warning(
          '%s: the intrinsics (%s) do not fit the annotations: median '
          'reprojection error of S against part is %.1f px; pass calibrated '
          'intrinsics or intrinsics=estimate', annot_path,
          intrinsics if isinstance(intrinsics, str) else 'table',
          stats['median'])
    split_info[split_name] = {
        'count': count, 'source': os.path.abspath(annot_path),
        'reprojection_px': stats}
  return posehg.update_manifest(out_dir, 'h36m', split_info, {
      'intrinsics': intrinsics if isinstance(intrinsics, str) else 'table',
      'crop': ({'margin': crop_margin, 'size': crop_size} if crop_margin
               and crop_margin > 0 else 'full_frame'),
      'world_frame': 'camera frame of each image (annot.h5 has no extrinsics)',
      'skipped_subjects': skipped,
  })


def _intrinsics_for(mode, camera: str, name: str, height: int, width: int,
                    joints2d_px: np.ndarray, joints3d_cam_mm: np.ndarray
                    ) -> tuple[np.ndarray, bool]:
  if isinstance(mode, Mapping):
    return _user_intrinsics(mode, camera, name), True
  if mode == 'estimate':
    return geometry.fit_intrinsics(joints2d_px, joints3d_cam_mm), True
  if mode == 'generic':
    return generic_intrinsics(height, width), False
  return camera_intrinsics(camera, height, width)


# ----------------------------------------------------------------------------
# Motion archives (.npz)
# ----------------------------------------------------------------------------

def load_motion_npz(path: str, subjects: Sequence[str] | None = None,
                    every: int = 1) -> dict[str, dict[str, np.ndarray]]:
  """{subject: {action: float32 [T', 17, 3]}} in mm, H36M WORLD frame (z up).

  `path` is a VideoPose3D-style archive whose `positions_3d` holds
  {subject: {action: [T, 32, 3] metres}}; joints are gathered into H36M-17
  (zoo.skeleton.to_h36m17(..., 'h36m32')), metres become millimetres, and
  every `every`-th frame is kept. `subjects` (default: all) must exist.
  """
  if every < 1:
    raise ValueError(f'every must be >= 1, got {every}')
  data = _positions_3d(path)
  base = path
  if subjects is None:
    subjects = sorted(data, key=_subject_key)
  missing = [s for s in subjects if s not in data]
  if missing:
    raise AnnotationError(f"{base}: positions_3d has no subject(s) {missing}; "
                          f"it has {sorted(data, key=_subject_key)}")
  out: dict[str, dict[str, np.ndarray]] = {}
  for subject in subjects:
    actions = data[subject]
    if not isinstance(actions, Mapping):
      raise AnnotationError(f'{base}: positions_3d[{subject!r}] is '
                            f'{type(actions).__name__}, expected a dict '
                            f'action -> float[T, 32, 3]')
    out[subject] = {}
    for action in sorted(actions):
      arr = np.asarray(actions[action])
      if (arr.ndim != 3 or arr.shape[1:] != (32, 3)
          or not np.issubdtype(arr.dtype, np.number)):
        raise AnnotationError(
            f'{base}: positions_3d[{subject!r}][{action!r}] has shape '
            f'{arr.shape} ({arr.dtype}), expected (T, 32, 3) metres')
      joints, _ = skel.to_h36m17(arr[::every], 'h36m32')
      out[subject][action] = (joints * 1000.).astype(np.float32)
  return out


def motion_npz_poses(path: str, subjects: Sequence[str] | None = None,
                     every: int = 1) -> np.ndarray:
  """[N, 17, 3] float32 mm, H36M world frame (z up), all actions in a row."""
  data = load_motion_npz(path, subjects, every)
  arrays = [a for acts in data.values() for a in acts.values()]
  if not arrays:
    return np.zeros((0, skel.NUM_JOINTS, 3), np.float32)
  return np.concatenate(arrays, 0)


def _subject_key(s: str):
  m = re.match(r'^S(\d+)$', str(s))
  return (0, int(m[1]), '') if m else (1, 0, str(s))


def _positions_3d(path: str) -> Mapping[str, Any]:
  base = path
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: motion archive not found')
  try:
    archive = np.load(path, allow_pickle=True)
  except (OSError, ValueError) as e:
    raise AnnotationError(
        f'{path}: not a readable .npz archive ({e})') from None
  with archive:
    if not hasattr(archive, 'files'):
      raise AnnotationError(f'{base}: expected an .npz archive with key '
                            f"'positions_3d', got a single array")
    if 'positions_3d' not in archive.files:
      raise AnnotationError(
          f"{base}: key 'positions_3d' not found (keys: {archive.files}); "
          f'expected positions_3d[subject][action] -> float[T, 32, 3] metres')
    value = archive['positions_3d']
  if value.dtype == object and value.shape == ():
    value = value.item()
  if not isinstance(value, Mapping):
    raise AnnotationError(
        f"{base}: 'positions_3d' holds {type(value).__name__} "
        f"{getattr(value, 'shape', '')}, expected a pickled dict (0-d object "
        f'array) subject -> action -> float[T, 32, 3]')
  return value


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------

PROGRAM = 'python -m zoo.data.h36m'


def define_flags(flag_values: flags.FlagValues) -> None:
  """The command line's flags (zoo.cli: defined only to run the program)."""
  fv = {'flag_values': flag_values}
  posehg.define_annotation_flags(flag_values, 'train/test by subject')
  flags.DEFINE_string('intrinsics', 'h36m', "'h36m', 'generic', 'estimate' "
                      'or a JSON file {camera or "*": [fx, fy, cx, cy]}', **fv)
  flags.DEFINE_list('train_subjects', list(TRAIN_SUBJECTS), 'train subjects',
                    **fv)
  flags.DEFINE_list('test_subjects', list(TEST_SUBJECTS), 'test subjects',
                    **fv)
  posehg.define_output_flags(flag_values)


def run(args: flags.FlagValues, argv: Sequence[str] = ()) -> int:
  """Converts as the flags say: 0, or 2 on bad input."""

  def convert():
    mode = args.intrinsics
    if mode not in ('h36m', 'generic', 'estimate'):
      mode = load_intrinsics_json(mode)
    return convert_annot(
        args.annot, args.images, args.out_dir, split=args.split,
        intrinsics=mode, crop_margin=args.crop_margin,
        crop_size=args.crop_size, names_file=args.imgnames,
        train_subjects=args.train_subjects, test_subjects=args.test_subjects,
        examples_per_shard=args.examples_per_shard,
        num_workers=args.num_workers)
  return posehg.run_converter(convert, args.out_dir)


def main(argv: Sequence[str]) -> int:
  """The program on `argv` (flags only), in this process."""
  return cli.call(define_flags, run, argv, PROGRAM)


if __name__ == '__main__':
  cli.run_program(define_flags, run)

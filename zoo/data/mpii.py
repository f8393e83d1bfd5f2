"""MPII converter: pose-hg-train annotation HDF5 + images -> zoo TFRecords.

Reads the HDF5 files of the stacked-hourglass release (`annot.h5`,
`train.h5`, `valid.h5`), one row per annotated person:
`part` [N, 16, 2] px in MPII-16 order (unlabeled joints are 0 or negative),
`visible` [N, 16] (MPII's is_visible flag), `center` [N, 2] and `scale` [N]
(person box side / 200 px; pose-hg-train already moved the centre down by
15 * scale and enlarged the scale by 1.25), `normalize` [N] (head size),
`imgname` (byte strings or integer character codes), and optionally
`index`, `person`, `istrain`.

Each row becomes one 2D-only record:
- joints mapped into H36M-17 with zoo.skeleton.to_h36m17('mpii16'):
  `joint_valid_2d` is 0 for the spine (MPII has none) and for unlabeled
  joints; MPII's upper neck becomes H36M's neck joint (9);
- `joint_self_occluded` carries 1 - visible for labeled joints (MPII's flag
  marks any occlusion, not only by the body itself);
- `has_3d` = 0, `joint_valid_3d` = 0, `has_camera` = 0 and `intrinsics` =
  records.default_intrinsics of the original image (a field-of-view guess),
  crop-adjusted;
- the stored image is a square crop around the person (center/scale box
  enlarged by `crop_margin`, resized to `crop_size`), joints, box and
  intrinsics mapped by the same affine; crop_margin=0 stores full frames
  with the original JPEG bytes;
- `frame` is the row's image index (`index`, else the row number); subject,
  action and camera are empty. Rows with no labeled joint are skipped.
Split: `split=NAME` puts every row into NAME; by default rows with
`istrain` go to 'train'/'test' by that flag, otherwise files whose name
contains 'valid', 'val' or 'test' give 'test' and others 'train'.

CLI:
  python -m zoo.data.mpii --annot=annot/train.h5 --images=images --out_dir=DIR
      [--split=train] [--crop_margin=1.5] [--crop_size=384]
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Sequence

from absl import flags
from absl import logging
import numpy as np

from zoo import cli
from zoo import geometry
from zoo import skeleton as skel
from zoo.data import posehg
from zoo.data import records
from zoo.data.posehg import AnnotationError  # pylint: disable=unused-import


@dataclasses.dataclass
class MPIIAnnot:
  """The rows of one annotation file (N people), MPII-16 order."""
  path: str
  imgname: list[str]
  joints2d_px: np.ndarray  # [N, 16, 2] `part`
  visible: np.ndarray  # [N, 16]
  center_px: np.ndarray  # [N, 2]
  scale: np.ndarray  # [N]
  normalize: np.ndarray | None  # [N] head size, px
  index: np.ndarray | None  # [N] image index
  person: np.ndarray | None  # [N]
  istrain: np.ndarray | None  # [N]

  def __len__(self) -> int:
    return len(self.imgname)

  @property
  def labeled(self) -> np.ndarray:
    """[N, 16] bool: the joint carries a label (coordinates > 0)."""
    return np.all(self.joints2d_px > 0, -1)

  @property
  def box_xywh(self) -> np.ndarray:
    return posehg.box_from_center_scale(self.center_px, self.scale)


def read_annot(path: str, names_file: str | None = None) -> MPIIAnnot:
  """Reads and validates a pose-hg-train style MPII annotation HDF5 file."""
  with posehg.open_h5(path) as h5:
    part = posehg.read_array(h5, 'part', ('N', 16, 2))
    n = part.shape[0]
    center = posehg.read_array(h5, 'center', ('N', 2), n)
    scale = posehg.read_array(h5, 'scale', ('N',), n)
    visible = posehg.read_array(h5, 'visible', ('N', 16), n, optional=True)
    normalize = posehg.read_array(h5, 'normalize', ('N',), n, optional=True)
    index = posehg.read_array(h5, 'index', ('N',), n, np.int64, optional=True)
    person = posehg.read_array(h5, 'person', ('N',), n, np.int64,
                               optional=True)
    istrain = posehg.read_array(h5, 'istrain', ('N',), n, np.int64,
                                optional=True)
    names = posehg.read_image_names(h5, n, names_file)
  if visible is None:
    visible = np.ones((n, 16), np.float32)
  return MPIIAnnot(path, names, part, visible, center, scale, normalize, index,
                   person, istrain)


def default_split(path: str) -> str:
  stem = os.path.splitext(os.path.basename(path))[0].lower()
  return 'test' if re.search(r'valid|val|test', stem) else 'train'


def convert_annot(annot_path: str, image_dir: str, out_dir: str,
                  split: str | None = None, crop_margin: float | None = 1.5,
                  crop_size: int = 384, names_file: str | None = None,
                  examples_per_shard: int = 1000, num_workers: int = 4,
                  jpeg_quality: int = 95) -> dict:
  """Converts an MPII annotation HDF5 + image folder into zoo TFRecords.

  See the module docstring for the field mapping and the split rule.
  Returns the manifest written to out_dir (merged with an existing one).
  """
  annot = read_annot(annot_path, names_file)
  labeled = annot.labeled
  usable = labeled.any(-1) & (annot.scale > 0)
  skipped = int((~usable).sum())
  if skipped:
    logging.info('%s: skipping %d rows without labeled joints or box',
                 annot_path, skipped)
  if split:
    routes = {split: np.flatnonzero(usable).tolist()}
  elif annot.istrain is not None:
    routes = {'train': np.flatnonzero(usable & (annot.istrain == 1)).tolist(),
              'test': np.flatnonzero(usable & (annot.istrain == 0)).tolist()}
  else:
    routes = {default_split(annot_path): np.flatnonzero(usable).tolist()}
  routes = {k: v for k, v in routes.items() if v}
  posehg.check_images_exist(
      image_dir, (annot.imgname[i] for rows in routes.values() for i in rows),
      annot_path)
  boxes = annot.box_xywh
  joints17, _ = skel.to_h36m17(annot.joints2d_px, 'mpii16')
  valid17 = skel.to_h36m17(labeled[..., None], 'mpii16')[0][..., 0]
  occluded = (labeled & (annot.visible < 0.5))
  occluded17 = skel.to_h36m17(occluded[..., None], 'mpii16')[0][..., 0]

  def convert_job(job):
    name, rows = job
    image, raw = posehg.read_image(os.path.join(image_dir, name))
    height, width = image.shape[:2]
    k = records.default_intrinsics(height, width).astype(np.float64)
    out = []
    for r in rows:
      encoded, affine, h, w = posehg.person_view(
          image, raw, boxes[r], crop_margin, crop_size, jpeg_quality)
      valid = valid17[r].astype(np.float32)
      joints2d = geometry.apply_homography(affine, joints17[r]) * valid[:, None]
      box = boxes[r].astype(np.float64)
      corners = geometry.apply_homography(
          affine, np.array([box[:2], box[:2] + box[2:]]))
      out.append({
          'image/encoded': encoded, 'image/height': h, 'image/width': w,
          'joints2d_px': joints2d,
          'intrinsics': geometry.transform_intrinsics(k, affine),
          'box_xywh': np.concatenate([corners[0], corners[1] - corners[0]]),
          'joint_valid_2d': valid,
          'joint_valid_3d': np.zeros(skel.NUM_JOINTS),
          'joint_in_image': posehg.in_image(joints2d, h, w) * valid,
          'joint_self_occluded': occluded17[r].astype(np.float32),
          'has_3d': 0., 'has_camera': 0.,
          'dataset': 'mpii',
          'frame': int(annot.index[r]) if annot.index is not None else r,
      })
    return out

  split_info = {}
  for split_name, rows in routes.items():
    jobs = posehg.group_consecutive(annot.imgname, rows)
    count, _ = posehg.write_split(
        out_dir, split_name, jobs, convert_job, len(rows), examples_per_shard,
        num_workers, desc=f'mpii {split_name}')
    split_info[split_name] = {'count': count,
                              'source': os.path.abspath(annot_path)}
  return posehg.update_manifest(out_dir, 'mpii', split_info, {
      'crop': ({'margin': crop_margin, 'size': crop_size} if crop_margin
               and crop_margin > 0 else 'full_frame'),
      'skipped_unlabeled_rows': skipped,
      'intrinsics': 'default_intrinsics (field-of-view guess)',
  })


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------

PROGRAM = 'python -m zoo.data.mpii'


def define_flags(flag_values: flags.FlagValues) -> None:
  """The command line's flags (zoo.cli: defined only to run the program)."""
  posehg.define_annotation_flags(flag_values,
                                 'by istrain, else by the file name')
  posehg.define_output_flags(flag_values)


def run(args: flags.FlagValues, argv: Sequence[str] = ()) -> int:
  """Converts as the flags say: 0, or 2 on bad input."""
  return posehg.run_converter(lambda: convert_annot(
      args.annot, args.images, args.out_dir, split=args.split,
      crop_margin=args.crop_margin, crop_size=args.crop_size,
      names_file=args.imgnames, examples_per_shard=args.examples_per_shard,
      num_workers=args.num_workers), args.out_dir)


def main(argv: Sequence[str]) -> int:
  """The program on `argv` (flags only), in this process."""
  return cli.call(define_flags, run, argv, PROGRAM)


if __name__ == '__main__':
  cli.run_program(define_flags, run)

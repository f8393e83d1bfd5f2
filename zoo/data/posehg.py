"""Shared machinery of the real-dataset converters (zoo.data.h36m, .mpii;
.mpi_inf_3dhp uses its image writing and output flags).

Both Human3.6M (Pavlakos' c2f-vol release) and MPII (pose-hg-train) ship their
per-person labels as "pose-hg style" annotation HDF5 files: one row per person
with `part` (2D joints, px), `center` and `scale` (person box, side = 200 *
scale px) and the image name, which comes as fixed-length byte strings, as
integer character codes (torch-hdf5 could not read strings), or in a sidecar
text file `<stem>_images.txt` (the c2f release). This module reads those files
with errors that name the file, the dataset key and what was expected, crops
images around the person, and writes sharded zoo TFRecords plus the manifest,
so each converter only maps its own labels into the zoo's record fields.

Images are read with OpenCV (BGR) and stored as JPEG, which decodes to RGB in
the zoo (records.decode_image); full-frame mode passes the original JPEG/PNG
bytes through untouched.
"""
from __future__ import annotations

import collections
import concurrent.futures
import glob
import json
import os
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from absl import flags
from absl import logging
import cv2
import h5py
import numpy as np

from zoo import cli
from zoo import geometry
from zoo import host
from zoo.data import records

# Pose-hg convention: `scale` is the person's box side divided by 200 px.
SCALE_REFERENCE_PX = 200.


class AnnotationError(ValueError):
  """An annotation file lacks a key or holds data of the wrong shape/kind."""


# ----------------------------------------------------------------------------
# Reading annotation HDF5 files
# ----------------------------------------------------------------------------

def open_h5(path: str) -> h5py.File:
  """Opens an annotation HDF5 file read-only, with clear errors."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: annotation file not found')
  try:
    return h5py.File(path, 'r')
  except OSError as e:
    raise AnnotationError(f'{path}: not a readable HDF5 file ({e})') from None


def _shape_str(spec: Sequence[int | str]) -> str:
  inner = ', '.join(str(s) for s in spec)
  return f'({inner},)' if len(spec) == 1 else f'({inner})'


def read_array(h5: h5py.File, key: str, spec: Sequence[int | str],
               num: int | None = None, dtype=np.float32,
               optional: bool = False) -> np.ndarray | None:
  """Reads dataset `key` and checks its shape against `spec`.

  `spec` is a tuple of ints and the symbol 'N' (rows, equal to `num` when
  given). A trailing singleton axis beyond the spec ((N, 1) for (N,)) is
  accepted and squeezed, as MATLAB/torch writers produce it. Returns None for
  a missing optional key.
  """
  path = h5.filename
  if key not in h5:
    if optional:
      return None
    raise AnnotationError(
        f'{path}: dataset {key!r} not found, expected shape '
        f'{_shape_str(spec)}; the file has {sorted(h5.keys())}')
  node = h5[key]
  if not isinstance(node, h5py.Dataset):
    raise AnnotationError(f'{path}: {key!r} is a group, expected a dataset of '
                          f'shape {_shape_str(spec)}')
  arr = node[()]
  if arr.ndim == len(spec) + 1 and arr.shape[-1] == 1:
    arr = arr[..., 0]
  ok = arr.ndim == len(spec) and all(
      (s == 'N' and (num is None or d == num)) or d == s
      for d, s in zip(arr.shape, spec))
  if not ok:
    want = _shape_str(spec)
    if num is not None and 'N' in spec:
      want += f' with N = {num}'
    raise AnnotationError(f'{path}: dataset {key!r} has shape {arr.shape}, '
                          f'expected {want}')
  if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
    raise AnnotationError(f'{path}: dataset {key!r} has dtype {arr.dtype}, '
                          f'expected numbers')
  return arr.astype(dtype)


def decode_names(data: np.ndarray, where: str) -> list[str]:
  """Image names from fixed-length bytes, vlen strings or char codes."""
  data = np.asarray(data)
  if data.dtype.kind in 'SUO' and data.ndim == 2 and data.shape[1] == 1:
    data = data[:, 0]
  if data.dtype.kind in 'SO' and data.ndim == 1:
    out = []
    for v in data:
      if isinstance(v, (bytes, np.bytes_)):
        v = bytes(v).split(b'\0', 1)[0].decode('utf-8')
      out.append(str(v).strip())
    return out
  if data.dtype.kind == 'U' and data.ndim == 1:
    return [str(v).strip() for v in data]
  if np.issubdtype(data.dtype, np.number) and data.ndim == 2:
    codes = np.asarray(data, np.float64)
    if (np.any(codes != np.round(codes)) or np.any(codes < 0)
        or np.any(codes > 255)):
      raise AnnotationError(f'{where}: numeric image names must be integer '
                            f'character codes in 0..255')
    codes = codes.astype(np.uint8)
    return [bytes(row).split(b'\0', 1)[0].decode('latin-1').strip()
            for row in codes]
  raise AnnotationError(
      f'{where} has shape {data.shape} and dtype {data.dtype}, expected (N,) '
      f'strings or (N, L) integer character codes (0-padded)')


def sidecar_names_path(annot_path: str) -> str:
  """c2f-style image list next to an annotation: train.h5 -> train_images.txt"""
  stem = os.path.splitext(annot_path)[0]
  return stem + '_images.txt'


def read_names_file(path: str) -> list[str]:
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: image name list not found')
  with open(path) as f:
    return [line.strip() for line in f if line.strip()]


def read_image_names(h5: h5py.File, num: int,
                     names_file: str | None = None) -> list[str]:
  """Image names, one per row: names_file, else 'imgname', else the sidecar."""
  path = base = h5.filename
  if names_file:
    names, where = read_names_file(names_file), names_file
  elif 'imgname' in h5:
    names = decode_names(h5['imgname'][()], f"{base}: dataset 'imgname'")
    where = f"{base}: dataset 'imgname'"
  elif os.path.isfile(sidecar_names_path(path)):
    where = sidecar_names_path(path)
    names = read_names_file(where)
  else:
    raise AnnotationError(
        f"{base}: dataset 'imgname' not found, expected (N,) strings or (N, L) "
        f"character codes; no image list {sidecar_names_path(path)} either "
        f"(pass one with --imgnames)")
  if len(names) != num:
    raise AnnotationError(f'{where}: {len(names)} image names, expected one '
                          f'per annotation row (N = {num})')
  empty = [i for i, n in enumerate(names) if not n]
  if empty:
    raise AnnotationError(f'{where}: empty image name in row {empty[0]}')
  return names


def box_from_center_scale(center_px: np.ndarray,
                          scale: np.ndarray) -> np.ndarray:
  """[N, 4] square boxes (x, y, w, h) of side 200 * scale around the centre."""
  side = SCALE_REFERENCE_PX * np.asarray(scale, np.float64)
  center = np.asarray(center_px, np.float64)
  return np.stack([center[:, 0] - side / 2, center[:, 1] - side / 2, side,
                   side], -1).astype(np.float32)


def check_images_exist(image_dir: str, names: Iterable[str],
                       annot_path: str) -> None:
  """Fails fast, before any conversion, when images are missing."""
  if not os.path.isdir(image_dir):
    raise FileNotFoundError(f'{image_dir}: image folder not found')
  missing = [os.path.join(image_dir, n) for n in dict.fromkeys(names)
             if not os.path.isfile(os.path.join(image_dir, n))]
  if missing:
    raise FileNotFoundError(
        f'{missing[0]}: image file not found ({len(missing)} image(s) named in '
        f'{annot_path} are missing; first: {missing[:3]})')


# ----------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------

def read_image(path: str) -> tuple[np.ndarray, bytes]:
  """(BGR uint8 [H, W, 3], the file's bytes)."""
  try:
    with open(path, 'rb') as f:
      raw = f.read()
  except FileNotFoundError:
    raise FileNotFoundError(f'{path}: image file not found') from None
  image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
  if image is None:
    raise ValueError(f'{path}: cannot decode image (expected JPEG/PNG)')
  return image, raw


def encode_jpeg(image_bgr: np.ndarray, quality: int = 95) -> bytes:
  ok, buf = cv2.imencode('.jpg', image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
  if not ok:
    raise ValueError('JPEG encoding failed')
  return buf.tobytes()


def crop_box(box_xywh: np.ndarray, margin: float) -> np.ndarray:
  """Square box centred on `box_xywh` with side = longer side * margin."""
  x, y, w, h = np.asarray(box_xywh, np.float64)
  side = max(w, h) * margin
  return np.array([x + w / 2 - side / 2, y + h / 2 - side / 2, side, side])


def person_view(image_bgr: np.ndarray, raw: bytes, box_xywh: np.ndarray,
                crop_margin: float | None, crop_size: int,
                jpeg_quality: int = 95) -> tuple[bytes, np.ndarray, int, int]:
  """The stored image of one person: (encoded, affine, height, width).

  `affine` [3, 3] maps source pixels to stored-image pixels.

  crop_margin None or <= 0: the full frame, original bytes when JPEG/PNG
  (identity affine). Otherwise a square crop_size x crop_size crop of the box
  enlarged by crop_margin (zoo.geometry.box_crop_affine), zero padded outside
  the frame, low-pass filtered before downscaling to limit aliasing.
  """
  height, width = image_bgr.shape[:2]
  if not crop_margin or crop_margin <= 0:
    if raw[:3] == b'\xff\xd8\xff' or raw[:8] == b'\x89PNG\r\n\x1a\n':
      return raw, np.eye(3), height, width
    return encode_jpeg(image_bgr, jpeg_quality), np.eye(3), height, width
  affine = geometry.box_crop_affine(crop_box(box_xywh, crop_margin), crop_size)
  scale = affine[0, 0]
  src = image_bgr
  if scale < 0.8:
    src = cv2.GaussianBlur(image_bgr, (0, 0), 0.5 * np.sqrt(1 / scale ** 2 - 1))
  crop = cv2.warpAffine(src, affine[:2], (crop_size, crop_size),
                        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                        borderValue=0)
  return encode_jpeg(crop, jpeg_quality), affine, crop_size, crop_size


def in_image(joints2d_px: np.ndarray, height: int, width: int) -> np.ndarray:
  """[J] 1 where a joint lies inside the image (pixel centres at integers)."""
  x, y = joints2d_px[..., 0], joints2d_px[..., 1]
  return ((x >= -0.5) & (x <= width - 0.5) & (y >= -0.5)
          & (y <= height - 0.5)).astype(np.float32)


# ----------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------

def group_consecutive(names: Sequence[str], rows: Sequence[int]
                      ) -> list[tuple[str, list[int]]]:
  """Runs of rows that share one image, so each image is decoded once."""
  jobs: list[tuple[str, list[int]]] = []
  for r in rows:
    if jobs and jobs[-1][0] == names[r]:
      jobs[-1][1].append(r)
    else:
      jobs.append((names[r], [r]))
  return jobs


def _ordered_parallel(fn: Callable[[Any], Any], jobs: Sequence[Any],
                      num_workers: int) -> Iterator[Any]:
  """fn over jobs on a thread pool (OpenCV releases the GIL), results in order.

  A bounded window of in-flight jobs keeps memory flat on large datasets.
  """
  if num_workers <= 1:
    for job in jobs:
      yield fn(job)
    return
  window = 4 * num_workers
  with concurrent.futures.ThreadPoolExecutor(num_workers) as pool:
    pending: collections.deque = collections.deque()
    it = iter(jobs)
    for job in it:
      pending.append(pool.submit(fn, job))
      if len(pending) >= window:
        break
    while pending:
      yield pending.popleft().result()
      for job in it:
        pending.append(pool.submit(fn, job))
        break


def write_split(out_dir: str, split: str, jobs: Sequence[Any],
                convert_job: Callable[[Any], list[dict[str, Any]]],
                num_examples: int, examples_per_shard: int = 1000,
                num_workers: int = 4, desc: str = '') -> tuple[int, list[dict]]:
  """Converts jobs (each -> a list of record field dicts) into `split` shards.

  Returns (examples written, per-example side info: each field dict's '_info'
  entry, popped before writing). Shards of the same split from earlier runs
  with another shard count are removed once the new ones are in place.
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  num_shards = max(1, -(-num_examples // max(1, examples_per_shard)))
  infos: list[dict] = []
  with records.ShardedWriter(out_dir, split, num_shards) as writer, \
      tqdm(total=num_examples, desc=desc or split, unit='ex') as bar:
    for fields_list in _ordered_parallel(convert_job, jobs, num_workers):
      for fields in fields_list:
        infos.append(fields.pop('_info', {}))
        writer.write(records.make_example(fields))
        bar.update(1)
  keep = set(writer.paths)
  for stale in glob.glob(os.path.join(out_dir, f'{split}-*-of-*.tfrecord')):
    if stale not in keep:
      os.remove(stale)
  return writer.count, infos


def update_manifest(out_dir: str, dataset: str, split_info: Mapping[str, dict],
                    extra: Mapping[str, Any]) -> dict:
  """Merges this run's splits into out_dir's manifest, keeping other splits."""
  path = os.path.join(out_dir, records.DATASET_MANIFEST_FILE)
  manifest: dict[str, Any] = {}
  if os.path.exists(path):
    old = records.read_manifest(out_dir)
    if old.get('dataset') == dataset:
      manifest = old
    else:
      logging.warning('%s: replacing a manifest of dataset %r', path,
                      old.get('dataset'))
  manifest.update(extra)
  manifest['dataset'] = dataset
  manifest.setdefault('splits', {}).update(split_info)
  manifest['counts'] = {k: v['count'] for k, v in manifest['splits'].items()}
  records.write_manifest(out_dir, manifest)
  return manifest


def define_annotation_flags(flag_values: flags.FlagValues,
                            default_split: str) -> None:
  """The pose-hg-style converters' input flags: --annot, --images, --out_dir
  (required), --split (`default_split` says how rows are split without it)
  and --imgnames."""
  fv = {'flag_values': flag_values}
  flags.DEFINE_string('annot', None, 'annotation HDF5 (annot.h5, train.h5 '
                      '...)', **fv)
  flags.DEFINE_string('images', None, 'folder holding the images named in '
                      'it', **fv)
  flags.DEFINE_string('out_dir', None, 'output directory for TFRecords', **fv)
  flags.DEFINE_string('split', None, 'write every row to this split; '
                      f'default: {default_split}', **fv)
  flags.DEFINE_string('imgnames', None, 'image name list (one per row); '
                      'default: the imgname dataset or <annot>_images.txt',
                      **fv)
  flags.mark_flags_as_required(['annot', 'images', 'out_dir'],
                               flag_values=flag_values)


def define_output_flags(flag_values: flags.FlagValues) -> None:
  """The converters' shared flags for what they write: --crop_margin,
  --crop_size, --examples_per_shard and --num_workers (image threads, at
  most 4 and at most the cores this process may use)."""
  fv = {'flag_values': flag_values}
  flags.DEFINE_float('crop_margin', 1.5, 'crop side / person box side; 0 = '
                     'store full frames', **fv)
  flags.DEFINE_integer('crop_size', 384, 'side of the stored crop, px', **fv)
  flags.DEFINE_integer('examples_per_shard', 1000, 'examples per shard', **fv)
  flags.DEFINE_integer('num_workers', min(4, host.available_cores()),
                       'image threads', **fv)


def run_converter(convert: Callable[[], Mapping[str, Any]],
                  out_dir: str) -> int:
  """A converter's command line around `convert()` (which returns the
  manifest): prints {out_dir, counts} as JSON and returns 0; on bad input
  (an AnnotationError or another ValueError, a missing or unreadable file)
  prints `error: ...` to stderr and returns 2."""
  try:
    manifest = convert()
  except (ValueError, OSError) as e:
    return cli.bad_input(e)
  print(json.dumps({'out_dir': out_dir, 'counts': manifest['counts']}))
  return 0

"""The zoo's embedded synthetic human dataset: rendered people, exact labels.

No dataset can be downloaded where the zoo runs, so it makes its own: posed
subjects (zoo.data.motion: kinematic chain on H36M-17; zoo.data.people:
subject bone lengths; zoo.data.joint_angles: anatomical limits, 12 parametric
actions modelled on Human3.6M's) seen by a random calibrated camera (1000x1000
frame, focal 1000-1200 px, 3-7 m away, 0.5-2 m high, looking at the person,
small roll) and drawn with OpenCV
(zoo.data.render) into a person-centred crop of 320x320 px whose intrinsics are
adjusted to the crop. Train subjects (S1 S5 S6 S7 S8) and test subjects (S9
S11) are disjoint, as in Human3.6M's protocols.

World frame: z up, millimetres, ground plane z = 0. Camera frame: x right,
y down, z forward, mm. Every example is a record of the zoo schema
(zoo.data.records) with dataset='synthetic', a unique camera per example
(camera id '<split>-<index>') and frame = the example index.

Determinism: example i of a split depends only on (seed, split, i), so the
same seed gives identical bytes whatever the number of workers or shards.

Usage:
  python -m zoo.data.synthetic --out_dir=DIR --split=train --num_examples=N
      [--seed=S] [--num_shards=K] [--num_workers=W]
  python -m zoo.data.synthetic --preview=PATH.png [--num_examples=16]

Python: `generate(...)` writes one split, `ensure_dataset(...)` returns a
cached directory with both splits, `poses(...)` streams motion capture
without rendering.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import multiprocessing
import os
import sys
import time
from typing import Any, Iterator, Sequence

from absl import app
from absl import flags
from absl import logging
import cv2
import numpy as np
from tqdm import tqdm

from zoo import cli
from zoo import fileio
from zoo import host
from zoo import skeleton as skel
from zoo import visualize
from zoo.data import joint_angles
from zoo.data import motion
from zoo.data import people
from zoo.data import records
from zoo.data import render

# Bump when the images or labels change for a given seed: it is part of the
# cache directory name, so stale caches are never reused.
GENERATOR_VERSION = 2
JPEG_QUALITY = 90
DATASET = 'synthetic'
SPLITS = ('train', 'test')
_SPLIT_CODE = {'train': 0, 'test': 1}
# Poses are drawn in blocks of consecutive examples (vectorised kinematics);
# worker tasks cover whole blocks. Neither changes any example's content.
_MOTION_BLOCK = 16
_TASK_SIZE = _MOTION_BLOCK

poses = motion.poses  # re-exported: the motion-capture stream


def _check_split(split: str):
  if split not in _SPLIT_CODE:
    raise ValueError(f'unknown split {split!r}; expected one of {SPLITS}')


def example_rng(seed: int, split: str, index: int) -> np.random.Generator:
  """The generator that decides everything about example `index`."""
  _check_split(split)
  return np.random.default_rng([int(seed), _SPLIT_CODE[split], int(index),
                                GENERATOR_VERSION])


@functools.lru_cache(maxsize=4)
def _motion_block(seed: int, split: str, block: int) -> motion.MotionBatch:
  """Poses of examples [block * 16, block * 16 + 16) of a split."""
  rng = np.random.default_rng([int(seed), _SPLIT_CODE[split], int(block),
                               GENERATOR_VERSION, 1])
  return motion.sample_motion(rng, _MOTION_BLOCK, people.split_subjects(split))


def render_example(seed: int, split: str, index: int,
                   config: render.RenderConfig = render.RenderConfig()
                   ) -> tuple[dict[str, Any], render.Rendered]:
  """Renders example `index` of a split: (record fields, rendered details)."""
  rng = example_rng(seed, split, index)
  batch = _motion_block(seed, split, index // _MOTION_BLOCK)
  i = index % _MOTION_BLOCK
  r = render.render(batch, i, rng, config)
  ok, jpeg = cv2.imencode('.jpg', r.image_bgr,
                          [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
  if not ok:
    raise RuntimeError(f'JPEG encoding failed for example {index} of {split}')
  size = r.image_bgr.shape[0]
  fields = {
      'image/encoded': jpeg.tobytes(),
      'image/height': size,
      'image/width': size,
      'joints2d_px': r.joints2d_px,
      'joints3d_cam_mm': r.joints_cam_mm,
      'joints3d_world_mm': r.joints_world_mm,
      'intrinsics': r.intrinsics,
      'extrinsics': r.extrinsics,
      'box_xywh': r.box_xywh,
      'joint_valid_2d': np.ones(skel.NUM_JOINTS, np.float32),
      'joint_valid_3d': np.ones(skel.NUM_JOINTS, np.float32),
      'joint_in_image': r.joint_in_image,
      'joint_self_occluded': r.joint_self_occluded,
      'has_3d': 1.,
      'has_camera': 1.,
      'dataset': DATASET,
      'subject': people.SUBJECTS[batch.subject_index[i]].name,
      'action': joint_angles.ACTIONS[batch.action_index[i]],
      'camera': f'{split}-{index:08d}',
      'frame': int(index),
  }
  return fields, r


def _worker_init():
  cv2.setNumThreads(1)  # one process per core already


def _serialized_task(args) -> list[bytes]:
  seed, split, start, stop, config = args
  # deterministic: the features map in a fixed (sorted) order, the same in
  # every process (map order otherwise depends on the process's hash seed).
  return [records.make_example(render_example(seed, split, i, config)[0])
          .SerializeToString(deterministic=True) for i in range(start, stop)]


def _serialized_stream(seed: int, split: str, num_examples: int,
                       num_workers: int, config: render.RenderConfig
                       ) -> Iterator[bytes]:
  """Serialized examples 0..num_examples-1 in order."""
  tasks = [(seed, split, a, min(a + _TASK_SIZE, num_examples), config)
           for a in range(0, num_examples, _TASK_SIZE)]
  if num_workers <= 1 or len(tasks) <= 1:
    for t in tasks:
      yield from _serialized_task(t)
    return
  # Never plain fork: callers (the trainer, tests) often have the TensorFlow
  # runtime's threads running, and forking such a process can deadlock. A
  # forkserver is a fresh process that imports this module once (no TF
  # runtime started) and forks the workers from there.
  if 'forkserver' in multiprocessing.get_all_start_methods():
    ctx = multiprocessing.get_context('forkserver')
    ctx.set_forkserver_preload([__name__])
  else:
    ctx = multiprocessing.get_context('spawn')
  with ctx.Pool(min(num_workers, len(tasks)),
                initializer=_worker_init) as pool:
    for chunk in pool.imap(_serialized_task, tasks, chunksize=1):
      yield from chunk


def default_num_shards(num_examples: int) -> int:
  """About 1000 examples per shard, between 1 and 64 shards."""
  return int(min(64, max(1, math.ceil(num_examples / 1000))))


def generate(out_dir: str, split: str, num_examples: int, seed: int = 0,
             num_shards: int | None = None, num_workers: int | None = None,
             progress: bool = True,
             config: render.RenderConfig = render.RenderConfig()) -> dict:
  """Writes one split as sharded TFRecords plus f'{split}_manifest.json'.

  Shards are named `{split}-NNNNN-of-NNNNN.tfrecord` (records.ShardedWriter,
  written atomically); stale shards of the split with another shard count are
  removed. Returns the manifest.
  """
  _check_split(split)
  if num_examples < 1:
    raise ValueError(f'num_examples must be >= 1, got {num_examples}')
  num_shards = num_shards or default_num_shards(num_examples)
  if num_shards < 1 or num_shards > num_examples:
    raise ValueError(f'num_shards must be in [1, num_examples={num_examples}],'
                     f' got {num_shards}')
  num_workers = num_workers or host.available_cores()
  os.makedirs(out_dir, exist_ok=True)
  stream = _serialized_stream(seed, split, num_examples, num_workers, config)
  bar = None
  if progress:
    bar = tqdm(total=num_examples, desc=f'synthetic {split}', unit='ex',
               file=sys.stderr)
  with records.ShardedWriter(out_dir, split, num_shards) as writer:
    for data in stream:
      writer.write(data)
      if bar is not None:
        bar.update(1)
  if bar is not None:
    bar.close()
  keep = set(os.path.basename(p) for p in writer.paths)
  for name in os.listdir(out_dir):
    if (name.startswith(f'{split}-') and name.endswith('.tfrecord')
        and name not in keep):
      os.remove(os.path.join(out_dir, name))
  manifest = {
      'dataset': DATASET,
      'split': split,
      'num_examples': num_examples,
      'counts': {split: num_examples},
      'num_shards': num_shards,
      'shards': sorted(keep),
      'seed': seed,
      'subjects': list(people.split_subjects(split)),
      'actions': list(joint_angles.ACTIONS),
      'generator': 'zoo.data.synthetic',
      'generator_version': GENERATOR_VERSION,
      'format_version': records.FORMAT_VERSION,
      'image_size': config.image_size,
      'frame_size': render.FRAME_SIZE,
      'jpeg_quality': JPEG_QUALITY,
      'render_config': dataclasses.asdict(config),
      'world_frame': 'z up, millimetres, ground plane z = 0',
      'camera_frame': 'x right, y down, z forward, millimetres',
  }
  name = f'{split}_manifest.json'
  records.write_manifest(out_dir, manifest, name=name)
  return records.read_manifest(out_dir, name)  # with the schema's defaults


def cache_root(cache_dir: str | None = None) -> str:
  return (cache_dir or os.environ.get('POSE3D_ZOO_CACHE')
          or os.path.join(os.path.expanduser('~'), '.cache', 'pose3d_zoo'))


def dataset_dir_name(num_train: int, num_test: int, seed: int) -> str:
  return (f'synthetic_f{records.FORMAT_VERSION}_g{GENERATOR_VERSION}'
          f'_seed{seed}_train{num_train}_test{num_test}')


def _is_complete(path: str, counts: dict[str, int], seed: int) -> bool:
  for split, n in counts.items():
    try:
      m = records.read_manifest(path, f'{split}_manifest.json')
    except (FileNotFoundError, ValueError):
      return False
    if (m.get('num_examples') != n or m.get('seed') != seed
        or m.get('generator_version') != GENERATOR_VERSION):
      return False
    if not all(os.path.exists(os.path.join(path, s)) for s in m['shards']):
      return False
  return True


def ensure_dataset(num_train: int, num_test: int, seed: int = 0,
                   cache_dir: str | None = None,
                   num_workers: int | None = None,
                   progress: bool = True) -> str:
  """A data directory with both splits, generated only if missing.

  The directory lives under `cache_dir` (default $POSE3D_ZOO_CACHE or
  ~/.cache/pose3d_zoo) and its name encodes the format and generator
  versions, the seed and the sizes. It is generated into a temporary
  directory and renamed into place, so a crash never leaves a half dataset.
  """
  root = cache_root(cache_dir)
  os.makedirs(root, exist_ok=True)
  name = dataset_dir_name(num_train, num_test, seed)
  path = os.path.join(root, name)
  counts = {'train': num_train, 'test': num_test}
  if _is_complete(path, counts, seed):
    return path
  # Said once, so a run without progress bars does not look stalled.
  logging.info('Generating the embedded synthetic dataset (%d train + %d test '
               'examples, seed %d) into %s; later runs reuse it.', num_train,
               num_test, seed, path)
  start = time.perf_counter()
  with fileio.staging_directory(root, name) as tmp:
    for split, n in counts.items():
      generate(tmp, split, n, seed=seed, num_workers=num_workers,
               progress=progress)
    if _is_complete(path, counts, seed):  # a concurrent writer finished
      return path
    try:  # replaces incomplete leftovers
      fileio.replace_directory(tmp, path, lambda: os.path.join(
          root, fileio.temp_prefix(name, fileio.ASIDE_PREFIX) + 'old'))
    except OSError:
      if _is_complete(path, counts, seed):
        return path
      raise
  logging.info('Generated %s in %.0f s.', path, time.perf_counter() - start)
  return path


def preview(path: str, num_examples: int = 16, seed: int = 0,
            split: str = 'train', columns: int = 4,
            config: render.RenderConfig = render.RenderConfig()) -> np.ndarray:
  """Writes a contact-sheet PNG of rendered examples with their 2D skeletons.

  Each tile is a stored (decoded JPEG) image with its 2D joints (left limbs
  green, right limbs magenta: the overlay is the only place where colour
  marks a side) and its person box (grey). Returns the sheet (BGR).
  """
  tiles, captions = [], []
  for i in range(num_examples):
    fields, _ = render_example(seed, split, i, config)
    image = cv2.imdecode(np.frombuffer(fields['image/encoded'], np.uint8),
                         cv2.IMREAD_COLOR)
    x, y, w, h = np.round(fields['box_xywh']).astype(int)
    cv2.rectangle(image, (x, y), (x + w, y + h), (200, 200, 200), 1)
    tiles.append(visualize.draw_skeleton_2d(image, fields['joints2d_px']))
    captions.append(f"{fields['subject']} {fields['action']}")
  sheet = visualize.contact_sheet(tiles, columns=columns, captions=captions)
  ok, png = cv2.imencode('.png', sheet)
  if not ok:
    raise RuntimeError('PNG encoding failed')
  fileio.atomic_write_bytes(path, png.tobytes())
  return sheet


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------

PROGRAM = 'python -m zoo.data.synthetic'


def define_flags(flag_values: flags.FlagValues) -> None:
  """The command line's flags (zoo.cli: defined only to run the program)."""
  fv = {'flag_values': flag_values}
  flags.DEFINE_string('out_dir', None, 'Directory for the TFRecord shards.',
                      **fv)
  flags.DEFINE_enum('split', 'train', list(SPLITS), 'Which subjects.', **fv)
  flags.DEFINE_integer('num_examples', None, 'Examples to write (preview: '
                       'tiles, default 16).', **fv)
  flags.DEFINE_integer('seed', 0, 'Dataset seed.', **fv)
  flags.DEFINE_integer('num_shards', None, 'Shards (default ~1000 examples '
                       'each).', **fv)
  flags.DEFINE_integer('num_workers', None, 'Processes (default: all '
                       'cores).', **fv)
  flags.DEFINE_string('preview', None, 'Write a contact-sheet PNG here '
                      'instead of a dataset.', **fv)


def run(args: flags.FlagValues, argv: Sequence[str] = ()) -> int:
  """Writes a split or a preview as the flags say: 0, or 2 on bad input."""
  if not args.preview and (not args.out_dir or not args.num_examples):
    raise app.UsageError('--out_dir and --num_examples are required (or use '
                         '--preview=PATH)')
  try:
    if args.preview:
      preview(args.preview, num_examples=args.num_examples or 16,
              seed=args.seed, split=args.split)
      print(f'wrote {args.preview}')
      return 0
    m = generate(args.out_dir, args.split, args.num_examples, seed=args.seed,
                 num_shards=args.num_shards, num_workers=args.num_workers)
  except (ValueError, OSError) as e:
    return cli.bad_input(e)
  print(f"wrote {m['num_examples']} {m['split']} examples in "
        f"{m['num_shards']} shards to {args.out_dir}")
  return 0


def main(argv: Sequence[str]) -> int:
  """The program on `argv` (flags only), in this process."""
  return cli.call(define_flags, run, argv, PROGRAM)


if __name__ == '__main__':
  cli.run_program(define_flags, run)

"""Throughput of the shared input pipeline (zoo.data.pipeline), examples/s.

Reads records written by `python -m zoo.data.synthetic` (`--data=DIR`), or
writes its own fixture of 320x320 JPEG person crops into a temporary
directory, then times `make_dataset(training=True)` at 256x256 with the c2f
augmentation (zoom, rotation, flip, colour gain; occlusion with
--occlusion_prob). `--stages` also times the pipeline cut short after reading,
parsing and decoding, to show where the time goes. `--fast_decode` decodes
JPEGs at a reduced scale where the crop allows (make_dataset(fast_decode=
True); off by default, as in the pipeline).

  python -m benchmarks.bench_pipeline [--data=DIR] [--batch_size=32]
      [--input_size=256] [--num_batches=60] [--occlusion_prob=0] [--stages]
      [--fast_decode]

Target (issue 2): >= 400 examples/s on 2 cores.
"""
from __future__ import annotations

import os
import shlex
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from tqdm import tqdm  # noqa: E402

from zoo import host  # noqa: E402
from zoo import skeleton as skel  # noqa: E402
from zoo.config import AugmentConfig  # noqa: E402
from zoo.data import pipeline  # noqa: E402
from zoo.data import records  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string('data', None, 'Directory of zoo TFRecords (e.g. written by '
                    'zoo.data.synthetic); default: a built-in JPEG fixture.')
flags.DEFINE_string('split', 'train', 'Split to read from --data.')
flags.DEFINE_integer('num_fixture_examples', 512, 'Fixture size.')
flags.DEFINE_integer('batch_size', 32, 'Batch size.')
flags.DEFINE_integer('input_size', 256, 'Crop side (px).')
flags.DEFINE_integer('num_batches', 60, 'Timed batches.')
flags.DEFINE_integer('warmup_batches', 8, 'Untimed batches first.')
flags.DEFINE_float('occlusion_prob', 0., 'Synthetic occluder probability.')
flags.DEFINE_float('shift_fraction', 0., 'Box-centre shift augmentation.')
flags.DEFINE_bool('stages', False, 'Also time read / parse / decode alone.')
flags.DEFINE_bool('fast_decode', False, 'Decode JPEGs at a reduced scale where '
                  'the crop allows (make_dataset(fast_decode=...)).')


def write_fixture(out_dir: str, num_examples: int, size: int = 320,
                  seed: int = 0) -> str:
  """Writes `num_examples` textured 320x320 JPEG records (2 shards)."""
  rng = np.random.default_rng(seed)
  focal = 1100. * size / 320.
  k = np.array([[focal, 0, (size - 1) / 2], [0, focal, (size - 1) / 2],
                [0, 0, 1]], np.float32)
  xx = np.arange(size, dtype=np.float32)[None, :, None]
  jpegs = []  # 32 distinct textured images, reused (decoding cost is the same)
  for _ in range(32):
    image = rng.uniform(40, 200, 3) + 40 * np.sin(
        xx / rng.uniform(5, 40) + rng.uniform(0, 6, 3))
    image = image + rng.normal(0, 12, (size, size, 3))
    for _ in range(6):
      centre = tuple(int(v) for v in rng.integers(0, size, 2))
      cv2.circle(image, centre, int(rng.integers(5, 50)),
                 tuple(float(v) for v in rng.uniform(0, 255, 3)), -1,
                 cv2.LINE_AA)
    jpegs.append(cv2.imencode('.jpg', np.clip(image, 0, 255).astype(np.uint8),
                              [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
  with records.ShardedWriter(out_dir, 'train', 2) as writer:
    for i in tqdm(range(num_examples), desc='fixture', leave=False):
      jpeg = jpegs[i % len(jpegs)]
      joints = np.array([0., 0., 4000.]) + rng.normal(0, 300, (skel.NUM_JOINTS, 3))
      p = joints @ k.T
      joints2d = p[:, :2] / p[:, 2:]
      lo, hi = joints2d.min(0), joints2d.max(0)
      writer.write(records.make_example({
          'image/encoded': jpeg, 'joints2d_px': joints2d,
          'joints3d_cam_mm': joints, 'intrinsics': k,
          'box_xywh': [lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]],
          'dataset': 'bench', 'frame': i}))
  return out_dir


def _time(ds: tf.data.Dataset, num_batches: int, warmup: int, batch_size: int,
          desc: str) -> tuple[float, float]:
  """(examples/s wall clock, CPU ms per example of this process)."""
  it = iter(ds)
  for _ in range(warmup):
    next(it)
  start, cpu_start = time.perf_counter(), time.process_time()
  for _ in tqdm(range(num_batches), desc=desc, leave=False):
    next(it)
  wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
  num = num_batches * batch_size
  return num / wall, 1000. * cpu / num


def _stage_datasets(files: list[str], batch_size: int):
  """Cut-short pipelines: records only, + parse, + decode (batched)."""
  opts = tf.data.Options()
  opts.deterministic = False
  base = tf.data.TFRecordDataset(files).repeat()
  parse = lambda s: records.parse_example(s)
  decode = lambda s: records.decode_image(records.parse_example(s)
                                          ['image/encoded'])
  yield 'read', base.batch(batch_size).prefetch(4).with_options(opts)
  yield 'read+parse', base.map(parse, tf.data.AUTOTUNE).batch(
      batch_size).prefetch(4).with_options(opts)
  yield 'read+parse+decode', base.map(decode, tf.data.AUTOTUNE).padded_batch(
      batch_size).prefetch(4).with_options(opts)


def main(argv):
  del argv
  command = 'python -m benchmarks.bench_pipeline ' + ' '.join(
      shlex.quote(a) for a in sys.argv[1:])
  tmp = None
  if FLAGS.data:
    data, source = FLAGS.data, f'records in {FLAGS.data}'
    files = records.list_shards(data, FLAGS.split)
  else:
    tmp = tempfile.TemporaryDirectory()
    data = write_fixture(tmp.name, FLAGS.num_fixture_examples)
    files = records.list_shards(data, 'train')
    source = (f'built-in fixture: {FLAGS.num_fixture_examples} 320x320 JPEG '
              'records')
  augment = AugmentConfig(occlusion_prob=FLAGS.occlusion_prob,
                          shift_fraction=FLAGS.shift_fraction)
  results = {}
  if FLAGS.stages:
    for name, ds in _stage_datasets(files, FLAGS.batch_size):
      results[name] = _time(ds, FLAGS.num_batches, FLAGS.warmup_batches,
                            FLAGS.batch_size, name)
  ds = pipeline.make_dataset(
      files, FLAGS.split, input_size=FLAGS.input_size,
      batch_size=FLAGS.batch_size, training=True, augment=augment,
      shuffle_buffer=256, fast_decode=FLAGS.fast_decode)
  results['full pipeline'] = _time(ds, FLAGS.num_batches, FLAGS.warmup_batches,
                                   FLAGS.batch_size, 'pipeline')
  print(f'command: {command}')
  cores = host.available_cores()
  print(f'data: {source}; {cores} CPU cores; batch '
        f'{FLAGS.batch_size}; {FLAGS.input_size}x{FLAGS.input_size}; '
        f'fast_decode {FLAGS.fast_decode}; augment {augment}')
  print('CPU ms/example is the process CPU time per example; '
        f'{cores} cores / that = the rate an idle machine could reach.')
  for name, (rate, cpu_ms) in results.items():
    print(f'{name:>20}: {rate:8.1f} examples/s wall, {cpu_ms:6.2f} CPU '
          f'ms/example (idle {cores}-core bound {cores * 1000 / cpu_ms:7.1f}'
          ' examples/s)')
  if tmp is not None:
    tmp.cleanup()


if __name__ == '__main__':
  app.run(main)

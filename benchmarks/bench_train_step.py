"""Training speed and peak memory per model and precision, on the real trainer.

Each (model, precision) runs in its own process (so the peak resident memory
is that run's alone): trainers.train_lib.train at the given preset on the
embedded data for --steps steps into a temporary workdir, no evaluation. The
first --warmup_steps (tracing, pipeline start-up) are not timed. Reports
examples/s (wall), CPU-seconds per step (less sensitive to other load on a
shared machine) and peak RSS in MiB (getrusage, the whole process: TF
runtime, model, optimizer, input pipeline).

  python -m benchmarks.bench_train_step [--models=c2f_volumetric,...]
      [--preset=cpu] [--precisions=float32,mixed_bfloat16] [--steps=40]
      [--warmup_steps=5] [--out=FILE.json]

Issue 3 asks for float32 vs mixed_bfloat16 at every c2f variant; bfloat16 is
the CPU's mixed precision (float16 needs a GPU).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app, flags  # noqa: E402

from zoo import registry  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list('models', None, 'Registered models (default: every zoo '
                  'model, zoo.registry.zoo_names()).')
flags.DEFINE_string('preset', 'cpu', 'Preset of every model.')
flags.DEFINE_list('precisions', ['float32', 'mixed_bfloat16'], 'Precisions.')
flags.DEFINE_integer('steps', 40, 'Training steps per run, warm-up included.')
flags.DEFINE_integer('warmup_steps', 5, 'Untimed first steps.')
flags.DEFINE_string('out', None, 'Also write the rows as JSON here.')
flags.DEFINE_string('one', None, 'Internal: MODEL:PRECISION, run in this '
                    'process and print one JSON line.')


def _measure_one(model: str, precision: str) -> dict:
  """Trains `model` briefly in this process; returns speed and peak memory."""
  import keras
  from trainers import train_lib

  marks = []

  class Clock(keras.callbacks.Callback):

    def on_train_batch_end(self, batch, logs=None):
      marks.append((time.perf_counter(), time.process_time()))

  with tempfile.TemporaryDirectory() as workdir:
    result = train_lib.train(
        model, preset=FLAGS.preset, workdir=workdir, steps=FLAGS.steps,
        precision=precision, run_evaluation=False, baseline=False,
        progress=False, extra_callbacks=[Clock()])
    batch = result.model.config.train.batch_size
  timed = marks[FLAGS.warmup_steps - 1:]
  steps = len(timed) - 1
  if steps < 1:
    raise ValueError(f'need --steps > --warmup_steps + 1, got {FLAGS.steps} '
                     f'and {FLAGS.warmup_steps}')
  wall = timed[-1][0] - timed[0][0]
  cpu = timed[-1][1] - timed[0][1]
  return {'model': model, 'precision': precision, 'preset': FLAGS.preset,
          'batch_size': batch, 'timed_steps': steps,
          'examples_per_second': steps * batch / wall,
          'cpu_seconds_per_step': cpu / steps,
          'peak_rss_mib': resource.getrusage(
              resource.RUSAGE_SELF).ru_maxrss / 1024.}


def main(argv):
  del argv
  if FLAGS.one:
    model, precision = FLAGS.one.split(':')
    print('RESULT ' + json.dumps(_measure_one(model, precision)), flush=True)
    return
  rows = []
  for model in FLAGS.models or registry.zoo_names():
    for precision in FLAGS.precisions:
      cmd = [sys.executable, '-m', 'benchmarks.bench_train_step',
             f'--one={model}:{precision}', f'--preset={FLAGS.preset}',
             f'--steps={FLAGS.steps}', f'--warmup_steps={FLAGS.warmup_steps}']
      proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
      lines = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')]
      if proc.returncode or not lines:
        print(f'{model} {precision}: failed (exit {proc.returncode})\n'
              f'{proc.stderr[-2000:]}', file=sys.stderr)
        continue
      row = json.loads(lines[-1][len('RESULT '):])
      rows.append(row)
      print(f'{model:24s} {precision:15s} batch {row["batch_size"]:3d}  '
            f'{row["examples_per_second"]:6.1f} ex/s  '
            f'{row["cpu_seconds_per_step"]:5.2f} CPU-s/step  '
            f'peak RSS {row["peak_rss_mib"]:6.0f} MiB', flush=True)
  load = os.getloadavg()[0]
  print(f'load average at the end: {load:.1f}')
  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump({'rows': rows, 'load_average_1min': load}, f, indent=1)


if __name__ == '__main__':
  app.run(main)

"""Training speed and peak memory per model and precision, on the real trainer.

Each (model, precision) runs in its own process (so the peak resident memory
is that run's alone): trainers.train_lib.train at the given preset on the
embedded data for --steps steps into a temporary workdir, no evaluation. The
first --warmup_steps (tracing, pipeline start-up) are not timed. Reports
examples/s (wall), CPU-seconds per step (less sensitive to other load on a
shared machine), peak RSS in MiB (getrusage, the whole process: TF
runtime, model, optimizer, input pipeline) and the start-up: wall and CPU
seconds from calling the trainer to the end of the first step (resolving
the data, building the model and input pipeline, tracing the training
step, TensorFlow's graph optimisation, the first step itself).

  python -m benchmarks.bench_train_step [--models=c2f_volumetric,...]
      [--preset=cpu] [--precisions=float32,mixed_bfloat16] [--steps=40]
      [--warmup_steps=5] [--setting=LABEL:key=value,...]... [--rounds=1]
      [--out=FILE.json]

Settings compare config overrides side by side: each --setting is a label
and the overrides of trainers.run's --override (an empty list is the preset
itself), e.g. `--setting=preset: --setting='d16:depth_schedule=(1,16)'`.
With --rounds=N every (model, precision, setting) runs N times, the settings
alternating, so a drift of the shared machine's speed falls on all of them.

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
flags.DEFINE_multi_string(
    'setting', [], 'LABEL:OVERRIDES, a labelled set of config overrides '
    '(key=value,..., as trainers.run --override; empty: the preset). '
    'Repeatable; default: the preset alone, labelled "preset".')
flags.DEFINE_integer('rounds', 1, 'Times each (model, precision, setting) '
                     'runs, alternating.')
flags.DEFINE_string('out', None, 'Also write the rows as JSON here.')
flags.DEFINE_string('one', None, 'Internal: MODEL:PRECISION, run in this '
                    'process and print one JSON line.')
flags.DEFINE_string('overrides', '', 'Internal: the overrides of --one.')


def parse_setting(text: str) -> tuple[str, str]:
  """'LABEL:key=value,...' -> (label, overrides)."""
  label, sep, overrides = text.partition(':')
  if not sep or not label or '=' in label:
    raise ValueError(f'--setting={text!r}: expected LABEL:key=value,... '
                     f'(e.g. "d16:depth_schedule=(1,16)", or "preset:" for '
                     f'the preset unchanged)')
  return label, overrides


def _measure_one(model: str, precision: str) -> dict:
  """Trains `model` briefly in this process; returns speed and peak memory."""
  import keras
  from trainers import train_lib

  marks = []

  class Clock(keras.callbacks.Callback):

    def on_train_batch_end(self, batch, logs=None):
      marks.append((time.perf_counter(), time.process_time()))

  with tempfile.TemporaryDirectory() as workdir:
    start = (time.perf_counter(), time.process_time())
    result = train_lib.train(
        model, preset=FLAGS.preset, workdir=workdir, steps=FLAGS.steps,
        precision=precision, overrides=FLAGS.overrides or None,
        run_evaluation=False, baseline=False,
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
          'overrides': FLAGS.overrides,
          'batch_size': batch, 'timed_steps': steps,
          'examples_per_second': steps * batch / wall,
          'cpu_seconds_per_step': cpu / steps,
          'startup_seconds': marks[0][0] - start[0],
          'startup_cpu_seconds': marks[0][1] - start[1],
          'peak_rss_mib': resource.getrusage(
              resource.RUSAGE_SELF).ru_maxrss / 1024.}


def _run_one(model: str, precision: str, overrides: str) -> dict | None:
  """One measurement in a fresh process; None (and the reason on stderr)
  if it failed."""
  cmd = [sys.executable, '-m', 'benchmarks.bench_train_step',
         f'--one={model}:{precision}', f'--preset={FLAGS.preset}',
         f'--steps={FLAGS.steps}', f'--warmup_steps={FLAGS.warmup_steps}',
         f'--overrides={overrides}']
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
  lines = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')]
  if proc.returncode or not lines:
    print(f'{model} {precision} {overrides!r}: failed (exit '
          f'{proc.returncode})\n{proc.stderr[-2000:]}', file=sys.stderr)
    return None
  return json.loads(lines[-1][len('RESULT '):])


def main(argv):
  del argv
  if FLAGS.one:
    model, precision = FLAGS.one.split(':')
    print('RESULT ' + json.dumps(_measure_one(model, precision)), flush=True)
    return
  settings = [parse_setting(t) for t in FLAGS.setting] or [('preset', '')]
  rows = []
  for round_index in range(FLAGS.rounds):
    for model in FLAGS.models or registry.zoo_names():
      for precision in FLAGS.precisions:
        for label, overrides in settings:
          row = _run_one(model, precision, overrides)
          if row is None:
            continue
          row.update(setting=label, round=round_index)
          rows.append(row)
          print(f'{model:24s} {precision:15s} {label:12s} batch '
                f'{row["batch_size"]:3d}  '
                f'{row["examples_per_second"]:6.1f} ex/s  '
                f'{row["cpu_seconds_per_step"]:5.2f} CPU-s/step  '
                f'peak RSS {row["peak_rss_mib"]:6.0f} MiB  start-up '
                f'{row["startup_seconds"]:5.1f} s '
                f'({row["startup_cpu_seconds"]:5.1f} CPU-s)', flush=True)
  load = os.getloadavg()[0]
  print(f'load average at the end: {load:.1f}')
  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump({'rows': rows, 'load_average_1min': load}, f, indent=1)


if __name__ == '__main__':
  app.run(main)

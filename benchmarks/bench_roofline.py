"""How much of this CPU a training step uses: the roof, every model's step,
and where one step's time goes.

In one run, each measurement in its own process:

1. The roof: `tf.nn.conv2d` (3x3, batch 64) and a 2048^2 matmul in float32
   and bfloat16, in GFLOP/s (wall) with the cores they kept busy.
2. For every model's preset (default `cpu`) and each path: FLOPs per
   training example (the traced forward graph's float-op count, times 3 for
   forward and backward: the usual estimate), CPU-seconds and wall seconds
   per step, examples/s, cores used, GFLOP per CPU-second and its fraction of
   the bfloat16 conv roof. The step is the trainer's own compiled train
   function on one batch from the real input pipeline, repeated (so the
   input pipeline is not in it; it is measured apart, in 4).
   Paths: `fast` (this tree with its defaults: --precision=auto and the CPU
   thread set-up), `float32` (this tree in float32) and, with
   --baseline_tree=DIR, `baseline`: another checkout of the zoo (e.g. an
   older commit: `git worktree add ../zoo-base COMMIT`) run in float32 with
   TensorFlow's default threads, side by side in the same run.
3. For --profile_models, the TF profiler's breakdown of the fast path's step
   by op type (convolutions and matmuls, normalisation, elementwise, softmax
   and reductions, casts, data movement, XLA-compiled loss, optimizer),
   measured with one op at a time so the shares add up.
4. The input pipeline (parse, decode, crop, augment and the model's
   targets) in CPU-ms per example.

  python -m benchmarks.bench_roofline [--models=c2f_volumetric,...]
      [--preset=cpu] [--steps=12] [--warmup_steps=3]
      [--baseline_tree=DIR] [--profile_models=c2f_volumetric,lifting_deep]
      [--out=FILE.json]

Speeds drift on a shared machine: compare the paths' ratios within one run.
"""
from __future__ import annotations

import json
import os
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
flags.DEFINE_boolean('roof', True, 'Measure the roof (conv and matmul).')
flags.DEFINE_list('paths', ['fast', 'float32'], 'Paths of this tree: fast '
                  '(its defaults) and/or float32.')
flags.DEFINE_string('baseline_tree', None, 'Another checkout of the zoo to '
                    'run in float32 with default threads, side by side.')
flags.DEFINE_integer('steps', 12, 'Timed training steps per measurement.')
flags.DEFINE_integer('warmup_steps', 3, 'Untimed steps before (tracing).')
flags.DEFINE_list('profile_models', ['c2f_volumetric', 'lifting_deep'],
                  'Models whose fast step is profiled by op type.')
flags.DEFINE_integer('pipeline_batches', 20, 'Batches timed for the input '
                     'pipeline measurement.')
flags.DEFINE_string('out', None, 'Also write the results as JSON here.')
flags.DEFINE_string('one', None, 'Internal: one measurement in this process '
                    '(roof | step:MODEL:PATH | profile:MODEL | '
                    'pipeline:MODEL); prints one RESULT line.')

# ----------------------------------------------------------------------------
# Measurements (each runs in its own process, in the tree on sys.path)
# ----------------------------------------------------------------------------

def _timed(fn, reps):
  fn()
  wall, cpu = time.perf_counter(), time.process_time()
  for _ in range(reps):
    out = fn()
  _ = [getattr(t, 'numpy', lambda: t)() for t in
       (out if isinstance(out, (list, tuple)) else [out])]
  return time.perf_counter() - wall, time.process_time() - cpu


def _roof() -> dict:
  import tensorflow as tf
  rows = []
  for dtype in (tf.float32, tf.bfloat16):
    for size, cin, cout in ((32, 64, 64), (32, 128, 128), (16, 256, 256)):
      x = tf.cast(tf.random.normal([64, size, size, cin]), dtype)
      w = tf.cast(tf.random.normal([3, 3, cin, cout]), dtype)
      f = tf.function(lambda x, w: tf.nn.conv2d(x, w, 1, 'SAME'))
      wall, cpu = _timed(lambda: f(x, w), 10)
      flop = 2 * 64 * size * size * 9 * cin * cout * 10
      rows.append({'op': f'conv3x3 64x{size}x{size} {cin}->{cout}',
                   'dtype': dtype.name, 'gflop_per_s': flop / wall / 1e9,
                   'cores': cpu / wall})
    a = tf.cast(tf.random.normal([2048, 2048]), dtype)
    f = tf.function(lambda a: tf.matmul(a, a))
    wall, cpu = _timed(lambda: f(a), 10)
    rows.append({'op': 'matmul 2048^2', 'dtype': dtype.name,
                 'gflop_per_s': 2 * 2048 ** 3 * 10 / wall / 1e9,
                 'cores': cpu / wall})
  return {'roof': rows}


def _setup(model_name: str, path: str):
  """(model, compiled train function, iterator of one repeated batch,
  batch, config, data directory) as the trainer builds them."""
  import keras
  import tensorflow as tf
  from trainers import distribute, train_lib
  try:
    from trainers import run_config
    from zoo import weights as weights_lib
  except ImportError:
    # A --baseline_tree from before the split of trainers/run_config.py and
    # zoo/weights.py (e.g. cf746c7) has the same functions in train_lib.py
    # and trainers/checkpoints.py.
    from trainers import checkpoints as weights_lib
    run_config = train_lib
  try:
    from trainers import training_data
  except ImportError:  # a tree from before trainers/training_data.py
    training_data = train_lib
  if path == 'fast':
    distribute.configure_cpu_threads()
    precision, _ = distribute.resolve_precision('auto')
  else:
    precision = 'float32'
  entry = run_config.get_entry(model_name)
  config = run_config.make_config(entry, FLAGS.preset)
  distribute.set_precision(precision)
  data = training_data.resolve_data('synthetic', config, 0, progress=False)
  if entry.prepare is not None:
    config = entry.prepare(config, tempfile.mkdtemp(), data.directory)
  keras.utils.set_random_seed(0)
  model = weights_lib.build_model(entry, config)
  model.compile(optimizer=run_config.make_optimizer(config.train))
  model.optimizer.build(model.trainable_variables)
  train_lib._skip_keras_symbolic_build(model)  # pylint: disable=protected-access
  x, y = next(iter(training_data.train_dataset(data.directory, config,
                                               model, seed=0)))
  iterator = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
  model.make_train_function()
  train_function = model.train_function
  return (model, train_function, iterator, x, config, data.directory,
          precision)


def _forward_flops(model, x) -> float:
  """Float ops of one forward pass of the batch, from the traced graph."""
  import tensorflow as tf
  spec = tf.nest.map_structure(
      lambda t: tf.TensorSpec(t.shape, t.dtype), x)
  concrete = tf.function(lambda x: model(x, training=False)
                         ).get_concrete_function(spec)
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options['output'] = 'none'
  stats = tf.compat.v1.profiler.profile(graph=concrete.graph,
                                        options=options)
  return float(stats.total_float_ops)


def _step(model_name: str, path: str) -> dict:
  import tensorflow as tf
  model, train_function, iterator, x, config, _, precision = _setup(
      model_name, path)
  batch = config.train.batch_size
  for _ in range(FLAGS.warmup_steps):
    logs = train_function(iterator)
  float(logs['loss'])
  wall, cpu = time.perf_counter(), time.process_time()
  for _ in range(FLAGS.steps):
    logs = train_function(iterator)
  loss = float(logs['loss'])
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  flops = 3. * _forward_flops(model, x) / batch
  steps = FLAGS.steps
  return {'model': model_name, 'path': path, 'precision': precision,
          'batch_size': batch, 'loss': loss,
          'inter_op_threads':
              tf.config.threading.get_inter_op_parallelism_threads(),
          'train_gflop_per_example': flops / 1e9,
          'wall_seconds_per_step': wall / steps,
          'cpu_seconds_per_step': cpu / steps,
          'examples_per_second': steps * batch / wall,
          'cores': cpu / wall,
          'gflop_per_cpu_second': flops * batch * steps / cpu / 1e9}


def _profile(model_name: str) -> dict:
  import tensorflow as tf
  from benchmarks import profile_ops  # this tree only (not --baseline_tree)
  _, train_function, iterator, _, _, _, _ = _setup(model_name, 'fast')
  for _ in range(FLAGS.warmup_steps):
    logs = train_function(iterator)
  float(logs['loss'])
  logdir = tempfile.mkdtemp()
  steps = 3
  tf.profiler.experimental.start(logdir)
  for _ in range(steps):
    logs = train_function(iterator)
  float(logs['loss'])
  tf.profiler.experimental.stop()
  by_category, by_op = profile_ops.summarise(logdir, steps)
  return {'model': model_name, 'ms_per_step_by_category': by_category,
          'top_ops_ms_per_step': by_op}


def _pipeline(model_name: str) -> dict:
  import tensorflow as tf
  from trainers import distribute, run_config, training_data
  distribute.configure_cpu_threads()
  entry = run_config.get_entry(model_name)
  config = run_config.make_config(entry, FLAGS.preset)
  data = training_data.resolve_data('synthetic', config, 0, progress=False)
  if entry.prepare is not None:
    config = entry.prepare(config, tempfile.mkdtemp(), data.directory)
  model = entry.build(config)
  iterator = iter(training_data.train_dataset(data.directory, config,
                                              model, seed=0))
  for _ in range(3):
    next(iterator)
  n = FLAGS.pipeline_batches
  wall, cpu = _timed(lambda: tf.nest.flatten(next(iterator))[0], n - 1)
  batch = config.train.batch_size
  return {'model': model_name, 'batch_size': batch,
          'cpu_ms_per_example': cpu / (n * batch) * 1e3,
          'examples_per_second': n * batch / wall}


# ----------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------

def _run_child(what: str, tree: str | None = None) -> dict | None:
  tree = os.path.abspath(tree or os.getcwd())
  env = dict(os.environ, PYTHONPATH=tree)
  cmd = [sys.executable, os.path.abspath(__file__), f'--one={what}',
         f'--preset={FLAGS.preset}', f'--steps={FLAGS.steps}',
         f'--warmup_steps={FLAGS.warmup_steps}',
         f'--pipeline_batches={FLAGS.pipeline_batches}']
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tree,
                        env=env, check=False)
  lines = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')]
  if proc.returncode or not lines:
    print(f'{what}: failed (exit {proc.returncode})\n{proc.stderr[-3000:]}',
          file=sys.stderr, flush=True)
    return None
  return json.loads(lines[-1][len('RESULT '):])


def _one(what: str) -> dict:
  kind, _, rest = what.partition(':')
  if kind == 'roof':
    return _roof()
  if kind == 'step':
    model, path = rest.split(':')
    return _step(model, path)
  if kind == 'profile':
    return _profile(rest)
  if kind == 'pipeline':
    return _pipeline(rest)
  raise ValueError(f'--one: unknown measurement {what!r}')


def main(argv):
  del argv
  if FLAGS.one:
    print('RESULT ' + json.dumps(_one(FLAGS.one)), flush=True)
    return
  results = {'load_average_1min_start': os.getloadavg()[0]}
  roof = (_run_child('roof') if FLAGS.roof else None) or {'roof': []}
  results['roof'] = roof['roof']
  print('Roof (one op, wall):')
  for row in results['roof']:
    print(f'  {row["op"]:32s} {row["dtype"]:9s} '
          f'{row["gflop_per_s"]:7.0f} GFLOP/s  {row["cores"]:4.2f} cores',
          flush=True)
  bf16_roof = max((r['gflop_per_s'] / max(r['cores'], 1e-9)
                   for r in results['roof'] if r['dtype'] == 'bfloat16'
                   and r['op'].startswith('conv')), default=float('nan'))
  results['bf16_conv_roof_gflop_per_cpu_second'] = bf16_roof
  print(f'  bfloat16 conv roof per CPU-second: {bf16_roof:.0f} GFLOP')

  models = FLAGS.models or registry.zoo_names()
  steps = []
  print('\nTraining step (one in-memory batch, the compiled train function):')
  for model in models:
    plan = [(path, None) for path in FLAGS.paths]
    if FLAGS.baseline_tree:
      plan.append(('baseline', FLAGS.baseline_tree))
    for path, tree in plan:
      row = _run_child(f'step:{model}:{"float32" if path == "baseline" else path}',
                       tree)
      if row is None:
        continue
      row['path'] = path
      row['roof_fraction'] = row['gflop_per_cpu_second'] / bf16_roof
      steps.append(row)
      print(f'  {model:22s} {path:8s} {row["precision"]:14s} batch '
            f'{row["batch_size"]:3d}  {row["train_gflop_per_example"]:6.2f} '
            f'GFLOP/ex  {row["cpu_seconds_per_step"]:6.3f} CPU-s  '
            f'{row["wall_seconds_per_step"]:6.3f} s/step  '
            f'{row["examples_per_second"]:6.1f} ex/s  '
            f'{row["cores"]:4.2f} cores  '
            f'{row["gflop_per_cpu_second"]:5.0f} GFLOP/CPU-s '
            f'({100 * row["roof_fraction"]:4.1f} % of roof)', flush=True)
  results['steps'] = steps
  by_key = {(r['model'], r['path']): r for r in steps}
  reference = 'baseline' if FLAGS.baseline_tree else 'float32'
  speedups = {}
  for model in models:
    fast, ref = by_key.get((model, 'fast')), by_key.get((model, reference))
    if fast and ref:
      speedups[model] = (fast['examples_per_second'] /
                         ref['examples_per_second'])
  if speedups:
    print(f'\nSpeed-up of the fast path over {reference} (examples/s):')
    for model, ratio in speedups.items():
      print(f'  {model:22s} {ratio:5.2f}x')
  results['speedup_reference'] = reference
  results['speedups'] = speedups

  profiles = []
  for model in FLAGS.profile_models:
    row = _run_child(f'profile:{model}')
    if row is None:
      continue
    profiles.append(row)
    total = sum(row['ms_per_step_by_category'].values())
    print(f'\nWhere the fast step of {model} goes (profiler, one op at a '
          f'time; {total:.0f} ms of op time per step):')
    for name, ms in sorted(row['ms_per_step_by_category'].items(),
                           key=lambda kv: -kv[1]):
      print(f'  {name:28s} {ms:7.1f} ms  {100 * ms / total:5.1f} %')
  results['profiles'] = profiles

  pipelines = []
  for model in FLAGS.profile_models:
    row = _run_child(f'pipeline:{model}')
    if row is None:
      continue
    pipelines.append(row)
    print(f'\nInput pipeline of {model} (with its targets): '
          f'{row["cpu_ms_per_example"]:.2f} CPU-ms per example, '
          f'{row["examples_per_second"]:.0f} examples/s alone')
  results['pipelines'] = pipelines
  results['load_average_1min_end'] = os.getloadavg()[0]
  print(f'\nload average: {results["load_average_1min_start"]:.1f} at the '
        f'start, {results["load_average_1min_end"]:.1f} at the end')
  if FLAGS.out:
    from zoo import fileio
    fileio.atomic_write_text(FLAGS.out, json.dumps(results, indent=1))


if __name__ == '__main__':
  app.run(main)

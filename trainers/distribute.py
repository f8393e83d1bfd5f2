"""Device, strategy and precision set-up for training (tf.distribute, mixed precision).

Why a module of its own: logical CPU devices must be configured before
TensorFlow initialises its runtime, so `configure_devices` is the first thing
`python -m trainers.run` does, and the strategy and precision choices are
validated here once, with messages that list the valid choices.

Strategies:
- `default`: TensorFlow's default strategy (one device: the GPU if any).
- `mirrored`: `tf.distribute.MirroredStrategy` over all GPUs; on a CPU-only
  machine the CPU is split into `CPU_REPLICAS` logical devices so two replicas
  (and the all-reduce) run here exactly as they would on two GPUs.
- `multi_worker`: `tf.distribute.MultiWorkerMirroredStrategy` configured from
  the `TF_CONFIG` environment variable (one process per worker).
- `auto`: `mirrored` when more than one GPU is visible, else `default`.

Precision: `auto` (the default), `float32`, `mixed_bfloat16` or
`mixed_float16` (a Keras global policy; Keras wraps the optimizer in a
LossScaleOptimizer for float16). `auto` picks mixed_float16 when a GPU is
visible, mixed_bfloat16 on a CPU with bfloat16 matrix instructions (AMX-BF16
or AVX512-BF16 in /proc/cpuinfo: oneDNN runs bfloat16 convolutions several
times faster than float32 there; BENCHMARKS.md, "Training speed"), else
float32, and says which and why (`resolve_precision`). Models
keep their outputs and losses in float32. On a CPU-only machine float16 runs,
but oneDNN has no float16 kernels without AVX-512-FP16 and TensorFlow falls
back to slow Eigen ones (measured here: a small conv net trained about 12x
slower than float32); we run it as asked, so the float16 code path (loss
scaling included) can be exercised on CPU, and log a warning that recommends
`mixed_bfloat16` for speed.

Threads (`configure_cpu_threads`): on a CPU-only machine TensorFlow runs one
op at a time (inter-op parallelism 1) and gives each op every core
(intra-op). By default it would run two ops side by side that each try to
use both cores; a training step of these models then kept about one core
busy, against about 1.7 with one op at a time (BENCHMARKS.md). The
`TF_NUM_INTEROP_THREADS` environment variable, when set, wins.
"""
from __future__ import annotations

import json
import os

from absl import logging
import keras
import tensorflow as tf

from zoo import host

STRATEGIES = ('auto', 'default', 'mirrored', 'multi_worker')
PRECISIONS = ('auto', 'float32', 'mixed_float16', 'mixed_bfloat16')
CPU_REPLICAS = 2
# CPU flags (as /proc/cpuinfo names them) of bfloat16 matrix instructions.
BF16_CPU_FLAGS = ('amx_bf16', 'avx512_bf16')


def validate_choice(kind: str, value: str, choices) -> str:
  """Raises ValueError naming `kind` and the valid choices."""
  if value not in choices:
    raise ValueError(f'unknown {kind} {value!r}; valid choices are '
                     f'{", ".join(choices)}')
  return value


def _gpus() -> list:
  # Listing physical devices does not initialise the runtime.
  return tf.config.list_physical_devices('GPU')


def cpu_flags(path: str = '/proc/cpuinfo') -> frozenset[str]:
  """The CPU's feature flags (empty when the file is unreadable)."""
  try:
    with open(path, encoding='utf-8', errors='replace') as f:
      for line in f:
        if line.startswith('flags'):
          return frozenset(line.split(':', 1)[-1].split())
  except OSError:
    pass
  return frozenset()


def resolve_precision(precision: str, *, gpus=None,
                      flags: frozenset[str] | None = None) -> tuple[str, str]:
  """(Keras policy name, why) for a --precision choice; 'auto' decides.

  `gpus` and `flags` default to this machine's (tests pass their own).
  """
  validate_choice('precision', precision, PRECISIONS)
  if precision != 'auto':
    return precision, 'as requested'
  gpus = _gpus() if gpus is None else gpus
  if gpus:
    return 'mixed_float16', f'{len(gpus)} GPU(s) visible'
  flags = cpu_flags() if flags is None else flags
  found = [flag for flag in BF16_CPU_FLAGS if flag in flags]
  if found:
    return 'mixed_bfloat16', (f'no GPU; the CPU has {", ".join(found)}, so '
                              'bfloat16 convolutions and matrix products run '
                              'faster than float32')
  return 'float32', ('no GPU and no bfloat16 instructions in the CPU flags '
                     f'({" or ".join(BF16_CPU_FLAGS)})')


def configure_cpu_threads() -> bool:
  """On a CPU-only machine, one op at a time with every core inside it.

  Must run before TensorFlow initialises its runtime to take effect;
  returns whether it did (False with GPUs, with TF_NUM_INTEROP_THREADS set,
  or once the runtime is up).
  """
  if _gpus() or os.environ.get('TF_NUM_INTEROP_THREADS'):
    return False
  if tf.config.threading.get_inter_op_parallelism_threads() == 1:
    return True
  try:
    tf.config.threading.set_inter_op_parallelism_threads(1)
  except RuntimeError:
    logging.debug('TensorFlow is already initialised; inter-op threads '
                  'left at %d.',
                  tf.config.threading.get_inter_op_parallelism_threads())
    return False
  return True


def input_threads(gpus=None) -> int | None:
  """Threads of the training input pipeline's private pool, or None (tf.data's
  default, a pool as large as the machine).

  On a CPU-only machine the training step already spreads every op over all
  cores (configure_cpu_threads), so an input pipeline with a thread per core
  on top oversubscribes them: on 2 cores, c2f_volumetric's `cpu` preset
  trained at 167 examples/s with tf.data's default pool against 184 with a
  pool of one thread (BENCHMARKS.md, "Training speed"). Half the cores, at
  least one; with GPUs the pipeline keeps tf.data's default.
  """
  gpus = _gpus() if gpus is None else gpus
  if gpus:
    return None
  return max(1, host.available_cores() // 2)


def configure_devices(strategy: str, cpu_replicas: int = CPU_REPLICAS) -> None:
  """Splits the CPU into logical devices when `mirrored` runs without GPUs.

  Must run before TensorFlow initialises its devices (before the first op);
  does nothing for other strategies or when GPUs exist. If the runtime is
  already initialised with enough logical CPUs, that is fine too.
  """
  validate_choice('strategy', strategy, STRATEGIES)
  if strategy != 'mirrored' or _gpus():
    return
  cpus = tf.config.list_physical_devices('CPU')
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
  except RuntimeError:
    # Already initialised: acceptable only if the split is already there.
    have = len(tf.config.list_logical_devices('CPU'))
    if have < cpu_replicas:
      raise RuntimeError(
          f'--strategy=mirrored on a CPU-only machine needs {cpu_replicas} '
          f'logical CPU devices, but TensorFlow was initialised with {have}. '
          'Call trainers.distribute.configure_devices("mirrored") before any '
          'TensorFlow op runs (python -m trainers.run does so).') from None


def make_strategy(name: str) -> tf.distribute.Strategy:
  """Builds the tf.distribute strategy named `name` (see module docstring)."""
  validate_choice('strategy', name, STRATEGIES)
  gpus = _gpus()
  if name == 'auto':
    name = 'mirrored' if len(gpus) > 1 else 'default'
  if name == 'default':
    return tf.distribute.get_strategy()
  if name == 'mirrored':
    if gpus:
      return tf.distribute.MirroredStrategy()
    configure_devices('mirrored')
    devices = [d.name for d in tf.config.list_logical_devices('CPU')]
    return tf.distribute.MirroredStrategy(devices=devices[:CPU_REPLICAS])
  # multi_worker
  if not os.environ.get('TF_CONFIG'):
    raise ValueError(
        '--strategy=multi_worker reads the cluster from the TF_CONFIG '
        'environment variable, which is not set; e.g. TF_CONFIG=\'{"cluster": '
        '{"worker": ["host1:12345", "host2:12345"]}, "task": {"type": '
        '"worker", "index": 0}}\' on the first machine')
  return tf.distribute.MultiWorkerMirroredStrategy()


def strategy_name(strategy: tf.distribute.Strategy) -> str:
  """The --strategy choice a strategy object corresponds to."""
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return 'multi_worker'
  if isinstance(strategy, tf.distribute.MirroredStrategy):
    return 'mirrored'
  if strategy is tf.distribute.get_strategy() or \
      strategy.num_replicas_in_sync == 1:
    return 'default'
  return type(strategy).__name__


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True for the process that writes checkpoints, logs and results."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.task_type:
    return True
  if resolver.task_type == 'chief':
    return True
  cluster = resolver.cluster_spec().as_dict()
  return resolver.task_type == 'worker' and resolver.task_id == 0 and \
      'chief' not in cluster


def task_name(strategy: tf.distribute.Strategy) -> str:
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.task_type:
    return 'local'
  return f'{resolver.task_type}_{resolver.task_id}'


def input_pipelines(strategy: tf.distribute.Strategy) -> tuple[int, int]:
  """(number of input pipelines, this process's index) for sharding the input.

  One pipeline per worker process under MultiWorkerMirroredStrategy (chief
  first, then the workers in order); (1, 0) otherwise (a single process feeds
  all its local replicas).
  """
  resolver = getattr(strategy, 'cluster_resolver', None)
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or \
      resolver is None or not resolver.task_type:
    return 1, 0
  cluster = resolver.cluster_spec().as_dict()
  chiefs = len(cluster.get('chief', ()))
  total = chiefs + len(cluster.get('worker', ()))
  if resolver.task_type == 'chief':
    return total, 0
  if resolver.task_type != 'worker':
    raise ValueError(f'task type {resolver.task_type!r} does not train; '
                     'expected chief or worker')
  return total, chiefs + int(resolver.task_id)


def check_batch_size(batch_size: int, strategy: tf.distribute.Strategy) -> int:
  """Returns the per-replica batch; raises if `batch_size` does not divide."""
  replicas = strategy.num_replicas_in_sync
  if batch_size < 1 or batch_size % replicas:
    raise ValueError(
        f'batch size {batch_size} is not divisible by the {replicas} replicas '
        f'of the strategy; choose a multiple of {replicas} (the batch size is '
        'global: each replica gets batch_size / replicas examples)')
  return batch_size // replicas


def set_precision(precision: str) -> str:
  """Sets the Keras global dtype policy; returns the previous policy name.

  `precision` is a policy name ('auto' is resolved by `resolve_precision`
  first).
  """
  validate_choice('precision', precision, PRECISIONS[1:])
  previous = keras.mixed_precision.global_policy().name
  if precision == 'mixed_float16' and not _gpus():
    logging.warning(
        'mixed_float16 on a CPU-only machine: it runs (with loss scaling), but '
        'oneDNN lacks float16 kernels here and TensorFlow falls back to slow '
        'Eigen ones (a small conv net measured ~12x slower than float32). Use '
        '--precision=mixed_bfloat16 for speed on CPU; mixed_float16 is meant '
        'for GPUs.')
  keras.mixed_precision.set_global_policy(precision)
  return previous


def tf_config_summary() -> str:
  """A one-line description of TF_CONFIG for logs ('' when unset)."""
  raw = os.environ.get('TF_CONFIG')
  if not raw:
    return ''
  try:
    cfg = json.loads(raw)
  except json.JSONDecodeError as e:
    raise ValueError(f'TF_CONFIG is not valid JSON: {e}') from None
  task = cfg.get('task', {})
  return (f'cluster {cfg.get("cluster")}, task {task.get("type")}:'
          f'{task.get("index")}')

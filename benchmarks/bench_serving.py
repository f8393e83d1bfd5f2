"""Serving benchmark: SavedModel vs Keras throughput, gRPC latency under load.

  python -m benchmarks.bench_serving [--models=a,b] [--preset=cpu]
      [--checkpoints=DIR] [--batch_sizes=1,32] [--seconds=5]
      [--image_hw=480,640] [--clients=8] [--requests_per_client=25]
      [--grpc_signature=serving_bytes] [--out=FILE.json]

For every model (default: all registered) it
1. builds the model (`--preset`, random weights; or loads trained weights from
   `--checkpoints/NAME`, a training workdir) and exports it (export.saved_model)
   to a temporary BASE;
2. measures end-to-end inference throughput (images/s: in-graph perspective
   crop + network + decoding + mapping back, from full uint8 images of
   --image_hw with a person box) at each batch size for
   - `saved_model`: the loaded SavedModel's `serving_default` signature,
   - `keras_function`: the same function (zoo.inference.predict_in_image) on the
     Keras model, wrapped in tf.function, in the same process,
   - `keras_eager`: the same, run eagerly (what a notebook user gets);
3. starts `python -m export.serve` on BASE in a subprocess and sends
   `--requests_per_client` requests (batch 1) from each of `--clients`
   concurrent gRPC clients (threads with their own channels), reporting
   latency p50 / p99 (ms) and the aggregate requests/s.

Each timing repeats calls for about `--seconds` after warm-up calls and
reports the median rate over repeats. The machine's load matters: state it
with the figures. Prints a Markdown table and writes JSON (`--out`).
"""
from __future__ import annotations

import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
from typing import Any, Callable, Sequence

from absl import flags
import numpy as np

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import tensorflow as tf  # noqa: E402

from benchmarks import server_process  # noqa: E402
from export import client as client_lib  # noqa: E402
from export import saved_model  # noqa: E402
from export import warmup  # noqa: E402
from zoo import cli  # noqa: E402
from zoo import fileio  # noqa: E402
from zoo import inference  # noqa: E402
from zoo import registry  # noqa: E402
from zoo import weights as weights_lib  # noqa: E402
from zoo.signatures import BYTES_SIGNATURE  # noqa: E402
from zoo.signatures import DEFAULT_SIGNATURE  # noqa: E402


def _rate(fn: Callable[[], Any], items: int, seconds: float,
          warmup: int = 2, min_repeats: int = 3) -> dict[str, float]:
  """Median items/s of repeated calls of fn (each call handles `items`)."""
  for _ in range(warmup):
    fn()
  times = []
  start = time.perf_counter()
  while len(times) < min_repeats or time.perf_counter() - start < seconds:
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  median = statistics.median(times)
  return {'items_per_s': items / median, 'ms_per_call': 1e3 * median,
          'repeats': len(times)}


def _load_or_build(name: str, preset: str, checkpoints: str | None):
  if checkpoints:
    return weights_lib.load_model(name, os.path.join(checkpoints, name))
  entry = registry.get(name)
  config = entry.config(preset)
  if entry.prepare is not None:
    config = entry.prepare(config, tempfile.mkdtemp(prefix='bench_prep_'),
                           None)
  return weights_lib.build_model(entry, config)


def bench_inference(model, export_dir: str, batch_sizes: Sequence[int],
                    image_hw: tuple[int, int], seconds: float
                    ) -> dict[str, dict[str, Any]]:
  loaded = tf.saved_model.load(export_dir)
  signature = loaded.signatures[DEFAULT_SIGNATURE]

  @tf.function(reduce_retracing=True)
  def keras_function(images, boxes, intrinsics):
    return inference.predict_in_image(model, images, boxes, intrinsics)

  results = {}
  for batch in batch_sizes:
    req = warmup.image_request(batch, *image_hw, seed=batch)
    tensors = {k: tf.constant(v) for k, v in req.items()}
    args = (tensors['images'], tensors['boxes'], tensors['intrinsics'])
    results[f'batch{batch}'] = {
        'saved_model': _rate(lambda: signature(**tensors)['poses3d_cam_mm']
                             .numpy(), batch, seconds),
        'keras_function': _rate(lambda: keras_function(*args)[
            'poses3d_cam_mm'].numpy(), batch, seconds),
        'keras_eager': _rate(lambda: inference.predict_in_image(
            model, *args)['poses3d_cam_mm'].numpy(), batch, seconds,
                             warmup=1, min_repeats=2),
    }
  return results


def bench_grpc(target: str, name: str, signature: str, image_hw, clients: int,
               requests_per_client: int) -> dict[str, float]:
  """Latency of batch-1 requests from `clients` concurrent clients."""
  if signature == BYTES_SIGNATURE:
    inputs = warmup.bytes_request([image_hw], seed=0, formats=('jpeg',))
  else:
    inputs = warmup.image_request(1, *image_hw, seed=0)
  latencies: list[float] = []
  lock = threading.Lock()
  errors: list[BaseException] = []

  def worker():
    try:
      with client_lib.GrpcClient(target, timeout=300.) as c:
        request = c.predict_request(name, inputs, signature_name=signature)
        c.predict_raw(request)  # connect + warm
        own = []
        for _ in range(requests_per_client):
          t = time.perf_counter()
          c.predict_raw(request)
          own.append(time.perf_counter() - t)
      with lock:
        latencies.extend(own)
    except BaseException as e:  # reported below
      errors.append(e)

  threads = [threading.Thread(target=worker) for _ in range(clients)]
  start = time.perf_counter()
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  wall = time.perf_counter() - start
  if errors:
    raise RuntimeError(f'gRPC benchmark of {name} failed: {errors[0]!r}')
  ms = np.array(latencies) * 1e3
  return {'p50_ms': float(np.percentile(ms, 50)),
          'p99_ms': float(np.percentile(ms, 99)),
          'mean_ms': float(ms.mean()), 'requests': int(ms.size),
          'requests_per_s': float(ms.size / wall), 'clients': clients,
          'signature': signature}


def markdown(results: dict[str, Any]) -> str:
  meta = results['meta']
  batch_keys = [f'batch{b}' for b in meta['batch_sizes']]
  lines = [
      f'Images {meta["image_hw"][0]}x{meta["image_hw"][1]} px, preset '
      f'{meta["preset"]}, {meta["cpu_count"]} CPUs, load average at start '
      f'{meta["load_average"]}, TF {meta["tensorflow"]}.', '',
      '| model | ' + ' | '.join(
          f'{k} SavedModel img/s | {k} Keras tf.function img/s | {k} Keras '
          'eager img/s' for k in batch_keys) + ' | gRPC p50 ms | gRPC p99 ms '
      '| gRPC req/s |',
      '|---' * (1 + 3 * len(batch_keys) + 3) + '|']
  for name, r in results['models'].items():
    cells = []
    for k in batch_keys:
      b = r['inference'][k]
      cells += [f'{b["saved_model"]["items_per_s"]:.1f}',
                f'{b["keras_function"]["items_per_s"]:.1f}',
                f'{b["keras_eager"]["items_per_s"]:.1f}']
    g = r.get('grpc')
    cells += [f'{g["p50_ms"]:.1f}', f'{g["p99_ms"]:.1f}',
              f'{g["requests_per_s"]:.1f}'] if g else ['-'] * 3
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


PROGRAM = 'python -m benchmarks.bench_serving'


def define_flags(flag_values: flags.FlagValues) -> None:
  """The command line's flags (zoo.cli: defined only to run the program)."""
  fv = {'flag_values': flag_values}
  flags.DEFINE_list('models', None, 'registered models (default: every zoo '
                    'model)', **fv)
  flags.DEFINE_string('preset', 'cpu', 'preset of the models built with '
                      'random weights', **fv)
  flags.DEFINE_string('checkpoints', None, 'DIR with DIR/NAME workdirs of '
                      'trained models (default: random weights)', **fv)
  flags.DEFINE_list('batch_sizes', ['1', '32'], 'inference batch sizes', **fv)
  flags.DEFINE_float('seconds', 5., 'timed seconds per measurement', **fv)
  flags.DEFINE_list('image_hw', ['480', '640'], 'request image height,width',
                    **fv)
  flags.DEFINE_integer('clients', 8, 'concurrent gRPC clients', **fv)
  flags.DEFINE_integer('requests_per_client', 25, 'requests per client',
                       **fv)
  flags.DEFINE_enum('grpc_signature', BYTES_SIGNATURE,
                    [BYTES_SIGNATURE, DEFAULT_SIGNATURE], 'signature the gRPC '
                    'clients call', **fv)
  flags.DEFINE_boolean('grpc', True, 'measure gRPC latency (--nogrpc: skip)',
                       **fv)
  flags.DEFINE_string('out', None, 'write the results as JSON here', **fv)


def run(args: flags.FlagValues, argv: Sequence[str] = ()) -> int:
  """Runs the benchmark; prints the Markdown table."""
  names = args.models or registry.zoo_names()
  batch_sizes = [int(b) for b in args.batch_sizes]
  image_hw = tuple(int(v) for v in args.image_hw)
  results: dict[str, Any] = {'meta': {
      'preset': 'trained (' + args.checkpoints + ')' if args.checkpoints
      else args.preset, 'batch_sizes': batch_sizes, 'image_hw': image_hw,
      'seconds': args.seconds, 'cpu_count': os.cpu_count(),
      'load_average': [round(v, 2) for v in os.getloadavg()],
      'tensorflow': tf.__version__, 'python': platform.python_version(),
      'gpus': [d.name for d in tf.config.list_physical_devices('GPU')],
      'command': ' '.join([PROGRAM, *argv])},
      'models': {}}
  base = tempfile.mkdtemp(prefix='bench_serving_')
  try:
    for name in names:
      print(f'[{name}] building and exporting ...', flush=True)
      model = _load_or_build(name, args.preset, args.checkpoints)
      export_dir = saved_model.export_model(model, base, name, verify=False)
      print(f'[{name}] inference throughput ...', flush=True)
      results['models'][name] = {
          'inference': bench_inference(model, export_dir, batch_sizes,
                                       image_hw, args.seconds)}
    if args.grpc:
      process, ports = server_process.start_server(
          base, os.path.join(base, 'server.log'))
      port = ports['grpc']
      try:
        for name in names:
          print(f'[{name}] gRPC latency, {args.clients} clients ...',
                flush=True)
          results['models'][name]['grpc'] = bench_grpc(
              f'127.0.0.1:{port}', name, args.grpc_signature, image_hw,
              args.clients, args.requests_per_client)
      finally:
        process.terminate()
        process.wait(timeout=60)
  finally:
    shutil.rmtree(base, ignore_errors=True)
  table = markdown(results)
  print(table)
  if args.out:
    fileio.atomic_write_json(args.out, dict(results, markdown=table),
                             sort_keys=False)
  return 0


def main(argv: Sequence[str]) -> int:
  """The program on `argv` (flags only), in this process."""
  return cli.call(define_flags, run, argv, PROGRAM)


if __name__ == '__main__':
  cli.run_program(define_flags, run)

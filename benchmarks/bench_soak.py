"""Soak benchmark of export.serve: concurrent gRPC + REST clients for a while,
with a hot version swap in the middle.

  python -m benchmarks.bench_soak [--model=c2f_volumetric] [--workdir=DIR]
      [--clients=8] [--seconds=60] [--swap_at=0.5] [--image_hw=240,320]
      [--out=FILE.json]

Exports the model (default: its bundled checkpoint) to a temporary BASE,
starts `python -m export.serve` on loopback in a subprocess and runs
`--clients` client threads (half gRPC, half REST; gRPC alternates
serving_default and serving_bytes requests, batch 1, an image of --image_hw)
for `--seconds`. At `--swap_at` of the time a copy of version 1 appears as
version 2 (staged, then renamed in), so the server loads it and retires
version 1 while requests run. Reports per protocol: requests, errors,
latency p50 / p99 (ms), requests/s; the server's peak resident memory
(VmHWM), whether it is still alive, and the versions that answered. The
machine's load matters: state it with the figures.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import threading
import time

from absl import app
from absl import flags
from tqdm import tqdm

from benchmarks import server_process
from export import client as client_lib
from export import saved_model
from export import warmup
from zoo import fileio
from zoo import manifest as manifest_lib
from zoo.signatures import BYTES_SIGNATURE
from zoo.signatures import DEFAULT_SIGNATURE

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """The command line's flags, defined only when run as a program (tests
  import the helpers below next to other modules' flags)."""
  flags.DEFINE_string('model', 'c2f_volumetric', 'registered model name')
  flags.DEFINE_string('workdir', None, 'weights to export (default: the '
                      'bundled checkpoint zoo/checkpoints/MODEL)')
  flags.DEFINE_integer('clients', 8, 'client threads (half gRPC, half REST)')
  flags.DEFINE_float('seconds', 60., 'how long the clients send requests')
  flags.DEFINE_float('swap_at', 0.5, 'fraction of --seconds at which version '
                     '2 appears (a value >= 1: no swap)')
  flags.DEFINE_list('image_hw', ['240', '320'], 'request image height,width')
  flags.DEFINE_string('out', None, 'write the results here as JSON')


def percentile(values: list[float], q: float) -> float:
  """The q-th percentile (0..100), linear interpolation; NaN if empty."""
  if not values:
    return float('nan')
  ordered = sorted(values)
  position = (len(ordered) - 1) * q / 100.
  low = int(position)
  high = min(low + 1, len(ordered) - 1)
  return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def peak_rss_mb(pid: int) -> float | None:
  """Peak resident set size (VmHWM) of a live process, MiB (Linux)."""
  try:
    with open(f'/proc/{pid}/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) / 1024.
  except OSError:
    return None
  return None


class Tally:
  """Latencies, errors and answering versions of one protocol."""

  def __init__(self):
    self.lock = threading.Lock()
    self.latencies_ms: list[float] = []
    self.errors: list[str] = []
    self.versions: dict[int, int] = {}

  def ok(self, seconds: float, version: int | None = None) -> None:
    with self.lock:
      self.latencies_ms.append(1e3 * seconds)
      if version is not None:
        self.versions[version] = self.versions.get(version, 0) + 1

  def error(self, error: Exception) -> None:
    with self.lock:
      self.errors.append(repr(error)[:300])

  def summary(self, seconds: float) -> dict:
    with self.lock:
      return {'requests': len(self.latencies_ms), 'errors': len(self.errors),
              'first_errors': self.errors[:3],
              'p50_ms': percentile(self.latencies_ms, 50),
              'p99_ms': percentile(self.latencies_ms, 99),
              'mean_ms': (statistics.fmean(self.latencies_ms)
                          if self.latencies_ms else float('nan')),
              'requests_per_s': len(self.latencies_ms) / seconds,
              'versions': dict(self.versions)}


def soak(model: str, workdir: str | None, clients: int, seconds: float,
         swap_at: float, image_hw: tuple[int, int]) -> dict:
  root = tempfile.mkdtemp(prefix='bench_soak_')
  try:
    base = os.path.join(root, 'models')
    checkpoint = workdir or manifest_lib.bundled_checkpoint(model)
    saved_model.export_checkpoint(model, checkpoint, base, verify=False)
    model_dir = os.path.join(base, model)
    process, ports = server_process.start_server(
        model_dir, os.path.join(root, 'server.log'), rest_api_port=-1,
        poll_seconds=0.5)
    image = warmup.image_request(1, *image_hw, seed=0)
    encoded = warmup.bytes_request([image_hw], seed=0, formats=('jpeg',))
    tallies = {'grpc': Tally(), 'rest': Tally()}
    stop = threading.Event()

    def grpc_client(i: int):
      with client_lib.GrpcClient(f'127.0.0.1:{ports["grpc"]}',
                                 timeout=120.) as client:
        n = i
        while not stop.is_set():
          bytes_request = n % 2 == 1
          n += 1
          request = client.predict_request(
              model, encoded if bytes_request else image,
              signature_name=BYTES_SIGNATURE if bytes_request else
              DEFAULT_SIGNATURE)
          start = time.perf_counter()
          try:
            reply = client.predict_raw(request)
            tallies['grpc'].ok(time.perf_counter() - start,
                               reply.model_spec.version.value)
          except Exception as e:  # noqa: BLE001  (every failure counts)
            tallies['grpc'].error(e)
            if process.poll() is not None:
              return

    def rest_client(_: int):
      rest = client_lib.RestClient(f'http://127.0.0.1:{ports["rest"]}',
                                   timeout=120.)
      while not stop.is_set():
        start = time.perf_counter()
        try:
          rest.predict(model, image)
          tallies['rest'].ok(time.perf_counter() - start)
        except Exception as e:  # noqa: BLE001
          tallies['rest'].error(e)
          if process.poll() is not None:
            return

    threads = [threading.Thread(target=grpc_client if i % 2 == 0 else
                                rest_client, args=(i,), daemon=True)
               for i in range(clients)]
    started = time.time()
    for thread in threads:
      thread.start()
    swapped = None
    with tqdm(total=int(seconds), unit='s', desc='soak') as bar:
      while time.time() - started < seconds and process.poll() is None:
        time.sleep(1.)
        bar.update(1)
        if swapped is None and time.time() - started >= swap_at * seconds:
          staging = os.path.join(base, '.staging-2')
          shutil.copytree(os.path.join(model_dir, '1'), staging)
          os.rename(staging, os.path.join(model_dir, '2'))
          swapped = round(time.time() - started, 1)
    stop.set()
    for thread in threads:
      thread.join(timeout=180)
    elapsed = time.time() - started
    alive = process.poll() is None
    result = {
        'model': model, 'clients': clients, 'seconds': round(elapsed, 1),
        'image_hw': list(image_hw), 'swap_at_s': swapped,
        'server_alive': alive, 'server_exit_code': process.poll(),
        'server_peak_rss_mb': peak_rss_mb(process.pid) if alive else None,
        'grpc': tallies['grpc'].summary(elapsed),
        'rest': tallies['rest'].summary(elapsed)}
    process.terminate()
    process.wait(timeout=60)
    return result
  finally:
    shutil.rmtree(root, ignore_errors=True)


def main(argv):
  del argv
  result = soak(FLAGS.model, FLAGS.workdir, FLAGS.clients, FLAGS.seconds,
                FLAGS.swap_at, tuple(int(v) for v in FLAGS.image_hw))
  print(json.dumps(result, indent=2))
  for protocol in ('grpc', 'rest'):
    r = result[protocol]
    print(f'{protocol}: {r["requests"]} requests, {r["errors"]} errors, p50 '
          f'{r["p50_ms"]:.1f} ms, p99 {r["p99_ms"]:.1f} ms, '
          f'{r["requests_per_s"]:.1f} req/s')
  print(f'server alive: {result["server_alive"]}, peak RSS '
        f'{result["server_peak_rss_mb"]} MiB')
  if FLAGS.out:
    fileio.atomic_write_text(FLAGS.out, json.dumps(result, indent=2) + '\n')
  return 0 if result['server_alive'] else 1


if __name__ == '__main__':
  _define_flags()
  app.run(main)

"""A development model server speaking TF Serving's gRPC and REST APIs.

  python -m export.serve --model_base_path=BASE [--port=8500]
      [--rest_api_port=8501] [--model_config_file=BASE/models.config]
      [--host=127.0.0.1] [--file_system_poll_wait_seconds=1]

The real `tensorflow_model_server` ships only as a Docker image, so for
development and tests this module answers the same services from the same
SavedModels (tf.saved_model.load, any model, no zoo import):

- gRPC `tensorflow.serving.PredictionService/Predict` and `GetModelMetadata`
  (signature_def), `tensorflow.serving.ModelService/GetModelStatus`
  (servicers registered from tensorflow_serving.apis *_pb2_grpc).
- REST `POST /v1/models/NAME[/versions/N | /labels/L]:predict` with
  {"instances": [...]} (row) or {"inputs": ...} (columnar) and {"b64": ...}
  for binary strings; `GET /v1/models/NAME[/versions/N]` (status) and
  `GET /v1/models/NAME[/versions/N]/metadata`.

Semantics follow TF Serving: the highest loaded version serves by default;
model_spec.version / version_label / signature_name are honoured; version
policies (latest N, all, specific) and version_labels come from a
ModelServerConfig file; new versions appearing under a model's base path are
loaded while serving (polling); assets.extra/tf_serving_warmup_requests are
replayed when a version loads. Errors carry TF Serving's status codes: unknown
model or version -> NOT_FOUND; missing or extra inputs, wrong dtype or shape,
unknown version label, bad values -> INVALID_ARGUMENT (messages name the input
and the expected spec); unknown signature -> FAILED_PRECONDITION over gRPC
(INVALID_ARGUMENT over REST), exactly as TF Serving does. REST errors are
{"error": "..."} with HTTP 400 / 404 (also for http.server's own errors, a
bad Content-Length, and 405 for PUT / DELETE / PATCH). A bad request never
stops the server.

The parts: export/serving_core.py (loaded versions, version policies,
polling, errors; how versions load, retire and fail under load),
export/serving_grpc.py (the gRPC servicers), export/serving_rest.py (the REST
codec and handler), export/serving_config.py (--model_base_path as BASE/NAME/N
or one model's BASE/N, and --model_config_file); this module starts them and
is the command line.

Not implemented (differences from TF Serving): server-side request batching
(--enable_batching is accepted and ignored), Classify / Regress /
MultiInference, config reloading over gRPC, monitoring.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import http.server
import json
import os
import signal
import sys
import tempfile
import threading
from typing import Any, Sequence

from absl import app
from absl import flags
from absl import logging
import grpc
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from export.protocol import MAX_MESSAGE_BYTES
from export.serving_config import configs_from_base_path
from export.serving_config import configs_from_file
from export.serving_core import ModelConfig
from export.serving_core import ServerCore
from export.serving_grpc import ModelServicer
from export.serving_grpc import PredictionServicer
from export.serving_rest import make_handler


@dataclasses.dataclass
class RunningServer:
  core: ServerCore
  grpc_server: Any
  grpc_port: int
  http_server: Any
  rest_port: int | None

  def stop(self, grace: float | None = 1.) -> None:
    self.core.stop()
    if self.http_server is not None:
      self.http_server.shutdown()
      self.http_server.server_close()
    self.grpc_server.stop(grace)


def start_server(configs: Sequence[ModelConfig], port: int = 8500,
                 rest_api_port: int | None = 8501, host: str = '127.0.0.1',
                 warmup: bool = True, poll_seconds: float = 1.,
                 max_workers: int = 16) -> RunningServer:
  """Loads the models and starts gRPC (and REST unless rest_api_port=None).

  Port 0 binds a free port (see the returned ports).
  """
  core = ServerCore(configs, warmup=warmup, poll_seconds=poll_seconds)
  core.sync()
  options = [('grpc.max_send_message_length', MAX_MESSAGE_BYTES),
             ('grpc.max_receive_message_length', MAX_MESSAGE_BYTES)]
  server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers),
                       options=options)
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
      PredictionServicer(core), server)
  model_service_pb2_grpc.add_ModelServiceServicer_to_server(
      ModelServicer(core), server)
  grpc_port = server.add_insecure_port(f'{host}:{port}')
  if grpc_port == 0:
    raise OSError(f'cannot bind gRPC to {host}:{port}')
  server.start()
  http_server, rest_port = None, None
  if rest_api_port is not None:
    http_server = http.server.ThreadingHTTPServer((host, rest_api_port),
                                                  make_handler(core))
    http_server.daemon_threads = True
    rest_port = http_server.server_address[1]
    threading.Thread(target=http_server.serve_forever, name='rest',
                     daemon=True).start()
  core.start_polling()
  return RunningServer(core, server, grpc_port, http_server, rest_port)


def define_flags(flag_values: flags.FlagValues) -> None:
  """The command line's flags, TF Serving's names (defined only to run the
  program)."""
  fv = {'flag_values': flag_values}
  flags.DEFINE_string('model_base_path', None, 'BASE (BASE/NAME/N) or one '
                      'model\'s directory (BASE/N)', **fv)
  flags.DEFINE_string('model_name', None, 'name of the single model at '
                      '--model_base_path (default: its directory name)', **fv)
  flags.DEFINE_string('model_config_file', None, 'text ModelServerConfig',
                      **fv)
  flags.DEFINE_integer('port', 8500, 'gRPC port (0: pick a free one)', **fv)
  flags.DEFINE_integer('rest_api_port', 8501, 'REST port; 0 disables REST '
                       '(as in TF Serving), -1 picks a free one', **fv)
  flags.DEFINE_string('host', '127.0.0.1', 'address to bind (0.0.0.0 for '
                      'every interface)', **fv)
  flags.DEFINE_float('file_system_poll_wait_seconds', 1., 'poll for new '
                     'versions (0: never)', **fv)
  flags.DEFINE_boolean('enable_model_warmup', True, 'replay a version\'s '
                       'warm-up requests when it loads', **fv)
  flags.DEFINE_integer('grpc_max_threads', 16, 'gRPC worker threads', **fv)
  flags.DEFINE_string('port_file', None, 'write {"grpc": P, "rest": P} here '
                      'when ready', **fv)
  flags.DEFINE_boolean('enable_batching', False, 'accepted for TF Serving '
                       'compatibility; ignored', **fv)
  flags.DEFINE_string('batching_parameters_file', None, 'ignored', **fv)
  flags.DEFINE_boolean('verbose', False, 'debug logs', **fv)


def run(args: flags.FlagValues, argv: Sequence[str] = ()) -> int:
  """Serves until SIGINT / SIGTERM; 2 when the models cannot be found."""
  del argv  # unused
  if not args.model_base_path and not args.model_config_file:
    raise app.UsageError('pass --model_base_path=BASE or '
                         '--model_config_file=FILE')
  logging.set_verbosity(logging.DEBUG if args.verbose else logging.INFO)
  try:
    configs = configs_from_file(args.model_config_file) if \
        args.model_config_file else configs_from_base_path(
            args.model_base_path, args.model_name)
  except (ValueError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if args.enable_batching:
    logging.warning('--enable_batching: server-side batching is not '
                    'implemented by this development server; requests run '
                    'one by one.')
  rest_port = None if args.rest_api_port == 0 else max(args.rest_api_port, 0)
  running = start_server(
      configs, port=args.port, rest_api_port=rest_port, host=args.host,
      warmup=args.enable_model_warmup,
      poll_seconds=args.file_system_poll_wait_seconds,
      max_workers=args.grpc_max_threads)
  ports = {'grpc': running.grpc_port, 'rest': running.rest_port}
  if args.port_file:
    _write_port_file(args.port_file, ports)
  served = {name: sorted(m.servables)
            for name, m in running.core.models.items()}
  print(f'Serving {served} on gRPC {args.host}:{running.grpc_port}' +
        (f', REST http://{args.host}:{running.rest_port}' if
         running.rest_port else ''), flush=True)

  done = threading.Event()
  for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda *_: done.set())
  done.wait()
  running.stop()
  return 0


def _write_port_file(path: str, ports: dict[str, int | None]) -> None:
  """Writes the ports as JSON via a temporary file and a rename, so a
  reader never sees half of it. (The server runs without the zoo, so not
  through zoo.fileio, the zoo's one atomic-write helper.)"""
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f'.tmp-{os.getpid()}-')
  try:
    with os.fdopen(fd, 'w') as f:
      json.dump(ports, f)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {list(argv[1:])}')
  return run(flags.FLAGS)


if __name__ == '__main__':
  # absl directly, not zoo.cli: the server runs without the zoo.
  define_flags(flags.FLAGS)
  app.run(_main)

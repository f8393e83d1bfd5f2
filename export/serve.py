"""A development model server speaking TF Serving's gRPC and REST APIs.

  python -m export.serve --model_base_path=BASE [--port=8500]
      [--rest_api_port=8501] [--model_config_file=BASE/models.config]
      [--host=127.0.0.1] [--file_system_poll_wait_seconds=1]

What. The real `tensorflow_model_server` ships only as a Docker image, so for
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

Load and faults. Requests into one loaded version run one at a time (they
crashed the process when they ran concurrently); versions and models run in
parallel. A request holds its version; a retired version is released only
when no request runs in it (under an exclusive gate, so no request runs while
its graphs are freed). A version leaves only after its replacement loaded
and warmed up; a version that fails to load is logged, reported by
GetModelStatus (END with the error) and retried only when its files change,
while the previous versions keep serving.

Layouts of --model_base_path: BASE/NAME/N/ (every model under BASE), or a
single model's directory BASE/N/ (named by --model_name, default the directory
name), as with TF Serving. In a models.config written by export.saved_model the
base paths name the Docker mount (/models/NAME); where such a path does not
exist, the model is looked up next to the config file.

Not implemented (differences from TF Serving): server-side request batching
(--enable_batching is accepted and ignored), Classify / Regress /
MultiInference, config reloading over gRPC, monitoring.
"""
from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import dataclasses
import gc
import http.server
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from typing import Any, Iterable, Sequence

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from export import warmup as warmup_lib
from zoo import fileio

DEFAULT_SIGNATURE = 'serving_default'
MAX_MESSAGE_BYTES = 2 ** 31 - 1  # TF Serving's limit (int32 max)
_State = get_model_status_pb2.ModelVersionStatus.State

_log = logging.getLogger('export.serve')


class ServingError(Exception):
  """A request error with the gRPC status code TF Serving would return."""

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code
    self.message = message

  @property
  def http_status(self) -> int:
    return {grpc.StatusCode.NOT_FOUND: 404,
            grpc.StatusCode.INVALID_ARGUMENT: 400,
            grpc.StatusCode.FAILED_PRECONDITION: 400,
            grpc.StatusCode.OUT_OF_RANGE: 400,
            grpc.StatusCode.UNIMPLEMENTED: 501,
            grpc.StatusCode.UNAVAILABLE: 503,
            grpc.StatusCode.DEADLINE_EXCEEDED: 504,
            grpc.StatusCode.RESOURCE_EXHAUSTED: 429}.get(self.code, 500)


def _invalid(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _grpc_code(tf_code: int) -> grpc.StatusCode:
  for code in grpc.StatusCode:
    if code.value[0] == tf_code:
      return code
  return grpc.StatusCode.UNKNOWN


def _clean_tf_message(message: str) -> str:
  """The useful part of a TF runtime error (assertion text, first lines)."""
  message = re.sub(r'\s*\[\[\{\{node .*?\}\}\]\]', '', message, flags=re.S)
  message = re.sub(r'\s*\[Op:[^\]]*\]', '', message)
  # The assertion's text may itself hold brackets ("K[0, 0]"): up to the
  # last ']' of its line.
  match = re.search(r'assertion failed: \[(.*)\]', message)
  if match:
    return match.group(1).replace("\\'", "'")
  skip = ('Detected at node', '<stack traces', 'Graph execution')
  lines = [l for l in message.strip().splitlines()
           if l.strip() and not l.startswith(skip)]
  return ' '.join(lines[:3])[:2000] or message[:2000]


def _spec_text(spec: tf.TensorSpec) -> str:
  dims = ', '.join('?' if d is None else str(d) for d in spec.shape.as_list())
  return f'{spec.dtype.name} [{dims}]'


# ----------------------------------------------------------------------------
# One loaded version
# ----------------------------------------------------------------------------

@dataclasses.dataclass
class Signature:
  name: str
  fn: Any
  inputs: dict[str, tf.TensorSpec]
  outputs: tuple[str, ...]

  def describe_inputs(self) -> str:
    return ', '.join(f'{k}: {_spec_text(v)}'
                     for k, v in sorted(self.inputs.items()))


class Servable:
  """One version of one model, loaded with tf.saved_model.load.

  Thread safety. Calls into the loaded functions of one version run one at a
  time (`_calls`): concurrent calls into one loaded SavedModel's functions
  crashed the process (a segfault in a TF compute thread) under a few
  concurrent clients. Versions (and models) still run in parallel, and each
  call uses TF's intra-op threads. A request holds the version (`acquire` /
  `release`) while it runs; a retired version is released (`close`) only
  once no request runs in it.
  """

  def __init__(self, name: str, version: int, path: str):
    self.name = name
    self.version = version
    self.path = path
    self._calls = threading.Lock()
    self._users = 0  # requests running in this version
    self._retired = False
    self._state = threading.Lock()
    self._loaded = tf.saved_model.load(path, tags=['serve'])
    self.signatures: dict[str, Signature] = {}
    for sig_name, fn in self._loaded.signatures.items():
      self.signatures[sig_name] = Signature(
          sig_name, fn, dict(fn.structured_input_signature[1]),
          tuple(sorted(fn.structured_outputs)))
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, 'saved_model.pb'), 'rb') as f:
      proto.ParseFromString(f.read())
    graphs = [g for g in proto.meta_graphs
              if 'serve' in g.meta_info_def.tags] or list(proto.meta_graphs)
    self.signature_defs = graphs[0].signature_def

  # --- life cycle -----------------------------------------------------------
  def acquire(self) -> bool:
    """Marks a request running in this version; False once it is retired."""
    with self._state:
      if self._retired:
        return False
      self._users += 1
      return True

  def release(self) -> None:
    with self._state:
      self._users -= 1

  def retire(self) -> None:
    """No new request may acquire this version."""
    with self._state:
      self._retired = True

  @property
  def idle(self) -> bool:
    """Retired and no request runs in it: safe to close."""
    with self._state:
      return self._retired and self._users == 0

  def close(self) -> None:
    """Drops the loaded SavedModel (call only when `idle`)."""
    self.signatures = {}
    self._loaded = None

  def signature(self, name: str, grpc_semantics: bool = True) -> Signature:
    name = name or DEFAULT_SIGNATURE
    if name not in self.signatures:
      available = sorted(self.signatures)
      if grpc_semantics:  # TF Serving's predict_util
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                           f'Serving signature key "{name}" not found. Model '
                           f'{self.name!r} version {self.version} has '
                           f'signatures {available}.')
      raise _invalid(f'Serving signature name: "{name}" not found in '
                     f'signature def; model {self.name!r} version '
                     f'{self.version} has signatures {available}.')
    return self.signatures[name]

  def check_inputs(self, signature: Signature,
                   inputs: dict[str, np.ndarray]) -> None:
    """INVALID_ARGUMENT naming the input and the spec for any mismatch."""
    sent, wanted = set(inputs), set(signature.inputs)
    if sent != wanted:
      raise _invalid(
          f'input size does not match signature: {len(sent)}!={len(wanted)} '
          f'len({{{",".join(sorted(sent))}}}) != '
          f'len({{{",".join(sorted(wanted))}}}). Sent extra: '
          f'{{{",".join(sorted(sent - wanted))}}}. Missing but required: '
          f'{{{",".join(sorted(wanted - sent))}}}. Signature '
          f'{signature.name!r} of model {self.name!r} takes '
          f'{signature.describe_inputs()}.')
    for key, value in inputs.items():
      spec = signature.inputs[key]
      expected = spec.dtype.as_numpy_dtype
      if spec.dtype == tf.string:
        ok = value.dtype == object or value.dtype.kind in 'SU'
      else:
        ok = value.dtype == np.dtype(expected)
      if not ok:
        got = 'string' if value.dtype == object or value.dtype.kind in 'SU' \
            else value.dtype.name
        raise _invalid(f'input {key!r} of signature {signature.name!r} has '
                       f'dtype {got}; expected {_spec_text(spec)}')
      if not spec.shape.is_compatible_with(value.shape):
        raise _invalid(f'input {key!r} of signature {signature.name!r} has '
                       f'shape {list(value.shape)}; expected '
                       f'{_spec_text(spec)}')

  def run(self, signature: Signature, inputs: dict[str, np.ndarray],
          output_filter: Sequence[str] = ()) -> dict[str, np.ndarray]:
    self.check_inputs(signature, inputs)
    for alias in output_filter:
      if alias not in signature.outputs:
        raise _invalid(f'output tensor alias not found in signature: {alias} '
                       f'Outputs expected to be in the set '
                       f'{{{",".join(signature.outputs)}}}.')
    if len(set(output_filter)) != len(output_filter):
      raise _invalid(f'duplicate output tensor alias in {list(output_filter)}')
    tensors = {k: tf.constant(v, dtype=signature.inputs[k].dtype)
               for k, v in inputs.items()}
    keys = output_filter or signature.outputs
    try:
      with self._calls:
        outputs = signature.fn(**tensors)
        return {k: outputs[k].numpy() for k in keys}
    except tf.errors.OpError as e:
      raise ServingError(_grpc_code(e.error_code),
                         f'{_clean_tf_message(e.message)} (model {self.name!r}'
                         f' version {self.version}, signature '
                         f'{signature.name!r})') from None

  def warm_up(self) -> int:
    """Replays assets.extra/tf_serving_warmup_requests; returns the count."""
    path = os.path.join(self.path, 'assets.extra', warmup_lib.WARMUP_FILE)
    if not os.path.exists(path):
      return 0
    logs = warmup_lib.read_warmup_file(path)
    for log in logs[:warmup_lib.MAX_WARMUP_RECORDS]:
      if log.WhichOneof('log_type') != 'predict_log':
        continue
      request = log.predict_log.request
      signature = self.signature(request.model_spec.signature_name)
      self.run(signature, {k: tensor_to_array(v)
                           for k, v in request.inputs.items()},
               tuple(request.output_filter))
    return len(logs)


def tensor_to_array(proto) -> np.ndarray:
  try:
    return tf.make_ndarray(proto)
  except Exception as e:  # malformed TensorProto
    raise _invalid(f'cannot read a tensor from the request: {e}') from None


# ----------------------------------------------------------------------------
# Models, versions, policies
# ----------------------------------------------------------------------------

@dataclasses.dataclass
class ModelConfig:
  name: str
  base_path: str
  policy: str = 'latest'               # 'latest' | 'all' | 'specific'
  num_versions: int = 1                # for 'latest'
  specific: tuple[int, ...] = ()       # for 'specific'
  labels: dict[str, int] = dataclasses.field(default_factory=dict)


def _available_versions(base_path: str) -> list[int]:
  if not os.path.isdir(base_path):
    return []
  return sorted(int(e) for e in os.listdir(base_path) if e.isdigit() and
                os.path.isfile(os.path.join(base_path, e, 'saved_model.pb')))


def wanted_versions(config: ModelConfig, on_disk: Iterable[int]) -> list[int]:
  on_disk = sorted(on_disk)
  if config.policy == 'all':
    return on_disk
  if config.policy == 'specific':
    return [v for v in on_disk if v in set(config.specific)]
  return on_disk[-max(config.num_versions, 1):]


def version_fingerprint(path: str) -> tuple:
  """(relative path, size, mtime) of every file of a version directory.

  A version whose load failed is retried only when this changes.
  """
  entries = []
  for directory, _, files in os.walk(path):
    for name in files:
      full = os.path.join(directory, name)
      try:
        stat = os.stat(full)
      except OSError:  # removed while listing
        continue
      entries.append((os.path.relpath(full, path), stat.st_size,
                      stat.st_mtime_ns))
  return tuple(sorted(entries))


class Model:
  """The servables of one model and the status of every version seen."""

  def __init__(self, config: ModelConfig):
    self.config = config
    self.servables: dict[int, Servable] = {}
    self.states: dict[int, tuple[int, int, str]] = {}  # state, code, message
    # versions whose load failed -> fingerprint of their files at that load
    self.failed: dict[int, tuple] = {}
    self.lock = threading.Lock()

  def set_state(self, version: int, state: int, code: int = 0,
                message: str = '') -> None:
    with self.lock:
      self.states[version] = (state, code, message)


class _Gate:
  """Shared (requests) / exclusive (releasing a version) access to TF.

  A released SavedModel's functions leave TF's function library when Python
  frees them; that happens under `exclusive`, so never while a request runs.
  """

  def __init__(self):
    self._cond = threading.Condition()
    self._shared = 0
    self._exclusive_waiting = 0
    self._exclusive = False

  @contextlib.contextmanager
  def shared(self):
    with self._cond:
      self._cond.wait_for(lambda: not (self._exclusive or
                                       self._exclusive_waiting))
      self._shared += 1
    try:
      yield
    finally:
      with self._cond:
        self._shared -= 1
        self._cond.notify_all()

  @contextlib.contextmanager
  def exclusive(self):
    with self._cond:
      self._exclusive_waiting += 1
      self._cond.wait_for(lambda: not (self._exclusive or self._shared))
      self._exclusive_waiting -= 1
      self._exclusive = True
    try:
      yield
    finally:
      with self._cond:
        self._exclusive = False
        self._cond.notify_all()


class ServerCore:
  """Loads and polls models; resolves model specs; runs requests.

  Versions follow TF Serving's availability-preserving policy: a version
  leaves only after the versions that replace it have loaded and warmed up,
  so a new version that fails to load leaves the served ones serving. The
  failure is logged and reported by GetModelStatus (state END with the
  error), and the version is tried again only when its files change.
  """

  def __init__(self, configs: Sequence[ModelConfig], warmup: bool = True,
               poll_seconds: float = 1.):
    self.models = {c.name: Model(c) for c in configs}
    self.warmup = warmup
    self.poll_seconds = poll_seconds
    self._stop = threading.Event()
    self._poller: threading.Thread | None = None
    self._sync_lock = threading.Lock()
    self._gate = _Gate()
    self._retiring: list[Servable] = []

  # --- loading ------------------------------------------------------------
  def _candidates(self, model: Model) -> list[int]:
    """Versions on disk, less those that failed and have not changed since."""
    base = model.config.base_path
    on_disk = _available_versions(base)
    for version in list(model.failed):
      if version not in on_disk:
        del model.failed[version]
    return [v for v in on_disk if v not in model.failed or
            model.failed[v] != version_fingerprint(
                os.path.join(base, str(v)))]

  def sync(self) -> None:
    """Loads wanted versions that are not loaded; then unloads the rest."""
    with self._sync_lock:
      for model in self.models.values():
        candidates = self._candidates(model)
        while True:
          wanted = wanted_versions(model.config, candidates)
          failed = [v for v in wanted if v not in model.servables and
                    not self._load(model, v)]
          if not failed:
            break
          candidates = [v for v in candidates if v not in failed]
        for version in list(model.servables):
          if version not in wanted:
            self._unload(model, version)
      self._reap()

  def _unload(self, model: Model, version: int) -> None:
    model.set_state(version, _State.UNLOADING)
    with model.lock:
      servable = model.servables.pop(version)
      servable.retire()
    self._retiring.append(servable)
    _log.info('Unloading %s version %d (after its running requests).',
              model.config.name, version)

  def _reap(self, wait_seconds: float = 30.) -> None:
    """Releases retired versions once no request runs in them."""
    deadline = time.time() + wait_seconds
    while self._retiring:
      idle = [s for s in self._retiring if s.idle]
      if idle:
        with self._gate.exclusive():
          for servable in idle:
            servable.close()
          gc.collect()  # free the loaded graphs here, not in a request
        for servable in idle:
          self._retiring.remove(servable)
          self.models[servable.name].set_state(servable.version, _State.END)
          _log.info('Unloaded %s version %d.', servable.name,
                    servable.version)
        continue
      if time.time() > deadline:  # a request still runs; next poll
        return
      time.sleep(0.01)

  def _load(self, model: Model, version: int) -> bool:
    name = model.config.name
    path = os.path.join(model.config.base_path, str(version))
    fingerprint = version_fingerprint(path)
    model.set_state(version, _State.LOADING)
    start = time.time()
    try:
      servable = Servable(name, version, path)
      count = servable.warm_up() if self.warmup else 0
    except Exception as e:  # a broken export must not stop the server
      code = e.code.value[0] if isinstance(e, ServingError) else 2
      message = str(e).strip().splitlines()[0][:2000] if str(e) else \
          type(e).__name__
      model.set_state(version, _State.END, code, f'failed to load: {message}')
      model.failed[version] = fingerprint
      serving = sorted(model.servables)
      _log.error('Failed to load %s version %d from %s: %s. Still serving '
                 'versions %s; retried when its files change.', name,
                 version, path, message, serving)
      return False
    model.failed.pop(version, None)
    with model.lock:
      model.servables[version] = servable
    model.set_state(version, _State.AVAILABLE)
    _log.info('Loaded %s version %d (%d warm-up requests, %.1f s).', name,
              version, count, time.time() - start)
    return True

  def start_polling(self) -> None:
    if self.poll_seconds <= 0:
      return
    def loop():
      while not self._stop.wait(self.poll_seconds):
        try:
          self.sync()
        except Exception:  # keep polling
          _log.exception('Polling the model directories failed.')
    self._poller = threading.Thread(target=loop, name='model-poller',
                                    daemon=True)
    self._poller.start()

  def stop(self) -> None:
    self._stop.set()

  # --- resolving ------------------------------------------------------------
  def model(self, name: str) -> Model:
    if name not in self.models:
      raise ServingError(grpc.StatusCode.NOT_FOUND,
                         f'Servable not found for request: Latest({name}); '
                         f'served models are {sorted(self.models)}')
    return self.models[name]

  def servable(self, spec) -> Servable:
    """Servable for a ModelSpec (version / version_label / latest)."""
    model = self.model(spec.name)
    with model.lock:
      loaded = dict(model.servables)
    choice = spec.WhichOneof('version_choice')
    if choice == 'version':
      version = spec.version.value
      if version not in loaded:
        raise ServingError(
            grpc.StatusCode.NOT_FOUND,
            f'Servable not found for request: Specific({spec.name}, '
            f'{version}); loaded versions are {sorted(loaded)}')
      return loaded[version]
    if choice == 'version_label':
      label = spec.version_label
      if label not in model.config.labels:
        raise _invalid(f'Unrecognized servable version label: {label}; '
                       f'labels of {spec.name!r} are '
                       f'{sorted(model.config.labels)}')
      version = model.config.labels[label]
      if version not in loaded:
        raise ServingError(
            grpc.StatusCode.NOT_FOUND,
            f'Servable not found for request: Specific({spec.name}, '
            f'{version}) (label {label!r}); loaded versions are '
            f'{sorted(loaded)}')
      return loaded[version]
    if not loaded:
      raise ServingError(grpc.StatusCode.NOT_FOUND,
                         f'Servable not found for request: Latest('
                         f'{spec.name}); no version is loaded')
    return loaded[max(loaded)]

  @contextlib.contextmanager
  def using(self, spec):
    """The servable for a ModelSpec, held while the block runs."""
    for _ in range(10):  # retired between lookup and acquire: look again
      servable = self.servable(spec)
      if servable.acquire():
        break
    else:
      raise ServingError(grpc.StatusCode.UNAVAILABLE,
                         f'model {spec.name!r} is changing versions; retry')
    try:
      with self._gate.shared():
        yield servable
    finally:
      servable.release()

  # --- the three calls --------------------------------------------------------
  def predict(self, request: predict_pb2.PredictRequest
              ) -> predict_pb2.PredictResponse:
    with self.using(request.model_spec) as servable:
      signature = servable.signature(request.model_spec.signature_name)
      inputs = {k: tensor_to_array(v) for k, v in request.inputs.items()}
      outputs = servable.run(signature, inputs, tuple(request.output_filter))
    response = predict_pb2.PredictResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.model_spec.signature_name = signature.name
    for key, value in outputs.items():
      response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
    return response

  def metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest
               ) -> get_model_metadata_pb2.GetModelMetadataResponse:
    fields = list(request.metadata_field)
    if not fields:
      raise _invalid('GetModelMetadataRequest must specify at least one '
                     'metadata_field')
    for field in fields:
      if field != 'signature_def':
        raise _invalid(f'Metadata field {field} is not supported')
    servable = self.servable(request.model_spec)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    for key, value in servable.signature_defs.items():
      sig_map.signature_def[key].CopyFrom(value)
    response.metadata['signature_def'].Pack(sig_map)
    return response

  def status(self, request: get_model_status_pb2.GetModelStatusRequest
             ) -> get_model_status_pb2.GetModelStatusResponse:
    name = request.model_spec.name
    if not name:
      raise _invalid('Missing model name in request.')
    if name not in self.models:
      raise ServingError(grpc.StatusCode.NOT_FOUND,
                         f'Could not find any versions of model {name}')
    model = self.models[name]
    with model.lock:
      states = dict(model.states)
    choice = request.model_spec.WhichOneof('version_choice')
    if choice == 'version_label':
      label = request.model_spec.version_label
      if label not in model.config.labels:
        raise _invalid(f'Unrecognized servable version label: {label}')
      choice, wanted = 'version', model.config.labels[label]
    elif choice == 'version':
      wanted = request.model_spec.version.value
    if choice == 'version':
      if wanted not in states:
        raise ServingError(grpc.StatusCode.NOT_FOUND,
                           f'Could not find version {wanted} of model {name}')
      states = {wanted: states[wanted]}
    if not states:
      raise ServingError(grpc.StatusCode.NOT_FOUND,
                         f'Could not find any versions of model {name}')
    response = get_model_status_pb2.GetModelStatusResponse()
    for version in sorted(states, reverse=True):
      state, code, message = states[version]
      entry = response.model_version_status.add()
      entry.version = version
      entry.state = state
      entry.status.error_code = code
      entry.status.error_message = message
    return response


# ----------------------------------------------------------------------------
# gRPC
# ----------------------------------------------------------------------------

def _grpc_call(method):
  def wrapped(self, request, context):
    try:
      return method(self, request)
    except ServingError as e:
      context.abort(e.code, e.message)
    except Exception as e:  # never let a request kill the server
      _log.exception('Internal error')
      context.abort(grpc.StatusCode.INTERNAL, f'internal error: {e}')
  return wrapped


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):

  def __init__(self, core: ServerCore):
    self.core = core

  @_grpc_call
  def Predict(self, request):  # pylint: disable=invalid-name
    return self.core.predict(request)

  @_grpc_call
  def GetModelMetadata(self, request):  # pylint: disable=invalid-name
    return self.core.metadata(request)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):

  def __init__(self, core: ServerCore):
    self.core = core

  @_grpc_call
  def GetModelStatus(self, request):  # pylint: disable=invalid-name
    return self.core.status(request)


# ----------------------------------------------------------------------------
# REST (TF Serving's JSON API)
# ----------------------------------------------------------------------------

_PATH = re.compile(r'^/v1/models/(?P<name>[^/:]+)'
                   r'(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?'
                   r'(?P<tail>:predict|:classify|:regress|/metadata)?/?$',
                   re.I)


MAX_VERSION = 2 ** 63 - 1  # model_spec.version is an int64


def _version_number(text: str) -> int:
  version = int(text)
  if version > MAX_VERSION:
    raise _invalid(f'version {text} is not a valid version number (an integer '
                   f'from 0 to {MAX_VERSION})')
  return version


def _decode_b64(value, key: str):
  """Nested JSON lists of {"b64": ...} / str -> nested lists of bytes."""
  if isinstance(value, dict):
    if set(value) != {'b64'} or not isinstance(value['b64'], str):
      raise _invalid(f'input {key!r}: a JSON object in a tensor must be '
                     '{"b64": "<base64 string>"}')
    try:
      return base64.b64decode(value['b64'], validate=True)
    except ValueError:
      raise _invalid(f'input {key!r}: invalid base64 data') from None
  if isinstance(value, list):
    return [_decode_b64(v, key) for v in value]
  if isinstance(value, str):
    return value.encode()
  raise _invalid(f'input {key!r}: expected strings or {{"b64": ...}} '
                 f'objects, got {type(value).__name__}')


def json_to_array(value: Any, spec: tf.TensorSpec, key: str) -> np.ndarray:
  """One JSON tensor value -> numpy of the signature's dtype."""
  if spec.dtype == tf.string:
    value = _decode_b64(value, key)
    array = np.empty(np.shape(value) if isinstance(value, list) else (),
                     dtype=object)
    try:
      array[...] = value if not isinstance(value, list) else \
          np.array(value, dtype=object)
    except ValueError:
      raise _invalid(f'input {key!r} is not a rectangular list') from None
    return array
  try:
    array = np.asarray(value)
  except ValueError:
    raise _invalid(f'input {key!r} is not a rectangular list of numbers; '
                   f'expected {_spec_text(spec)}') from None
  target = np.dtype(spec.dtype.as_numpy_dtype)
  if array.dtype == object or array.dtype.kind not in 'biuf':
    raise _invalid(f'input {key!r} must hold numbers; expected '
                   f'{_spec_text(spec)}')
  if array.dtype.kind == 'b' and target.kind != 'b':
    raise _invalid(f'input {key!r} holds booleans (true/false); expected '
                   f'numbers, {_spec_text(spec)}')
  if target.kind in 'iu':
    if array.dtype.kind == 'f' and np.any(array != np.round(array)):
      raise _invalid(f'input {key!r} has non-integer values; expected '
                     f'{_spec_text(spec)}')
    info = np.iinfo(target)
    if array.size and (array.min() < info.min or array.max() > info.max):
      raise _invalid(f'input {key!r} has values outside [{info.min}, '
                     f'{info.max}]; expected {_spec_text(spec)}')
  return array.astype(target)


def _array_to_json(array: np.ndarray):
  if array.dtype == object or array.dtype.kind == 'S':
    flat = [{'b64': base64.b64encode(v).decode()} for v in array.reshape(-1)]
    return np.array(flat, dtype=object).reshape(array.shape).tolist()
  return array.tolist()


def rest_predict(core: ServerCore, name: str, version: str | None,
                 label: str | None, body: bytes) -> dict:
  """Handles a REST :predict call; returns the JSON response object."""
  try:
    request = json.loads(body or b'null')
  except ValueError as e:
    raise _invalid(f'JSON Parse error: {e}') from None
  except RecursionError:
    raise _invalid('JSON Parse error: the body is nested too deeply') from None
  if not isinstance(request, dict):
    raise _invalid('the request body must be a JSON object with "instances" '
                   'or "inputs"')
  if ('instances' in request) == ('inputs' in request):
    raise _invalid('Missing \'inputs\' or \'instances\' key' if
                   'instances' not in request else
                   'Not formatted correctly expecting only one of \'inputs\' '
                   'or \'instances\' keys exclusively')
  unknown = set(request) - {'instances', 'inputs', 'signature_name'}
  if unknown:
    raise _invalid(f'unknown keys {sorted(unknown)} in the request body')
  sig_name = request.get('signature_name', '') or DEFAULT_SIGNATURE
  if not isinstance(sig_name, str):
    raise _invalid('"signature_name" must be a string')
  spec = predict_pb2.PredictRequest().model_spec
  spec.name = name
  if version is not None:
    spec.version.value = _version_number(version)
  elif label is not None:
    spec.version_label = label
  with core.using(spec) as servable:
    return _rest_predict(servable, request, sig_name)


def _rest_predict(servable: Servable, request: dict, sig_name: str) -> dict:
  signature = servable.signature(sig_name, grpc_semantics=False)
  names = sorted(signature.inputs)
  if 'inputs' in request:  # columnar
    columns = request['inputs']
    named = isinstance(columns, dict) and 'b64' not in columns
    if not named and len(names) == 1:  # the value of the only input
      columns, named = {names[0]: columns}, True
    if not named:
      raise _invalid(f'"inputs" must be an object with keys {names}')
    arrays = {k: json_to_array(v, signature.inputs[k], k) if k in
              signature.inputs else np.asarray(0) for k, v in columns.items()}
  else:  # row
    rows = request['instances']
    if not isinstance(rows, list) or not rows:
      raise _invalid('"instances" must be a non-empty list')
    if len(names) == 1:  # instances may be bare values of the only input
      rows = [r if isinstance(r, dict) and 'b64' not in r else {names[0]: r}
              for r in rows]
    if not all(isinstance(r, dict) for r in rows):
      raise _invalid(f'every instance must be an object with keys {names}')
    keys = set(rows[0])
    if any(set(r) != keys for r in rows):
      raise _invalid('every instance must have the same keys')
    arrays = {}
    for k in keys:
      if k not in signature.inputs:
        arrays[k] = np.asarray(0)
        continue
      values = [json_to_array(r[k], signature.inputs[k], k) for r in rows]
      if len({v.shape for v in values}) > 1:
        raise _invalid(f'instances have different shapes for input {k!r}: '
                       f'{sorted({v.shape for v in values})}')
      arrays[k] = np.stack(values)
  outputs = servable.run(signature, arrays)
  if 'inputs' in request:
    result = {k: _array_to_json(v) for k, v in outputs.items()}
    return {'outputs': next(iter(result.values())) if len(result) == 1
            else result}
  batch = {v.shape[0] if v.ndim else 1 for v in outputs.values()}
  if len(batch) != 1:
    raise _invalid('outputs have different batch sizes; use the columnar '
                   '"inputs" format')
  rows = []
  for i in range(batch.pop()):
    row = {k: _array_to_json(v[i]) for k, v in outputs.items()}
    rows.append(next(iter(row.values())) if len(row) == 1 else row)
  return {'predictions': rows}


def _make_handler(core: ServerCore):
  from google.protobuf import json_format

  class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    timeout = 300  # seconds a client may stall mid-request

    def log_message(self, fmt, *args):  # quiet by default
      _log.debug('REST %s', fmt % args)

    def _reply(self, status: int, obj: Any) -> None:
      data = json.dumps(obj).encode()
      self.send_response(status)
      self.send_header('Content-Type', 'application/json')
      self.send_header('Content-Length', str(len(data)))
      self.end_headers()
      self.wfile.write(data)

    def _route(self):
      path = self.path.split('?', 1)[0]
      if not path.lower().startswith('/v1/'):
        raise ServingError(grpc.StatusCode.NOT_FOUND,
                           f'no such endpoint: {self.command} {path}')
      match = _PATH.match(path)
      if not match:
        raise _invalid(f'Malformed request: {self.command} {path}')
      return match

    def _spec(self, match):
      spec = predict_pb2.PredictRequest().model_spec
      spec.name = match['name']
      if match['version'] is not None:
        spec.version.value = _version_number(match['version'])
      elif match['label'] is not None:
        spec.version_label = match['label']
      return spec

    def send_error(self, code, message=None, explain=None):
      """http.server's own errors (bad request line, unknown method, ...)
      as {"error": ...} like every other error."""
      self.close_connection = True
      text = message or self.responses.get(code, ('error',))[0]
      if self.command == 'HEAD' or code < 200 or code in (204, 304):
        self.send_response(code, text)
        self.send_header('Connection', 'close')
        self.end_headers()
        return
      data = json.dumps({'error': text}).encode()
      self.send_response(code, text)
      self.send_header('Content-Type', 'application/json')
      self.send_header('Connection', 'close')
      self.send_header('Content-Length', str(len(data)))
      self.end_headers()
      self.wfile.write(data)

    def _handle(self, fn):
      try:
        self._reply(200, fn())
      except ServingError as e:
        self._reply(e.http_status, {'error': e.message})
      except RecursionError:
        self._reply(400, {'error': 'the request is nested too deeply'})
      except Exception as e:  # never let a request kill the server
        _log.exception('Internal error')
        self._reply(500, {'error': f'internal error: {e}'})

    def _body(self) -> bytes | None:
      """The request body, or None after answering 400 for a bad length."""
      text = self.headers.get('Content-Length')
      if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':
        self.send_error(411, 'chunked bodies are not supported; send '
                        'Content-Length')
        return None
      try:
        length = int(text) if text is not None else 0
        if length < 0 or not text.strip().isdigit():
          raise ValueError
      except (ValueError, AttributeError):
        if text is not None:
          self.send_error(400, f'invalid Content-Length {text!r}: expected '
                          'the body size in bytes (a non-negative integer)')
          return None
        length = 0
      if length > MAX_MESSAGE_BYTES:
        self.send_error(413, f'the body ({length} bytes) exceeds the limit '
                        f'of {MAX_MESSAGE_BYTES} bytes')
        return None
      body = self.rfile.read(length) if length else b''
      if len(body) != length:
        self.send_error(400, f'the body ended after {len(body)} of the '
                        f'{length} bytes of its Content-Length')
        return None
      return body

    def _not_allowed(self):
      self.send_error(405, f'method {self.command} is not supported: use '
                      'POST for :predict and GET for status and metadata')

    do_PUT = do_DELETE = do_PATCH = _not_allowed  # noqa: N815

    def do_POST(self):  # pylint: disable=invalid-name
      body = self._body()
      if body is None:
        return

      def run():
        match = self._route()
        tail = (match['tail'] or '').lower()
        if tail in (':classify', ':regress'):
          raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                             f'{tail[1:]} is not implemented by this '
                             'development server; use :predict')
        if tail != ':predict':
          raise _invalid(f'Malformed request: POST {match.group(0)}')
        return rest_predict(core, match['name'], match['version'],
                            match['label'], body)
      self._handle(run)

    def do_GET(self):  # pylint: disable=invalid-name
      def run():
        match = self._route()
        tail = (match['tail'] or '').lower()
        if tail.startswith(':'):
          raise _invalid(f'Malformed request: GET {match.group(0)} (use '
                         'POST for predictions)')
        if tail == '/metadata':
          request = get_model_metadata_pb2.GetModelMetadataRequest(
              metadata_field=['signature_def'])
          request.model_spec.CopyFrom(self._spec(match))
          response = core.metadata(request)
          sig_map = get_model_metadata_pb2.SignatureDefMap()
          response.metadata['signature_def'].Unpack(sig_map)
          return {'model_spec': json_format.MessageToDict(
                      response.model_spec, preserving_proto_field_name=True,
                      always_print_fields_with_no_presence=True),
                  'metadata': {'signature_def': json_format.MessageToDict(
                      sig_map, preserving_proto_field_name=True)}}
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.CopyFrom(self._spec(match))
        return json_format.MessageToDict(
            core.status(request), preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True)
      self._handle(run)

  return Handler


# ----------------------------------------------------------------------------
# Configuration and start-up
# ----------------------------------------------------------------------------

def configs_from_base_path(base_path: str, model_name: str | None = None
                           ) -> list[ModelConfig]:
  """BASE/N (one model) or BASE/NAME/N (every model under BASE)."""
  base_path = os.path.abspath(base_path)
  if not os.path.isdir(base_path):
    raise FileNotFoundError(f'--model_base_path {base_path} does not exist')
  if _available_versions(base_path):
    return [ModelConfig(model_name or os.path.basename(base_path), base_path)]
  configs = [ModelConfig(entry, os.path.join(base_path, entry))
             for entry in sorted(os.listdir(base_path))
             if not entry.startswith('.') and
             _available_versions(os.path.join(base_path, entry))]
  if model_name is not None:
    configs = [c for c in configs if c.name == model_name]
  if not configs:
    raise FileNotFoundError(
        f'no SavedModel versions under {base_path}: expected '
        f'{base_path}/NAME/N/saved_model.pb or {base_path}/N/saved_model.pb')
  return configs


def configs_from_file(path: str) -> list[ModelConfig]:
  """A text ModelServerConfig (model_config_list)."""
  config = model_server_config_pb2.ModelServerConfig()
  with open(path) as f:
    try:
      text_format.Parse(f.read(), config)
    except text_format.ParseError as e:
      raise ValueError(f'{path} is not a text ModelServerConfig: {e}') from None
  if config.WhichOneof('config') != 'model_config_list':
    raise ValueError(f'{path} has no model_config_list')
  directory = os.path.dirname(os.path.abspath(path))
  configs = []
  for entry in config.model_config_list.config:
    if entry.model_platform not in ('', 'tensorflow'):
      raise ValueError(f'model {entry.name!r}: platform '
                       f'{entry.model_platform!r} is not supported')
    base = entry.base_path
    if not os.path.isdir(base):
      local = os.path.join(directory, os.path.basename(base.rstrip('/')))
      if os.path.isdir(local):
        _log.info('base_path %s of %s not found; using %s (next to the '
                  'config file, as mounted in Docker).', base, entry.name,
                  local)
        base = local
    policy = entry.model_version_policy.WhichOneof('policy_choice') or 'latest'
    configs.append(ModelConfig(
        entry.name, base, policy=policy,
        num_versions=entry.model_version_policy.latest.num_versions or 1,
        specific=tuple(entry.model_version_policy.specific.versions),
        labels=dict(entry.version_labels)))
  return configs


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
                                                  _make_handler(core))
    http_server.daemon_threads = True
    rest_port = http_server.server_address[1]
    threading.Thread(target=http_server.serve_forever, name='rest',
                     daemon=True).start()
  core.start_polling()
  return RunningServer(core, server, grpc_port, http_server, rest_port)


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog='python -m export.serve',
      description='Development server with TF Serving\'s gRPC and REST APIs.')
  parser.add_argument('--model_base_path', help='BASE (BASE/NAME/N) or one '
                      'model\'s directory (BASE/N)')
  parser.add_argument('--model_name', help='name of the single model at '
                      '--model_base_path (default: its directory name)')
  parser.add_argument('--model_config_file', help='text ModelServerConfig')
  parser.add_argument('--port', type=int, default=8500,
                      help='gRPC port (0: pick a free one)')
  parser.add_argument('--rest_api_port', type=int, default=8501,
                      help='REST port; 0 disables REST (as in TF Serving), '
                      '-1 picks a free one')
  parser.add_argument('--host', default='127.0.0.1',
                      help='address to bind (0.0.0.0 for every interface)')
  parser.add_argument('--file_system_poll_wait_seconds', type=float,
                      default=1., help='poll for new versions (0: never)')
  parser.add_argument('--enable_model_warmup', default='true',
                      choices=('true', 'false'))
  parser.add_argument('--grpc_max_threads', type=int, default=16)
  parser.add_argument('--port_file', help='write {"grpc": P, "rest": P} here '
                      'when ready')
  parser.add_argument('--enable_batching', action='store_true',
                      help='accepted for TF Serving compatibility; ignored')
  parser.add_argument('--batching_parameters_file', help='ignored')
  parser.add_argument('--verbose', action='store_true')
  args = parser.parse_args(argv)
  if not args.model_base_path and not args.model_config_file:
    parser.error('pass --model_base_path=BASE or --model_config_file=FILE')
  return args


def main(argv: Sequence[str] | None = None) -> int:
  args = _parse_args(sys.argv[1:] if argv is None else argv)
  logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                      format='%(asctime)s %(levelname)s %(message)s')
  try:
    configs = configs_from_file(args.model_config_file) if \
        args.model_config_file else configs_from_base_path(
            args.model_base_path, args.model_name)
  except (ValueError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if args.enable_batching:
    _log.warning('--enable_batching: server-side batching is not implemented '
                 'by this development server; requests run one by one.')
  rest_port = None if args.rest_api_port == 0 else max(args.rest_api_port, 0)
  running = start_server(
      configs, port=args.port, rest_api_port=rest_port, host=args.host,
      warmup=args.enable_model_warmup == 'true',
      poll_seconds=args.file_system_poll_wait_seconds,
      max_workers=args.grpc_max_threads)
  ports = {'grpc': running.grpc_port, 'rest': running.rest_port}
  if args.port_file:
    fileio.atomic_write_text(args.port_file, json.dumps(ports))
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


if __name__ == '__main__':
  sys.exit(main())

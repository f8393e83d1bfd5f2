"""The model server's core: loaded versions, version policies, polling, errors.

Used by the gRPC servicers (export/serving_grpc.py), the REST handler
(export/serving_rest.py) and `python -m export.serve` (export/serve.py,
which describes the server as a whole). It loads any SavedModel
(tf.saved_model.load, no zoo import).

Semantics follow TF Serving: the highest loaded version serves by default;
model_spec.version / version_label / signature_name are honoured; version
policies (latest N, all, specific) and version_labels come from a
ModelServerConfig (export/serving_config.py); new versions appearing under a
model's base path are loaded while serving (polling);
assets.extra/tf_serving_warmup_requests are replayed when a version loads.
Errors are `ServingError`s carrying TF Serving's status codes.

Load and faults. Requests into one loaded version run one at a time (they
crashed the process when they ran concurrently); versions and models run in
parallel. A request holds its version; a retired version is released only
when no request runs in it (under an exclusive gate, so no request runs while
its graphs are freed). A version leaves only after its replacement loaded
and warmed up; a version that fails to load is logged, reported by
GetModelStatus (END with the error) and retried only when its files change,
while the previous versions keep serving.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import re
import threading
import time
from typing import Any, Iterable, Sequence

from absl import logging
import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import predict_pb2

from export import warmup as warmup_lib


# The signature a request without signature_name runs.
DEFAULT_SIGNATURE = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
VersionState = get_model_status_pb2.ModelVersionStatus.State


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


def invalid(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def grpc_code(tf_code: int) -> grpc.StatusCode:
  for code in grpc.StatusCode:
    if code.value[0] == tf_code:
      return code
  return grpc.StatusCode.UNKNOWN


def clean_tf_message(message: str) -> str:
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


def spec_text(spec: tf.TensorSpec) -> str:
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
    return ', '.join(f'{k}: {spec_text(v)}'
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
      raise invalid(f'Serving signature name: "{name}" not found in '
                     f'signature def; model {self.name!r} version '
                     f'{self.version} has signatures {available}.')
    return self.signatures[name]

  def check_inputs(self, signature: Signature,
                   inputs: dict[str, np.ndarray]) -> None:
    """INVALID_ARGUMENT naming the input and the spec for any mismatch."""
    sent, wanted = set(inputs), set(signature.inputs)
    if sent != wanted:
      raise invalid(
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
        raise invalid(f'input {key!r} of signature {signature.name!r} has '
                       f'dtype {got}; expected {spec_text(spec)}')
      if not spec.shape.is_compatible_with(value.shape):
        raise invalid(f'input {key!r} of signature {signature.name!r} has '
                       f'shape {list(value.shape)}; expected '
                       f'{spec_text(spec)}')

  def run(self, signature: Signature, inputs: dict[str, np.ndarray],
          output_filter: Sequence[str] = ()) -> dict[str, np.ndarray]:
    self.check_inputs(signature, inputs)
    for alias in output_filter:
      if alias not in signature.outputs:
        raise invalid(f'output tensor alias not found in signature: {alias} '
                       f'Outputs expected to be in the set '
                       f'{{{",".join(signature.outputs)}}}.')
    if len(set(output_filter)) != len(output_filter):
      raise invalid(f'duplicate output tensor alias in {list(output_filter)}')
    tensors = {k: tf.constant(v, dtype=signature.inputs[k].dtype)
               for k, v in inputs.items()}
    keys = output_filter or signature.outputs
    try:
      with self._calls:
        outputs = signature.fn(**tensors)
        return {k: outputs[k].numpy() for k in keys}
    except tf.errors.OpError as e:
      raise ServingError(grpc_code(e.error_code),
                         f'{clean_tf_message(e.message)} (model {self.name!r}'
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
    raise invalid(f'cannot read a tensor from the request: {e}') from None


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


def available_versions(base_path: str) -> list[int]:
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
    on_disk = available_versions(base)
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
    model.set_state(version, VersionState.UNLOADING)
    with model.lock:
      servable = model.servables.pop(version)
      servable.retire()
    self._retiring.append(servable)
    logging.info('Unloading %s version %d (after its running requests).',
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
          self.models[servable.name].set_state(servable.version,
                                               VersionState.END)
          logging.info('Unloaded %s version %d.', servable.name,
                       servable.version)
        continue
      if time.time() > deadline:  # a request still runs; next poll
        return
      time.sleep(0.01)

  def _load(self, model: Model, version: int) -> bool:
    name = model.config.name
    path = os.path.join(model.config.base_path, str(version))
    fingerprint = version_fingerprint(path)
    model.set_state(version, VersionState.LOADING)
    start = time.time()
    try:
      servable = Servable(name, version, path)
      count = servable.warm_up() if self.warmup else 0
    except Exception as e:  # a broken export must not stop the server
      code = e.code.value[0] if isinstance(e, ServingError) else 2
      message = str(e).strip().splitlines()[0][:2000] if str(e) else \
          type(e).__name__
      model.set_state(version, VersionState.END, code,
                      f'failed to load: {message}')
      model.failed[version] = fingerprint
      serving = sorted(model.servables)
      logging.error('Failed to load %s version %d from %s: %s. Still serving '
                    'versions %s; retried when its files change.', name,
                    version, path, message, serving)
      return False
    model.failed.pop(version, None)
    with model.lock:
      model.servables[version] = servable
    model.set_state(version, VersionState.AVAILABLE)
    logging.info('Loaded %s version %d (%d warm-up requests, %.1f s).', name,
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
          logging.exception('Polling the model directories failed.')
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
        raise invalid(f'Unrecognized servable version label: {label}; '
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
      raise invalid('GetModelMetadataRequest must specify at least one '
                     'metadata_field')
    for field in fields:
      if field != 'signature_def':
        raise invalid(f'Metadata field {field} is not supported')
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
      raise invalid('Missing model name in request.')
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
        raise invalid(f'Unrecognized servable version label: {label}')
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

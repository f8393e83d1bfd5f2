"""The model server's REST API (TF Serving's JSON API) over a ServerCore.

`POST /v1/models/NAME[/versions/N | /labels/L]:predict` with
{"instances": [...]} (row) or {"inputs": ...} (columnar) and {"b64": ...} for
binary strings; `GET /v1/models/NAME[/versions/N]` (status) and
`GET /v1/models/NAME[/versions/N]/metadata`. Errors are {"error": "..."} with
HTTP 400 / 404 (also for http.server's own errors and a bad Content-Length,
and 405 for PUT / DELETE / PATCH); an unknown signature is INVALID_ARGUMENT
here (FAILED_PRECONDITION over gRPC), exactly as TF Serving does.
"""
from __future__ import annotations

import base64
import http.server
import json
import re
from typing import Any

from absl import logging
import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import predict_pb2

from export.protocol import MAX_MESSAGE_BYTES
from export.serving_core import DEFAULT_SIGNATURE
from export.serving_core import Servable
from export.serving_core import ServerCore
from export.serving_core import ServingError
from export.serving_core import invalid
from export.serving_core import spec_text


_PATH = re.compile(r'^/v1/models/(?P<name>[^/:]+)'
                   r'(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?'
                   r'(?P<tail>:predict|:classify|:regress|/metadata)?/?$',
                   re.I)


MAX_VERSION = 2 ** 63 - 1  # model_spec.version is an int64


def _version_number(text: str) -> int:
  version = int(text)
  if version > MAX_VERSION:
    raise invalid(f'version {text} is not a valid version number (an integer '
                   f'from 0 to {MAX_VERSION})')
  return version


def _decode_b64(value, key: str):
  """Nested JSON lists of {"b64": ...} / str -> nested lists of bytes."""
  if isinstance(value, dict):
    if set(value) != {'b64'} or not isinstance(value['b64'], str):
      raise invalid(f'input {key!r}: a JSON object in a tensor must be '
                     '{"b64": "<base64 string>"}')
    try:
      return base64.b64decode(value['b64'], validate=True)
    except ValueError:
      raise invalid(f'input {key!r}: invalid base64 data') from None
  if isinstance(value, list):
    return [_decode_b64(v, key) for v in value]
  if isinstance(value, str):
    return value.encode()
  raise invalid(f'input {key!r}: expected strings or {{"b64": ...}} '
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
      raise invalid(f'input {key!r} is not a rectangular list') from None
    return array
  try:
    array = np.asarray(value)
  except ValueError:
    raise invalid(f'input {key!r} is not a rectangular list of numbers; '
                   f'expected {spec_text(spec)}') from None
  target = np.dtype(spec.dtype.as_numpy_dtype)
  if array.dtype == object or array.dtype.kind not in 'biuf':
    raise invalid(f'input {key!r} must hold numbers; expected '
                   f'{spec_text(spec)}')
  if array.dtype.kind == 'b' and target.kind != 'b':
    raise invalid(f'input {key!r} holds booleans (true/false); expected '
                   f'numbers, {spec_text(spec)}')
  if target.kind in 'iu':
    if array.dtype.kind == 'f' and np.any(array != np.round(array)):
      raise invalid(f'input {key!r} has non-integer values; expected '
                     f'{spec_text(spec)}')
    info = np.iinfo(target)
    if array.size and (array.min() < info.min or array.max() > info.max):
      raise invalid(f'input {key!r} has values outside [{info.min}, '
                     f'{info.max}]; expected {spec_text(spec)}')
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
    raise invalid(f'JSON Parse error: {e}') from None
  except RecursionError:
    raise invalid('JSON Parse error: the body is nested too deeply') from None
  if not isinstance(request, dict):
    raise invalid('the request body must be a JSON object with "instances" '
                   'or "inputs"')
  if ('instances' in request) == ('inputs' in request):
    raise invalid('Missing \'inputs\' or \'instances\' key' if
                   'instances' not in request else
                   'Not formatted correctly expecting only one of \'inputs\' '
                   'or \'instances\' keys exclusively')
  unknown = set(request) - {'instances', 'inputs', 'signature_name'}
  if unknown:
    raise invalid(f'unknown keys {sorted(unknown)} in the request body')
  sig_name = request.get('signature_name', '') or DEFAULT_SIGNATURE
  if not isinstance(sig_name, str):
    raise invalid('"signature_name" must be a string')
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
      raise invalid(f'"inputs" must be an object with keys {names}')
    arrays = {k: json_to_array(v, signature.inputs[k], k) if k in
              signature.inputs else np.asarray(0) for k, v in columns.items()}
  else:  # row
    rows = request['instances']
    if not isinstance(rows, list) or not rows:
      raise invalid('"instances" must be a non-empty list')
    if len(names) == 1:  # instances may be bare values of the only input
      rows = [r if isinstance(r, dict) and 'b64' not in r else {names[0]: r}
              for r in rows]
    if not all(isinstance(r, dict) for r in rows):
      raise invalid(f'every instance must be an object with keys {names}')
    keys = set(rows[0])
    if any(set(r) != keys for r in rows):
      raise invalid('every instance must have the same keys')
    arrays = {}
    for k in keys:
      if k not in signature.inputs:
        arrays[k] = np.asarray(0)
        continue
      values = [json_to_array(r[k], signature.inputs[k], k) for r in rows]
      if len({v.shape for v in values}) > 1:
        raise invalid(f'instances have different shapes for input {k!r}: '
                       f'{sorted({v.shape for v in values})}')
      arrays[k] = np.stack(values)
  outputs = servable.run(signature, arrays)
  if 'inputs' in request:
    result = {k: _array_to_json(v) for k, v in outputs.items()}
    return {'outputs': next(iter(result.values())) if len(result) == 1
            else result}
  batch = {v.shape[0] if v.ndim else 1 for v in outputs.values()}
  if len(batch) != 1:
    raise invalid('outputs have different batch sizes; use the columnar '
                   '"inputs" format')
  rows = []
  for i in range(batch.pop()):
    row = {k: _array_to_json(v[i]) for k, v in outputs.items()}
    rows.append(next(iter(row.values())) if len(row) == 1 else row)
  return {'predictions': rows}


def make_handler(core: ServerCore):

  class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    timeout = 300  # seconds a client may stall mid-request

    def log_message(self, fmt, *args):  # quiet by default
      logging.debug('REST %s', fmt % args)

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
        raise invalid(f'Malformed request: {self.command} {path}')
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
        logging.exception('Internal error')
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
          raise invalid(f'Malformed request: POST {match.group(0)}')
        return rest_predict(core, match['name'], match['version'],
                            match['label'], body)
      self._handle(run)

    def do_GET(self):  # pylint: disable=invalid-name
      def run():
        match = self._route()
        tail = (match['tail'] or '').lower()
        if tail.startswith(':'):
          raise invalid(f'Malformed request: GET {match.group(0)} (use '
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

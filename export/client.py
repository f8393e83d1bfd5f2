"""Clients for any TF Serving endpoint (the Docker server or export.serve).

What.
- `GrpcClient(target)`: PredictionService.Predict and GetModelMetadata,
  ModelService.GetModelStatus through the tensorflow-serving-api stubs;
  tensors go through tf.make_tensor_proto / tf.make_ndarray.
- `RestClient(base_url)`: POST /v1/models/NAME[/versions/N|/labels/L]:predict
  with {"inputs": ...} (columnar) or {"instances": ...} (row), binary strings
  as {"b64": ...}; GET status and metadata. urllib only.
- `image_inputs(path, box, focal, signature)`: the request for one image file
  (encoded bytes for `serving_bytes`, decoded pixels for `serving_default`),
  with the whole image as the box and a default field of view unless given.

The command line sends one image and prints the poses:

  python -m export.client --server=localhost:8500 --model=NAME --image=PATH
      [--box=x,y,w,h] [--focal=PX] [--signature=serving_bytes]
      [--rest] [--version=N | --version_label=L] [--json]

or a 2D detector's keypoints to the `lift` signature (decoupled models;
`keypoint_inputs`): --keypoints=FILE [--image=PATH | --image_size=W,H]
[--image_id=ID] [--focal=PX].

(--rest: --server is the REST address, e.g. localhost:8501.)

Errors: gRPC calls raise grpc.RpcError (code() / details()); REST calls raise
RestError with the HTTP status and the server's {"error": ...} message.
"""
from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.request
from typing import Any, Mapping, Sequence

from absl import app
from absl import flags
import numpy as np

from export.protocol import MAX_MESSAGE_BYTES
from zoo import cli
from zoo.signatures import BYTES_SIGNATURE
from zoo.signatures import DEFAULT_SIGNATURE
from zoo.signatures import LIFT_SIGNATURE



def _tf():
  import tensorflow as tf  # deferred: the REST client works without it
  return tf


# ----------------------------------------------------------------------------
# gRPC
# ----------------------------------------------------------------------------

class GrpcClient:
  """TF Serving gRPC client (PredictionService + ModelService)."""

  def __init__(self, target: str = 'localhost:8500', timeout: float = 60.):
    import grpc
    from tensorflow_serving.apis import model_service_pb2_grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc
    self.target = target
    self.timeout = timeout
    self.channel = grpc.insecure_channel(target, options=[
        ('grpc.max_send_message_length', MAX_MESSAGE_BYTES),
        ('grpc.max_receive_message_length', MAX_MESSAGE_BYTES)])
    self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(
        self.channel)
    self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

  def close(self) -> None:
    self.channel.close()

  def __enter__(self):
    return self

  def __exit__(self, *_):
    self.close()

  @staticmethod
  def _set_spec(spec, model: str, version: int | None,
                version_label: str | None, signature_name: str | None = None):
    if version is not None and version_label is not None:
      raise ValueError('pass at most one of version and version_label')
    spec.name = model
    if version is not None:
      spec.version.value = int(version)
    if version_label is not None:
      spec.version_label = version_label
    if signature_name:
      spec.signature_name = signature_name

  def predict_request(self, model: str, inputs: Mapping[str, Any],
                      signature_name: str = DEFAULT_SIGNATURE,
                      version: int | None = None,
                      version_label: str | None = None,
                      output_filter: Sequence[str] = ()):
    from tensorflow_serving.apis import predict_pb2
    tf = _tf()
    request = predict_pb2.PredictRequest()
    self._set_spec(request.model_spec, model, version, version_label,
                   signature_name)
    for key, value in inputs.items():
      request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    request.output_filter.extend(output_filter)
    return request

  def predict_raw(self, request):
    """Predict with a ready PredictRequest; returns the PredictResponse."""
    return self.prediction.Predict(request, timeout=self.timeout)

  def predict(self, model: str, inputs: Mapping[str, Any],
              signature_name: str = DEFAULT_SIGNATURE,
              version: int | None = None, version_label: str | None = None,
              output_filter: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Outputs of one Predict call as numpy arrays."""
    response = self.predict_raw(self.predict_request(
        model, inputs, signature_name, version, version_label, output_filter))
    tf = _tf()
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}

  def metadata(self, model: str, version: int | None = None,
               version_label: str | None = None) -> dict[str, Any]:
    """{'model_spec': ModelSpec, 'signature_def': {name: SignatureDef}}."""
    from tensorflow_serving.apis import get_model_metadata_pb2
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        metadata_field=['signature_def'])
    self._set_spec(request.model_spec, model, version, version_label)
    response = self.prediction.GetModelMetadata(request, timeout=self.timeout)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata['signature_def'].Unpack(sig_map)
    return {'model_spec': response.model_spec,
            'signature_def': dict(sig_map.signature_def)}

  def status(self, model: str, version: int | None = None,
             version_label: str | None = None) -> list[dict[str, Any]]:
    """[{version, state ('AVAILABLE', ...), error_code, error_message}]."""
    from tensorflow_serving.apis import get_model_status_pb2
    request = get_model_status_pb2.GetModelStatusRequest()
    self._set_spec(request.model_spec, model, version, version_label)
    response = self.models.GetModelStatus(request, timeout=self.timeout)
    state_name = get_model_status_pb2.ModelVersionStatus.State.Name
    return [{'version': s.version, 'state': state_name(s.state),
             'error_code': int(s.status.error_code),
             'error_message': s.status.error_message}
            for s in response.model_version_status]


# ----------------------------------------------------------------------------
# REST
# ----------------------------------------------------------------------------

class RestError(Exception):
  """A non-200 REST reply: HTTP status and the server's error message."""

  def __init__(self, status: int, message: str):
    super().__init__(f'HTTP {status}: {message}')
    self.status = status
    self.message = message


def to_json_value(value: Any) -> Any:
  """numpy / bytes -> JSON (binary strings as {"b64": ...})."""
  if isinstance(value, (bytes, np.bytes_)):
    return {'b64': base64.b64encode(bytes(value)).decode()}
  if isinstance(value, str):
    return value
  array = np.asarray(value)
  if array.dtype == object or array.dtype.kind == 'S':
    if array.ndim == 0:
      return to_json_value(array.item())
    return [to_json_value(v) for v in array]
  return array.tolist()


class RestClient:
  """TF Serving REST client (urllib)."""

  def __init__(self, base_url: str = 'http://localhost:8501',
               timeout: float = 60.):
    if '://' not in base_url:
      base_url = 'http://' + base_url
    self.base_url = base_url.rstrip('/')
    self.timeout = timeout

  def _url(self, model: str, version: int | None, version_label: str | None,
           tail: str = '') -> str:
    if version is not None and version_label is not None:
      raise ValueError('pass at most one of version and version_label')
    url = f'{self.base_url}/v1/models/{model}'
    if version is not None:
      url += f'/versions/{int(version)}'
    elif version_label is not None:
      url += f'/labels/{version_label}'
    return url + tail

  def _call(self, url: str, body: Any | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method='GET' if body is None else 'POST',
        headers={'Content-Type': 'application/json'})
    try:
      with urllib.request.urlopen(request, timeout=self.timeout) as reply:
        return json.loads(reply.read())
    except urllib.error.HTTPError as e:
      text = e.read().decode(errors='replace')
      try:
        message = json.loads(text).get('error', text)
      except (ValueError, AttributeError):
        message = text
      raise RestError(e.code, message) from None

  def predict_json(self, model: str, body: dict, version: int | None = None,
                   version_label: str | None = None) -> Any:
    """POST a ready JSON body to :predict; returns the JSON reply."""
    return self._call(self._url(model, version, version_label, ':predict'),
                      body)

  def predict(self, model: str, inputs: Mapping[str, Any],
              signature_name: str | None = None, version: int | None = None,
              version_label: str | None = None,
              row_format: bool = False) -> dict[str, np.ndarray]:
    """Outputs as numpy float arrays (columnar "inputs" or row "instances")."""
    body: dict[str, Any] = {}
    if signature_name:
      body['signature_name'] = signature_name
    if row_format:
      arrays = {k: np.asarray(v) if not isinstance(v, list) else v
                for k, v in inputs.items()}
      batch = {len(v) for v in arrays.values()}
      if len(batch) != 1:
        raise ValueError('row format needs the same batch size for every '
                         f'input, got {sorted(batch)}')
      body['instances'] = [{k: to_json_value(v[i]) for k, v in arrays.items()}
                           for i in range(batch.pop())]
    else:
      body['inputs'] = {k: to_json_value(v) for k, v in inputs.items()}
    reply = self.predict_json(model, body, version, version_label)
    if 'outputs' in reply:
      outputs = reply['outputs']
      if not isinstance(outputs, dict):
        outputs = {'output': outputs}
      return {k: np.asarray(v, np.float32) for k, v in outputs.items()}
    rows = reply['predictions']
    if rows and not isinstance(rows[0], dict):
      return {'output': np.asarray(rows, np.float32)}
    return {k: np.asarray([r[k] for r in rows], np.float32) for k in rows[0]}

  def metadata(self, model: str, version: int | None = None,
               version_label: str | None = None) -> dict:
    return self._call(self._url(model, version, version_label, '/metadata'))

  def status(self, model: str, version: int | None = None,
             version_label: str | None = None) -> dict:
    return self._call(self._url(model, version, version_label))


# ----------------------------------------------------------------------------
# Requests for image files
# ----------------------------------------------------------------------------

def image_inputs(image_path: str, box: str | None = None,
                 focal_px: float | None = None,
                 signature: str = BYTES_SIGNATURE
                 ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """(inputs of one request, description of box and intrinsics)."""
  from zoo import inference
  image = inference.read_image(image_path)
  height, width = image.shape[:2]
  box_xywh = inference.parse_box(box, height, width)
  intrinsics, note = inference.make_intrinsics(height, width, focal_px)
  inputs = {'boxes': box_xywh[None].astype(np.float32),
            'intrinsics': intrinsics[None].astype(np.float32)}
  if signature == BYTES_SIGNATURE:
    with open(image_path, 'rb') as f:
      inputs['image_bytes'] = np.array([f.read()], dtype=object)
  else:
    inputs['images'] = image[None]
  info = {'image_size_hw': [height, width], 'box_xywh': box_xywh.tolist(),
          'box_source': 'given' if box else 'whole image',
          'intrinsics': intrinsics.tolist(), 'intrinsics_source': note}
  return inputs, info


def keypoint_inputs(keypoints_path: str, image_path: str | None = None,
                    image_size: tuple[int, int] | None = None,
                    focal_px: float | None = None, image_id: str | None = None
                    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """(inputs of one `lift` request, description) for a keypoints file.

  The file's persons of one image (zoo.keypoints.read_keypoints /
  select_persons; COCO-17 mapped to H36M-17); persons with fewer than
  keypoints.DEFAULT_MIN_JOINTS joints scoring keypoints.DEFAULT_MIN_SCORE are
  left out (listed in the description). Intrinsics: zoo.inference's rule for
  the image's (or image_size's (W, H)) size.
  """
  from zoo import inference
  from zoo import keypoints as keypoints_lib
  kfile = keypoints_lib.read_keypoints(keypoints_path)
  image_hw = None
  if image_path is not None:
    image_hw = inference.read_image(image_path).shape[:2]
  elif image_size is not None:
    image_hw = (int(image_size[1]), int(image_size[0]))
  persons = keypoints_lib.select_persons(kfile, image_path, image_id)
  if image_path is not None:
    keypoints_lib.check_image_matches(kfile, persons, image_hw, image_path,
                                      keypoints_lib.DEFAULT_MIN_SCORE)
  rows, skipped, notes = [], [], []
  ks = []
  for p in persons:
    count = int(keypoints_lib.detected(p.scores).sum())
    if count < keypoints_lib.DEFAULT_MIN_JOINTS:
      skipped.append({'index': p.index, 'error': f'only {count} confident '
                      'joints; not sent'})
      continue
    hw = keypoints_lib.image_size_of(kfile, p, image_hw)
    if hw is None:
      raise ValueError('the image size is unknown: pass --image or '
                       '--image_size=W,H')
    k, note = inference.make_intrinsics(hw[0], hw[1], focal_px)
    rows.append(p)
    ks.append(k)
    notes.append(note)
  if not rows:
    raise ValueError(f'{keypoints_path}: no person has '
                     f'{keypoints_lib.DEFAULT_MIN_JOINTS} joints scoring >= '
                     f'{keypoints_lib.DEFAULT_MIN_SCORE}')
  inputs = {'keypoints2d_px': np.stack([p.keypoints2d_px for p in rows]
                                       ).astype(np.float32),
            'scores': np.stack([p.scores for p in rows]).astype(np.float32),
            'intrinsics': np.stack(ks).astype(np.float32)}
  info = {'persons': [p.index for p in rows], 'skipped': skipped,
          'intrinsics_source': notes[0]}
  return inputs, info


def format_poses(outputs: Mapping[str, np.ndarray], row: int = 0) -> str:
  """A per-joint table of one example (default the first)."""
  from zoo import skeleton as skel
  lines = [f'{"joint":<15}{"u px":>9}{"v px":>9}{"X mm":>10}{"Y mm":>10}'
           f'{"Z mm":>10}{"conf":>7}']
  for j, name in enumerate(skel.H36M17.joint_names):
    u, v = outputs['poses2d_px'][row, j]
    x, y, z = outputs['poses3d_cam_mm'][row, j]
    c = outputs['confidence'][row, j]
    lines.append(f'{name:<15}{u:9.1f}{v:9.1f}{x:10.1f}{y:10.1f}{z:10.1f}'
                 f'{c:7.2f}')
  return '\n'.join(lines)


PROGRAM = 'python -m export.client'


def define_flags(flag_values: flags.FlagValues) -> None:
  """The command line's flags (zoo.cli: defined only to run the program)."""
  fv = {'flag_values': flag_values}
  flags.DEFINE_string('server', 'localhost:8500', 'host:port (gRPC, or REST '
                      'with --rest)', **fv)
  flags.DEFINE_boolean('rest', False, 'use the REST API', **fv)
  flags.DEFINE_string('model', None, 'the served model\'s name', **fv)
  flags.DEFINE_string('image', None, 'image file (required unless '
                      '--keypoints is given)', **fv)
  flags.DEFINE_string('keypoints', None, 'a 2D detector\'s keypoints JSON '
                      '(COCO results, a COCO annotation file or H36M-17 '
                      'JSON): sent to the `lift` signature', **fv)
  flags.DEFINE_string('image_size', None, 'W,H of the keypoints\' image '
                      'when no --image is given', **fv)
  flags.DEFINE_string('image_id', None, 'with --keypoints: the persons of '
                      'this image id', **fv)
  flags.DEFINE_string('box', None, 'x,y,w,h in pixels (default: whole image)',
                      **fv)
  flags.DEFINE_float('focal', None, 'focal length in pixels (default: '
                     'zoo.inference\'s default field of view)', **fv)
  flags.DEFINE_enum('signature', BYTES_SIGNATURE,
                    [BYTES_SIGNATURE, DEFAULT_SIGNATURE], 'send encoded bytes '
                    'or decoded pixels (with --keypoints: always `lift`)',
                    **fv)
  flags.DEFINE_integer('version', None, 'model version (default: the '
                       'highest served)', **fv)
  flags.DEFINE_string('version_label', None, 'version label', **fv)
  flags.DEFINE_float('timeout', 60., 'request timeout in seconds', **fv)
  flags.DEFINE_boolean('json', False, 'print JSON instead of a table', **fv)
  flags.mark_flag_as_required('model', flag_values=flag_values)


def run(args: flags.FlagValues, argv: Sequence[str] = ()) -> int:
  """Sends the request the flags describe and prints the poses: 0, or 1
  for a server error, 2 for bad input."""
  del argv  # unused
  if args.image is None and args.keypoints is None:
    raise app.UsageError('one of --image and --keypoints is required')
  signature = LIFT_SIGNATURE if args.keypoints else args.signature
  try:
    if args.keypoints:
      size = None
      if args.image_size:
        size = tuple(int(v) for v in args.image_size.split(','))
        if len(size) != 2:
          raise ValueError(f'--image_size must be W,H, got {args.image_size}')
      inputs, info = keypoint_inputs(args.keypoints, args.image, size,
                                     args.focal, args.image_id)
    else:
      inputs, info = image_inputs(args.image, args.box, args.focal,
                                  signature)
  except (ValueError, FileNotFoundError) as e:
    return cli.bad_input(e)
  try:
    if args.rest:
      outputs = RestClient(args.server, args.timeout).predict(
          args.model, inputs, signature, args.version, args.version_label)
    else:
      with GrpcClient(args.server, args.timeout) as client:
        outputs = client.predict(args.model, inputs, signature,
                                 args.version, args.version_label)
  except RestError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  except Exception as e:  # grpc.RpcError
    code = e.code() if hasattr(e, 'code') else None
    details = e.details() if hasattr(e, 'details') else str(e)
    print(f'error: {code}: {details}', file=sys.stderr)
    return 1
  if args.keypoints:
    if args.json:
      print(json.dumps({**info, **{k: np.asarray(v).round(3).tolist()
                                   for k, v in outputs.items()}}, indent=1))
    else:
      print(f'intrinsics {info["intrinsics_source"]}')
      for row, index in enumerate(info['persons']):
        print(f'person {index}:')
        print(format_poses(outputs, row))
      for skipped in info['skipped']:
        print(f'person {skipped["index"]}: {skipped["error"]}')
  elif args.json:
    print(json.dumps({**info, **{k: np.asarray(v)[0].round(3).tolist()
                                 for k, v in outputs.items()}}, indent=1))
  else:
    print(f'box {info["box_xywh"]} ({info["box_source"]}); intrinsics '
          f'{info["intrinsics_source"]}')
    print(format_poses(outputs))
  return 0


def main(argv: Sequence[str]) -> int:
  """The program on `argv` (flags only), in this process."""
  return cli.call(define_flags, run, argv, PROGRAM)


if __name__ == '__main__':
  cli.run_program(define_flags, run)

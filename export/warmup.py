"""Example requests for every serving signature, and TF Serving's warm-up file.

What. `example_inputs(input_specs)` builds a few small valid requests per
signature: a random image (uint8 and encoded JPEG / PNG) with a centred
person box and a default-field-of-view camera for the zoo's own signatures,
a standing person's keypoints for the keypoint `lift` signature, and
deterministic values of the declared shapes (unknown dimensions -> 1 or
2) for model-specific ones. `write_warmup_file` stores them as
`assets.extra/tf_serving_warmup_requests`, a TFRecord of PredictionLog
records (tensorflow_serving.apis) that TF Serving replays when it loads a
version, so the first real request does not pay for graph initialisation.
The same examples are what the tests and the benchmark send.

Why here: the warm-up records must match the signatures exactly (every input
present, right dtype), and the exporter, the tests and the benchmark must
agree on them.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import tensorflow as tf

WARMUP_FILE = 'tf_serving_warmup_requests'
MAX_WARMUP_RECORDS = 1000  # TF Serving reads at most this many


def _image(rng: np.random.RandomState, height: int, width: int) -> np.ndarray:
  """A smooth random RGB image (bilinear upsampling of coarse noise, NumPy)."""
  small = rng.randint(0, 256, size=(max(height // 8, 2), max(width // 8, 2),
                                    3)).astype(np.float64)
  ys = np.linspace(0, small.shape[0] - 1, height)
  xs = np.linspace(0, small.shape[1] - 1, width)
  y0 = np.minimum(ys.astype(int), small.shape[0] - 2)
  x0 = np.minimum(xs.astype(int), small.shape[1] - 2)
  wy = (ys - y0)[:, None, None]
  wx = (xs - x0)[None, :, None]
  top = small[y0][:, x0] * (1 - wx) + small[y0][:, x0 + 1] * wx
  bottom = small[y0 + 1][:, x0] * (1 - wx) + small[y0 + 1][:, x0 + 1] * wx
  image = top * (1 - wy) + bottom * wy
  return np.clip(np.round(image), 0, 255).astype(np.uint8)


def image_request(batch: int, height: int, width: int,
                  seed: int = 0) -> dict[str, np.ndarray]:
  """serving_default inputs: images, boxes (centred, 80 %), intrinsics."""
  rng = np.random.RandomState(seed)
  images = np.stack([_image(rng, height, width) for _ in range(batch)])
  boxes = np.array([[0.1 * width + i, 0.1 * height, 0.8 * width, 0.8 * height]
                    for i in range(batch)], np.float32)
  # Imported here: export.serve reads warm-up files without the zoo.
  from zoo.data import records
  k = records.default_intrinsics(height, width)
  return {'images': images, 'boxes': boxes,
          'intrinsics': np.repeat(k[None], batch, 0).astype(np.float32)}


def bytes_request(sizes: Sequence[tuple[int, int]], seed: int = 0,
                  formats: Sequence[str] = ('png',)
                  ) -> dict[str, np.ndarray]:
  """serving_bytes inputs for images of the given (height, width) sizes."""
  from zoo.data import records
  rng = np.random.RandomState(seed)
  encoded, boxes, ks = [], [], []
  for i, (height, width) in enumerate(sizes):
    image = _image(rng, height, width)
    fmt = formats[i % len(formats)]
    data = tf.io.encode_png(image) if fmt == 'png' else \
        tf.io.encode_jpeg(image, quality=95)
    encoded.append(data.numpy())
    boxes.append([0.1 * width, 0.1 * height, 0.8 * width, 0.8 * height])
    ks.append(records.default_intrinsics(height, width))
  return {'image_bytes': np.array(encoded, dtype=object),
          'boxes': np.array(boxes, np.float32),
          'intrinsics': np.stack(ks).astype(np.float32)}


# A standing person's H36M-17 joints (x right, y down; height ~0.9) for
# keypoint requests.
_STANDING_2D = np.array([
    [0., 0.], [-.08, 0.], [-.09, .25], [-.09, .5], [.08, 0.], [.09, .25],
    [.09, .5], [0., -.13], [0., -.27], [0., -.33], [0., -.4], [.1, -.26],
    [.14, -.12], [.16, 0.], [-.1, -.26], [-.14, -.12], [-.16, 0.]])


def keypoints_request(batch: int, height: int, width: int,
                      seed: int = 0) -> dict[str, np.ndarray]:
  """`lift` inputs: keypoints2d_px [B, 17, 2] of a standing person (jittered)
  in a height x width image, scores [B, 17] (one joint missing per person),
  intrinsics [B, 3, 3] (default field of view)."""
  rng = np.random.RandomState(seed)
  scale = 0.8 * height / 0.9
  centre = np.array([width / 2, height * 0.45])
  keypoints = (_STANDING_2D[None] * scale + centre
               + rng.standard_normal((batch, 17, 2)) * 0.01 * scale)
  scores = rng.uniform(0.5, 1., (batch, 17))
  scores[np.arange(batch), rng.randint(0, 17, batch)] = 0.05
  from zoo.data import records
  k = records.default_intrinsics(height, width)
  return {'keypoints2d_px': keypoints.astype(np.float32),
          'scores': scores.astype(np.float32),
          'intrinsics': np.repeat(k[None], batch, 0).astype(np.float32)}


def spec_request(specs: Sequence[tf.TensorSpec], batch: int,
                 seed: int = 0) -> dict[str, np.ndarray]:
  """Values of the declared shapes: dim 0 = batch, other unknown dims = 2."""
  rng = np.random.RandomState(seed)
  out = {}
  for spec in specs:
    dims = spec.shape.as_list()
    shape = [batch if i == 0 and d is None else (2 if d is None else d)
             for i, d in enumerate(dims)]
    dtype = spec.dtype
    if dtype.is_floating:
      value = (rng.standard_normal(shape) * 50.).astype(dtype.as_numpy_dtype)
    elif dtype.is_integer or dtype == tf.uint8:
      value = rng.randint(0, 10, size=shape).astype(dtype.as_numpy_dtype)
    elif dtype == tf.bool:
      value = rng.rand(*shape) > 0.5
    elif dtype == tf.string:
      value = np.full(shape, b'', dtype=object)
    else:
      raise TypeError(f'no example values for input {spec.name!r} of dtype '
                      f'{dtype.name}')
    out[spec.name] = value
  return out


def example_inputs(input_specs: dict[str, list[tf.TensorSpec]]
                   ) -> dict[str, list[dict[str, np.ndarray]]]:
  """Signature name -> a few valid requests (name -> numpy array)."""
  examples = {}
  for name, specs in input_specs.items():
    names = sorted(s.name for s in specs)
    if names == ['boxes', 'images', 'intrinsics']:
      examples[name] = [image_request(1, 48, 64, seed=1),
                        image_request(2, 80, 60, seed=2)]
    elif names == ['boxes', 'image_bytes', 'intrinsics']:
      examples[name] = [bytes_request([(48, 64)], seed=3, formats=('jpeg',)),
                        bytes_request([(40, 56), (72, 50)], seed=4,
                                      formats=('png', 'jpeg'))]
    elif names == ['intrinsics', 'keypoints2d_px', 'scores']:
      examples[name] = [keypoints_request(1, 48, 64, seed=7),
                        keypoints_request(2, 480, 640, seed=8)]
    else:
      examples[name] = [spec_request(specs, 1, seed=5),
                        spec_request(specs, 2, seed=6)]
  return examples


def prediction_logs(model_name: str,
                    examples: dict[str, list[dict[str, np.ndarray]]]) -> list:
  """PredictionLog protos (one predict_log per example request)."""
  from tensorflow_serving.apis import predict_pb2
  from tensorflow_serving.apis import prediction_log_pb2
  logs = []
  for signature, requests in examples.items():
    for inputs in requests:
      request = predict_pb2.PredictRequest()
      request.model_spec.name = model_name
      request.model_spec.signature_name = signature
      for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
      logs.append(prediction_log_pb2.PredictionLog(
          predict_log=prediction_log_pb2.PredictLog(request=request)))
  if len(logs) > MAX_WARMUP_RECORDS:
    raise ValueError(f'{len(logs)} warm-up records; TF Serving reads at most '
                     f'{MAX_WARMUP_RECORDS}')
  return logs


def write_warmup_file(export_dir: str, model_name: str,
                      examples: dict[str, list[dict[str, np.ndarray]]]) -> str:
  """Writes EXPORT_DIR/assets.extra/tf_serving_warmup_requests."""
  directory = os.path.join(export_dir, 'assets.extra')
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, WARMUP_FILE)
  with tf.io.TFRecordWriter(path) as writer:
    for log in prediction_logs(model_name, examples):
      writer.write(log.SerializeToString())
  return path


def read_warmup_file(path: str) -> list:
  """PredictionLog records of a warm-up file."""
  from tensorflow_serving.apis import prediction_log_pb2
  logs = []
  for record in tf.data.TFRecordDataset(path):
    log = prediction_log_pb2.PredictionLog()
    log.ParseFromString(record.numpy())
    logs.append(log)
  return logs

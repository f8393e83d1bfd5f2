"""Helpers of the export tests (and of tests/zoo/test_contract.py): what a
signature must return, computed on the Keras model, and the comparison."""
from __future__ import annotations

import numpy as np
import tensorflow as tf


def keras_outputs(model, signature: str, inputs: dict) -> dict[str, np.ndarray]:
  """What a signature must return, computed on the Keras model directly."""
  from zoo import inference
  if signature == 'serving_default':
    out = inference.predict_in_image(model, inputs['images'],
                                       inputs['boxes'], inputs['intrinsics'])
  elif signature == 'serving_bytes':
    rows = []
    for encoded, box, k in zip(inputs['image_bytes'], inputs['boxes'],
                               inputs['intrinsics']):
      image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
      rows.append(inference.predict_in_image(model, image[None], box[None],
                                               k[None]))
    out = {key: tf.concat([r[key] for r in rows], 0) for key in rows[0]}
  else:
    fn, specs = model.extra_serving_signatures()[signature]
    out = fn(*[tf.constant(inputs[s.name]) for s in specs])
  return {k: np.asarray(v) for k, v in out.items()}


def extra_cases(signature: str, specs) -> list[dict]:
  """Requests beyond the warm-up ones: odd sizes, bigger batches."""
  from export import warmup
  names = sorted(s.name for s in specs)
  if signature == 'serving_default':
    return [warmup.image_request(3, 97, 131, seed=11)]
  if signature == 'serving_bytes':
    return [warmup.bytes_request([(61, 45), (90, 120), (33, 70)], seed=12,
                                 formats=('png', 'jpeg'))]
  assert names, signature
  if names == ['intrinsics', 'keypoints2d_px', 'scores']:
    return [warmup.keypoints_request(3, 200, 150, seed=14)]
  return [warmup.spec_request(specs, 3, seed=13)]


def assert_close(actual: dict, expected: dict, what: str,
                 rtol: float = 1e-3) -> None:
  """Outputs agree to ~1e-3 relative (scaled by each output's magnitude)."""
  assert sorted(actual) == sorted(expected), (what, sorted(actual),
                                              sorted(expected))
  for key, want in expected.items():
    got = np.asarray(actual[key])
    assert got.dtype == np.float32, (what, key, got.dtype)
    assert got.shape == want.shape, (what, key, got.shape, want.shape)
    scale = max(float(np.max(np.abs(want))), 1.)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale,
                               err_msg=f'{what}: output {key!r}')

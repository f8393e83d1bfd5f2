"""The serving tf.Module of a zoo model: the signatures TF Serving calls.

What. `PoseServingModule(model)` wraps any zoo PoseModel (never branching on
its name) in TF Model Garden style: explicit `tf.function` input signatures
with named inputs, dimension 0 the batch, float32 outputs. Signatures:

- `serving_default`: images uint8 [B, H, W, 3] (any H, W; one size per
  request), boxes float32 [B, 4] (x, y, w, h px), intrinsics float32
  [B, 3, 3] -> poses3d_cam_mm [B, 17, 3] (the images' camera frame, mm),
  poses3d_rel_mm [B, 17, 3] (root-relative, camera axes), poses2d_px
  [B, 17, 2] (image px), confidence [B, 17]. Cropping, resizing and mapping
  back happen in the graph (zoo.inference.predict_in_image, i.e.
  zoo.crop.perspective_crop + predict_poses + zoo.crop.crop_to_original).
- `serving_bytes`: image_bytes string [B] (encoded JPEG/PNG/GIF/BMP; images may
  differ in size, each is decoded and cropped on its own with tf.map_fn),
  boxes, intrinsics -> the same outputs.
- Extra model-specific signatures from the model's hook (zoo.base.PoseModel)
  `extra_serving_signatures() -> {name: (fn, [tf.TensorSpec(..., name=...)])}`
  where `fn(*tensors)` returns a dict of tensors (e.g. lifting_deep's `lift`).

Why a tf.Module holding only the captured tf.Variables (not the Keras model
object, and the functions only as signatures): the SavedModel then contains
nothing but the signature graphs and the weights, so it loads
with plain TensorFlow (TF Serving, saved_model_cli, a process without the zoo)
and none of Keras' object metadata has to round-trip.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import tensorflow as tf

from zoo import inference
from zoo.data import records
from zoo.signatures import BYTES_SIGNATURE
from zoo.signatures import DEFAULT_SIGNATURE

EXTRA_SIGNATURES_METHOD = 'extra_serving_signatures'

IMAGES_SPEC = tf.TensorSpec([None, None, None, 3], tf.uint8, name='images')
IMAGE_BYTES_SPEC = tf.TensorSpec([None], tf.string, name='image_bytes')
BOXES_SPEC = tf.TensorSpec([None, 4], tf.float32, name='boxes')
INTRINSICS_SPEC = tf.TensorSpec([None, 3, 3], tf.float32, name='intrinsics')


def _check_batch(reference: tf.Tensor, reference_name: str,
                 **tensors: tf.Tensor) -> list:
  """Asserts a non-empty batch and as many rows in every tensor."""
  n = tf.shape(reference)[0]
  return [tf.debugging.Assert(n > 0, [
      f'input {reference_name!r} has batch size 0 (dimension 0); send at '
      'least one entry'])] + [tf.debugging.assert_equal(
          tf.shape(t)[0], n,
          message=f'input {name!r} must have one row per entry of '
                  f'{reference_name!r} (dimension 0 is the batch)')
                              for name, t in tensors.items()]


def _check_image_size(images: tf.Tensor) -> list:
  shape = tf.shape(images)
  return [tf.debugging.Assert((shape[1] > 0) & (shape[2] > 0), [
      "input 'images' must have height and width >= 1 pixel (shape [B, H, W, "
      '3])'])]


def _check_values(boxes: tf.Tensor, intrinsics: tf.Tensor) -> list:
  """Finite, positive-size boxes; finite, invertible pinhole intrinsics."""
  focal_ok = (intrinsics[:, 0, 0] > 0) & (intrinsics[:, 1, 1] > 0)
  # With fx, fy > 0, K = [[fx, s, cx], [0, fy, cy], [a, b, c]] is invertible
  # unless its determinant vanishes (a pinhole K has last row [0, 0, 1]).
  det = tf.linalg.det(tf.where(tf.math.is_finite(intrinsics), intrinsics, 0.))
  return [
      tf.debugging.assert_all_finite(boxes, message="input 'boxes' must be "
                                     'finite (x, y, w, h in pixels)'),
      tf.debugging.Assert(
          tf.reduce_all(boxes[:, 2:] > 0),
          ["input 'boxes' must have positive width and height (x, y, w, h in "
           'pixels, w > 0 and h > 0)']),
      tf.debugging.assert_all_finite(intrinsics, message="input 'intrinsics' "
                                     'must be finite'),
      tf.debugging.Assert(
          tf.reduce_all(focal_ok),
          ["input 'intrinsics' must have positive focal lengths fx = K[0][0] "
           'and fy = K[1][1] (pixels)']),
      tf.debugging.Assert(
          tf.reduce_all(~focal_ok | (tf.abs(det) > 0)),
          ["input 'intrinsics' must be invertible 3x3 camera matrices "
           '[[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (pixels)']),
  ]


def _float32_outputs(outputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
  if not isinstance(outputs, dict):
    raise TypeError('a serving function must return a dict of named tensors, '
                    f'got {type(outputs).__name__}')
  return {k: tf.cast(v, tf.float32) if v.dtype.is_floating else v
          for k, v in outputs.items()}


class PoseServingModule(tf.Module):
  """Serving signatures of one zoo model (see the module docstring)."""

  def __init__(self, model, flip_test: bool = False, name: str | None = None):
    super().__init__(name=name or 'pose_serving')
    self._model = model  # not tracked: see __setattr__ below
    self._flip_test = bool(flip_test)
    self.input_size, self.box_margin = inference.crop_settings(model)
    functions = {
        DEFAULT_SIGNATURE: tf.function(
            self._serve_images,
            input_signature=[IMAGES_SPEC, BOXES_SPEC, INTRINSICS_SPEC]),
        BYTES_SIGNATURE: tf.function(
            self._serve_bytes,
            input_signature=[IMAGE_BYTES_SPEC, BOXES_SPEC, INTRINSICS_SPEC])}
    for sig_name, (fn, spec) in self._extra_signatures().items():
      functions[sig_name] = tf.function(self._wrap_extra(fn),
                                        input_signature=list(spec))
    self._functions = functions

  # Not tracked for saving: the Keras object (the variables its graphs use
  # are tracked by `signatures`) and the tf.functions, kept in a plain dict:
  # they are exported as signatures only (as attributes, tf.saved_model.save
  # would also serialise them as object methods, tracing each a second time).
  _UNTRACKED = ('_model', '_functions')

  def __setattr__(self, name, value):
    if name in self._UNTRACKED:
      object.__setattr__(self, name, value)
      return
    super().__setattr__(name, value)

  def function(self, signature: str):
    """The tf.function behind a signature (for tests and benchmarks)."""
    return self._functions[signature]

  # --- signatures -------------------------------------------------------
  def _serve_images(self, images, boxes, intrinsics):
    checks = (_check_batch(images, 'images', boxes=boxes,
                           intrinsics=intrinsics) + _check_image_size(images) +
              _check_values(boxes, intrinsics))
    with tf.control_dependencies(checks):  # validate before any use
      images, boxes, intrinsics = (tf.identity(images), tf.identity(boxes),
                                   tf.identity(intrinsics))
    return inference.predict_in_image(self._model, images, boxes,
                                        intrinsics, flip_test=self._flip_test)

  def _serve_bytes(self, image_bytes, boxes, intrinsics):
    checks = _check_batch(image_bytes, 'image_bytes', boxes=boxes,
                          intrinsics=intrinsics) + _check_values(boxes,
                                                                 intrinsics)
    with tf.control_dependencies(checks):  # validate before any use
      image_bytes, boxes, intrinsics = (
          tf.identity(image_bytes), tf.identity(boxes), tf.identity(intrinsics))

    def crop_one(args):
      encoded, box, k = args
      image = records.decode_image(encoded)
      crop = inference.crop_images(self._model, image[None], box[None],
                                     k[None])
      return {key: value[0] for key, value in crop.items()}

    size = self.input_size
    crops = tf.map_fn(
        crop_one, (image_bytes, boxes, intrinsics),
        fn_output_signature={
            'image': tf.TensorSpec([size, size, 3], tf.float32),
            'intrinsics': tf.TensorSpec([3, 3], tf.float32),
            'rotation': tf.TensorSpec([3, 3], tf.float32),
            'homography': tf.TensorSpec([3, 3], tf.float32)})
    return inference.predict_crops(self._model, crops,
                                     flip_test=self._flip_test)

  def _extra_signatures(self) -> dict[str, tuple[Callable, Sequence]]:
    extra = dict(self._model.extra_serving_signatures() or {})
    for sig_name, value in extra.items():
      if sig_name in (DEFAULT_SIGNATURE, BYTES_SIGNATURE):
        raise ValueError(f'{EXTRA_SIGNATURES_METHOD}() of model '
                         f'{self._model.name!r} returned signature '
                         f'{sig_name!r}, which the exporter defines itself')
      try:
        fn, spec = value
        spec = list(spec)
      except (TypeError, ValueError):
        raise TypeError(f'{EXTRA_SIGNATURES_METHOD}()[{sig_name!r}] must be '
                        '(fn, [tf.TensorSpec(..., name=...), ...])') from None
      bad = [s for s in spec if not isinstance(s, tf.TensorSpec) or not s.name]
      if bad or not callable(fn):
        raise TypeError(f'{EXTRA_SIGNATURES_METHOD}()[{sig_name!r}] must be '
                        '(callable, [named tf.TensorSpec, ...]); got '
                        f'{value!r}')
    return extra

  @staticmethod
  def _wrap_extra(fn: Callable) -> Callable:
    def wrapped(*args):
      return _float32_outputs(fn(*args))
    return wrapped

  # --- for the exporter ---------------------------------------------------
  def signatures(self) -> dict[str, Any]:
    """Signature name -> concrete function (for tf.saved_model.save).

    Call it before saving: it also tracks the variables the graphs capture.
    """
    concrete = {name: fn.get_concrete_function()
                for name, fn in self._functions.items()}
    # Track exactly the tf.Variables the graphs capture (as Keras'
    # ExportArchive does). Tracking the keras.Variable wrappers instead saves a
    # SavedModel that tf.saved_model.load restores but whose TF1 saver (what
    # TF Serving and saved_model_cli run use) leaves variables uninitialised.
    captured, seen = [], set()
    for fn in concrete.values():
      for variable in fn.variables:
        if id(variable) not in seen:
          seen.add(id(variable))
          captured.append(variable)
    self.captured_variables = captured
    return concrete

  def input_specs(self) -> dict[str, list[tf.TensorSpec]]:
    """Signature name -> its input TensorSpecs (names = request keys)."""
    return {name: list(fn.input_signature)
            for name, fn in self._functions.items()}

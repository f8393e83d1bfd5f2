"""The pipeline's reduced-scale JPEG decode (make_dataset(fast_decode=True)).

Checked against independent computations: libjpeg's reduced output against
an area average of the full decode (OpenCV), the warp into a reduced image
against cv2.warpPerspective with the matrix composed here, and the whole
pipeline's crops against its full-resolution crops (labels identical, images
far closer than a one-pixel shift). Bad-record checks keep their exact sizes.
"""
from __future__ import annotations

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from zoo import crop as crop_lib  # noqa: E402
from zoo import geometry  # noqa: E402
from zoo import skeleton as skel  # noqa: E402
from zoo.config import AugmentConfig  # noqa: E402
from zoo.data import pipeline  # noqa: E402
from zoo.data import records  # noqa: E402

J = skel.NUM_JOINTS
HEIGHT, WIDTH = 484, 644  # not multiples of 8: ceil sizes are exercised
CROP = 40


def _smooth_image(rng, height, width, sigma=3.):
  """uint8 RGB: blurred noise plus a few discs (edges a shift would move)."""
  image = rng.uniform(0, 255, (height, width, 3)).astype(np.float32)
  image = cv2.GaussianBlur(image, (0, 0), sigma)
  image = (image - image.mean()) * 4 + 128
  for _ in range(12):
    centre = tuple(int(v) for v in rng.integers(0, [width, height]))
    cv2.circle(image, centre, int(rng.integers(10, 60)),
               tuple(float(v) for v in rng.uniform(0, 255, 3)), -1,
               cv2.LINE_AA)
  return np.clip(cv2.GaussianBlur(image, (0, 0), 1.), 0, 255).astype(np.uint8)


def _jpeg(image_rgb):
  return cv2.imencode('.jpg', cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR),
                      [cv2.IMWRITE_JPEG_QUALITY, 97])[1].tobytes()


# ----------------------------------------------------------------------------
# records.decode_image_reduced
# ----------------------------------------------------------------------------

@pytest.mark.parametrize('max_ratio, ratio', [
    (0., 1), (1.9, 1), (2., 2), (3.9, 2), (4., 4), (7.9, 4), (8., 8),
    (100., 8), (float('nan'), 1), (-3., 1)])
def test_decode_image_reduced_picks_the_largest_allowed_ratio(max_ratio,
                                                              ratio):
  rng = np.random.default_rng(0)
  image = _smooth_image(rng, 203, 321)
  got, got_ratio, full_size = records.decode_image_reduced(
      tf.constant(_jpeg(image)), tf.constant(max_ratio))
  assert int(got_ratio) == ratio
  # libjpeg rounds the scaled size up.
  assert got.shape == (-(-203 // ratio), -(-321 // ratio), 3)
  assert full_size.numpy().tolist() == [203, 321]


def test_decode_image_reduced_is_an_area_average_of_the_full_image():
  """Reduced pixel v covers full pixels r v .. r v + r - 1 (no offset)."""
  rng = np.random.default_rng(1)
  image = _smooth_image(rng, 256, 320)
  full = records.decode_image(tf.constant(_jpeg(image))).numpy()
  for ratio in (2, 4, 8):
    got, _, _ = records.decode_image_reduced(tf.constant(_jpeg(image)),
                                             tf.constant(float(ratio)))
    area = cv2.resize(full.astype(np.float32), (320 // ratio, 256 // ratio),
                      interpolation=cv2.INTER_AREA)
    error = np.abs(got.numpy().astype(np.float32) - area).mean()
    # A one-pixel shift of the reduced image, for scale.
    shifted = np.abs(area[:, 1:] - area[:, :-1]).mean()
    assert error < 0.25 * shifted, (ratio, error, shifted)


def test_decode_image_reduced_leaves_png_at_full_resolution():
  rng = np.random.default_rng(2)
  image = _smooth_image(rng, 60, 90)
  png = cv2.imencode('.png', cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1]
  got, ratio, full_size = records.decode_image_reduced(
      tf.constant(png.tobytes()), tf.constant(8.))
  assert int(ratio) == 1
  assert full_size.numpy().tolist() == [60, 90]
  np.testing.assert_array_equal(got.numpy(), image)


# ----------------------------------------------------------------------------
# zoo.crop.warp into a reduced image
# ----------------------------------------------------------------------------

@pytest.mark.parametrize('ratio', [2, 4])
def test_warp_maps_full_resolution_homography_into_reduced_image(ratio):
  # The crop spans 133 source px: 8 per crop px, >= 2 per crop px at 1/4.
  size = 16
  rng = np.random.default_rng(3)
  full = _smooth_image(rng, 160, 200)
  reduced = cv2.resize(full, (200 // ratio, 160 // ratio),
                       interpolation=cv2.INTER_AREA)
  k = np.array([[[300., 0, 99.5], [0, 300, 79.5], [0, 0, 1]]])
  box = [[60., 30., 80., 100.]]
  _, _, homography = crop_lib.crop_geometry(
      full[None], k, box, size, 1.2, tf.constant(0.9), tf.constant(0.3),
      tf.constant([[4., -3.]]), tf.constant(True))
  got, scale = crop_lib.warp(reduced[None], homography, size,
                             source_ratio=tf.constant(ratio))
  got = got.numpy()[0] * scale
  # Full-resolution px u -> reduced px (u + 0.5) / r - 0.5, composed here.
  to_reduced = np.array([[1 / ratio, 0, 0.5 / ratio - 0.5],
                         [0, 1 / ratio, 0.5 / ratio - 0.5], [0, 0, 1]])
  h_reduced = homography.numpy()[0].astype(np.float64) @ np.linalg.inv(
      to_reduced)  # reduced px -> crop px
  expected = cv2.warpPerspective(reduced.astype(np.float32) / 255., h_reduced,
                                 (size, size), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT,
                                 borderValue=0)
  # OpenCV interpolates with 1/32 px fixed-point weights.
  difference = np.abs(got - expected)[2:-2, 2:-2]
  assert difference.max() < 1e-2 and difference.mean() < 1e-3
  # And it is the full-resolution crop, up to the reduction's blur.
  full_crop, _ = crop_lib.warp(full[None], homography, size)
  full_crop = full_crop.numpy()[0] * scale
  shift = np.abs(full_crop[:, 1:] - full_crop[:, :-1]).mean()
  assert np.abs(got - full_crop).mean() < 0.3 * shift


# ----------------------------------------------------------------------------
# The pipeline: fast_decode on and off
# ----------------------------------------------------------------------------

def _example(rng, frame, height=HEIGHT, width=WIDTH, **overrides):
  """A large JPEG with a person box of ~300-400 px and its labels."""
  focal = rng.uniform(700, 800)
  k = np.array([[focal, 0, (width - 1) / 2 + rng.uniform(-20, 20)],
                [0, focal, (height - 1) / 2 + rng.uniform(-20, 20)],
                [0, 0, 1]])
  pose = rng.normal(0, 250, (J, 3)) + [rng.uniform(-300, 300),
                                       rng.uniform(-200, 200), 3500.]
  p2d = geometry.project(pose, k)
  lo, hi = p2d.min(0), p2d.max(0)
  fields = {'image/encoded': _jpeg(_smooth_image(rng, height, width)),
            'joints2d_px': p2d, 'joints3d_cam_mm': pose, 'intrinsics': k,
            'box_xywh': [lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]],
            'dataset': 'fixture', 'frame': frame,
            'image/height': height, 'image/width': width}
  fields.update(overrides)
  return records.make_example(fields)


@pytest.fixture(scope='module')
def jpeg_records(tmp_path_factory):
  rng = np.random.default_rng(4)
  out = tmp_path_factory.mktemp('jpeg_records')
  with records.ShardedWriter(str(out), 'train', 1) as writer:
    for frame in range(12):
      writer.write(_example(rng, frame))
  return str(out)


def _features(data, fast_decode, **kwargs):
  kwargs.setdefault('augment', AugmentConfig(rotation_prob=1., shift_fraction=
                                             0.1, occlusion_prob=0.3))
  ds = pipeline.make_dataset(data, 'train', input_size=CROP, batch_size=12,
                             training=True, seed=5, deterministic=True,
                             repeat=False, fast_decode=fast_decode, **kwargs)
  (batch,) = list(ds)
  return {k: v.numpy() for k, v in batch.items()}


def test_fast_decode_keeps_labels_and_crops(jpeg_records):
  full = _features(jpeg_records, fast_decode=False)
  fast = _features(jpeg_records, fast_decode=True)
  for key in pipeline.FEATURE_KEYS:
    if key != 'image':
      np.testing.assert_array_equal(fast[key], full[key], err_msg=key)
  error = np.abs(fast['image'] - full['image']).mean((1, 2, 3))
  shift = np.abs(full['image'][:, :, 1:] - full['image'][:, :, :-1]).mean(
      (1, 2, 3))
  assert np.all(error < 0.3 * shift), (error, shift)
  assert error.mean() * 255 < 3.
  # The fixture's crops span 7-14 source px per crop px: every example is
  # decoded reduced (a reduced decode never matches bit for bit).
  assert np.all(error > 0), error


def test_fast_decode_off_for_crops_without_2x_the_resolution(jpeg_records):
  """Crops as large as the box keep the full-resolution decode: identical."""
  augment = AugmentConfig(enabled=False)
  kwargs = dict(augment=augment)
  ds = lambda fast: pipeline.make_dataset(
      jpeg_records, 'train', input_size=256, batch_size=12, training=True,
      seed=5, deterministic=True, repeat=False, fast_decode=fast, **kwargs)
  (full,), (fast,) = list(ds(False)), list(ds(True))
  np.testing.assert_array_equal(fast['image'].numpy(), full['image'].numpy())


def test_size_check_stays_exact_with_a_reduced_decode(tmp_path):
  """A stored height 1 px off is caught although ceil(H / 8) hides it."""
  rng = np.random.default_rng(6)
  path = str(tmp_path / 'one.tfrecord')
  with tf.io.TFRecordWriter(path) as writer:
    # ceil(484 / 8) == ceil(483 / 8): only the full size tells them apart.
    writer.write(_example(rng, 0, **{'image/height': HEIGHT - 1})
                 .SerializeToString())
  kwargs = dict(input_size=16, batch_size=1, training=False, fast_decode=True)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'decodes to 484x644 .* say 483x644'):
    list(pipeline.make_dataset(path, 'train', **kwargs))
  bad = pipeline.BadRecords(log=False)
  out = list(pipeline.make_dataset(path, 'train', on_bad_record='skip',
                                   bad_records=bad, **kwargs))
  assert not out
  (reason,) = bad.records.values()
  assert 'decodes to 484x644' in reason


def test_undecodable_jpeg_is_a_bad_record_with_fast_decode(tmp_path):
  rng = np.random.default_rng(7)
  good = _example(rng, 0)
  encoded = good.features.feature['image/encoded'].bytes_list.value[0]
  # Intact headers (the reduced decode chooses its path after them), random
  # entropy-coded data, the end marker.
  scan = encoded.index(b'\xff\xda') + 20
  garbage = rng.integers(0, 256, len(encoded) - scan - 2,
                         dtype=np.uint8).tobytes()
  encoded = encoded[:scan] + garbage + b'\xff\xd9'
  good.features.feature['image/encoded'].bytes_list.value[0] = encoded
  path = str(tmp_path / 'one.tfrecord')
  with tf.io.TFRecordWriter(path) as writer:
    writer.write(good.SerializeToString())
  bad = pipeline.BadRecords(log=False)
  out = list(pipeline.make_dataset(path, 'train', input_size=16,
                                   batch_size=1, training=False,
                                   on_bad_record='skip', bad_records=bad,
                                   fast_decode=True))
  assert not out
  (reason,) = bad.records.values()
  assert 'does not decode' in reason, reason

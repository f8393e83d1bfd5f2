"""Tests for zoo/data/pipeline.py and zoo/data/occlusion.py.

The fixture records are drawn here (not by zoo.data.synthetic): a known camera,
a known 3D pose, and a small filled dot of a distinct colour at each projected
joint. After the pipeline (with rotation, zoom, shift and flip on) every label
is checked against an independent computation: 2D = projection of 3D, the dot
under each 2D joint has the right colour (left/right swapped where flipped),
the 3D pose is a rotation (or a mirror + joint swap) of the original.
"""
from __future__ import annotations

import colorsys
import itertools
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from zoo import geometry  # noqa: E402
from zoo import skeleton as skel  # noqa: E402
from zoo.config import AugmentConfig  # noqa: E402
from zoo.data import occlusion  # noqa: E402
from zoo.data import pipeline  # noqa: E402
from zoo.data import records  # noqa: E402

J = skel.NUM_JOINTS
PERM = skel.FLIP_PERMUTATION
IMAGE_SIZE = 320
DOT_RADIUS = 6
CROP = 128
# 17 saturated hues, so each joint's dot is identifiable by colour.
COLOURS = np.array([colorsys.hsv_to_rgb(i / J, 1., 1.) for i in range(J)])
BACKGROUND = 0.15

# A base pose (camera frame, mm, relative to the pelvis; y down). Left and
# right forearms differ in length so that a left/right swap is visible.
BASE_POSE = np.array([
    [0, 0, 0], [-130, 0, 0], [-160, 440, 30], [-180, 870, 0],
    [130, 0, 0], [170, 440, -30], [200, 860, 20],
    [0, -230, 0], [0, -480, 0], [0, -600, 0], [0, -720, -20],
    [150, -470, 0], [430, -480, 0], [720, -470, 30],
    [-150, -470, 0], [-430, -480, 0], [-650, -470, -30]], np.float64)


def _random_example(rng: np.random.Generator, frame: int):
  """(fields for make_example, pose_cam_mm, rgb float image) with clear dots."""
  while True:
    focal = rng.uniform(450, 550)
    k = np.array([[focal, 0, rng.uniform(150, 170)],
                  [0, focal * rng.uniform(0.97, 1.03), rng.uniform(150, 170)],
                  [0, 0, 1]])
    pose = BASE_POSE + rng.normal(0, 20, BASE_POSE.shape)
    pose = pose @ geometry.rotation_y(rng.uniform(-0.6, 0.6)).T
    pose = pose @ geometry.rotation_x(rng.uniform(-0.15, 0.15)).T
    pose = pose + np.array([rng.uniform(-150, 150), -60 + rng.uniform(-80, 80),
                            rng.uniform(3100, 3600)])
    p2d = geometry.project(pose, k)
    dist = np.linalg.norm(p2d[:, None] - p2d[None], axis=-1) + 1e6 * np.eye(J)
    if dist.min() > 2 * DOT_RADIUS + 3 and p2d.min() > 15 and \
        p2d.max() < IMAGE_SIZE - 15:
      break
  yy, xx = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE]
  image = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), BACKGROUND)
  image += 0.1 * (xx / IMAGE_SIZE)[..., None]  # a gentle gradient
  for j in range(J):
    centre = tuple(int(round(v)) for v in p2d[j])
    cv2.circle(image, centre, DOT_RADIUS, tuple(float(c) for c in COLOURS[j]),
               -1, lineType=cv2.LINE_8)
  lo, hi = p2d.min(0) - 15, p2d.max(0) + 15
  box = np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]])
  png = cv2.imencode('.png', cv2.cvtColor(
      np.round(image * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))[1].tobytes()
  fields = {'image/encoded': png, 'joints2d_px': p2d, 'joints3d_cam_mm': pose,
            'intrinsics': k, 'box_xywh': box, 'dataset': 'fixture',
            'joint_valid_2d': (rng.uniform(size=J) > 0.2).astype(np.float32),
            'joint_valid_3d': (rng.uniform(size=J) > 0.2).astype(np.float32),
            'subject': 'S1', 'action': 'tpose', 'camera': 'c0', 'frame': frame,
            'image/height': IMAGE_SIZE, 'image/width': IMAGE_SIZE}
  return fields, pose, image


@pytest.fixture(scope='module')
def fixture_data(tmp_path_factory):
  rng = np.random.default_rng(0)
  out = tmp_path_factory.mktemp('records')
  poses, masks = {}, {}
  with records.ShardedWriter(str(out), 'train', 2) as writer:
    for frame in range(16):
      fields, pose, _ = _random_example(rng, frame)
      poses[frame] = pose
      masks[frame] = (fields['joint_valid_2d'], fields['joint_valid_3d'])
      writer.write(records.make_example(fields))
  return str(out), poses, masks


AUG = AugmentConfig(rotation_prob=1.0, shift_fraction=0.15,
                    color_gain=(1., 1.), occlusion_prob=0.)


def _batches(data, **kwargs):
  kwargs.setdefault('input_size', CROP)
  kwargs.setdefault('batch_size', 8)
  ds = pipeline.make_dataset(data, 'train', **kwargs)
  return [{k: v.numpy() for k, v in b.items()} for b in ds]


def _orthogonal_fit(src: np.ndarray, dst: np.ndarray):
  """Best orthogonal Q (reflections allowed) with dst ~ src @ Q.T; residual."""
  u, _, vt = np.linalg.svd(dst.T @ src)
  q = u @ vt
  return q, np.abs(src @ q.T - dst).max()


@pytest.fixture(scope='module')
def augmented(fixture_data):
  data, poses, _ = fixture_data
  batches = _batches(data, training=True, augment=AUG, seed=7,
                     deterministic=True, repeat=False)
  feats = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  # Recover per example whether the crop was mirrored, from the 3D labels.
  flipped = []
  for i, frame in enumerate(feats['frame']):
    src, out = poses[int(frame)], feats['joints3d_cam_mm'][i]
    q_keep, res_keep = _orthogonal_fit(src, out)
    q_flip, res_flip = _orthogonal_fit(src[PERM], out)
    keep_ok = res_keep < 1. and np.linalg.det(q_keep) > 0
    flip_ok = res_flip < 1. and np.linalg.det(q_flip) < 0
    assert keep_ok != flip_ok, (res_keep, res_flip)
    flipped.append(flip_ok)
  return feats, np.array(flipped), poses


def test_2d_is_projection_of_3d(augmented):
  feats, flipped, _ = augmented
  assert len(feats['frame']) == 16
  proj = geometry.project(feats['joints3d_cam_mm'].astype(np.float64),
                          feats['intrinsics'].astype(np.float64))
  np.testing.assert_allclose(proj, feats['joints2d_px'], atol=0.5)
  # The augmentation really did vary: flips both ways, joints cut off.
  assert flipped.any() and not flipped.all()
  assert feats['joint_in_crop'].min() == 0 and feats['joint_in_crop'].max() == 1


def test_dot_colours_follow_the_joints(augmented):
  feats, flipped, _ = augmented
  checked = 0
  for i in range(len(flipped)):
    for j in range(J):
      x, y = np.round(feats['joints2d_px'][i, j]).astype(int)
      if not (2 <= x < CROP - 2 and 2 <= y < CROP - 2):
        continue
      source_joint = PERM[j] if flipped[i] else j
      np.testing.assert_allclose(feats['image'][i, y, x],
                                 COLOURS[source_joint], atol=0.08,
                                 err_msg=f'example {i} joint {j}')
      checked += 1
  assert checked > 0.5 * len(flipped) * J


def test_flip_mirrors_and_swaps_3d(augmented):
  feats, flipped, poses = augmented
  lw = skel.H36M17.index('left_wrist')
  rw = skel.H36M17.index('right_wrist')
  for i, frame in enumerate(feats['frame']):
    src, out = poses[int(frame)], feats['joints3d_cam_mm'][i]
    expected = skel.bone_lengths(src[PERM] if flipped[i] else src)
    np.testing.assert_allclose(skel.bone_lengths(out), expected, atol=0.5)
    forearm = lambda p, w: np.linalg.norm(p[w] - p[w - 1])
    if flipped[i]:  # the person's right forearm now carries the left name
      np.testing.assert_allclose(forearm(out, lw), forearm(src, rw), atol=0.5)
    else:
      np.testing.assert_allclose(forearm(out, lw), forearm(src, lw), atol=0.5)
  cam = feats['joints3d_cam_mm']
  np.testing.assert_allclose(feats['joints3d_rel_mm'],
                             cam - cam[:, skel.ROOT:skel.ROOT + 1], atol=1e-3)


def test_masks_follow_the_joints(fixture_data, augmented):
  feats, flipped, _ = augmented
  masks = fixture_data[2]
  for i, frame in enumerate(feats['frame']):
    order = PERM if flipped[i] else np.arange(J)
    valid_2d, valid_3d = masks[int(frame)]
    np.testing.assert_array_equal(feats['joint_valid_2d'][i], valid_2d[order])
    np.testing.assert_array_equal(feats['joint_valid_3d'][i], valid_3d[order])
    x, y = feats['joints2d_px'][i].T
    inside = (x >= -0.5) & (x <= CROP - 0.5) & (y >= -0.5) & (y <= CROP - 0.5)
    np.testing.assert_array_equal(feats['joint_in_crop'][i],
                                  inside & (valid_2d[order] > 0))


def test_deterministic_mode_repeats(fixture_data):
  data, _, _ = fixture_data
  aug = AugmentConfig(shift_fraction=0.1, occlusion_prob=0.5)
  kwargs = dict(training=True, augment=aug, seed=11, deterministic=True,
                repeat=False)
  first, second = _batches(data, **kwargs), _batches(data, **kwargs)
  assert len(first) == len(second) == 2
  for a, b in zip(first, second):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  other = _batches(data, **dict(kwargs, seed=12))
  assert not np.array_equal(first[0]['image'], other[0]['image'])


def test_keys_shapes_dtypes_and_map_fn(fixture_data):
  data, _, _ = fixture_data
  ds = pipeline.make_dataset(data, 'train', input_size=64, batch_size=4,
                             training=False, take=6)
  batches = list(ds)
  assert [int(b['image'].shape[0]) for b in batches] == [4, 2]
  b = batches[0]
  assert set(b) == set(pipeline.FEATURE_KEYS)
  expected = {
      'image': ((4, 64, 64, 3), tf.float32),
      'intrinsics': ((4, 3, 3), tf.float32),
      'joints2d_px': ((4, J, 2), tf.float32),
      'joints3d_cam_mm': ((4, J, 3), tf.float32),
      'joints3d_rel_mm': ((4, J, 3), tf.float32),
      'joint_valid_2d': ((4, J), tf.float32),
      'joint_valid_3d': ((4, J), tf.float32),
      'joint_in_crop': ((4, J), tf.float32), 'has_3d': ((4,), tf.float32),
      'dataset': ((4,), tf.string), 'subject': ((4,), tf.string),
      'action': ((4,), tf.string), 'camera': ((4,), tf.string),
      'frame': ((4,), tf.int64)}
  for key, (shape, dtype) in expected.items():
    assert tuple(b[key].shape) == shape, key
    assert b[key].dtype == dtype, key
  assert float(tf.reduce_min(b['image'])) >= 0.
  assert float(tf.reduce_max(b['image'])) <= 1.
  # Evaluation order is the write order (round-robin over two shards).
  assert b['frame'].numpy().tolist() == [0, 1, 2, 3]
  # Without augmentation every valid joint of the fixture lies in the crop.
  np.testing.assert_array_equal(b['joint_in_crop'], b['joint_valid_2d'])

  mapped = pipeline.make_dataset(
      data, 'train', input_size=64, batch_size=4, training=True, take=8,
      repeat=False, seed=0, augment=AugmentConfig(occlusion_prob=0.5),
      map_fn=lambda f: (f['image'], f['joints3d_rel_mm']))
  x, y = next(iter(mapped))
  assert tuple(x.shape) == (4, 64, 64, 3) and tuple(y.shape) == (4, J, 3)


def test_colour_gain(fixture_data):
  data, _, _ = fixture_data
  common = dict(training=True, seed=3, deterministic=True, repeat=False,
                batch_size=16)
  no_geo = dict(scale_range=(1., 1.), rotation_prob=0., flip=False)
  plain = _batches(data, augment=AugmentConfig(color_gain=(1., 1.), **no_geo),
                   **common)[0]['image']
  gained = _batches(data, augment=AugmentConfig(**no_geo), **common)[0]['image']
  ok = (plain > 0.1) & (gained < 0.99)
  ratio = np.where(ok, gained / np.maximum(plain, 1e-6), np.nan)
  gains = np.nanmedian(ratio.reshape(16, -1, 3), axis=1)
  assert np.all((gains > 0.79) & (gains < 1.21))
  assert np.ptp(gains) > 0.05  # channels and examples differ


def _colour_only_batch(data, **augment):
  """The first batch of 16 training crops with no geometric augmentation and
  no colour gain, plus the `augment` fields given (same seed every call)."""
  return _batches(data, augment=AugmentConfig(
      scale_range=(1., 1.), rotation_prob=0., flip=False, color_gain=(1., 1.),
      **augment), training=True, seed=3, deterministic=True, repeat=False,
                  batch_size=16)[0]


def test_channel_permutation_and_grayscale(fixture_data):
  """Each augmented crop is a channel permutation (or the grey mean) of the
  plain crop, and with probability 1 some permutations are not the identity.
  """
  data, _, _ = fixture_data
  plain = _colour_only_batch(data)
  for permute, gray in ((1., 0.), (0., 1.)):
    out = _colour_only_batch(data, color_permute_prob=permute,
                             grayscale_prob=gray)
    # Geometry and labels are untouched.
    np.testing.assert_array_equal(out['joints2d_px'], plain['joints2d_px'])
    seen = set()
    for a, b in zip(plain['image'], out['image']):
      if gray:
        np.testing.assert_allclose(
            b, np.repeat(a.mean(-1, keepdims=True), 3, -1), atol=1e-6)
        continue
      matches = [p for p in itertools.permutations(range(3))
                 if np.allclose(a[..., list(p)], b, atol=1e-6)]
      assert matches, 'augmented crop is not a channel permutation'
      seen.add(matches[0])
    if permute:
      assert len(seen) >= 3


def test_hue_and_saturation_jitter(fixture_data):
  """A hue rotation keeps each pixel's brightest and darkest channel (HSV's V
  and V (1 - S)) but moves the others; saturation 0 leaves V in every channel.
  """
  data, _, _ = fixture_data
  plain = _colour_only_batch(data)
  hued = _colour_only_batch(data, hue_delta=0.5)
  np.testing.assert_array_equal(hued['joints2d_px'], plain['joints2d_px'])
  a, b = plain['image'], hued['image']
  np.testing.assert_allclose(b.max(-1), a.max(-1), atol=1e-5)
  np.testing.assert_allclose(b.min(-1), a.min(-1), atol=1e-5)
  coloured = a.max(-1) - a.min(-1) > 0.2
  moved = np.abs(b - a).max(-1) > 0.05
  assert moved[coloured].mean() > 0.5  # most coloured pixels changed hue
  grey = _colour_only_batch(data, saturation_range=(0., 0.))['image']
  np.testing.assert_allclose(grey, np.repeat(a.max(-1, keepdims=True), 3, -1),
                             atol=1e-5)


def _write_single(tmp_path, name, **overrides):
  fields, _, _ = _random_example(np.random.default_rng(1), 0)
  fields.update(overrides)
  path = str(tmp_path / name)
  with tf.io.TFRecordWriter(path) as w:
    w.write(records.make_example(fields).SerializeToString())
  return path


def test_nan_joints_raise_naming_the_field(tmp_path):
  fields, _, _ = _random_example(np.random.default_rng(1), 0)
  bad = fields['joints3d_cam_mm'].copy()
  bad[3, 1] = np.nan
  path = _write_single(tmp_path, 'nan.tfrecord', joints3d_cam_mm=bad)
  ds = pipeline.make_dataset([path], 'train', input_size=32, batch_size=1,
                             training=False)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"joints3d_cam_mm(.|\n)*nan.tfrecord"):
    list(ds)


def test_undecodable_image_raises_naming_the_field(tmp_path):
  path = _write_single(tmp_path, 'bad_image.tfrecord',
                       **{'image/encoded': b'not an image at all'})
  ds = pipeline.make_dataset([path], 'train', input_size=32, batch_size=1,
                             training=False)
  with pytest.raises(tf.errors.InvalidArgumentError, match='image/encoded'):
    list(ds)


def test_crop_to_original_inverts_the_crop():
  rng = np.random.default_rng(5)
  batch = 6
  examples = [_random_example(rng, i) for i in range(batch)]
  images = np.stack([np.round(e[2] * 255).astype(np.uint8) for e in examples])
  k = np.stack([e[0]['intrinsics'] for e in examples])
  boxes = np.stack([e[0]['box_xywh'] for e in examples])
  poses = np.stack([e[1] for e in examples])
  flip = np.array([False, True] * 3)
  out = pipeline.perspective_crop(
      images, k, boxes, 96, zoom=rng.uniform(0.7, 1.3, batch),
      rotation_rad=rng.uniform(-1, 1, batch),
      shift_px=rng.uniform(-30, 30, (batch, 2)), flip=flip)
  rot, k_crop = out['rotation'].numpy(), out['intrinsics'].numpy()
  np.testing.assert_allclose(np.linalg.det(rot), np.where(flip, -1., 1.),
                             atol=1e-5)
  # What a model would predict in the crop: labels swapped where mirrored.
  p3 = np.einsum('bij,bnj->bni', rot, poses)
  p3 = np.where(flip[:, None, None], p3[:, PERM], p3)
  p2 = geometry.project(p3, k_crop)
  back2d, back3d = pipeline.crop_to_original(p2, p3, out['homography'],
                                             out['rotation'])
  np.testing.assert_allclose(back3d.numpy(), poses, atol=0.05)
  np.testing.assert_allclose(back2d.numpy(), geometry.project(poses, k),
                             atol=0.05)


def test_perspective_crop_matches_opencv_warp():
  """The image warp against cv2.warpPerspective with the same homography."""
  rng = np.random.default_rng(9)
  image = (rng.uniform(0, 1, (1, 40, 50, 3)) * 255).astype(np.uint8)
  image = cv2.GaussianBlur(image[0], (0, 0), 2)[None]
  k = np.array([[[60., 0, 24], [0, 60, 20], [0, 0, 1]]])
  out = pipeline.perspective_crop(image, k, [[10., 8., 20., 22.]], 32,
                                  zoom=1.5, rotation_rad=0.4,
                                  shift_px=[[3., -2.]], flip=True)
  homography = out['homography'].numpy()[0].astype(np.float64)
  expected = cv2.warpPerspective(image[0].astype(np.float32) / 255.,
                                 homography, (32, 32), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
  got = out['image'].numpy()[0]
  # Compare where the whole bilinear footprint lies inside the source image.
  src = geometry.apply_homography(np.linalg.inv(homography), np.stack(
      np.meshgrid(np.arange(32.), np.arange(32.)), -1).reshape(-1, 2))
  inside = ((src[:, 0] > 0.5) & (src[:, 0] < 48.5) & (src[:, 1] > 0.5) &
            (src[:, 1] < 38.5)).reshape(32, 32)
  assert inside.mean() > 0.5
  np.testing.assert_allclose(got[inside], expected[inside], atol=2e-3)


def test_perspective_crop_dynamic_shapes_in_a_graph():
  fn = tf.function(lambda im, k, b: pipeline.perspective_crop(im, k, b, 24),
                   input_signature=[
                       tf.TensorSpec([None, None, None, 3], tf.uint8),
                       tf.TensorSpec([None, 3, 3], tf.float32),
                       tf.TensorSpec([None, 4], tf.float32)])
  for batch, h, w in ((1, 30, 40), (3, 50, 20)):
    k = np.tile(records.default_intrinsics(h, w)[None], (batch, 1, 1))
    out = fn(tf.zeros([batch, h, w, 3], tf.uint8), k,
             tf.constant([[2., 3., 10., 12.]] * batch))
    assert tuple(out['image'].shape) == (batch, 24, 24, 3)
    assert tuple(out['homography'].shape) == (batch, 3, 3)


def test_occlusion():
  images = tf.fill([6, 48, 48, 3], 0.5)
  seed = tf.constant([1, 2], tf.int64)
  occluded = occlusion.occlude(images, seed, prob=1.).numpy()
  changed = np.any(np.abs(occluded - 0.5) > 1e-3, -1).mean((1, 2))
  assert np.all(changed > 0.002) and np.all(changed < 0.95)
  assert occluded.min() >= 0. and occluded.max() <= 1.
  again = occlusion.occlude(images, seed, prob=1.).numpy()
  np.testing.assert_array_equal(occluded, again)
  untouched = occlusion.occlude(images, seed, prob=0.).numpy()
  np.testing.assert_array_equal(untouched, images.numpy())
  # The coverage of a lone ellipse matches its analytic area.
  params = occlusion.sample_occluders(seed, 64, 1., batch_shape=[1],
                                      max_occluders=1)
  params = dict(params, ellipse=tf.ones([1, 1]), active=tf.ones([1, 1]),
                centre_px=tf.constant([[[32., 32.]]]),
                radius_px=tf.constant([[20.]]), aspect=tf.constant([[0.5]]),
                colour_a=tf.ones([1, 1, 3]), colour_b=tf.ones([1, 1, 3]))
  area = occlusion.render_occluders(tf.zeros([1, 64, 64, 3]),
                                    params).numpy()[0, ..., 0].sum()
  assert abs(area - np.pi * 20 * 10) < 0.03 * np.pi * 20 * 10

"""Tests for zoo/geometry.py: inverses, NumPy/TF agreement, planted solutions."""
import numpy as np
import pytest
import tensorflow as tf
from scipy.spatial.transform import Rotation

from zoo import geometry as geo
from zoo import skeleton as skel

K = np.array([[1100., 0., 495.], [0., 1150., 510.], [0., 0., 1.]])


def _pose_with_bones(bone_mm, seed, root_cam_mm=(150., -200., 4500.)):
  """A random H36M-17 pose (camera mm) whose bones have the given lengths."""
  rng = np.random.default_rng(seed)
  joints = np.zeros((17, 3))
  joints[0] = root_cam_mm
  for (parent, child), length in zip(skel.H36M17.limbs, bone_mm):
    d = rng.normal(size=3)
    joints[child] = joints[parent] + length * d / np.linalg.norm(d)
  return joints


def _cloud(n, seed=0):
  rng = np.random.default_rng(seed)
  pts = rng.normal(scale=400., size=(n, 17, 3))
  pts[..., 2] += 4000.
  return pts


def test_project_back_project_inverse():
  pts = _cloud(3)
  px = geo.project(pts, K)
  # Direct formula.
  np.testing.assert_allclose(px[..., 0], K[0, 0] * pts[..., 0] / pts[..., 2]
                             + K[0, 2])
  np.testing.assert_allclose(px[..., 1], K[1, 1] * pts[..., 1] / pts[..., 2]
                             + K[1, 2])
  np.testing.assert_allclose(geo.back_project(px, pts[..., 2], K), pts,
                             rtol=1e-10)
  # Batched intrinsics.
  ks = np.stack([K, K * np.array([[2, 1, 1], [1, 2, 1], [1, 1, 1]]), K])
  np.testing.assert_allclose(
      geo.back_project(geo.project(pts, ks), pts[..., 2], ks), pts, rtol=1e-9)


def test_numpy_and_tf_agree():
  pts = _cloud(4, seed=1)
  ks = np.stack([K] * 4)
  px = geo.project(pts, ks)
  f32 = lambda x: tf.constant(x, tf.float32)
  np.testing.assert_allclose(geo.project_tf(f32(pts), f32(ks)).numpy(), px,
                             rtol=1e-5)
  np.testing.assert_allclose(
      geo.back_project_tf(f32(px), f32(pts[..., 2]), f32(ks)).numpy(), pts,
      rtol=1e-4, atol=1e-2)
  h = np.array([[1.1, 0.1, 3.], [-0.05, 0.9, 7.], [1e-4, 2e-4, 1.]])
  np.testing.assert_allclose(
      geo.apply_homography_tf(f32(h), f32(px)).numpy(),
      geo.apply_homography(h, px), rtol=1e-5)
  np.testing.assert_allclose(geo.root_relative_tf(f32(pts)).numpy(),
                             geo.root_relative(pts), atol=1e-3)
  np.testing.assert_allclose(geo.root_relative(pts)[:, 0], 0.)


def test_world_camera_round_trip_and_rotations():
  rot = Rotation.random(random_state=2).as_matrix()
  ext = np.concatenate([rot, [[100.], [-50.], [3000.]]], 1)
  pts = _cloud(2, seed=2)
  cam = geo.world_to_camera(pts, ext)
  np.testing.assert_allclose(cam, pts @ rot.T + ext[:, 3])
  np.testing.assert_allclose(geo.camera_to_world(cam, ext), pts, atol=1e-9)
  angles = np.array([0.3, -1.2])
  for fn, axis in ((geo.rotation_x, 'x'), (geo.rotation_y, 'y'),
                   (geo.rotation_z, 'z')):
    got = fn(angles)
    assert got.shape == (2, 3, 3)
    np.testing.assert_allclose(got, Rotation.from_euler(axis, angles[:, None])
                               .as_matrix(), atol=1e-12)


@pytest.mark.parametrize('roll', [0., 0.3])
def test_look_at(roll):
  eye = np.array([3000., -4000., 1500.])
  target = np.array([200., 300., 900.])
  ext = geo.look_at(eye, target, roll_rad=roll)
  rot = ext[:, :3]
  np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
  assert np.linalg.det(rot) == pytest.approx(1.)
  # The camera sits at eye and its optical axis points at the target.
  np.testing.assert_allclose(geo.world_to_camera(eye[None], ext), 0.,
                             atol=1e-9)
  t_cam = geo.world_to_camera(target[None], ext)[0]
  np.testing.assert_allclose(t_cam, [0., 0., np.linalg.norm(target - eye)],
                             atol=1e-9)
  # A point above the target (world +z) appears above it in the image (smaller
  # y); image down is world -z, up to the roll.
  above = geo.world_to_camera((target + [0., 0., 500.])[None], ext)[0]
  # Its direction from the image centre: 0 when straight up in the image; a
  # positive roll turns world-up towards image +x by the roll angle.
  angle = np.arctan2(above[0], -above[1])
  assert angle == pytest.approx(roll, abs=1e-9)
  if roll == 0.:
    down_world = rot[1]  # the camera's y axis in world coordinates
    assert down_world[2] < 0
    assert abs(rot[0, 2]) < 1e-12  # image x axis is horizontal (no roll)
    k_px = geo.project(geo.world_to_camera(np.stack(
        [target, target + [0., 0., 500.]]), ext), K)
    assert k_px[1, 1] < k_px[0, 1]
    assert k_px[1, 0] == pytest.approx(k_px[0, 0])


def test_box_crop_affine_and_transform_intrinsics():
  box = np.array([[100., 200., 300., 300.], [50., 60., 100., 200.]])
  a = geo.box_crop_affine(box, 64)
  # Square box: corners map to the crop corners, centre to the crop centre.
  corners = np.array([[100., 200.], [400., 500.], [250., 350.]])
  np.testing.assert_allclose(geo.apply_homography(a[0], corners),
                             [[0., 0.], [64., 64.], [32., 32.]], atol=1e-9)
  # Tall box: the height fills the crop, the width is centred.
  corners = np.array([[50., 60.], [150., 260.]])
  np.testing.assert_allclose(geo.apply_homography(a[1], corners),
                             [[16., 0.], [48., 64.]], atol=1e-9)
  # Intrinsics of the crop: projecting with A K equals warping the pixels.
  pts = _cloud(1, seed=3)[0]
  new_k = geo.transform_intrinsics(K, a[1])
  np.testing.assert_allclose(geo.project(pts, new_k),
                             geo.apply_homography(a[1], geo.project(pts, K)),
                             atol=1e-9)


def test_weak_perspective():
  pts = _cloud(2, seed=4)
  got = geo.weak_perspective_project(pts, np.array([0.5, 2.]),
                                     np.array([[1., 2.], [3., 4.]]))
  np.testing.assert_allclose(got[0], 0.5 * pts[0, :, :2] + [1., 2.])
  np.testing.assert_allclose(got[1], 2. * pts[1, :, :2] + [3., 4.])


def test_procrustes_recovers_planted_similarity():
  target = _cloud(3, seed=5)
  rots = Rotation.random(3, random_state=6).as_matrix()
  scales = np.array([0.3, 1., 4.])
  pred = (np.einsum('nij,nkj->nki', rots, target) * scales[:, None, None]
          + np.array([[[1., 2., 3.]], [[-500., 0., 0.]], [[0., 0., 9e3]]]))
  np.testing.assert_allclose(geo.procrustes_align(pred, target), target,
                             atol=1e-6)
  # Without scale: the aligned cloud keeps the prediction's spread.
  aligned = geo.procrustes_align(pred, target, scale=False)
  spread = lambda x: np.linalg.norm(x - x.mean(-2, keepdims=True), axis=-1)
  np.testing.assert_allclose(spread(aligned), spread(pred), rtol=1e-9)


def test_procrustes_never_reflects():
  target = _cloud(4, seed=7)
  pred = target * np.array([1., -1., 1.])  # mirrored: a reflection
  pred += np.random.default_rng(8).normal(scale=5., size=pred.shape)
  aligned = geo.procrustes_align(pred, target)
  for p, a in zip(pred, aligned):
    pc, ac = p - p.mean(0), a - a.mean(0)
    m, *_ = np.linalg.lstsq(pc, ac, rcond=None)  # ac = pc @ m
    np.testing.assert_allclose(pc @ m, ac, atol=1e-6)
    assert np.linalg.det(m) > 0
    # m is a scaled rotation.
    s = np.cbrt(np.linalg.det(m))
    np.testing.assert_allclose(m.T @ m / s ** 2, np.eye(3), atol=1e-9)
  # And still optimal among proper rotations: beats random ones.
  p, t = pred[0] - pred[0].mean(0), target[0] - target[0].mean(0)
  best = min(np.sum((max(np.sum(t * (p @ r.T)) / np.sum(p * p), 0.)
                     * (p @ r.T) - t) ** 2)
             for r in Rotation.random(500, random_state=9).as_matrix())
  assert np.sum((aligned[0] - target[0]) ** 2) <= best


@pytest.mark.parametrize('use_mean', [False, True])
def test_recover_root_depth_exact_and_noisy(use_mean):
  mean = skel.mean_bone_lengths_mm()
  joints = np.stack([_pose_with_bones(mean, seed=s, root_cam_mm=(x, y, z))
                     for s, (x, y, z) in enumerate(
                         [(150., -200., 4500.), (-900., 300., 2500.),
                          (0., 0., 9000.)])])
  px = geo.project(joints, K)
  rel = geo.root_relative(joints)
  bones = mean if use_mean else None
  depth = geo.recover_root_depth(px, rel, K, bone_lengths_mm=bones)
  np.testing.assert_allclose(depth, joints[:, 0, 2], rtol=1e-6)
  np.testing.assert_allclose(geo.absolute_pose(px, rel, K, depth), joints,
                             rtol=1e-5, atol=1e-2)
  # TF agrees (it needs explicit bone lengths).
  tf_bones = mean if use_mean else skel.bone_lengths(rel)
  depth_tf = geo.recover_root_depth_tf(
      tf.constant(px, tf.float32), tf.constant(rel, tf.float32),
      tf.constant(K, tf.float32), tf.constant(tf_bones, tf.float32)).numpy()
  np.testing.assert_allclose(depth_tf, joints[:, 0, 2], rtol=1e-3)
  abs_tf = geo.absolute_pose_tf(tf.constant(px, tf.float32),
                                tf.constant(rel, tf.float32),
                                tf.constant(K, tf.float32),
                                tf.constant(depth_tf, tf.float32)).numpy()
  np.testing.assert_allclose(abs_tf, geo.absolute_pose(px, rel, K, depth_tf),
                             rtol=1e-4, atol=0.5)
  # With 1 px of 2D noise the depth stays within a few percent.
  noisy = px + np.random.default_rng(10).normal(scale=1., size=px.shape)
  depth = geo.recover_root_depth(noisy, rel, K, bone_lengths_mm=bones)
  np.testing.assert_allclose(depth, joints[:, 0, 2], rtol=0.03)


def test_recover_root_depth_own_bones_differ_from_mean():
  # A subject 10% taller than the mean: own lengths exact, mean lengths biased
  # by the same 10% (depth scales with size under perspective).
  mean = skel.mean_bone_lengths_mm()
  joints = _pose_with_bones(1.1 * mean, seed=11)[None]
  px, rel = geo.project(joints, K), geo.root_relative(joints)
  own = geo.recover_root_depth(px, rel, K)
  np.testing.assert_allclose(own, joints[:, 0, 2], rtol=1e-6)
  with_mean = geo.recover_root_depth(px, rel / 1.1, K, bone_lengths_mm=mean)
  np.testing.assert_allclose(with_mean, joints[:, 0, 2] / 1.1, rtol=1e-6)


def _crop(box, out=64, **kw):
  return geo.crop_camera(K, np.array(box), out, **kw)


def test_crop_camera_projection_consistency():
  pts = _cloud(1, seed=12)[0]
  box = [300., 150., 250., 400.]
  new_k, rot, hom = _crop(box, 64, zoom=1.2, rotation_rad=0.4)
  np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-5)
  np.testing.assert_allclose(geo.project(pts @ rot.T, new_k),
                             geo.apply_homography(hom, geo.project(pts, K)),
                             atol=2e-3)
  # The box centre lands on the crop centre (pixel centres at integers).
  centre = np.array([[300. + 125., 150. + 200.]])
  np.testing.assert_allclose(geo.apply_homography(hom, centre), [[31.5, 31.5]],
                             atol=1e-3)
  # A shifted box centre lands on the crop centre instead.
  _, _, hom_s = _crop(box, 64, shift_px=(20., -10.))
  np.testing.assert_allclose(geo.apply_homography(hom_s, centre + [20., -10.]),
                             [[31.5, 31.5]], atol=1e-3)


def test_crop_camera_rotation_rotates_image_content():
  box = [600., 200., 200., 300.]
  angle = 0.5
  _, _, h0 = _crop(box)
  _, rot_r, hr = _crop(box, rotation_rad=angle)
  pts_px = np.array([[650., 250.], [700., 400.], [760., 480.]])
  c = 31.5
  d0 = geo.apply_homography(h0, pts_px) - c
  dr = geo.apply_homography(hr, pts_px) - c
  cs, sn = np.cos(angle), np.sin(angle)
  # In pixel coordinates (y down) the content turns by +angle
  # counter-clockwise on screen: right of centre moves up.
  np.testing.assert_allclose(dr, d0 @ np.array([[cs, -sn], [sn, cs]]),
                             atol=1e-3)
  right = geo.apply_homography(h0, np.array([[760., 350.]]))[0] - c
  right_r = geo.apply_homography(hr, np.array([[760., 350.]]))[0] - c
  assert right[0] > 0 and right_r[1] < right[1]


def test_crop_camera_zoom_and_tf_batch():
  # A box centred on the principal point: its side spans out * zoom pixels
  # (scaled by fx / mean(fx, fy), as the crop camera has one focal length).
  side = 300.
  box = [K[0, 2] - side / 2, K[1, 2] - side / 2, side, side]
  for zoom in (1., 2.):
    _, _, hom = _crop(box, 64, zoom=zoom)
    edge = geo.apply_homography(hom, np.array([[K[0, 2] + side / 2, K[1, 2]]]))
    expect = 31.5 + 64 * zoom / 2 * (0.5 * (K[0, 0] + K[1, 1]) / K[0, 0])
    np.testing.assert_allclose(edge[0, 0], expect, rtol=1e-4)
  # Batched TF version equals per-example calls.
  boxes = np.array([[300., 150., 250., 400.], [10., 20., 100., 80.]])
  ks = np.stack([K, K * [[0.9, 1, 1], [1, 0.9, 1], [1, 1, 1]]])
  out = geo.crop_camera_tf(tf.constant(ks, tf.float32),
                           tf.constant(boxes, tf.float32), 96,
                           zoom=tf.constant([1., 1.5]),
                           rotation_rad=tf.constant([0.2, -0.3]),
                           shift_px=tf.constant([[0., 0.], [5., 5.]]))
  for i in range(2):
    single = geo.crop_camera(ks[i], boxes[i], 96, zoom=[1., 1.5][i],
                             rotation_rad=[0.2, -0.3][i],
                             shift_px=[(0., 0.), (5., 5.)][i])
    for got, want in zip(out, single):
      np.testing.assert_allclose(got.numpy()[i], want, rtol=1e-5, atol=1e-5)

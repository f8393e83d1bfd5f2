"""Tests for zoo/data/render.py: camera, crop, drawing, self-occlusion."""
import numpy as np
import pytest

from zoo import geometry
from zoo.data import motion
from zoo.data import render


def _motion(seed=0, n=8, subjects=('S1', 'S6', 'S8'), actions=motion.ACTIONS):
  return motion.sample_motion(np.random.default_rng(seed), n, subjects,
                              actions)


def test_camera_ranges():
  m = _motion(n=40)
  config = render.RenderConfig()
  rng = np.random.default_rng(1)
  for i in range(40):
    k, ext = render.sample_camera(rng, m.joints_world_mm[i], config)
    assert 1000. <= k[0, 0] <= 1200. and k[0, 0] == k[1, 1]
    assert np.all(np.abs(k[:2, 2] - 499.5) <= 15.)
    rot, trans = ext[:, :3], ext[:, 3]
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-9)
    eye = -rot.T @ trans
    horizontal = np.linalg.norm(eye[:2] - m.joints_world_mm[i, 0, :2])
    assert 3000. <= horizontal <= 7000.
    assert 500. <= eye[2] <= 2000.
    # Small roll: the camera's x axis stays nearly horizontal.
    assert abs(rot[0, 2]) <= np.sin(np.deg2rad(5.)) + 1e-9
    # Looking at the person: the pelvis projects inside the frame.
    px = geometry.project(m.joints_world_mm[i, :1] @ rot.T + trans, k)[0]
    assert np.all(np.abs(px - 500.) < 450.)


@pytest.mark.parametrize('background', [True, False])
def test_labels_consistent_with_crop_camera(background):
  m = _motion(seed=2, n=6)
  config = render.RenderConfig(background=background)
  for i in range(6):
    r = render.render(m, i, np.random.default_rng(i), config)
    assert r.image_bgr.shape == (320, 320, 3) and r.image_bgr.dtype == np.uint8
    # Crop intrinsics = crop affine o frame intrinsics.
    affine = geometry.box_crop_affine(r.crop_box_xywh, 320)
    np.testing.assert_allclose(r.intrinsics, affine @ r.frame_intrinsics,
                               atol=1e-9)
    frame_px = geometry.project(r.joints_cam_mm, r.frame_intrinsics)
    crop_px = geometry.apply_homography(affine, frame_px)
    np.testing.assert_allclose(r.joints2d_px, crop_px, atol=1e-6)
    np.testing.assert_allclose(
        r.joints_cam_mm, geometry.world_to_camera(r.joints_world_mm,
                                                  r.extrinsics), atol=1e-9)
    # The crop window lies inside the 1000x1000 frame.
    x, y, w, h = r.crop_box_xywh
    assert x >= 0 and y >= 0 and x + w <= 1000 + 1e-6 and y + h <= 1000 + 1e-6
    np.testing.assert_array_equal(
        r.joint_in_image, np.all((r.joints2d_px >= 0)
                                 & (r.joints2d_px <= 319), -1))


def test_person_drawn_where_the_labels_say():
  """Flat grey background: the silhouette matches the box and the joints."""
  no_chair = tuple(a for a in motion.ACTIONS
                   if a not in motion.SEATED_ACTIONS)
  m = _motion(seed=3, n=10, actions=no_chair)
  config = render.RenderConfig(background=False)
  for i in range(10):
    r = render.render(m, i, np.random.default_rng(10 + i), config)
    diff = np.abs(r.image_bgr.astype(int) - 128).max(-1) > 3
    ys, xs = np.nonzero(diff)
    sil = np.array([xs.min(), ys.min(), xs.max() + 1 - xs.min(),
                    ys.max() + 1 - ys.min()])
    np.testing.assert_allclose(sil, r.box_xywh, atol=4.)  # + AA fringe
    # Torso joints (always inside the body) are painted.
    for j in (0, 7, 8):
      u, v = np.round(r.joints2d_px[j]).astype(int)
      if 0 <= u < 320 and 0 <= v < 320:
        assert diff[v, u], (i, j)
    # The person fills a good part of the crop, with a margin.
    assert 0.45 * 320 < max(r.box_xywh[2:]) < 0.8 * 320


def test_left_and_right_look_alike():
  m = _motion(seed=4, n=4, subjects=tuple(s.name for s in motion.SUBJECTS[:4]))
  for i in range(4):
    body = render.build_body(m, i)
    for kind in (body.fr, body.sp):
      colours = {}
      for prim in kind:
        part = render.PARTS[prim[11] if kind is body.fr else prim[3]]
        albedo = prim[10] if kind is body.fr else prim[2]
        colours.setdefault(part, []).append(tuple(albedo))
      for part, cs in colours.items():
        if part.startswith('l_'):
          assert sorted(cs) == sorted(colours['r_' + part[2:]]), part
    # Head, top and bottom differ in colour.
    subject = motion.SUBJECTS[m.subject_index[i]]
    assert len({subject.skin, subject.top, subject.bottom, subject.hair}) == 4


def test_segment_closest_matches_brute_force():
  rng = np.random.default_rng(5)
  p0, p1, q0, q1 = rng.normal(0., 1., (4, 20, 3))
  s, t, d = render._segment_closest(p0, p1, q0, q1)
  np.testing.assert_allclose(
      d, np.linalg.norm(p0 + s[:, None] * (p1 - p0)
                        - q0 - t[:, None] * (q1 - q0), axis=-1), atol=1e-9)
  grid = np.linspace(0., 1., 201)
  pp = p0[:, None] + grid[None, :, None] * (p1 - p0)[:, None]
  qq = q0[:, None] + grid[None, :, None] * (q1 - q0)[:, None]
  brute = np.linalg.norm(pp[:, :, None] - qq[:, None], axis=-1).min((1, 2))
  assert np.all(d <= brute + 1e-9)
  assert np.all(d >= brute - 0.03)


def test_self_occlusion_ray_test():
  joints = np.zeros((17, 3))
  joints[:, 2] = 4000.
  joints[:, 0] = np.arange(17) * 300. - 2400.  # spread along x
  # A thick thigh capsule across the camera ray in front of joint 13 (left
  # wrist) ...
  target = joints[13]
  a = 0.875 * target + [0., -200., 0.]
  b = 0.875 * target + [0., 200., 0.]
  thigh = render.PARTS.index('l_thigh')
  occl = render.self_occlusion(joints, a[None], b[None], np.array([80.]),
                               np.array([80.]), np.array([thigh]))
  assert occl[13] and occl.sum() == 1
  # ... behind the joint it hides nothing ...
  occl = render.self_occlusion(joints, (a * 1.3)[None],
                               (b * 1.3)[None], np.array([80.]),
                               np.array([80.]), np.array([thigh]))
  assert not occl.any()
  # ... and a part never occludes its own joints (left thigh: hip and knee).
  a4 = 0.875 * joints[4] + [0., -200., 0.]
  b4 = 0.875 * joints[4] + [0., 200., 0.]
  occl = render.self_occlusion(joints, a4[None], b4[None], np.array([80.]),
                               np.array([80.]), np.array([thigh]))
  assert not occl.any()

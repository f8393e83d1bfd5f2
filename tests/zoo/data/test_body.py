"""Tests for zoo/data/body.py: the body's primitives and self-occlusion."""
import numpy as np

from zoo.data import body as body_lib
from zoo.data import joint_angles
from zoo.data import motion
from zoo.data import people


def test_left_and_right_look_alike():
  m = motion.sample_motion(np.random.default_rng(4), 4,
                           tuple(s.name for s in people.SUBJECTS[:4]),
                           joint_angles.ACTIONS)
  for i in range(4):
    body = body_lib.build_body(m, i)
    for kind in (body.fr, body.sp):
      colours = {}
      for prim in kind:
        part = body_lib.PARTS[prim[11] if kind is body.fr else prim[3]]
        albedo = prim[10] if kind is body.fr else prim[2]
        colours.setdefault(part, []).append(tuple(albedo))
      for part, cs in colours.items():
        if part.startswith('l_'):
          assert sorted(cs) == sorted(colours['r_' + part[2:]]), part
    # Head, top and bottom differ in colour.
    subject = people.SUBJECTS[m.subject_index[i]]
    assert len({subject.skin, subject.top, subject.bottom, subject.hair}) == 4


def test_segment_closest_matches_brute_force():
  rng = np.random.default_rng(5)
  p0, p1, q0, q1 = rng.normal(0., 1., (4, 20, 3))
  s, t, d = body_lib._segment_closest(p0, p1, q0, q1)
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
  thigh = body_lib.PARTS.index('l_thigh')
  occl = body_lib.self_occlusion(joints, a[None], b[None], np.array([80.]),
                               np.array([80.]), np.array([thigh]))
  assert occl[13] and occl.sum() == 1
  # ... behind the joint it hides nothing ...
  occl = body_lib.self_occlusion(joints, (a * 1.3)[None],
                               (b * 1.3)[None], np.array([80.]),
                               np.array([80.]), np.array([thigh]))
  assert not occl.any()
  # ... and a part never occludes its own joints (left thigh: hip and knee).
  a4 = 0.875 * joints[4] + [0., -200., 0.]
  b4 = 0.875 * joints[4] + [0., 200., 0.]
  occl = body_lib.self_occlusion(joints, a4[None], b4[None], np.array([80.]),
                               np.array([80.]), np.array([thigh]))
  assert not occl.any()


def test_torso_cues_are_mirror_symmetric(rest_pose):
  """In a symmetric rest pose every torso patch maps onto itself under the
  left/right mirror (world y about the pelvis), and patches on left and
  right parts share colours."""
  for subject in people.SUBJECTS:
    m = rest_pose(subject.name, 0.)
    body = body_lib.build_body(m, 0)
    y0 = m.joints_world_mm[0, 0, 1]
    # The rest pose is symmetric: mirrored joints swap sides.
    for a, b in ((1, 4), (11, 14), (3, 6)):
      np.testing.assert_allclose(
          m.joints_world_mm[0, a] * [1, -1, 1] + [0, 2 * y0, 0],
          m.joints_world_mm[0, b], atol=1e-6)
    colours = {}
    torso = 0
    for parent, quads, normals, albedo in body.pa:
      part = body_lib.PARTS[body.fr[parent][11]]
      colours.setdefault(part, []).append(tuple(albedo))
      if part != 'torso':
        continue
      torso += 1
      pts = quads.reshape(-1, 3)
      mirrored = pts * [1, -1, 1] + [0, 2 * y0, 0]
      dist = np.linalg.norm(mirrored[:, None] - pts[None], axis=-1).min(1)
      np.testing.assert_array_less(dist, 1e-6)
      # Normals point away from the torso axis: unit-free sanity check.
      assert normals.shape == (len(quads), 3)
    assert torso >= 5
    for part, cs in colours.items():
      if part.startswith('l_'):
        assert sorted(cs) == sorted(colours['r_' + part[2:]]), part
    # The accent differs from the top it is drawn on.
    assert np.abs(np.subtract(subject.accent, subject.top)).max() > 60


def test_capsules_approximate_every_primitive():
  """One capsule per frustum (its ends, the geometric mean of each end's
  semi-axes) and per sphere (zero length, its radius), with its part."""
  m = motion.sample_motion(np.random.default_rng(6), 1, ('S5',),
                           joint_angles.ACTIONS)
  body = body_lib.build_body(m, 0)
  caps_a, caps_b, radius_a, radius_b, part_ids = body.capsules()
  nf, ns = len(body.fr), len(body.sp)
  assert caps_a.shape == caps_b.shape == (nf + ns, 3)
  assert radius_a.shape == radius_b.shape == part_ids.shape == (nf + ns,)
  for q, (a, b, _, _, rua, rva, _, _, rub, rvb, _, part) in enumerate(body.fr):
    np.testing.assert_array_equal(caps_a[q], a)
    np.testing.assert_array_equal(caps_b[q], b)
    assert radius_a[q] == np.sqrt(rua * rva)
    assert radius_b[q] == np.sqrt(rub * rvb)
    assert part_ids[q] == part
  for q, (centre, radius, _, part, _) in enumerate(body.sp, start=nf):
    np.testing.assert_array_equal(caps_a[q], centre)
    np.testing.assert_array_equal(caps_b[q], centre)
    assert radius_a[q] == radius_b[q] == radius
    assert body_lib.PARTS[part_ids[q]] == body_lib.PARTS[part]

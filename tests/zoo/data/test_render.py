"""Tests for zoo/data/render.py: camera, crop, labels, drawing, cues."""
import cv2
import numpy as np
import pytest

from zoo import geometry
from zoo.data import joint_angles
from zoo.data import motion
from zoo.data import people
from zoo.data import render


def _motion(seed=0, n=8, subjects=('S1', 'S6', 'S8'),
            actions=joint_angles.ACTIONS):
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
  no_chair = tuple(a for a in joint_angles.ACTIONS
                   if a not in joint_angles.SEATED_ACTIONS)
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


def _cos_to(pixels, colour_rgb):
  """Cosine similarity of BGR pixels [n, 3] to an RGB colour (shade-free)."""
  c = np.array(colour_rgb[::-1], np.float64)
  p = pixels.astype(np.float64)
  return p @ c / (np.linalg.norm(p, axis=-1) * np.linalg.norm(c) + 1e-9)


@pytest.mark.parametrize('subject', ['S9', 'S11', 'S6'])
def test_front_cue_visible_only_from_the_front(subject, rest_pose):
  """Same pose and camera, turned 0 and 180 deg: the chest accent (jacket
  inner shirt or print) shows on the torso only when its front faces the
  camera (front normal from the shoulders x spine cross product)."""
  spec = people.SUBJECT_BY_NAME[subject]
  config = render.RenderConfig(background=False)
  fractions = {}
  for seed in range(40):
    renders = [render.render(rest_pose(subject, yaw), 0,
                             np.random.default_rng(seed), config)
               for yaw in (0., np.pi)]
    r = renders[0]
    j = r.joints_cam_mm
    front = np.cross(j[11] - j[14], j[8] - j[0])
    facing = front @ -j[8] / np.linalg.norm(front) / np.linalg.norm(j[8])
    if abs(facing) < 0.7:  # about side-on: not a clear front or back
      continue
    for r, faces in zip(renders, (facing > 0, facing < 0)):
      # Torso quadrilateral (shoulders, hips) shrunk towards its centre.
      quad = r.joints2d_px[[11, 14, 1, 4]]
      quad = quad.mean(0) + 0.6 * (quad - quad.mean(0))
      mask = np.zeros(r.image_bgr.shape[:2], np.uint8)
      cv2.fillConvexPoly(mask, np.round(quad).astype(np.int32), 1)
      pixels = r.image_bgr[mask > 0]
      assert len(pixels) > 50
      others = [_cos_to(pixels, c) for c in (spec.top, spec.skin,
                                             spec.bottom, spec.hair)]
      accent = _cos_to(pixels, spec.accent) > np.max(others, 0)
      fractions.setdefault(bool(faces), []).append(accent.mean())
    if len(fractions[True]) >= 3:
      break
  assert len(fractions[True]) >= 3, fractions
  assert min(fractions[True]) > 0.2, fractions
  assert max(fractions[False]) < 0.03, fractions

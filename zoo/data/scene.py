"""The rendered subject's surroundings: a room (a wall with decorations, a
textured floor in perspective), boxes (furniture, clutter, occluders), a
chair under seated actions, a contact shadow, and the camera's own effects
(defocus, exposure, sensor noise).

Geometry is in the world frame (z up, mm); a camera is intrinsics `k` of the
crop and a rotation / translation from world to camera; images are BGR uint8
crops.
"""
from __future__ import annotations

import dataclasses
import functools

import cv2
import numpy as np

from zoo.data import joint_angles
from zoo.data import motion
from zoo.data import people
from zoo.data.shading import (RING_ANGLES, RING_SAMPLES, Light, brightness,
                              cross, fill_polygon, project, shade)

_BOX_CORNERS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1)
                         for z in (-1, 1)], np.float64)
_BOX_FACES = np.array([[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6],
                       [0, 2, 6, 4], [1, 5, 7, 3]])
_BOX_NORMALS = np.array([[-1, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0],
                         [0, 0, -1], [0, 0, 1]], np.float64)


@dataclasses.dataclass
class Box:
  """A cuboid: furniture, clutter, an occluder, a chair's part."""
  centre: np.ndarray   # world mm
  axes: np.ndarray     # [3, 3] columns: half-extent vectors (world)
  albedo: np.ndarray   # BGR


def box_draw_list(box: Box, rot, trans, k, light: Light):
  """Visible faces of a cuboid as (distance, polygons [n, 4, 2], colours)."""
  corners = box.centre + _BOX_CORNERS @ box.axes.T
  cam = corners @ rot.T + trans
  if np.any(cam[:, 2] < 50.):
    return None
  normals = (_BOX_NORMALS @ (box.axes / np.linalg.norm(box.axes, axis=0)).T
             ) @ rot.T
  face_c = cam[_BOX_FACES].mean(1)
  visible = np.sum(normals * -face_c, -1) > 0.
  polys = project(cam[_BOX_FACES[visible]], k)
  colours = shade(box.albedo[None], brightness(normals[visible], light),
                  light)
  return np.linalg.norm(box.centre @ rot.T + trans), polys, colours


def chair_boxes(m: motion.MotionBatch, i: int,
                rng: np.random.Generator) -> list[Box]:
  """Seat, legs and maybe a backrest under a seated (or sitting-down) pose."""
  subject = people.SUBJECTS[m.subject_index[i]]
  j = m.joints_world_mm[i]
  s = subject.height_factor
  fwd = m.frames['pelvis'][i][:, 0].copy()
  fwd[2] = 0.
  fwd /= np.linalg.norm(fwd) + 1e-9
  lat = np.array([-fwd[1], fwd[0], 0.])
  bones = subject.bone_lengths_mm
  thigh = bones[motion.BONE_INDEX['left_knee']]
  if joint_angles.ACTIONS[m.action_index[i]] == 'sitting':
    seat_top = min(j[1, 2], j[4, 2]) - 70. * s * subject.girth
    back = j[0] - 170. * s * fwd
  else:  # sitting_down: the chair waits behind the feet.
    feet = 0.5 * (j[3] + j[6])
    shank = bones[motion.BONE_INDEX['left_ankle']]
    seat_top = shank + 80. * s - 60. * s * subject.girth
    back = feet - (thigh + 190. * s) * fwd
  back = np.array([back[0], back[1], 0.])
  depth = rng.uniform(380., 460.)
  width = rng.uniform(400., 480.)
  thick = 40.
  albedo = _colour(rng, (0., 0.7), (0.15, 0.8))
  centre = back + 0.5 * depth * fwd + np.array([0., 0., seat_top - thick / 2])
  up = np.array([0., 0., 1.])
  boxes = [Box(centre, np.stack([0.5 * depth * fwd, 0.5 * width * lat,
                                 0.5 * thick * up], 1), albedo)]
  leg_h = max(seat_top - thick, 10.)
  for a in (-1, 1):
    for b in (-1, 1):
      foot = back + (0.5 + a * 0.42) * depth * fwd + b * 0.42 * width * lat
      boxes.append(Box(foot + 0.5 * leg_h * up,
                       np.stack([18. * fwd, 18. * lat, 0.5 * leg_h * up], 1),
                       albedo * 0.8))
  if rng.random() < 0.6:
    h = rng.uniform(350., 500.)
    boxes.append(Box(back + 15. * fwd + (seat_top + h / 2) * up,
                     np.stack([15. * fwd, 0.5 * width * lat, 0.5 * h * up], 1),
                     albedo))
  return boxes


def random_box(rng, pos_xy, size_mm):
  """A box of size_mm [3] standing on the floor at pos_xy, turned about the
  vertical axis at random."""
  spin = rng.uniform(0., np.pi)
  c, s = np.cos(spin), np.sin(spin)
  axes = np.array([[c, -s, 0.], [s, c, 0.], [0., 0., 1.]]) * (size_mm / 2)
  return Box(np.array([pos_xy[0], pos_xy[1], size_mm[2] / 2]), axes,
             _colour(rng, (0., 0.6), (0.15, 0.9)))


_FLOOR_TILES = 6    # base patterns tiled 6 x 6 into one floor texture
_FLOOR_LEVELS = 6   # mip levels (each halves the resolution)


@functools.lru_cache(maxsize=None)
def _banks():
  """Fixed procedural textures, the same in every process.

  Returns (floors, walls, sensor): floors[p][level] is a tiled periodic gray
  pattern at mip level `level`; walls are gray noise fields; sensor is BGR
  noise centred at 128.
  """
  rng = np.random.default_rng(20240607)
  size = 256

  def periodic_noise(shape, sigma):
    white = rng.normal(0., 1., shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    filt = np.exp(-0.5 * (fx ** 2 + fy ** 2) * (2 * np.pi * sigma) ** 2)
    out = np.real(np.fft.ifft2(np.fft.fft2(white) * filt))
    return (out - out.mean()) / (out.std() + 1e-9)

  patterns = []
  # Tiles (4 x 4 per pattern) with grout and per-tile shade.
  for grout in (3, 6):
    n = 4
    step = size // n
    t = np.kron(rng.normal(0., 0.08, (n, n)), np.ones((step, step)))
    t += 0.05 * periodic_noise((size, size), 2.)
    for q in range(n):
      t[q * step:q * step + grout, :] = -0.5
      t[:, q * step:q * step + grout] = -0.5
    patterns.append(t)
  # Planks (8 across) with grain and seams.
  for _ in range(2):
    n = 8
    step = size // n
    t = np.kron(rng.normal(0., 0.12, (1, n)), np.ones((size, step)))
    grain = periodic_noise((size, size // 8), 1.5)
    t += 0.12 * np.kron(grain, np.ones((1, 8)))
    for q in range(n):
      t[:, q * step:q * step + 2] = -0.4
      y = rng.integers(0, size - 2)
      t[y:y + 2, q * step:(q + 1) * step] = -0.4
    patterns.append(t)
  # Checker, carpet, concrete.
  n = 8
  checker = np.kron((np.indices((n, n)).sum(0) % 2) - 0.5,
                    np.ones((size // n, size // n))) * 0.5
  patterns.append(checker + 0.04 * periodic_noise((size, size), 1.))
  patterns.append(0.25 * periodic_noise((size, size), 1.))
  patterns.append(0.2 * periodic_noise((size, size), 6.)
                  + 0.08 * periodic_noise((size, size), 1.))
  floors = []
  for t in patterns:
    level = np.tile(np.clip(128 + 100 * t, 0, 255).astype(np.uint8),
                    (_FLOOR_TILES, _FLOOR_TILES))
    levels = [level]
    for _ in range(_FLOOR_LEVELS - 1):
      levels.append(cv2.pyrDown(levels[-1]))
    floors.append(levels)
  walls = [np.clip(128 + 40 * periodic_noise((512, 512), s), 0, 255
                   ).astype(np.uint8) for s in (1., 3., 12.)]
  sensor = np.clip(128 + 40 * rng.normal(0., 1., (512, 512, 3)), 0, 255
                   ).astype(np.uint8)
  return floors, walls, sensor


def _clip_polygon(poly, line):
  """The part of a convex polygon [n, 2] where line . (x, y, 1) >= 0."""
  out = []
  n = len(poly)
  for q in range(n):
    p0, p1 = poly[q], poly[(q + 1) % n]
    f0 = line[0] * p0[0] + line[1] * p0[1] + line[2]
    f1 = line[0] * p1[0] + line[1] * p1[1] + line[2]
    if f0 >= 0:
      out.append(p0)
    if (f0 >= 0) != (f1 >= 0):
      out.append(p0 + f0 / (f0 - f1) * (p1 - p0))
  return np.array(out).reshape(-1, 2)


def _colour(rng, saturation=(0., 0.45), value=(0.25, 0.95)):
  """A random BGR colour (0-255), muted by default as in real rooms."""
  h = rng.uniform(0., 6.)
  sat = rng.uniform(*saturation)
  val = rng.uniform(*value)
  rgb = np.clip(np.abs((h + np.array([0., 4., 2.])) % 6. - 3.) - 1., 0., 1.)
  rgb = val * (1. - sat + sat * rgb)
  return 255. * rgb[::-1]


def _colour_map(gray, c0, c1):
  """uint8 gray -> BGR blend of colours c0 (at 0) and c1 (at 255)."""
  return cv2.transform(gray, np.stack([(c1 - c0) / 255., c0], 1))


def draw_background(rng, size, k, ext, person_world, max_clutter):
  """Wall with decorations and a textured floor in perspective.

  Returns (image, list of clutter boxes standing on the floor).
  """
  floors, walls, _ = _banks()
  rot, trans = ext[:, :3], ext[:, 3]
  eye = -rot.T @ trans
  root = person_world[0]
  away = root[:2] - eye[:2]
  person_dist = np.linalg.norm(away)
  away /= person_dist
  yaw = np.deg2rad(rng.uniform(-35., 35.))
  n_w = np.array([np.cos(yaw) * away[0] - np.sin(yaw) * away[1],
                  np.sin(yaw) * away[0] + np.cos(yaw) * away[1]])
  wall_dist = rng.uniform(1500., 5000.)
  w0 = np.array([root[0] + away[0] * wall_dist, root[1] + away[1] * wall_dist,
                 0.])
  along = np.array([-n_w[1], n_w[0], 0.])
  up = np.array([0., 0., 1.])

  # Wall: smooth colour field + texture.
  base = _colour(rng)
  field = np.clip(base + rng.normal(0., 18., (2, 2, 3)), 0, 255).astype(
      np.uint8)
  img = cv2.resize(field, (size, size), interpolation=cv2.INTER_LINEAR)
  tex = walls[rng.integers(len(walls))]
  oy, ox = rng.integers(0, tex.shape[0] - size, 2)
  amount = rng.uniform(0.05, 0.25)
  img = cv2.addWeighted(img, 1., cv2.cvtColor(
      tex[oy:oy + size, ox:ox + size], cv2.COLOR_GRAY2BGR), amount,
                        -128. * amount)

  def wall_rect(x0, x1, z0, z1):
    corners = np.array([w0 + x0 * along + z0 * up, w0 + x1 * along + z0 * up,
                        w0 + x1 * along + z1 * up, w0 + x0 * along + z1 * up])
    cam = corners @ rot.T + trans
    if np.any(cam[:, 2] < 100.):
      return None
    return project(cam, k)

  # Decorations: posters, pictures, windows, doors; a baseboard.
  for _ in range(rng.integers(0, 6)):
    x0 = rng.uniform(-4000., 3500.)
    wdt = rng.uniform(300., 1500.)
    z0 = rng.uniform(0., 1800.) if rng.random() < 0.8 else 0.
    hgt = rng.uniform(200., 1200.) if z0 > 0. else rng.uniform(1800., 2200.)
    poly = wall_rect(x0, x0 + wdt, z0, z0 + hgt)
    if poly is None:
      continue
    fill_polygon(img, poly, _colour(rng, (0., 0.8), (0.1, 1.)))
    if rng.random() < 0.5:  # a frame, or a window's panes
      inner = wall_rect(x0 + 0.08 * wdt, x0 + 0.92 * wdt, z0 + 0.08 * hgt,
                        z0 + 0.92 * hgt)
      if inner is not None:
        fill_polygon(img, inner, _colour(rng, (0., 0.8), (0.1, 1.)))
  board_h = rng.uniform(60., 150.)
  board_c = base * rng.uniform(0.3, 0.8)
  for extent in (8000., 4000., 2000.):
    board = wall_rect(-extent, extent, 0., board_h)
    if board is not None:
      fill_polygon(img, board, board_c)
      break

  # Floor: a tiled texture in perspective below the wall's base line and
  # below the horizon.
  floor_poly = np.array([[-1., -1.], [size, -1.], [size, size], [-1., size]])
  feet = project(np.array([root[0], root[1], 0.]) @ rot.T + trans, k)
  feet_h = np.array([feet[0], feet[1], 1.])
  horizon = np.linalg.inv(k).T @ rot[:, 2]
  base = np.array([w0 - 1000. * along, w0 + 1000. * along]) @ rot.T + trans
  lines = [horizon]
  if np.all(base[:, 2] > 10.):
    a, b = project(base, k)
    lines.append(cross(np.array([a[0], a[1], 1.]), np.array([b[0], b[1], 1.])))
  for line in lines:
    floor_poly = _clip_polygon(floor_poly, line if line @ feet_h >= 0
                               else -line)
  if len(floor_poly) >= 3:
    levels = floors[rng.integers(len(floors))]
    mm_per_texel = rng.uniform(6., 12.)
    # Mip level: about one texel per pixel along the foreshortened floor at
    # the wall, the farthest floor in view (no moire towards the horizon;
    # nearer floor gets blurrier, as if out of focus).
    far = person_dist + wall_dist
    ratio = far ** 2 / (k[0, 0] * max(eye[2], 200.) * mm_per_texel)
    level = int(np.clip(np.floor(np.log2(max(ratio, 1e-3))), 0,
                        _FLOOR_LEVELS - 1))
    pattern = levels[level]
    texel = mm_per_texel * 2 ** level
    half = pattern.shape[0] / 2 * texel
    spin = rng.uniform(0., 2 * np.pi)
    c, sn = np.cos(spin), np.sin(spin)
    origin = root[:2] + rng.uniform(-half / 6, half / 6, 2)
    # texel (x, y) -> world (X, Y, 1) on the ground, centred at origin.
    tex_to_world = np.array([[c * texel, -sn * texel, origin[0] - c * half
                              + sn * half],
                             [sn * texel, c * texel, origin[1] - sn * half
                              - c * half],
                             [0., 0., 1.]])
    lo = np.clip(np.floor(floor_poly.min(0)), 0, size).astype(int)
    hi = np.clip(np.ceil(floor_poly.max(0)) + 1, 0, size).astype(int)
    if np.all(hi - lo > 0):
      shift = np.array([[1., 0., -lo[0]], [0., 1., -lo[1]], [0., 0., 1.]])
      hom = shift @ k @ np.stack([rot[:, 0], rot[:, 1], trans], 1) @ (
          tex_to_world)
      roi_size = (int(hi[0] - lo[0]), int(hi[1] - lo[1]))
      warped = cv2.warpPerspective(pattern, hom, roi_size,
                                   flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
      c0 = _colour(rng, (0., 0.5), (0.15, 0.8))
      c1 = np.clip(c0 * (rng.uniform(1.3, 2.) if rng.random() < 0.5
                         else rng.uniform(0.4, 0.75)), 0, 255)
      floor = _colour_map(warped, c0, c1)
      mask = np.zeros(roi_size[::-1], np.uint8)
      fill_polygon(mask, floor_poly - lo, 255)
      roi = img[lo[1]:hi[1], lo[0]:hi[0]]
      cv2.copyTo(floor, mask, roi)
  # Clutter boxes on the floor, away from the person.
  boxes = []
  for _ in range(rng.integers(0, max_clutter + 1)):
    side = rng.choice([-1., 1.])
    pos = root[:2] + away * rng.uniform(-500., wall_dist - 400.) + side * (
        np.array([-away[1], away[0]]) * rng.uniform(1000., 3000.))
    boxes.append(random_box(rng, pos, rng.uniform(200., 800., 3)))
  return img, boxes


def draw_contact_shadow(img, m, i, rot, trans, k, rng):
  """Darkens an ellipse on the floor around the feet."""
  pts = np.stack([m.points[key][i] for key in ('l_heel', 'l_toe', 'r_heel',
                                               'r_toe')])
  low = pts[pts[:, 2] < 150.]
  if not len(low):
    return
  centre = low.mean(0)
  extent = max(np.ptp(low[:, 0]), np.ptp(low[:, 1]), 200.) / 2 + 150.
  ring = np.stack([centre[0] + extent * np.cos(RING_ANGLES),
                   centre[1] + extent * np.sin(RING_ANGLES),
                   np.zeros(RING_SAMPLES)], 1) @ rot.T + trans
  if np.any(ring[:, 2] < 100.):
    return
  poly = project(ring, k)
  lo = np.floor(poly.min(0)).astype(int) - 2
  hi = np.ceil(poly.max(0)).astype(int) + 2
  size = img.shape[0]
  lo = np.clip(lo, 0, size)
  hi = np.clip(hi, 0, size)
  if np.any(hi - lo < 2):
    return
  roi = img[lo[1]:hi[1], lo[0]:hi[0]]
  mask = np.zeros(roi.shape[:2], np.uint8)
  fill_polygon(mask, poly - lo, 255)
  ksize = max(3, int(0.3 * min(mask.shape)) | 1)
  mask = cv2.GaussianBlur(mask, (ksize, ksize), 0)
  strength = rng.uniform(0.25, 0.5)
  darken = (255 - (mask.astype(np.float32) * strength)).astype(np.uint8)
  roi[:] = cv2.multiply(roi, cv2.cvtColor(darken, cv2.COLOR_GRAY2BGR),
                        scale=1. / 255.)


def camera_effects(img, rng):
  """Defocus blur, exposure, sensor noise (white balance: Light.colour)."""
  sigma = rng.uniform(0.3, 1.1)
  img = cv2.GaussianBlur(img, (5, 5), sigma)
  gain = rng.uniform(0.85, 1.15)
  sensor = _banks()[2]
  oy, ox = rng.integers(0, sensor.shape[0] - img.shape[0], 2)
  noise = sensor[oy:oy + img.shape[0], ox:ox + img.shape[1]]
  amount = rng.uniform(0.02, 0.12)
  return cv2.addWeighted(img, gain, noise, amount, -128. * amount)

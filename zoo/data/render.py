"""OpenCV renderer of the embedded dataset: a posed subject seen by a camera.

Why: the zoo's models learn image -> 3D pose without any downloadable data,
so the renderer must draw people that look enough like photographs: solid
body parts with shading, clothing, skin, hair and a face (a front/back cue),
in rooms with perspective floors, walls, clutter and occluders, seen by a
calibrated pinhole camera whose labels are exact.

How: `render` samples a camera that looks at the posed skeleton
(zoo.data.motion), builds the body's primitives (zoo.data.body), draws the
room behind it (zoo.data.scene), shades and projects every primitive
(zoo.data.shading), draws them far to near (painter's algorithm by centre
distance) with props and occluders in between, and adds the camera's
effects. Rendering goes straight into the stored person-centred crop: the
crop's intrinsics are the frame's intrinsics composed with the crop affine
(zoo.geometry.box_crop_affine / transform_intrinsics), so no pixels outside
the crop are drawn. The crop lies inside the 1000x1000 frame, so a person
near the frame border is cut. The labels (3D joints in the world and camera
frames, 2D joints in the crop, the person box, which joints are in the image
or self-occluded) come from the same camera.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from zoo import geometry
from zoo.data import body as body_lib
from zoo.data import joint_angles
from zoo.data import motion
from zoo.data import scene
from zoo.data import shading

FRAME_SIZE = 1000  # px, square camera frames like Human3.6M's


@dataclasses.dataclass(frozen=True)
class RenderConfig:
  """What a rendered example looks like."""
  image_size: int = 320                   # stored crop side (px)
  crop_margin: tuple[float, float] = (1.4, 1.6)  # crop side / box side
  focal_px: tuple[float, float] = (1000., 1200.)
  principal_jitter_px: float = 15.
  distance_mm: tuple[float, float] = (3000., 7000.)
  height_mm: tuple[float, float] = (500., 2000.)
  max_roll_deg: float = 5.
  offcentre_prob: float = 0.1             # aim well off the person (the
                                          # frame border may cut them)
  occluder_prob: float = 0.15             # a box between camera and person
  max_clutter: int = 3                    # boxes around the person
  background: bool = True                 # False: flat grey, no noise/blur
  shading_bands: int = 3


# ----------------------------------------------------------------------------
# Camera
# ----------------------------------------------------------------------------

def sample_camera(rng: np.random.Generator, joints_world_mm: np.ndarray,
                  config: RenderConfig) -> tuple[np.ndarray, np.ndarray]:
  """(intrinsics [3,3] of the 1000x1000 frame, extrinsics [3,4]) looking at
  the person from any direction, distance and height in the config's ranges.
  """
  f = rng.uniform(*config.focal_px)
  c = (FRAME_SIZE - 1) / 2 + rng.uniform(-1, 1, 2) * config.principal_jitter_px
  k = np.array([[f, 0., c[0]], [0., f, c[1]], [0., 0., 1.]])
  root = joints_world_mm[0]
  azimuth = rng.uniform(0., 2 * np.pi)
  dist = rng.uniform(*config.distance_mm)
  eye = np.array([root[0] + dist * np.cos(azimuth),
                  root[1] + dist * np.sin(azimuth),
                  rng.uniform(*config.height_mm)])
  zs = joints_world_mm[:, 2]
  target = np.array([root[0], root[1], 0.5 * (zs.min() + zs.max())])
  if rng.random() < config.offcentre_prob:
    target[:2] += np.clip(rng.normal(0., 500., 2), -900., 900.)
    target[2] += rng.uniform(-500., 500.)
  else:
    target[:2] += rng.normal(0., 120., 2)
    target[2] += rng.normal(0., 80.)
  roll = np.deg2rad(np.clip(rng.normal(0., config.max_roll_deg / 2),
                            -config.max_roll_deg, config.max_roll_deg))
  return k, geometry.look_at(eye, target, roll_rad=roll)


# ----------------------------------------------------------------------------
# One example
# ----------------------------------------------------------------------------

@dataclasses.dataclass
class Rendered:
  image_bgr: np.ndarray          # [S, S, 3] uint8
  intrinsics: np.ndarray         # [3, 3] of the crop
  frame_intrinsics: np.ndarray   # [3, 3] of the 1000x1000 frame
  extrinsics: np.ndarray         # [3, 4] world -> camera
  crop_box_xywh: np.ndarray      # the crop's window in the frame (px)
  joints_world_mm: np.ndarray    # [17, 3]
  joints_cam_mm: np.ndarray      # [17, 3]
  joints2d_px: np.ndarray        # [17, 2] in the crop
  box_xywh: np.ndarray           # [4] person box in the crop
  joint_in_image: np.ndarray     # [17] bool
  joint_self_occluded: np.ndarray  # [17] bool


def _person_box_frame(m, i, rot, trans, k):
  """Rough person box (px) in the full frame from joints and surface points."""
  pts = [m.joints_world_mm[i]] + [v[i][None] for v in m.points.values()]
  cam = np.concatenate(pts) @ rot.T + trans
  px = shading.project(cam, k)
  pad = k[0, 0] * 110. / np.maximum(cam[:, 2], 100.)
  lo = (px - pad[:, None]).min(0)
  hi = (px + pad[:, None]).max(0)
  return np.concatenate([lo, hi - lo])


def render(m: motion.MotionBatch, i: int, rng: np.random.Generator,
           config: RenderConfig = RenderConfig()) -> Rendered:
  """Renders pose i of `m` (made with render_info=True) with a random camera,
  scene and light, straight into the stored crop."""
  size = config.image_size
  joints = m.joints_world_mm[i]
  k_frame, ext = sample_camera(rng, joints, config)
  rot, trans = ext[:, :3], ext[:, 3]
  # Crop window: the person's box plus margin, inside the frame.
  box = _person_box_frame(m, i, rot, trans, k_frame)
  side = max(box[2], box[3]) * rng.uniform(*config.crop_margin)
  side = min(side, float(FRAME_SIZE))
  centre = box[:2] + box[2:] / 2 + rng.normal(0., 0.03 * side, 2)
  x0 = np.clip(centre - side / 2, 0., FRAME_SIZE - side)
  crop = np.array([x0[0], x0[1], side, side])
  k = geometry.transform_intrinsics(k_frame,
                                    geometry.box_crop_affine(crop, size))
  light = shading.sample_light(rng, rot)

  if config.background:
    img, boxes = scene.draw_background(rng, size, k, ext, joints,
                                       config.max_clutter)
  else:
    img, boxes = np.full((size, size, 3), 128, np.uint8), []
  occluder = config.background and rng.random() < config.occluder_prob
  if occluder:
    eye = -rot.T @ trans
    to_cam = eye[:2] - joints[0, :2]
    dist = np.linalg.norm(to_cam)
    to_cam /= dist
    lateral = np.array([-to_cam[1], to_cam[0]])
    width = rng.uniform(250., 700.)
    pos = joints[0, :2] + to_cam * rng.uniform(500., min(0.4 * dist, 1500.)) + (
        lateral * rng.choice([-1., 1.]) * (0.5 * width + rng.uniform(0., 350.)))
    occ_box = scene.random_box(rng, pos, np.array(
        [width, rng.uniform(250., 600.), rng.uniform(300., 1000.)]))
  body = body_lib.build_body(m, i)
  props = []
  if joint_angles.ACTIONS[m.action_index[i]] in joint_angles.SEATED_ACTIONS:
    props = scene.chair_boxes(m, i, rng)

  # Soft contact shadow on the floor under the person.
  if config.background:
    scene.draw_contact_shadow(img, m, i, rot, trans, k, rng)

  # Draw list: (distance, kind, payload); far first.
  bands = config.shading_bands
  fpoly, fcol, fdist, fouter = shading.frustum_geometry(body, rot, trans, k,
                                                        light, bands)
  sc, sr, scol, sdist, _, _ = shading.sphere_geometry(body, rot, trans, k,
                                                      light, bands)
  patches = shading.patch_geometry(body, rot, trans, k, light)
  items = [(fdist[q], 0, q) for q in range(len(fdist))]
  items += [(sdist[q], 1, q) for q in range(len(sdist))]
  prop_draw = []
  for b in props:
    d = scene.box_draw_list(b, rot, trans, k, light)
    if d is not None:
      prop_draw.append(d)
  # The seat (first prop) goes first: bodies sit on it.
  if prop_draw:
    shading.fill_polygons(img, prop_draw[0][1], prop_draw[0][2])
  items += [(prop_draw[q][0], 2, q) for q in range(1, len(prop_draw))]
  root_dist = np.linalg.norm(joints[0] @ rot.T + trans)
  for b in boxes:
    d = scene.box_draw_list(b, rot, trans, k, light)
    if d is not None and d[0] > root_dist:
      shading.fill_polygons(img, d[1], d[2])
  items.sort(key=lambda x: -x[0])
  # Fixed-point coordinates and colour lists for all primitives at once.
  fpoly_fixed = np.round(fpoly * shading.ONE).astype(np.int32)
  fcol_list = fcol.tolist()
  sc_fixed = np.round(sc * shading.ONE).astype(np.int64).tolist()
  sr_fixed = np.round(sr * shading.ONE).astype(np.int64).tolist()
  scol_list = scol.tolist()
  for _, kind, q in items:
    if kind == 0:
      for poly, colour in zip(fpoly_fixed[q], fcol_list[q]):
        cv2.fillConvexPoly(img, cv2.convexHull(poly), colour, cv2.LINE_AA,
                           shading.SHIFT)
      for poly, colour in patches.get(q, ()):
        cv2.fillConvexPoly(img, poly, colour, cv2.LINE_AA, shading.SHIFT)
    elif kind == 1:
      for c, r, colour in zip(sc_fixed[q], sr_fixed[q], scol_list[q]):
        if r > 0:
          cv2.circle(img, c, r, colour, -1, cv2.LINE_AA, shading.SHIFT)
    else:
      shading.fill_polygons(img, prop_draw[q][1], prop_draw[q][2])
  front = boxes + ([occ_box] if occluder else [])
  for b in front:
    d = scene.box_draw_list(b, rot, trans, k, light)
    if d is not None and d[0] <= root_dist:
      shading.fill_polygons(img, d[1], d[2])

  if config.background:
    img = scene.camera_effects(img, rng)

  # Labels.
  joints_cam = joints @ rot.T + trans
  joints2d = geometry.project(joints_cam, k)
  outer = np.concatenate([shading.project(fouter.reshape(-1, 3), k),
                          sc[:, 0] - sr[:, :1], sc[:, 0] + sr[:, :1]])
  lo = np.clip(outer.min(0), 0., size)
  hi = np.clip(outer.max(0), 0., size)
  in_image = np.all((joints2d >= 0.) & (joints2d <= size - 1.), -1)
  caps_a, caps_b, radius_a, radius_b, part_ids = body.capsules()
  occl = body_lib.self_occlusion(joints_cam, caps_a @ rot.T + trans,
                                 caps_b @ rot.T + trans, radius_a, radius_b,
                                 part_ids)
  return Rendered(image_bgr=img, intrinsics=k, frame_intrinsics=k_frame,
                  extrinsics=ext, crop_box_xywh=crop, joints_world_mm=joints,
                  joints_cam_mm=joints_cam, joints2d_px=joints2d,
                  box_xywh=np.concatenate([lo, hi - lo]),
                  joint_in_image=in_image, joint_self_occluded=occl)


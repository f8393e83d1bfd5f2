"""OpenCV renderer of the embedded dataset: a posed subject seen by a camera.

Why: the zoo's models learn image -> 3D pose without any downloadable data,
so the renderer must draw people that look enough like photographs: solid
body parts with shading, clothing, skin, hair and a face (a front/back cue),
in rooms with perspective floors, walls, clutter and occluders, seen by a
calibrated pinhole camera whose labels are exact.

How: the body is a set of primitives built on the posed skeleton
(zoo.data.motion) in the world frame (z up, mm):
- frustums between two elliptical rings (tapered capsules for limbs with
  sphere caps at the joints, three elliptical volumes for the torso, hands,
  shoes, neck),
- spheres (joints, head, face, hair, eyes, brows, nose, lips, ears),
- surface patches: quads on a frustum's surface (a chest print or an open
  jacket's inner shirt, a V neck, a belt buckle, a back yoke seam, shoe soles
  and toe caps), each drawn right after its frustum and only where it faces
  the camera,
plus cuboids for props (a chair under seated actions, furniture, occluders).

Front/back cues: left and right limbs are dressed alike (colour is never a
left/right cue), so telling left from right needs knowing whether the person
faces the camera. The cues are large enough for ~90 px tall people: the
chest accent and V neck exist only on the front of the torso, the face (skin,
eye whites, brows, nose shadow) only on the front of the head with hair on
the back and top, and soles / toe caps show the feet's direction. All are
symmetric about the body's sagittal plane.
Each primitive is shaded by Lambert's law from one directional light: the
silhouette is filled at the darkest visible shade and K nested, shrinking
copies move towards the brightest visible point in lighter shades (a cheap
stand-in for smooth shading), all anti-aliased (cv2.LINE_AA, sub-pixel
coordinates). Primitives are drawn far to near (painter's algorithm by
centre distance). Rendering goes straight into the stored person-centred
crop: the crop's intrinsics are the frame's intrinsics composed with the crop
affine (zoo.geometry.box_crop_affine / transform_intrinsics), so no pixels
outside the crop are drawn. The crop lies inside the 1000x1000 frame, so a
person near the frame border is cut.

Self-occlusion: a joint is self-occluded when the ray from the camera to it
passes through a body part that does not contain the joint, in front of it
(capsule approximations of the drawn primitives).
"""
from __future__ import annotations

import dataclasses
import functools

import cv2
import numpy as np

from zoo import geometry
from zoo.data import motion

FRAME_SIZE = 1000  # px, square camera frames like Human3.6M's
_SHIFT = 4         # cv2 sub-pixel bits
_ONE = 1 << _SHIFT
_M = 16            # samples per ring
_THETA = np.linspace(0., 2 * np.pi, _M, endpoint=False)
_COS, _SIN = np.cos(_THETA), np.sin(_THETA)


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
# Body primitives
# ----------------------------------------------------------------------------

# Body parts, for colours and self-occlusion: a joint is never occluded by a
# part that contains it.
PARTS = ('torso', 'neck', 'head', 'l_upperarm', 'l_forearm', 'l_hand',
         'r_upperarm', 'r_forearm', 'r_hand', 'l_thigh', 'l_shank', 'l_foot',
         'r_thigh', 'r_shank', 'r_foot', 'prop')
_PART_JOINTS = {
    'torso': (0, 1, 4, 7, 8, 11, 14), 'neck': (8, 9), 'head': (9, 10),
    'l_upperarm': (11, 12), 'l_forearm': (12, 13), 'l_hand': (13,),
    'r_upperarm': (14, 15), 'r_forearm': (15, 16), 'r_hand': (16,),
    'l_thigh': (4, 5), 'l_shank': (5, 6), 'l_foot': (6,),
    'r_thigh': (1, 2), 'r_shank': (2, 3), 'r_foot': (3,), 'prop': (),
}
_PART_ID = {p: i for i, p in enumerate(PARTS)}
# [num_parts, 17] True where the part may occlude the joint.
_CAN_OCCLUDE = np.ones((len(PARTS), 17), bool)
for _p, _js in _PART_JOINTS.items():
  _CAN_OCCLUDE[_PART_ID[_p], list(_js)] = False
_CAN_OCCLUDE[_PART_ID['prop']] = False  # props are no *self*-occlusion


class _Body:
  """Collects frustums and spheres (world frame) for one person."""

  def __init__(self):
    # (a, b, u_a, v_a, ru_a, rv_a, u_b, v_b, ru_b, rv_b, albedo, part): ends,
    # ring axes and semi-axes at each end, BGR albedo, part id.
    self.fr = []
    self.sp = []   # (centre, radius, albedo, part, depth bias)
    # (frustum index, quads [n, 4, 3], normals [n, 3], albedo): surface
    # regions drawn on top of a frustum where they face the camera.
    self.pa = []

  def frustum(self, a, b, radius_a, radius_b, albedo, part, axes_a=None,
              axes_b=None):
    """Between points a and b; radius = r or (r_u, r_v) with axes (u, v)."""
    if axes_a is None:  # circular: any axes perpendicular to b - a
      axes_a = (_NAN3, _NAN3)
    if axes_b is None:
      axes_b = axes_a
    ra = radius_a if isinstance(radius_a, tuple) else (radius_a, radius_a)
    rb = radius_b if isinstance(radius_b, tuple) else (radius_b, radius_b)
    self.fr.append((a, b, axes_a[0], axes_a[1], ra[0], ra[1], axes_b[0],
                    axes_b[1], rb[0], rb[1], albedo, _PART_ID[part]))

  def sphere(self, centre, radius, albedo, part, bias=0.):
    """A sphere; `bias` (mm) moves it back in the painter's order."""
    self.sp.append((centre, radius, albedo, _PART_ID[part], bias))

  def patch(self, theta_deg, s_lo, s_hi, albedo):
    """A coloured region on the surface of the last frustum (with axes).

    The region spans ring angles theta_deg [n+1] (0 deg: +u axis, 90 deg: +v
    axis) and, at each angle, the axial range s_lo..s_hi (0: end a, 1: end
    b; scalars or [n+1]). It is split into n quads, each drawn right after
    its frustum and only when it faces the camera, so features on one side
    of a part (the chest) vanish when that side faces away.
    """
    a, b, ua, va, rua, rva, ub, vb, rub, rvb = self.fr[-1][:10]
    th = np.deg2rad(np.asarray(theta_deg, np.float64))
    cos, sin = np.cos(th)[:, None], np.sin(th)[:, None]
    ring_a = a + rua * cos * ua + rva * sin * va   # [n+1, 3]
    ring_b = b + rub * cos * ub + rvb * sin * vb
    lo = np.broadcast_to(np.asarray(s_lo, np.float64), th.shape)[:, None]
    hi = np.broadcast_to(np.asarray(s_hi, np.float64), th.shape)[:, None]
    p_lo = ring_a + lo * (ring_b - ring_a)
    p_hi = ring_a + hi * (ring_b - ring_a)
    quads = np.stack([p_lo[:-1], p_lo[1:], p_hi[1:], p_hi[:-1]], 1)
    mid = 0.5 * (th[:-1] + th[1:])[:, None]
    sm = 0.5 * (lo[:-1] + lo[1:] + hi[:-1] + hi[1:])[..., :1] / 2
    u = ua + sm * (ub - ua)
    v = va + sm * (vb - va)
    ru = rua + sm * (rub - rua)
    rv = rva + sm * (rvb - rva)
    normals = np.cos(mid) * u / ru + np.sin(mid) * v / rv
    self.pa.append((len(self.fr) - 1, quads, normals, albedo))


_NAN3 = np.full(3, np.nan)


def _cross(a, b):
  """np.cross for [..., 3] arrays, without its overhead."""
  return np.stack([a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
                   a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                   a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]], -1)


def _perp_axes(d):
  """Two unit axes perpendicular to each [n, 3] direction d."""
  d = d / (np.linalg.norm(d, axis=-1, keepdims=True) + 1e-9)
  helper = np.where((np.abs(d[:, :1]) < 0.9), [[1., 0., 0.]], [[0., 1., 0.]])
  u = _cross(d, helper)
  u /= np.linalg.norm(u, axis=-1, keepdims=True)
  return u, _cross(d, u)


def _rgb_to_bgr(c):
  return np.array(c[::-1], np.float64)


# Fixed accessory colours (BGR).
_BELT = _rgb_to_bgr((52, 38, 30))
_BUCKLE = _rgb_to_bgr((215, 205, 170))
_EYE_WHITE = _rgb_to_bgr((240, 238, 232))
_IRIS = _rgb_to_bgr((40, 28, 22))
_LIPS = _rgb_to_bgr((200, 70, 80))
_SOLE_LIGHT = _rgb_to_bgr((236, 232, 222))
_SOLE_DARK = _rgb_to_bgr((48, 40, 34))


def build_body(m: motion.MotionBatch, i: int) -> _Body:
  """Primitives of pose i of a MotionBatch made with render_info=True."""
  subject = motion.SUBJECTS[m.subject_index[i]]
  j = m.joints_world_mm[i]
  fr = {k: v[i] for k, v in m.frames.items()}
  pt = {k: v[i] for k, v in m.points.items()}
  s = subject.height_factor
  g = subject.girth
  gs = np.sqrt(g)
  skin, hair = _rgb_to_bgr(subject.skin), _rgb_to_bgr(subject.hair)
  top, bottom = _rgb_to_bgr(subject.top), _rgb_to_bgr(subject.bottom)
  shoes = _rgb_to_bgr(subject.shoes)
  body = _Body()
  pel, lum, tho, hd = fr['pelvis'], fr['lumbar'], fr['thorax'], fr['head']

  # Torso: hip ring -> belt ring -> chest ring -> shoulder ring.
  def ring_axes(rot):
    return rot[:, 1], rot[:, 0]  # (lateral, forward)

  hip_c = j[0] - 10. * s * pel[:, 2]
  belt_c = j[0] + 0.4 * (j[7] - j[0])
  chest_c = j[8] - 0.35 * (j[8] - j[7])
  sh_c = j[8] + 5. * s * tho[:, 2]
  hip_r = (172. * s * subject.hip_width * gs, 112. * s * g)
  belt_r = (148. * s * subject.hip_width * gs, 104. * s * g)
  chest_r = (168. * s * subject.shoulder_width * gs, 112. * s * g)
  sh_r = (128. * s * subject.shoulder_width, 78. * s * gs)
  # Front/back cues on the torso (ring angle 90 deg = forward, symmetric
  # about it so that left and right look alike): a belt with a buckle at the
  # front; an open jacket showing the inner shirt, or a T-shirt with a chest
  # print; a skin-coloured V neck. Back: a darker yoke seam.
  accent = _rgb_to_bgr(subject.accent)
  body.frustum(hip_c, belt_c, hip_r, belt_r, bottom, 'torso',
               ring_axes(pel), ring_axes(lum))
  body.patch(np.linspace(0., 360., 9), 0.78, 1., _BELT)
  body.patch(np.linspace(80., 100., 2), 0.8, 1., _BUCKLE)
  jacket = subject.front_style == 'jacket'
  body.frustum(belt_c, chest_c, belt_r, chest_r, top, 'torso',
               ring_axes(lum), ring_axes(tho))
  if jacket:
    body.patch(np.linspace(60., 120., 4), 0., 1., accent)
  else:
    body.patch(np.linspace(52., 128., 5), 0.45, 1., accent)
  body.frustum(chest_c, sh_c, chest_r, sh_r, top, 'torso', ring_axes(tho),
               ring_axes(tho))
  if jacket:
    body.patch(np.linspace(60., 120., 4), 0., 1., accent)
  else:
    body.patch(np.linspace(52., 128., 5), 0., 0.45, accent)
  body.patch(np.linspace(225., 315., 5), 0.45, 0.62, top * 0.6)
  vee = np.linspace(62., 118., 5)
  body.patch(vee, 1. - np.interp(vee, [62., 90., 118.], [0., 1.05, 0.]), 1.,
             skin)

  # Head: skull (hair) sphere, face sphere, nose, eyes; neck.
  r = 92. * s
  hx, hy, hz = hd[:, 0], hd[:, 1], hd[:, 2]
  centre = j[10] - 0.15 * r * hx - 1.0 * r * hz
  body.sphere(centre - 0.1 * r * hx + 0.1 * r * hz, 0.97 * r, hair, 'head')
  face = centre + 0.22 * r * hx - 0.18 * r * hz
  body.sphere(face, 0.82 * r, skin, 'head')
  # Face features large and contrasting enough to survive small crops:
  # eye whites with dark irises, a nose in shadow, lips, ears.
  body.sphere(centre + 0.98 * r * hx - 0.3 * r * hz, 0.16 * r, skin * 0.7,
              'head')
  body.sphere(centre + 0.9 * r * hx - 0.55 * r * hz, 0.12 * r,
              skin * 0.55 + _LIPS * 0.25, 'head')
  for side in (1., -1.):
    eye_c = centre + 0.85 * r * hx + side * 0.3 * r * hy + 0.02 * r * hz
    body.sphere(eye_c, 0.12 * r, _EYE_WHITE, 'head')
    body.sphere(eye_c + 0.09 * r * hx, 0.07 * r, _IRIS, 'head')
    body.sphere(eye_c + 0.04 * r * hx + 0.17 * r * hz, 0.08 * r, hair * 0.8
                + skin * 0.2, 'head', bias=0.06 * r)
    body.sphere(centre + side * 0.9 * r * hy - 0.2 * r * hz - 0.05 * r * hx,
                0.2 * r, skin, 'head', bias=0.3 * r)
  if subject.hair_style == 'long':
    body.frustum(centre - 0.45 * r * hx + 0.2 * r * hz,
                 centre - 0.7 * r * hx - 1.5 * r * hz, (0.8 * r, 0.55 * r),
                 (0.65 * r, 0.35 * r), hair, 'head', (hy, hx), (hy, hx))
  neck_top = centre - 0.15 * r * hx - 0.6 * r * hz
  body.frustum(j[8] - 20. * s * tho[:, 2], neck_top, 50. * s * gs,
               46. * s * gs, skin, 'neck')

  # Arms. Joint spheres are pushed back in the drawing order (bias) so that
  # the limbs meeting there are drawn over them: they only fill the gaps.
  for side, sh, el, wr in (('l', 11, 12, 13), ('r', 14, 15, 16)):
    short = subject.sleeves == 'short'
    fore_c = skin if short else top
    r_sh, r_el, r_wr = 50. * s * g, 37. * s * g, 26. * s * gs
    body.sphere(j[sh], r_sh, top, side + '_upperarm')
    if short:
      mid = j[sh] + 0.45 * (j[el] - j[sh])
      r_mid = r_sh + 0.45 * (r_el - r_sh)
      body.frustum(j[sh], mid, r_sh, r_mid * 1.08, top, side + '_upperarm')
      body.frustum(mid, j[el], r_mid * 0.95, r_el, skin, side + '_upperarm')
    else:
      body.frustum(j[sh], j[el], r_sh, r_el, top, side + '_upperarm')
    body.sphere(j[el], r_el * 0.97, fore_c, side + '_forearm', bias=r_el)
    bulge = j[el] + 0.3 * (j[wr] - j[el])
    body.frustum(j[el], bulge, r_el * 0.97, r_el * 1.05, fore_c,
                 side + '_forearm')
    body.frustum(bulge, j[wr], r_el * 1.05, r_wr, fore_c, side + '_forearm')
    hand = fr[side + '_hand']
    tip = pt[side + '_hand_tip']
    knuckle = j[wr] + 0.75 * (tip - j[wr])
    axes = (hand[:, 1], hand[:, 0])
    body.frustum(j[wr], knuckle, (r_wr * 1.1, r_wr * 0.75),
                 (42. * s, 17. * s), skin, side + '_hand', axes, axes)
    body.sphere(knuckle, 22. * s, skin, side + '_hand', bias=10.)

  # Legs; shoes are the sole capsules that stand on the ground.
  heel_r, toe_r = motion.sole_radii_mm(m.subject_index[i:i + 1])
  # Soles and toe caps contrast with the shoe: the foot's direction shows.
  sole = _SOLE_LIGHT if shoes.mean() < 128. else _SOLE_DARK
  toe_cap = 0.55 * shoes + 0.45 * sole
  for side, hip, kn, an in (('l', 4, 5, 6), ('r', 1, 2, 3)):
    shorts = subject.legwear == 'shorts'
    r_hip, r_kn, r_an = 80. * s * g, 52. * s * g, 34. * s * gs
    body.sphere(j[hip], r_hip, bottom, side + '_thigh', bias=r_hip)
    if shorts:
      mid = j[hip] + 0.55 * (j[kn] - j[hip])
      r_mid = r_hip + 0.55 * (r_kn - r_hip)
      body.frustum(j[hip], mid, r_hip, r_mid * 1.08, bottom, side + '_thigh')
      body.frustum(mid, j[kn], r_mid * 0.92, r_kn, skin, side + '_thigh')
    else:
      body.frustum(j[hip], j[kn], r_hip, r_kn, bottom, side + '_thigh')
    shank_c = skin if shorts else bottom
    body.sphere(j[kn], r_kn, shank_c, side + '_shank', bias=r_kn)
    calf = j[kn] + 0.3 * (j[an] - j[kn])
    body.frustum(j[kn], calf, r_kn * 0.98, r_kn * 1.06, shank_c,
                 side + '_shank')
    body.frustum(calf, j[an], r_kn * 1.06, r_an, shank_c, side + '_shank')
    foot = fr[side + '_foot']
    heel, toe = pt[side + '_heel'], pt[side + '_toe']
    axes = (foot[:, 1], foot[:, 2])
    body.sphere(j[an], r_an * 1.05, shoes, side + '_foot', bias=r_an)
    body.frustum(heel, toe, (40. * s, float(heel_r[0])),
                 (46. * s, float(toe_r[0])), shoes, side + '_foot', axes, axes)
    body.patch(np.linspace(190., 350., 5), 0., 1., sole)
    body.patch(np.linspace(20., 160., 5), 0.72, 1., toe_cap)
  return body


# ----------------------------------------------------------------------------
# Shading and drawing
# ----------------------------------------------------------------------------

@dataclasses.dataclass
class _Light:
  direction_cam: np.ndarray  # unit, from surface towards the light
  ambient: float
  diffuse: float
  colour: np.ndarray         # BGR multipliers
  wrap: float = 0.25


def _sample_light(rng: np.random.Generator, rotation: np.ndarray) -> _Light:
  elevation = np.deg2rad(rng.uniform(25., 80.))
  azimuth = rng.uniform(0., 2 * np.pi)
  world = np.array([np.cos(elevation) * np.cos(azimuth),
                    np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
  return _Light(direction_cam=rotation @ world,
                ambient=rng.uniform(0.3, 0.5), diffuse=rng.uniform(0.5, 0.8),
                colour=np.clip(1. + rng.normal(0., 0.04, 3), 0.85, 1.15))


def _brightness(normals, light: _Light):
  cos = np.einsum('...i,i->...', normals, light.direction_cam)
  lam = (cos + light.wrap) / (1. + light.wrap)  # 'wrapped' Lambert
  return light.ambient + light.diffuse * np.maximum(lam, 0.)


def _shade(albedo, brightness, light: _Light):
  return np.clip(albedo * brightness[..., None] * light.colour, 0., 255.)


def _project(points_cam, k):
  """Pinhole projection of camera points (depth clamped at 1 mm) to px."""
  z = np.maximum(points_cam[..., 2:3], 1.)
  return points_cam[..., :2] / z * (k[0, 0], k[1, 1]) + (k[0, 2], k[1, 2])


def _frustum_geometry(body: _Body, rot, trans, k, light: _Light,
                      bands: int):
  """Vectorised band polygons for all frustums.

  Returns (poly_px [F, bands, 2M, 2] float, colours [F, bands, 3],
  centre distance [F], outer points cam [F, 2M, 3]).
  """
  f = body.fr
  a = np.array([x[0] for x in f])
  b = np.array([x[1] for x in f])
  ends = np.stack([a, b], 1)                               # [F, 2, 3]
  u = np.stack([np.array([x[2] for x in f]), np.array([x[6] for x in f])], 1)
  v = np.stack([np.array([x[3] for x in f]), np.array([x[7] for x in f])], 1)
  free = np.isnan(u[:, 0, 0])
  if free.any():
    pu, pv = _perp_axes(b[free] - a[free])
    u[free] = pu[:, None]
    v[free] = pv[:, None]
  ru = np.array([[x[4], x[8]] for x in f])[..., None, None]  # [F, 2, 1, 1]
  rv = np.array([[x[5], x[9]] for x in f])[..., None, None]
  cos = _COS[:, None]
  sin = _SIN[:, None]
  pts = (ends[:, :, None] + ru * cos * u[:, :, None] + rv * sin * v[:, :, None])
  nrm = cos * u[:, :, None] / ru + sin * v[:, :, None] / rv
  pts = pts @ rot.T + trans                                 # cam, [F,2,M,3]
  nrm = nrm @ rot.T
  nrm /= np.linalg.norm(nrm, axis=-1, keepdims=True)
  view = -pts / np.linalg.norm(pts, axis=-1, keepdims=True)
  facing = np.sum(nrm * view, -1)                           # [F, 2, M]
  bright = _brightness(nrm, light)
  visible = facing > 0.
  masked = np.where(visible, bright, -1.)
  best = np.argmax(np.where(visible.any(-1, keepdims=True), masked, facing),
                   -1)                                      # [F, 2]
  hi = np.take_along_axis(bright, best[..., None], -1)[..., 0].max(1)
  lo = np.where(visible, bright, np.inf).min((1, 2))
  lo = np.where(np.isfinite(lo), lo, hi)
  target = np.take_along_axis(pts, best[..., None, None], 2)  # [F, 2, 1, 3]
  frac = (np.arange(bands) / bands * 0.8)[None, :, None, None, None]
  band_pts = pts[:, None] + frac * (target[:, None] - pts[:, None])
  band_pts = band_pts.reshape(len(f), bands, 2 * _M, 3)
  poly = _project(band_pts, k)
  w = (np.arange(bands) / max(bands - 1, 1)) * 0.9 + 0.05
  level = lo[:, None] + (hi - lo)[:, None] * w[None]
  albedo = np.array([x[10] for x in f])
  colours = _shade(albedo[:, None], level, light)
  dist = np.linalg.norm(0.5 * (pts[:, 0].mean(1) + pts[:, 1].mean(1)), axis=-1)
  return poly, colours, dist, pts.reshape(len(f), 2 * _M, 3)


def _patch_geometry(body: _Body, rot, trans, k, light: _Light):
  """Visible surface patches grouped by frustum.

  Returns {frustum index: [(fixed-point polygon [4, 2] int32, BGR colour)]}
  for the quads that face the camera, each flat-shaded by its normal.
  """
  if not body.pa:
    return {}
  parent = np.concatenate([np.full(len(x[1]), x[0]) for x in body.pa])
  quads = np.concatenate([x[1] for x in body.pa]) @ rot.T + trans  # [P,4,3]
  normals = np.concatenate([x[2] for x in body.pa]) @ rot.T
  normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
  albedo = np.concatenate([np.broadcast_to(x[3], (len(x[1]), 3))
                           for x in body.pa])
  facing = np.sum(normals * -quads.mean(1), -1) > 0.
  if not facing.any():
    return {}
  colours = _shade(albedo[facing], _brightness(normals[facing], light),
                   light).tolist()
  polys = np.round(_project(quads[facing], k) * _ONE).astype(np.int32)
  out = {}
  for q, poly, colour in zip(parent[facing].tolist(), polys, colours):
    out.setdefault(q, []).append((poly, colour))
  return out


def _sphere_geometry(body: _Body, rot, trans, k, light: _Light, bands: int):
  """Vectorised band circles for all spheres.

  Returns (centres_px [S, bands, 2], radii_px [S, bands], colours
  [S, bands, 3], distance [S], centres cam [S, 3], radii mm [S]).
  """
  c = np.array([x[0] for x in body.sp]) @ rot.T + trans
  r = np.array([x[1] for x in body.sp])
  d = np.linalg.norm(c, axis=-1)
  bias = np.array([x[4] for x in body.sp])
  view = -c / d[:, None]
  ldir = light.direction_cam
  lv = view @ ldir
  best = np.where((lv >= 0.)[:, None], ldir[None],
                  ldir[None] - lv[:, None] * view)
  best /= np.linalg.norm(best, axis=-1, keepdims=True)
  hi = _brightness(best, light)
  # The darkest visible point of a sphere is at the terminator (ambient).
  lo = np.minimum(light.ambient + 0.08 * light.diffuse, hi)
  c2 = _project(c, k)
  bright2 = _project(c + r[:, None] * best, k)
  rad_px = k[0, 0] * r / np.sqrt(np.maximum(d ** 2 - r ** 2, 1.))
  frac = (np.arange(bands) / bands * 0.8)[None, :]
  centres = c2[:, None] + frac[..., None] * (bright2 - c2)[:, None]
  radii = rad_px[:, None] * (1. - frac)
  w = (np.arange(bands) / max(bands - 1, 1)) * 0.9 + 0.05
  level = lo[:, None] + (hi - lo)[:, None] * w[None]
  albedo = np.array([x[2] for x in body.sp])
  return (centres, radii, _shade(albedo[:, None], level, light), d + bias, c,
          r)


# ----------------------------------------------------------------------------
# Props: boxes (furniture, occluders) and chairs
# ----------------------------------------------------------------------------

_BOX_CORNERS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1)
                         for z in (-1, 1)], np.float64)
_BOX_FACES = np.array([[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6],
                       [0, 2, 6, 4], [1, 5, 7, 3]])
_BOX_NORMALS = np.array([[-1, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0],
                         [0, 0, -1], [0, 0, 1]], np.float64)


@dataclasses.dataclass
class _Box:
  centre: np.ndarray   # world mm
  axes: np.ndarray     # [3, 3] columns: half-extent vectors (world)
  albedo: np.ndarray   # BGR


def _box_draw_list(box: _Box, rot, trans, k, light: _Light):
  """Visible faces of a cuboid as (distance, polygons [n, 4, 2], colours)."""
  corners = box.centre + _BOX_CORNERS @ box.axes.T
  cam = corners @ rot.T + trans
  if np.any(cam[:, 2] < 50.):
    return None
  normals = (_BOX_NORMALS @ (box.axes / np.linalg.norm(box.axes, axis=0)).T
             ) @ rot.T
  face_c = cam[_BOX_FACES].mean(1)
  visible = np.sum(normals * -face_c, -1) > 0.
  polys = _project(cam[_BOX_FACES[visible]], k)
  colours = _shade(box.albedo[None], _brightness(normals[visible], light),
                   light)
  return np.linalg.norm(box.centre @ rot.T + trans), polys, colours


def _chair_boxes(m: motion.MotionBatch, i: int,
                 rng: np.random.Generator) -> list[_Box]:
  """Seat, legs and maybe a backrest under a seated (or sitting-down) pose."""
  subject = motion.SUBJECTS[m.subject_index[i]]
  j = m.joints_world_mm[i]
  s = subject.height_factor
  fwd = m.frames['pelvis'][i][:, 0].copy()
  fwd[2] = 0.
  fwd /= np.linalg.norm(fwd) + 1e-9
  lat = np.array([-fwd[1], fwd[0], 0.])
  bones = subject.bone_lengths_mm
  thigh = bones[motion.BONE_INDEX['left_knee']]
  if motion.ACTIONS[m.action_index[i]] == 'sitting':
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
  boxes = [_Box(centre, np.stack([0.5 * depth * fwd, 0.5 * width * lat,
                                  0.5 * thick * up], 1), albedo)]
  leg_h = max(seat_top - thick, 10.)
  for a in (-1, 1):
    for b in (-1, 1):
      foot = back + (0.5 + a * 0.42) * depth * fwd + b * 0.42 * width * lat
      boxes.append(_Box(foot + 0.5 * leg_h * up,
                        np.stack([18. * fwd, 18. * lat, 0.5 * leg_h * up], 1),
                        albedo * 0.8))
  if rng.random() < 0.6:
    h = rng.uniform(350., 500.)
    boxes.append(_Box(back + 15. * fwd + (seat_top + h / 2) * up,
                      np.stack([15. * fwd, 0.5 * width * lat, 0.5 * h * up], 1),
                      albedo))
  return boxes


# ----------------------------------------------------------------------------
# Background
# ----------------------------------------------------------------------------

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


def _fill(img, poly_px, colour):
  cv2.fillConvexPoly(img, np.round(poly_px * _ONE).astype(np.int32),
                     np.asarray(colour, np.float64).tolist(), cv2.LINE_AA,
                     _SHIFT)


def _draw_background(rng, size, k, ext, person_world, max_clutter):
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
    return _project(cam, k)

  # Decorations: posters, pictures, windows, doors; a baseboard.
  for _ in range(rng.integers(0, 6)):
    x0 = rng.uniform(-4000., 3500.)
    wdt = rng.uniform(300., 1500.)
    z0 = rng.uniform(0., 1800.) if rng.random() < 0.8 else 0.
    hgt = rng.uniform(200., 1200.) if z0 > 0. else rng.uniform(1800., 2200.)
    poly = wall_rect(x0, x0 + wdt, z0, z0 + hgt)
    if poly is None:
      continue
    _fill(img, poly, _colour(rng, (0., 0.8), (0.1, 1.)))
    if rng.random() < 0.5:  # a frame, or a window's panes
      inner = wall_rect(x0 + 0.08 * wdt, x0 + 0.92 * wdt, z0 + 0.08 * hgt,
                        z0 + 0.92 * hgt)
      if inner is not None:
        _fill(img, inner, _colour(rng, (0., 0.8), (0.1, 1.)))
  board_h = rng.uniform(60., 150.)
  board_c = base * rng.uniform(0.3, 0.8)
  for extent in (8000., 4000., 2000.):
    board = wall_rect(-extent, extent, 0., board_h)
    if board is not None:
      _fill(img, board, board_c)
      break

  # Floor: a tiled texture in perspective below the wall's base line and
  # below the horizon.
  floor_poly = np.array([[-1., -1.], [size, -1.], [size, size], [-1., size]])
  feet = _project(np.array([root[0], root[1], 0.]) @ rot.T + trans, k)
  feet_h = np.array([feet[0], feet[1], 1.])
  horizon = np.linalg.inv(k).T @ rot[:, 2]
  base = np.array([w0 - 1000. * along, w0 + 1000. * along]) @ rot.T + trans
  lines = [horizon]
  if np.all(base[:, 2] > 10.):
    a, b = _project(base, k)
    lines.append(_cross(np.array([a[0], a[1], 1.]), np.array([b[0], b[1], 1.])))
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
      _fill(mask, floor_poly - lo, 255)
      roi = img[lo[1]:hi[1], lo[0]:hi[0]]
      cv2.copyTo(floor, mask, roi)
  # Clutter boxes on the floor, away from the person.
  boxes = []
  for _ in range(rng.integers(0, max_clutter + 1)):
    side = rng.choice([-1., 1.])
    pos = root[:2] + away * rng.uniform(-500., wall_dist - 400.) + side * (
        np.array([-away[1], away[0]]) * rng.uniform(1000., 3000.))
    boxes.append(_random_box(rng, pos, rng.uniform(200., 800., 3)))
  return img, boxes


def _random_box(rng, pos_xy, size_mm):
  spin = rng.uniform(0., np.pi)
  c, s = np.cos(spin), np.sin(spin)
  axes = np.array([[c, -s, 0.], [s, c, 0.], [0., 0., 1.]]) * (size_mm / 2)
  return _Box(np.array([pos_xy[0], pos_xy[1], size_mm[2] / 2]), axes,
              _colour(rng, (0., 0.6), (0.15, 0.9)))


# ----------------------------------------------------------------------------
# Self-occlusion
# ----------------------------------------------------------------------------

def _segment_closest(p0, p1, q0, q1):
  """Closest points of segments P(s) = p0 + s (p1 - p0), Q(t) = q0 + t d2.

  Broadcast over leading dims; returns (s, t, distance).
  """
  d1, d2, r = p1 - p0, q1 - q0, p0 - q0
  a = np.sum(d1 * d1, -1)
  e = np.sum(d2 * d2, -1)
  f = np.sum(d2 * r, -1)
  c = np.sum(d1 * r, -1)
  b = np.sum(d1 * d2, -1)
  denom = a * e - b * b
  s = np.where(denom > 1e-9, np.clip((b * f - c * e) / np.maximum(denom, 1e-9),
                                     0., 1.), 0.)
  t = (b * s + f) / np.maximum(e, 1e-9)
  t_c = np.clip(t, 0., 1.)
  s = np.where(t != t_c, np.clip((b * t_c - c) / np.maximum(a, 1e-9), 0., 1.),
               s)
  t = np.where(e > 1e-9, t_c, 0.)
  diff = (p0 + s[..., None] * d1) - (q0 + t[..., None] * d2)
  return s, t, np.linalg.norm(diff, axis=-1)


def self_occlusion(joints_cam_mm: np.ndarray, caps_a: np.ndarray,
                   caps_b: np.ndarray, radius_a: np.ndarray,
                   radius_b: np.ndarray, part_ids: np.ndarray,
                   margin_mm: float = 20.) -> np.ndarray:
  """[17] bool: the camera ray to the joint passes through another part.

  Capsules (caps_a, caps_b [C, 3], radii [C]) are in camera coordinates; a
  capsule occludes a joint when the ray from the camera centre to the joint
  comes within the capsule's radius at a point nearer than the joint (by
  margin_mm), and the capsule's part does not contain the joint.
  """
  zero = np.zeros(3)
  s, t, dist = _segment_closest(zero, joints_cam_mm[:, None],
                                caps_a[None], caps_b[None])
  rad = radius_a[None] + t * (radius_b - radius_a)[None]
  depth = np.linalg.norm(joints_cam_mm, axis=-1)[:, None]
  hit = (dist < rad) & (s * depth < depth - margin_mm)
  hit &= _CAN_OCCLUDE[part_ids].T
  return hit.any(1)


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
  px = _project(cam, k)
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
  light = _sample_light(rng, rot)

  if config.background:
    img, boxes = _draw_background(rng, size, k, ext, joints,
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
    occ_box = _random_box(rng, pos, np.array([width, rng.uniform(250., 600.),
                                              rng.uniform(300., 1000.)]))
  body = build_body(m, i)
  props = []
  if motion.ACTIONS[m.action_index[i]] in motion.SEATED_ACTIONS:
    props = _chair_boxes(m, i, rng)

  # Soft contact shadow on the floor under the person.
  if config.background:
    _draw_contact_shadow(img, m, i, rot, trans, k, rng)

  # Draw list: (distance, kind, payload); far first.
  bands = config.shading_bands
  fpoly, fcol, fdist, fouter = _frustum_geometry(body, rot, trans, k, light,
                                                 bands)
  sc, sr, scol, sdist, _, _ = _sphere_geometry(body, rot, trans, k, light,
                                                bands)
  patches = _patch_geometry(body, rot, trans, k, light)
  items = [(fdist[q], 0, q) for q in range(len(fdist))]
  items += [(sdist[q], 1, q) for q in range(len(sdist))]
  prop_draw = []
  for b in props:
    d = _box_draw_list(b, rot, trans, k, light)
    if d is not None:
      prop_draw.append(d)
  # The seat (first prop) goes first: bodies sit on it.
  if prop_draw:
    _draw_polys_list(img, prop_draw[0][1], prop_draw[0][2])
  items += [(prop_draw[q][0], 2, q) for q in range(1, len(prop_draw))]
  root_dist = np.linalg.norm(joints[0] @ rot.T + trans)
  for b in boxes:
    d = _box_draw_list(b, rot, trans, k, light)
    if d is not None and d[0] > root_dist:
      _draw_polys_list(img, d[1], d[2])
  items.sort(key=lambda x: -x[0])
  # Fixed-point coordinates and colour lists for all primitives at once.
  fpoly_fixed = np.round(fpoly * _ONE).astype(np.int32)
  fcol_list = fcol.tolist()
  sc_fixed = np.round(sc * _ONE).astype(np.int64).tolist()
  sr_fixed = np.round(sr * _ONE).astype(np.int64).tolist()
  scol_list = scol.tolist()
  for _, kind, q in items:
    if kind == 0:
      for poly, colour in zip(fpoly_fixed[q], fcol_list[q]):
        cv2.fillConvexPoly(img, cv2.convexHull(poly), colour, cv2.LINE_AA,
                           _SHIFT)
      for poly, colour in patches.get(q, ()):
        cv2.fillConvexPoly(img, poly, colour, cv2.LINE_AA, _SHIFT)
    elif kind == 1:
      for c, r, colour in zip(sc_fixed[q], sr_fixed[q], scol_list[q]):
        if r > 0:
          cv2.circle(img, c, r, colour, -1, cv2.LINE_AA, _SHIFT)
    else:
      _draw_polys_list(img, prop_draw[q][1], prop_draw[q][2])
  front = boxes + ([occ_box] if occluder else [])
  for b in front:
    d = _box_draw_list(b, rot, trans, k, light)
    if d is not None and d[0] <= root_dist:
      _draw_polys_list(img, d[1], d[2])

  if config.background:
    img = _camera_effects(img, rng)

  # Labels.
  joints_cam = joints @ rot.T + trans
  joints2d = geometry.project(joints_cam, k)
  outer = np.concatenate([_project(fouter.reshape(-1, 3), k),
                          sc[:, 0] - sr[:, :1], sc[:, 0] + sr[:, :1]])
  lo = np.clip(outer.min(0), 0., size)
  hi = np.clip(outer.max(0), 0., size)
  in_image = np.all((joints2d >= 0.) & (joints2d <= size - 1.), -1)
  # Capsules for self-occlusion.
  caps = [(x[0], x[1], np.sqrt(x[4] * x[5]), np.sqrt(x[8] * x[9]), x[11])
          for x in body.fr]
  caps += [(x[0], x[0], x[1], x[1], x[3]) for x in body.sp]
  ca = np.array([c[0] for c in caps]) @ rot.T + trans
  cb = np.array([c[1] for c in caps]) @ rot.T + trans
  occl = self_occlusion(joints_cam, ca, cb, np.array([c[2] for c in caps]),
                        np.array([c[3] for c in caps]),
                        np.array([c[4] for c in caps]))
  return Rendered(image_bgr=img, intrinsics=k, frame_intrinsics=k_frame,
                  extrinsics=ext, crop_box_xywh=crop, joints_world_mm=joints,
                  joints_cam_mm=joints_cam, joints2d_px=joints2d,
                  box_xywh=np.concatenate([lo, hi - lo]),
                  joint_in_image=in_image, joint_self_occluded=occl)


def _draw_polys_list(img, polys, colours):
  fixed = np.round(polys * _ONE).astype(np.int32)
  for poly, colour in zip(fixed, colours.tolist()):
    cv2.fillConvexPoly(img, poly, colour, cv2.LINE_AA, _SHIFT)


def _draw_contact_shadow(img, m, i, rot, trans, k, rng):
  """Darkens an ellipse on the floor around the feet."""
  pts = np.stack([m.points[key][i] for key in ('l_heel', 'l_toe', 'r_heel',
                                               'r_toe')])
  low = pts[pts[:, 2] < 150.]
  if not len(low):
    return
  centre = low.mean(0)
  extent = max(np.ptp(low[:, 0]), np.ptp(low[:, 1]), 200.) / 2 + 150.
  ring = np.stack([centre[0] + extent * np.cos(_THETA),
                   centre[1] + extent * np.sin(_THETA),
                   np.zeros(_M)], 1) @ rot.T + trans
  if np.any(ring[:, 2] < 100.):
    return
  poly = _project(ring, k)
  lo = np.floor(poly.min(0)).astype(int) - 2
  hi = np.ceil(poly.max(0)).astype(int) + 2
  size = img.shape[0]
  lo = np.clip(lo, 0, size)
  hi = np.clip(hi, 0, size)
  if np.any(hi - lo < 2):
    return
  roi = img[lo[1]:hi[1], lo[0]:hi[0]]
  mask = np.zeros(roi.shape[:2], np.uint8)
  cv2.fillConvexPoly(mask, np.round((poly - lo) * _ONE).astype(np.int32), 255,
                     cv2.LINE_AA, _SHIFT)
  ksize = max(3, int(0.3 * min(mask.shape)) | 1)
  mask = cv2.GaussianBlur(mask, (ksize, ksize), 0)
  strength = rng.uniform(0.25, 0.5)
  shade = (255 - (mask.astype(np.float32) * strength)).astype(np.uint8)
  roi[:] = cv2.multiply(roi, cv2.cvtColor(shade, cv2.COLOR_GRAY2BGR),
                        scale=1. / 255.)


def _camera_effects(img, rng):
  """Defocus blur, exposure, sensor noise (white balance: _Light.colour)."""
  sigma = rng.uniform(0.3, 1.1)
  img = cv2.GaussianBlur(img, (5, 5), sigma)
  gain = rng.uniform(0.85, 1.15)
  sensor = _banks()[2]
  oy, ox = rng.integers(0, sensor.shape[0] - img.shape[0], 2)
  noise = sensor[oy:oy + img.shape[0], ox:ox + img.shape[1]]
  amount = rng.uniform(0.02, 0.12)
  return cv2.addWeighted(img, gain, noise, amount, -128. * amount)

"""The rendered subject's body: primitives on the posed skeleton, and
self-occlusion.

The body is a set of primitives built on the posed skeleton (zoo.data.motion)
in the world frame (z up, mm):
- frustums between two elliptical rings (tapered capsules for limbs with
  sphere caps at the joints, three elliptical volumes for the torso, hands,
  shoes, neck),
- spheres (joints, head, face, hair, eyes, brows, nose, lips, ears),
- surface patches: quads on a frustum's surface (a chest print or an open
  jacket's inner shirt, a V neck, a belt buckle, a back yoke seam, shoe soles
  and toe caps), each drawn right after its frustum and only where it faces
  the camera.

Front/back cues: left and right limbs are dressed alike (colour is never a
left/right cue), so telling left from right needs knowing whether the person
faces the camera. The cues are large enough for ~90 px tall people: the
chest accent and V neck exist only on the front of the torso, the face (skin,
eye whites, brows, nose shadow) only on the front of the head with hair on
the back and top, and soles / toe caps show the feet's direction. All are
symmetric about the body's sagittal plane.

Self-occlusion: a joint is self-occluded when the ray from the camera to it
passes through a body part that does not contain the joint, in front of it
(capsule approximations of the drawn primitives, `Body.capsules`).
"""
from __future__ import annotations

import numpy as np

from zoo.data import motion
from zoo.data import people

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

_NAN3 = np.full(3, np.nan)  # a frustum end's axes: any, perpendicular


class Body:
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

  def capsules(self):
    """Capsule approximations of the primitives (world frame, mm): (ends a
    [C, 3], ends b [C, 3], radius at a [C], radius at b [C], part ids [C]);
    a frustum's ring radius is the geometric mean of its semi-axes, a sphere
    is a capsule of zero length."""
    caps = [(x[0], x[1], np.sqrt(x[4] * x[5]), np.sqrt(x[8] * x[9]), x[11])
            for x in self.fr]
    caps += [(x[0], x[0], x[1], x[1], x[3]) for x in self.sp]
    return tuple(np.array([c[q] for c in caps]) for q in range(5))


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


def build_body(m: motion.MotionBatch, i: int) -> Body:
  """Primitives of pose i of a MotionBatch made with render_info=True."""
  subject = people.SUBJECTS[m.subject_index[i]]
  j = m.joints_world_mm[i]
  fr = {k: v[i] for k, v in m.frames.items()}
  pt = {k: v[i] for k, v in m.points.items()}
  s = subject.height_factor
  g = subject.girth
  gs = np.sqrt(g)
  skin, hair = _rgb_to_bgr(subject.skin), _rgb_to_bgr(subject.hair)
  top, bottom = _rgb_to_bgr(subject.top), _rgb_to_bgr(subject.bottom)
  shoes = _rgb_to_bgr(subject.shoes)
  body = Body()
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


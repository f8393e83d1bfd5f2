"""Shading and projection of the renderer's primitives (zoo.data.body,
zoo.data.scene) into the stored crop.

Each primitive is shaded by Lambert's law from one directional light: the
silhouette is filled at the darkest visible shade and K nested, shrinking
copies move towards the brightest visible point in lighter shades (a cheap
stand-in for smooth shading), all anti-aliased (cv2.LINE_AA, sub-pixel
fixed-point coordinates of SHIFT bits). Points are in the camera frame (mm,
x right, y down, z forward); polygons in crop pixels.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from zoo.data.body import Body

SHIFT = 4          # cv2 sub-pixel bits
ONE = 1 << SHIFT
RING_SAMPLES = 16  # samples per ring of a frustum
RING_ANGLES = np.linspace(0., 2 * np.pi, RING_SAMPLES, endpoint=False)
_COS, _SIN = np.cos(RING_ANGLES), np.sin(RING_ANGLES)


@dataclasses.dataclass
class Light:
  """One directional light with ambient light, in the camera frame."""
  direction_cam: np.ndarray  # unit, from surface towards the light
  ambient: float
  diffuse: float
  colour: np.ndarray         # BGR multipliers
  wrap: float = 0.25


def sample_light(rng: np.random.Generator, rotation: np.ndarray) -> Light:
  """A light from above (25-80 deg elevation, any azimuth in the world
  frame), turned into the camera frame by `rotation` (world -> camera)."""
  elevation = np.deg2rad(rng.uniform(25., 80.))
  azimuth = rng.uniform(0., 2 * np.pi)
  world = np.array([np.cos(elevation) * np.cos(azimuth),
                    np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
  return Light(direction_cam=rotation @ world,
               ambient=rng.uniform(0.3, 0.5), diffuse=rng.uniform(0.5, 0.8),
               colour=np.clip(1. + rng.normal(0., 0.04, 3), 0.85, 1.15))


def brightness(normals, light: Light):
  """Brightness [...] of unit surface normals [..., 3] (camera frame)."""
  cos = np.einsum('...i,i->...', normals, light.direction_cam)
  lam = (cos + light.wrap) / (1. + light.wrap)  # 'wrapped' Lambert
  return light.ambient + light.diffuse * np.maximum(lam, 0.)


def shade(albedo, level, light: Light):
  """BGR colours [..., 3] (0-255) of albedos [..., 3] at brightness [...]."""
  return np.clip(albedo * level[..., None] * light.colour, 0., 255.)


def project(points_cam, k):
  """Pinhole projection of camera points (depth clamped at 1 mm) to px."""
  z = np.maximum(points_cam[..., 2:3], 1.)
  return points_cam[..., :2] / z * (k[0, 0], k[1, 1]) + (k[0, 2], k[1, 2])


def cross(a, b):
  """np.cross for [..., 3] arrays, without its overhead."""
  return np.stack([a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
                   a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                   a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]], -1)


def _perp_axes(d):
  """Two unit axes perpendicular to each [n, 3] direction d."""
  d = d / (np.linalg.norm(d, axis=-1, keepdims=True) + 1e-9)
  helper = np.where((np.abs(d[:, :1]) < 0.9), [[1., 0., 0.]], [[0., 1., 0.]])
  u = cross(d, helper)
  u /= np.linalg.norm(u, axis=-1, keepdims=True)
  return u, cross(d, u)


def frustum_geometry(body: Body, rot, trans, k, light: Light, bands: int):
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
  bright = brightness(nrm, light)
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
  band_pts = band_pts.reshape(len(f), bands, 2 * RING_SAMPLES, 3)
  poly = project(band_pts, k)
  w = (np.arange(bands) / max(bands - 1, 1)) * 0.9 + 0.05
  level = lo[:, None] + (hi - lo)[:, None] * w[None]
  albedo = np.array([x[10] for x in f])
  colours = shade(albedo[:, None], level, light)
  dist = np.linalg.norm(0.5 * (pts[:, 0].mean(1) + pts[:, 1].mean(1)), axis=-1)
  return poly, colours, dist, pts.reshape(len(f), 2 * RING_SAMPLES, 3)


def patch_geometry(body: Body, rot, trans, k, light: Light):
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
  colours = shade(albedo[facing], brightness(normals[facing], light),
                  light).tolist()
  polys = np.round(project(quads[facing], k) * ONE).astype(np.int32)
  out = {}
  for q, poly, colour in zip(parent[facing].tolist(), polys, colours):
    out.setdefault(q, []).append((poly, colour))
  return out


def sphere_geometry(body: Body, rot, trans, k, light: Light, bands: int):
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
  hi = brightness(best, light)
  # The darkest visible point of a sphere is at the terminator (ambient).
  lo = np.minimum(light.ambient + 0.08 * light.diffuse, hi)
  c2 = project(c, k)
  bright2 = project(c + r[:, None] * best, k)
  rad_px = k[0, 0] * r / np.sqrt(np.maximum(d ** 2 - r ** 2, 1.))
  frac = (np.arange(bands) / bands * 0.8)[None, :]
  centres = c2[:, None] + frac[..., None] * (bright2 - c2)[:, None]
  radii = rad_px[:, None] * (1. - frac)
  w = (np.arange(bands) / max(bands - 1, 1)) * 0.9 + 0.05
  level = lo[:, None] + (hi - lo)[:, None] * w[None]
  albedo = np.array([x[2] for x in body.sp])
  return (centres, radii, shade(albedo[:, None], level, light), d + bias, c,
          r)


def fill_polygon(img, poly_px, colour):
  """Fills one convex polygon [n, 2] (crop px), anti-aliased."""
  cv2.fillConvexPoly(img, np.round(poly_px * ONE).astype(np.int32),
                     np.asarray(colour, np.float64).tolist(), cv2.LINE_AA,
                     SHIFT)


def fill_polygons(img, polys, colours):
  """Fills convex polygons [n, k, 2] (crop px) with colours [n, 3]."""
  fixed = np.round(polys * ONE).astype(np.int32)
  for poly, colour in zip(fixed, colours.tolist()):
    cv2.fillConvexPoly(img, poly, colour, cv2.LINE_AA, SHIFT)

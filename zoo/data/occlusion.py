"""Synthetic occluders pasted over image crops, in pure TensorFlow (graph-safe).

MeTRAbs (Sarandi et al. 2020) trains with objects pasted over the person crop so
that the network learns to predict joints it cannot see. Real object cut-outs
(Pascal VOC in the released code) cannot be downloaded here, so the zoo draws
procedural occluders instead: filled random polygons (star-shaped around their
centre) and ellipses, rotated, anisotropically scaled, with a random colour and
a sinusoidal stripe / checker texture between two colours, anti-aliased at the
edge. Everything is stateless-random (keyed by an integer seed pair) and made
of TF ops, so it runs inside tf.data graphs and reproduces exactly for a seed.

Two steps, so that parameters can be drawn apart from the pixels:
  params = sample_occluders(seed, image_size, prob)            # [K, ...]
  image = render_on_image(image, params)                        # [S, S, 3]
(`render_occluders` does a batch [B, S, S, 3] with [B, K, ...] parameters), or
`occlude(images, seed, prob)` for both at once. Only each occluder's bounding
box is computed, so the cost follows the occluded area.
"""
from __future__ import annotations

import math

import tensorflow as tf

# Occluder radius, as a fraction of the image side (uniform in this range).
SIZE_RANGE = (0.08, 0.3)
NUM_VERTICES = 8


def sample_occluders(seed: tf.Tensor, image_size: int, prob: float,
                     batch_shape=(), max_occluders: int = 2,
                     num_vertices: int = NUM_VERTICES,
                     size_range: tuple[float, float] = SIZE_RANGE
                     ) -> dict[str, tf.Tensor]:
  """Draws occluder parameters (stateless) for `batch_shape` images.

  Args:
    seed: int32/int64 [2] stateless seed.
    image_size: side S (px) of the square images that will be occluded.
    prob: probability that an image gets occluders at all; an occluded image
      gets between 1 and `max_occluders` of them.
    batch_shape: leading shape of the returned parameters ([] for one image).
    max_occluders: K, the number of occluder slots per image.
    num_vertices: polygon vertices.
    size_range: occluder radius range as a fraction of S.

  Returns:
    dict of float32 tensors of shape batch_shape + [K] (+ trailing dims):
    active (0/1), ellipse (0/1; else polygon), centre_px [.., 2], radius_px,
    aspect, angle_rad, vertex_radii [.., N], colour_a [.., 3], colour_b [.., 3],
    stripe_freq (rad/px, 0 = flat), stripe_angle_rad, stripe_phase,
    checker (0/1: a second, perpendicular sinusoid).
  """
  k = max_occluders
  seeds = tf.random.experimental.stateless_split(seed, num=15)
  s = float(image_size)
  if isinstance(batch_shape, (list, tuple)):
    full_shape = lambda extra: list(batch_shape) + list(extra)
  else:  # a shape tensor
    full_shape = lambda extra: tf.concat(
        [tf.cast(batch_shape, tf.int32), tf.constant(extra, tf.int32)], 0)

  def uniform(i, shape, lo=0., hi=1.):
    return tf.random.stateless_uniform(full_shape(shape), seeds[i],
                                       minval=lo, maxval=hi)

  apply = tf.cast(uniform(0, []) < prob, tf.float32)
  count = tf.random.stateless_uniform(full_shape([]), seeds[1], minval=1,
                                      maxval=k + 1, dtype=tf.int32)
  slots = tf.range(k)
  active = tf.cast(slots < count[..., None], tf.float32) * apply[..., None]
  freq = uniform(9, [k], 0.05, 0.5) * tf.cast(uniform(10, [k]) < 0.6,
                                               tf.float32)
  return {
      'active': active,
      'ellipse': tf.cast(uniform(2, [k]) < 0.4, tf.float32),
      'centre_px': uniform(3, [k, 2], 0., s - 1.),
      'radius_px': uniform(4, [k], size_range[0] * s, size_range[1] * s),
      'aspect': uniform(5, [k], 0.4, 1.),
      'angle_rad': uniform(6, [k], 0., math.pi),
      'vertex_radii': uniform(7, [k, num_vertices], 0.35, 1.),
      'colour_a': uniform(8, [k, 3]),
      'colour_b': uniform(11, [k, 3]),
      'stripe_freq': freq,
      'stripe_angle_rad': uniform(12, [k], 0., math.pi),
      'stripe_phase': uniform(13, [k], 0., 2 * math.pi),
      'checker': tf.cast(uniform(14, [k]) < 0.3, tf.float32),
  }


def _edge_lines(radii: tf.Tensor) -> tf.Tensor:
  """[N, 3] (a, b, c) per polygon edge: a u + b v + c = signed distance.

  Vertex i sits at angle -pi + 2 pi i / N, radius radii[i]; edge i joins
  vertex i and i+1 and is positive on the inside (vertices run counter-
  clockwise in (u, v)). Distances are in units of the normalised frame.
  """
  n = radii.shape[-1]
  angles = -math.pi + 2 * math.pi / n * tf.range(n, dtype=tf.float32)
  vx, vy = radii * tf.cos(angles), radii * tf.sin(angles)
  wx, wy = tf.roll(vx, -1, 0), tf.roll(vy, -1, 0)
  ex, ey = wx - vx, wy - vy
  norm = tf.maximum(tf.sqrt(ex * ex + ey * ey), 1e-6)
  # inside iff cross(e, p - v) = ex (py - vy) - ey (px - vx) > 0
  return tf.stack([-ey / norm, ex / norm, (ey * vx - ex * vy) / norm], -1)


def _render_slot(image: tf.Tensor, occ: dict[str, tf.Tensor]) -> tf.Tensor:
  """Composites one occluder over image [S, S, 3], touching only its box."""
  shape = tf.cast(tf.shape(image), tf.float32)
  cx, cy = occ['centre_px'][0], occ['centre_px'][1]
  radius = occ['radius_px']

  def span(centre, size):  # pixel range [lo, hi) covering the occluder
    lo = tf.clip_by_value(tf.floor(centre - radius) - 1., 0., size)
    hi = tf.clip_by_value(tf.math.ceil(centre + radius) + 2., 0., size)
    return tf.cast(lo, tf.int32), tf.cast(hi, tf.int32)

  x0, x1 = span(cx, shape[1])
  y0, y1 = span(cy, shape[0])

  def render():
    x = tf.cast(tf.range(x0, x1), tf.float32)[None, :]
    y = tf.cast(tf.range(y0, y1), tf.float32)[:, None]
    dx, dy = x - cx, y - cy
    ca, sa = tf.cos(occ['angle_rad']), tf.sin(occ['angle_rad'])
    minor = radius * occ['aspect']
    # Local, normalised coordinates: the shape lies in the unit disc.
    u = (dx * ca + dy * sa) / radius
    v = (-dx * sa + dy * ca) / minor
    # Signed distances to the boundary, approximately in px (outside > 0).
    def ellipse():
      return (tf.sqrt(u * u + v * v) - 1.) * minor

    def polygon():
      # A star-shaped polygon: the sector of the point selects the edge.
      lines = _edge_lines(occ['vertex_radii'])
      n = lines.shape[0]
      sector = tf.cast(
          tf.floor((tf.atan2(v, u) + math.pi) * (n / (2 * math.pi))), tf.int32)
      line = tf.gather(lines, tf.clip_by_value(sector, 0, n - 1))
      return -(line[..., 0] * u + line[..., 1] * v + line[..., 2]) * minor

    dist = tf.cond(occ['ellipse'] > 0.5, ellipse, polygon)
    alpha = tf.clip_by_value(0.5 - dist, 0., 1.)[..., None]
    # Texture: stripes (or a checker) between two colours.
    sc, ss = tf.cos(occ['stripe_angle_rad']), tf.sin(occ['stripe_angle_rad'])
    along = occ['stripe_freq'] * (x * sc + y * ss) + occ['stripe_phase']
    wave = tf.sin(along)
    wave = tf.cond(occ['checker'] > 0.5, lambda: wave * tf.sin(
        occ['stripe_freq'] * (y * sc - x * ss) + occ['stripe_phase']),
                   lambda: wave)
    wave = 0.5 + 0.5 * wave
    colour_a = occ['colour_a']
    colour = colour_a + (occ['colour_b'] - colour_a) * wave[..., None]
    patch = image[y0:y1, x0:x1]
    blended = patch + (colour - patch) * alpha
    return tf.raw_ops.TensorStridedSliceUpdate(
        input=image, begin=tf.stack([y0, x0, 0]), end=tf.stack([y1, x1, 3]),
        strides=tf.constant([1, 1, 1]), value=blended)

  visible = tf.logical_and(occ['active'] > 0,
                           tf.logical_and(x1 > x0, y1 > y0))
  return tf.cond(visible, render, lambda: image)


def render_on_image(image: tf.Tensor,
                    params: dict[str, tf.Tensor]) -> tf.Tensor:
  """Composites occluders over one float image [S, S, 3] in [0, 1].

  `params` from `sample_occluders` with batch_shape []. Only the bounding box
  of each active occluder is computed, so an image without active occluders
  costs (almost) nothing.
  """
  image = tf.convert_to_tensor(image, tf.float32)
  for slot in range(params['active'].shape[-1]):
    image = _render_slot(image, {k: v[slot] for k, v in params.items()})
  return image


def render_occluders(images: tf.Tensor,
                     params: dict[str, tf.Tensor]) -> tf.Tensor:
  """Composites occluders over float images [B, S, S, 3] in [0, 1].

  `params` from `sample_occluders` with batch_shape [B]. Images whose
  occluders are all inactive are returned unchanged.
  """
  images = tf.convert_to_tensor(images, tf.float32)
  return tf.map_fn(lambda args: render_on_image(*args), (images, params),
                   fn_output_signature=tf.TensorSpec(images.shape[1:],
                                                     tf.float32))


def occlude(images: tf.Tensor, seed: tf.Tensor, prob: float,
            max_occluders: int = 2) -> tf.Tensor:
  """Samples and renders occluders for a batch [B, S, S, 3] (S square)."""
  images = tf.convert_to_tensor(images, tf.float32)
  size = images.shape[1]
  if size is None:
    raise ValueError('occlude needs a static image size; got shape '
                     f'{images.shape}')
  params = sample_occluders(seed, size, prob, batch_shape=tf.shape(images)[:1],
                            max_occluders=max_occluders)
  return render_occluders(images, params)

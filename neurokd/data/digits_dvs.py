"""digits-dvs: scikit-learn's digits recorded by a simulated event camera, the way N-MNIST was.

N-MNIST (Orchard et al., Front. Neurosci. 2015) was recorded by moving an ATIS camera in
three saccades, a triangle, in front of MNIST digits on a monitor; each pixel emits an ON or
OFF event whenever its log intensity has changed by more than a threshold since its last
event. This generator does the same to the 1797 8x8 digits, deterministically from a seed:

1. scene: the digit (intensity 0..16 scaled to [0, 1]) upsampled to 16x16 (bilinear) on a dark
   background (intensity ``BACKGROUND``) in front of a 20x20 sensor;
2. motion: three saccades of ``SACCADE_US`` each along the triangle ``PATH`` (pixel offsets
   (x, y) from the rest position), the image at sub-pixel positions (bilinear) every
   ``STEP_US``;
3. pixels: log intensity ``L``; a pixel fires ``floor((L - ref) / C_on)`` ON events (or
   ``floor((ref - L) / C_off)`` OFF events) and moves ``ref`` by as many thresholds, with
   ``C = THRESHOLD`` times ``1 + MISMATCH * N(0, 1)`` per pixel and polarity (threshold
   mismatch); the events of one step are spread evenly over it;
4. noise: background activity, Poisson at ``NOISE_HZ`` per pixel and polarity, at uniform
   times over the recording.

Each sample is a stream of (t [us], x, y, p) events, ~300 ms long, binned like the real data
sets (``frames.bin_events``). The split is digits' own: the same 20% held out as the test split.
"""

from __future__ import annotations

import functools

import numpy as np

from .event_files import Events

SENSOR = (20, 20)
IMAGE = 16
MARGIN = 1                    # pixels between the sensor's edge and the image at rest
PATH = ((0.0, 0.0), (1.0, 2.0), (2.0, 0.0), (0.0, 0.0))   # the three saccades' corners (x, y)
SACCADE_US = 100_000
STEP_US = 5_000
BACKGROUND = 0.05             # intensity of the screen around the digit
THRESHOLD = 0.3               # contrast threshold, log units
MISMATCH = 0.05               # relative std of the threshold between pixels
NOISE_HZ = 0.5                # background activity per pixel and polarity
SEED = 0                      # the data set's seed: every run sees the same recordings
GENERATOR_VERSION = 1         # part of the frames cache key


def _images(count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The (first ``count``) digits as [N, 16, 16] intensities in [0, 1], and their labels."""
    import torch
    import torch.nn.functional as F
    from sklearn import datasets

    digits = datasets.load_digits()
    images, labels = digits.images[:count], digits.target[:count]
    small = torch.as_tensor(images / 16.0, dtype=torch.float64).unsqueeze(1)
    large = F.interpolate(small, size=(IMAGE, IMAGE), mode="bilinear", align_corners=False)
    return large[:, 0].clamp(0, 1).numpy().astype(np.float32), labels.astype(np.int64)


def _scene(images: np.ndarray, ox: float, oy: float) -> np.ndarray:
    """The sensor's view [N, H, W] with the image shifted by (ox, oy) pixels (bilinear)."""
    height, width = SENSOR
    ix, iy = int(np.floor(ox)), int(np.floor(oy))
    fx, fy = ox - ix, oy - iy
    view = np.zeros((len(images), height, width), dtype=np.float32)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            if wx * wy == 0:
                continue
            top, left = MARGIN + iy + dy, MARGIN + ix + dx
            view[:, top:top + IMAGE, left:left + IMAGE] += wx * wy * images
    return np.log(BACKGROUND + (1 - BACKGROUND) * view)


def _positions() -> list[tuple[int, float, float]]:
    """(end time of the step, x, y) along the three saccades."""
    steps = SACCADE_US // STEP_US
    out = []
    for k, ((x0, y0), (x1, y1)) in enumerate(zip(PATH[:-1], PATH[1:], strict=True)):
        for s in range(1, steps + 1):
            a = s / steps
            out.append((k * SACCADE_US + s * STEP_US, x0 + a * (x1 - x0), y0 + a * (y1 - y0)))
    return out


def _spread(counts: np.ndarray, t_end: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Indices (sample, y, x) repeated per event and the events' times within the step."""
    where = np.nonzero(counts)
    n = counts[where]
    index = tuple(np.repeat(w, n) for w in where)
    rank = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    times = t_end - STEP_US + (STEP_US * (rank + 1)) // (np.repeat(n, n) + 1)
    return index, times


@functools.lru_cache(maxsize=2)
def generate(seed: int = SEED, count: int | None = None) -> tuple[list[Events], np.ndarray]:
    """Every digit's (or the first ``count`` digits') event stream (module docstring) and its
    label; seconds for all 1797."""
    rng = np.random.default_rng(seed)
    images, labels = _images(count)
    count, (height, width) = len(images), SENSOR
    mismatch = 1 + MISMATCH * rng.standard_normal((2, count, height, width))
    thresholds = (THRESHOLD * np.clip(mismatch, 0.5, None)).astype(np.float32)
    reference = _scene(images, *PATH[0])
    parts: list[tuple[np.ndarray, ...]] = []
    for t_end, ox, oy in _positions():
        level = _scene(images, ox, oy)
        for polarity, sign in ((1, 1.0), (0, -1.0)):
            fired = np.floor(np.maximum(sign * (level - reference), 0) / thresholds[polarity])
            fired = fired.astype(np.int64)
            reference += sign * fired * thresholds[polarity]
            (sample, y, x), times = _spread(fired, t_end)
            parts.append((sample, times, x, y, np.full(len(times), polarity)))
    duration = SACCADE_US * (len(PATH) - 1)
    noise = rng.poisson(NOISE_HZ * duration * 1e-6, size=(2, count, height, width))
    where = np.nonzero(noise)
    polarity, sample, y, x = (np.repeat(w, noise[where]) for w in where)
    parts.append((sample, rng.integers(0, duration, len(sample)), x, y, polarity))
    sample, t, x, y, p = (np.concatenate(column) for column in zip(*parts, strict=True))
    order = np.lexsort((t, sample))
    sample, t, x, y, p = sample[order], t[order], x[order], y[order], p[order]
    bounds = np.searchsorted(sample, np.arange(count + 1))
    streams = [{"t": t[a:b], "x": x[a:b], "y": y[a:b], "p": p[a:b]}
               for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return streams, labels

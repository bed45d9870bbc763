"""mnist1d (Greydanus 2020), generated locally from its fixed seed, and its augmentation.

``--augment`` applies the random steps of mnist1d's own generator (``mnist1d.transform
.transform``) once more to every training batch, with the generator's parameters
(``get_dataset_args()``), in the generator's order:

1. scale: ``x * (1 + scale_coeff * (u - 0.5))``, u ~ U[0, 1): +-20 % (``scale_coeff`` 0.4);
2. shift: a circular shift by k ~ ``choice(max_shift)`` samples (``translate``); the generator
   shifts by up to 48 samples of its 72-sample grid, which is ``max_shift`` = 27 on the stored
   40-sample grid;
3. correlated noise: ``corr_noise_scale`` x N(0, 1) on the 72-sample grid smoothed by a
   Gaussian of sigma 2 (``corr_noise_like``), resampled to 40 samples (``interpolate``), as
   the generator's noise reaches its samples;
4. white noise: ``iid_noise_scale`` x N(0, 1) on the 72-sample grid (``iid_noise_like``),
   resampled to 40 samples the same way.

The data are stored standardised by the generator (divided by its standard deviation, 0.1547),
so both noise scales are divided by it too. Not repeated: padding, dilation and shear, which act
on the digit's template before its position is drawn. A stored sample no longer tells the
template from the background, so the noise is added over the whole sample (the generator adds
its correlated noise to the background only), and the scale multiplies the standardised sample,
about the data set's mean, 0.036 standard deviations from the generator's zero level.

The draws of a batch come from a ``numpy.random.RandomState`` seeded from torch's global
generator, so a run's augmentation follows its ``--seed``, differs from epoch to epoch, and is
restored with the rest of the training state on ``--resume``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DataError
from .splits import tensor_bundle

LENGTH = 40  # the stored samples' length (the generator's final_seq_length)


@functools.lru_cache(maxsize=1)
def _generated() -> dict:
    """mnist1d from its fixed seed (seconds to generate, the same every time: kept)."""
    from mnist1d.data import get_dataset_args, make_dataset

    return make_dataset(get_dataset_args())


def _arrays() -> tuple[np.ndarray, ...]:
    data = _generated()
    # Kept 2-D (1 x 1 x 40) so one set of conv / export code serves every data set.
    return (np.asarray(data["x"]).reshape(-1, 1, 1, LENGTH), np.asarray(data["y"]),
            np.asarray(data["x_test"]).reshape(-1, 1, 1, LENGTH), np.asarray(data["y_test"]))


def generator_std() -> float:
    """The standard deviation ``make_dataset`` divided its samples by.

    It returns the time axis divided by the same number; the undivided axis is the template's
    axis resampled to the generator's grids, so their ratio is that standard deviation.
    """
    from mnist1d.data import get_dataset_args, get_templates
    from mnist1d.transform import interpolate

    args = get_dataset_args()
    axis = interpolate(interpolate(get_templates()["t"], args.template_len + args.padding[-1]),
                       args.final_seq_length)
    ratio = axis / np.asarray(_generated()["t"])
    if not np.allclose(ratio, ratio[0], rtol=1e-9, atol=0.0):
        raise DataError("mnist1d's generator no longer scales its time axis with its samples; "
                        "cannot find the noise scale for --augment (mnist1d version?)")
    return float(ratio[0])


@dataclass(frozen=True)
class Mnist1dAugmentation:
    """The generator's random steps on standardised ``[B, LENGTH]`` samples (module docstring)."""

    scale_coeff: float
    max_shift: int
    corr_noise_scale: float  # in standardised units
    iid_noise_scale: float
    grid: int  # the generator's grid before it resamples to LENGTH samples (72)
    corr_sigma: float = 2.0  # mnist1d.transform.corr_noise_like's Gaussian filter

    @classmethod
    def from_generator(cls) -> Mnist1dAugmentation:
        from mnist1d.data import get_dataset_args

        args = get_dataset_args()
        grid = args.template_len + args.padding[-1]
        std = generator_std()
        return cls(scale_coeff=float(args.scale_coeff),
                   max_shift=round(args.max_translation * args.final_seq_length / grid),
                   corr_noise_scale=args.corr_noise_scale / std,
                   iid_noise_scale=args.iid_noise_scale / std, grid=grid)

    def apply(self, x: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
        """Augmented copies of the rows of ``x`` [B, L]; each step draws for the whole batch."""
        from mnist1d.transform import interpolate
        from scipy.ndimage import gaussian_filter1d

        count, length = x.shape
        scale = 1 + self.scale_coeff * (rng.rand(count) - 0.5)
        shift = rng.randint(0, self.max_shift, size=count)
        columns = (np.arange(length)[None, :] - shift[:, None]) % length  # np.roll by shift
        out = np.take_along_axis(x * scale[:, None], columns, axis=1)
        # gaussian_filter on one row (what corr_noise_like does) is gaussian_filter1d on it.
        corr = gaussian_filter1d(self.corr_noise_scale * rng.randn(count, self.grid),
                                 self.corr_sigma, axis=-1)
        iid = self.iid_noise_scale * rng.randn(count, self.grid)
        return out + interpolate((corr + iid).T, length).T  # interpolate works along axis 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """A training batch ``[B, 1, 1, LENGTH]`` augmented with draws seeded from torch's RNG."""
        rng = np.random.RandomState(int(torch.randint(0, 2**31 - 1, ()).item()))
        rows = x.detach().cpu().double().numpy().reshape(len(x), -1)
        return torch.from_numpy(self.apply(rows, rng)).to(x.dtype).reshape(x.shape)


def load_mnist1d(name, val_fraction, augment, **_):
    x_train, y_train, x_test, y_test = (a.copy() for a in _arrays())  # callers own theirs
    bundle = tensor_bundle(name, x_train, y_train, x_test, y_test, val_fraction,
                           [str(c) for c in range(10)])
    if augment:
        bundle.augmented = True
        bundle.train_transform = Mnist1dAugmentation.from_generator()
    return bundle

"""Scanner effects: bias field, contrast (gamma), noise and gain, with TorchIO.

TorchIO draws its random parameters from torch's generator, so each subject's
effects are replayable from one seed; the generator is forked so the caller's
torch state is left untouched.
"""

from __future__ import annotations

import numpy as np

from brainlrp.simulate.anatomy import linear_basis, separable_expand

#: TorchIO ranges: bias-field polynomial coefficients, log-gamma, noise sd (relative
#: to white matter = 1), and the global gain around 1000 (white matter).
BIAS_COEFFICIENTS = 0.1
BIAS_ORDER = 3
LOG_GAMMA = (-0.1, 0.1)
NOISE_STD = (0.01, 0.03)
GAIN = (850.0, 1150.0)
#: The bias field is smooth: it is drawn on a grid this many times coarser.
BIAS_COARSENING = 4


def scanner_effects(t1: np.ndarray, brain: np.ndarray, wm_level: float,
                    seed: int, noise_seed: int | None = None) -> np.ndarray:
    """Apply a scanner's bias field, contrast, noise and gain to a simulated T1.

    Parameters
    ----------
    t1 : ndarray
        Noise-free intensities (template units; white matter near ``wm_level``).
    brain : bool ndarray
        The subject's brain; everything outside is 0 (skull-stripped).
    wm_level : float
        White-matter intensity of ``t1``, used to normalise before the transforms.
    seed : int
        The subject's scanner seed.
    noise_seed : int, optional
        Draw the noise image from this seed instead: the same bias field, contrast,
        noise level and gain with fresh noise, as if the scanner scanned again.

    Returns
    -------
    ndarray
        int16 image, white matter near 1000.
    """
    import torch
    import torchio as tio

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed) % (2 ** 63))
        x = np.asarray(t1, dtype=np.float32) / np.float32(wm_level)

        coarse = tuple(int(np.ceil(n / BIAS_COARSENING)) for n in x.shape)
        ones = tio.ScalarImage(tensor=torch.ones((1,) + coarse), affine=np.eye(4))
        bias = tio.RandomBiasField(coefficients=BIAS_COEFFICIENTS, order=BIAS_ORDER,
                                   copy=False)(ones)
        bases = [linear_basis(n, c) for n, c in zip(x.shape, coarse, strict=True)]
        x *= separable_expand(bias.data[0].numpy().astype(np.float64), bases)

        image = tio.ScalarImage(tensor=torch.from_numpy(x[None]), affine=np.eye(4))
        image = tio.RandomGamma(log_gamma=LOG_GAMMA, copy=False)(image)
        clean = image.data.clone() if noise_seed is not None else None
        subject = tio.RandomNoise(std=NOISE_STD, copy=False)(tio.Subject(t1=image))
        image = subject["t1"]
        if noise_seed is not None:  # the drawn level, fresh noise; the gain draw is kept
            drawn = subject.get_applied_transforms()[-1]
            with torch.random.fork_rng(devices=[]):
                image = tio.Noise(mean=drawn.noise_mean["t1"], std=drawn.noise_std["t1"],
                                  seed=int(noise_seed))(tio.ScalarImage(
                                      tensor=clean, affine=np.eye(4)))
        gain = GAIN[0] + (GAIN[1] - GAIN[0]) * float(torch.rand(1))
        x = np.abs(image.data[0].numpy()) * brain
    return np.clip(np.rint(x * gain), 0, np.iinfo(np.int16).max).astype(np.int16)

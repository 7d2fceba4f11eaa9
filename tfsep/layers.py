"""Keras layers of the masking pipeline: STFT, masks, phase reuse, Wiener filter, inverse STFT.

Complex spectra travel as real tensors whose last axis holds (real, imaginary), so every
layer saves, serialises and converts to TFLite without complex dtypes; the tensor helpers
the layers are built from (|X|, the builtin inverse FFT, overlap-add, complex views) are in
`spectral`. The shapes used throughout:

- waveform: (batch, samples, channels)
- spectrum: (batch, frames, bins, channels, 2), with bins = n_fft // 2 + 1
- magnitude: (batch, frames, bins, channels)
- masks, stem magnitudes: (batch, frames, bins, channels, sources)
- stem spectra: (batch, frames, bins, channels, sources, 2)
- stems: (batch, samples, channels, sources)

The signal layers compute in float32 whatever the global dtype policy, since the STFT,
the masks and the Wiener filter need its precision under mixed precision too.
"""


import numpy as np
import tensorflow as tf

from tfsep import spectral
from tfsep._keras import keras
from tfsep.framing import check_stft_settings, leading_pad, num_frames, steady_window_sum, window_array

MASK_ACTIVATIONS = ("sigmoid", "softmax", "relu_unbounded")
MASK_EXTENSIONS = ("average", "edge", "zeros")
INVERSE_FFTS = ("signal", "bitcast", "builtin")


def _trailing(tensor, count):
    """`tensor` with `count` new trailing axes of size 1 (TFLite's StridedSlice takes no `[..., None]`)."""
    for _ in range(count):
        tensor = tf.expand_dims(tensor, -1)
    return tensor


class Float32Layer(keras.layers.Layer):
    """A layer that always computes in float32, whatever the dtype policy."""

    def __init__(self, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)


class _FourierLayer(Float32Layer):
    """Holds and checks the STFT settings shared by `STFT` and `InverseSTFT`."""

    def __init__(self, n_fft=4096, hop=1024, window="hann", framing="center", **kwargs):
        super().__init__(**kwargs)
        check_stft_settings(n_fft, hop, window, framing)
        self.n_fft = n_fft
        self.hop = hop
        self.window = window
        self.framing = framing
        self._window = window_array(window, n_fft)

    def get_config(self):
        config = {"n_fft": self.n_fft, "hop": self.hop, "window": self.window, "framing": self.framing}
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="tfsep")
class STFT(_FourierLayer):
    """Short-time Fourier transform, framed as `framing` says.

    - `center` (frames centred on 0, hop, 2·hop, ...): the waveform is zero-padded by
      n_fft // 2 on the left, and on the right by n_fft // 2 plus what fills the last hop,
      so that every sample lies where the frames' summed squared window is well away from
      zero and `InverseSTFT` restores it exactly; frames = 1 + ceil(samples / hop).
    - `pad_end` (Spleeter's framing): n_fft zeros before the signal, a frame every hop from
      the first of them, the last frames zero-padded at their end as `tf.signal.stft(...,
      pad_end=True)` pads them; frames = ceil((samples + n_fft) / hop).
    - `valid`: no padding, only the frames that lie inside the waveform; frames =
      1 + (samples − n_fft) // hop. For overlap-added chunks (see `InverseSTFT`).
    - `center_reflect` (torch.stft(center=True, pad_mode="reflect"), as Open-Unmix and librosa frame):
      frames centred on 0, hop, 2·hop, ..., the waveform extended by n_fft // 2 samples at
      each end by reflection about its first and last sample (repeated for waveforms shorter
      than that, where torch refuses); frames = 1 + samples // hop. The inverse divides by the
      overlap-added squared window as for `center`.

    Args:
        n_fft: FFT length, a power of two.
        hop: samples between frames, 1 to n_fft // 2.
        window: periodic analysis window, one of WINDOWS.
        framing: one of FRAMINGS, as above.
        bitcast: return the complex spectrum's own memory as (real, imaginary)
            (`spectral.real_view`) instead of stacking its parts: the same values without two copies,
            for TensorFlow without XLA; False gives the form XLA and TFLite builtins take.

    Input: waveform (batch, samples, channels), any samples >= 1 (>= n_fft for `valid`) and
    any channels. Output: spectrum (batch, frames, bins, channels, 2), bins = n_fft // 2 + 1,
    last axis (real, imaginary).
    """

    def __init__(self, n_fft=4096, hop=1024, window="hann", framing="center", bitcast=False, **kwargs):
        super().__init__(n_fft, hop, window, framing, **kwargs)
        self.bitcast = bool(bitcast)

    def complex_spectrum(self, waveform):
        """waveform (batch, samples, channels) -> complex64 spectrum (batch, channels, frames, bins)."""
        waveform = tf.convert_to_tensor(waveform, tf.float32)
        samples = tf.shape(waveform)[1]
        frames = num_frames(samples, self.hop, self.n_fft, self.framing)
        pad_left = leading_pad(self.n_fft, self.framing)
        if self.framing == "center_reflect":
            padded = spectral.reflect_pad(waveform, pad_left)
        else:
            pad_right = tf.maximum(0, (frames - 1) * self.hop + self.n_fft - pad_left - samples)
            padded = tf.pad(waveform, [[0, 0], [pad_left, pad_right], [0, 0]])
        return tf.signal.stft(
            tf.transpose(padded, [0, 2, 1]),
            frame_length=self.n_fft,
            frame_step=self.hop,
            fft_length=self.n_fft,
            window_fn=lambda length, dtype: tf.constant(self._window, dtype),
        )

    def call(self, waveform):
        spectrum = self.complex_spectrum(waveform)
        if self.bitcast:
            return spectral.real_view(tf.transpose(spectrum, [0, 2, 3, 1]))
        spectrum = tf.stack([tf.math.real(spectrum), tf.math.imag(spectrum)], axis=-1)
        return tf.transpose(spectrum, [0, 2, 3, 1, 4])

    def compute_output_shape(self, input_shape):
        batch, samples, channels = input_shape
        frames = None if samples is None else num_frames(samples, self.hop, self.n_fft, self.framing)
        return (batch, frames, self.n_fft // 2 + 1, channels, 2)

    def get_config(self):
        return {**super().get_config(), "bitcast": self.bitcast}


@keras.saving.register_keras_serializable(package="tfsep")
class InverseSTFT(_FourierLayer):
    """Inverse of `STFT` by weighted overlap-add, cropped to the length of a reference waveform.

    Each frame is inverse-transformed, windowed and overlap-added, then the padding of
    `framing` is cropped. `center` and `pad_end` divide the sum by the overlap-added squared
    window of the frames present (for `pad_end` that is the steady-state sum everywhere in
    the crop, e.g. 3/2 for a Hann window at a quarter hop, so it equals Spleeter's 2/3
    scaling). `valid` divides by the steady-state sum everywhere (`steady_window_sum`) and
    leaves the first and last n_fft − hop samples partial: summed where chunks that start a
    whole number of hops apart overlap, such outputs give the inverse of the whole signal.

    The inverse FFT is TensorFlow's (`inverse_fft="signal"`: `tf.signal.irfft`; `"bitcast"`:
    the same, reading the spectrum as complex in place (`spectral.complex_view`) rather than
    combining its parts, the fastest form in TensorFlow without XLA), or built from TFLite
    builtin ops (`"builtin"`: `spectral.irfft` from one forward FFT), the form that converts
    to TFLite without select ops. All three overlap-add with `spectral.overlap_add`, and all
    compute the same inverse.

    Args:
        n_fft: FFT length, a power of two.
        hop: samples between frames, 1 to n_fft // 2.
        window: the analysis window of the `STFT` it inverts, one of WINDOWS.
        framing: one of FRAMINGS, that of the `STFT`.
        inverse_fft: one of INVERSE_FFTS, as above.

    Inputs: [spectrum (batch, frames, bins, *dims, 2), reference (batch, samples, ...)], where
    only the reference's length is used. Output: (batch, samples, *dims).
    """

    def __init__(self, n_fft=4096, hop=1024, window="hann", framing="center", inverse_fft="signal", **kwargs):
        super().__init__(n_fft, hop, window, framing, **kwargs)
        if inverse_fft not in INVERSE_FFTS:
            raise ValueError(f"inverse_fft must be one of {INVERSE_FFTS}, got {inverse_fft!r}")
        self.inverse_fft = inverse_fft

    def _overlap_added(self, flat):
        """Windowed overlap-add of the frames' inverse FFTs.

        flat (batch, frames, bins, dims, 2) -> (batch, dims, length), length = (frames − 1)·hop + n_fft.
        """
        if self.inverse_fft != "builtin":
            if self.inverse_fft == "bitcast":
                spectra = spectral.complex_view(flat)
            else:
                spectra = tf.complex(flat[..., 0], flat[..., 1])
            spectra = tf.transpose(spectra, [0, 3, 1, 2])  # (batch, dims, frames, bins)
            frame_signals = tf.signal.irfft(spectra, fft_length=[self.n_fft])
        else:
            spectra = tf.transpose(flat, [0, 3, 1, 2, 4])  # (batch, dims, frames, bins, 2)
            frame_signals = spectral.irfft(spectra, self.n_fft)
        return spectral.overlap_add(frame_signals * self._window, self.hop)

    def call(self, inputs):
        spectrum, reference = inputs
        spectrum = tf.convert_to_tensor(spectrum, tf.float32)
        samples = tf.shape(reference)[1]
        shape = tf.shape(spectrum)
        frames = shape[1]
        dims = shape[3:-1]
        signal = self._overlap_added(tf.reshape(spectrum, tf.concat([shape[:3], [-1, 2]], axis=0)))
        if self.framing == "valid":
            signal = tf.pad(signal, [[0, 0], [0, 0], [0, tf.maximum(0, samples - tf.shape(signal)[2])]])
            window_sum = tf.tile(steady_window_sum(self._window, self.hop), [samples // self.hop + 1])
        else:
            window_sum = spectral.overlap_add(tf.tile(tf.expand_dims(self._window**2, 0), [frames, 1]), self.hop)
        start = leading_pad(self.n_fft, self.framing)
        signal = tf.slice(signal, [0, 0, start], [-1, -1, samples]) / tf.slice(window_sum, [start], [samples])
        signal = tf.transpose(signal, [0, 2, 1])  # (batch, samples, dims)
        return tf.reshape(signal, tf.concat([[shape[0], samples], dims], axis=0))

    def compute_output_shape(self, input_shape):
        spectrum_shape, reference_shape = input_shape
        return (spectrum_shape[0], reference_shape[1], *spectrum_shape[3:-1])

    def get_config(self):
        return {**super().get_config(), "inverse_fft": self.inverse_fft}


@keras.saving.register_keras_serializable(package="tfsep")
class Magnitude(Float32Layer):
    """|X|: spectrum (..., 2) -> magnitude (...)."""

    def call(self, spectrum):
        return spectral.magnitude(spectrum)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])


@keras.saving.register_keras_serializable(package="tfsep")
class CropBins(keras.layers.Layer):
    """Keep the lowest `max_bin` frequency bins.

    Args:
        max_bin: bins kept, from bin 0.

    Input: (batch, frames, bins, ...). Output: (batch, frames, max_bin, ...).
    """

    def __init__(self, max_bin, **kwargs):
        super().__init__(**kwargs)
        self.max_bin = max_bin

    def call(self, magnitude):
        return magnitude[:, :, : self.max_bin]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:2], self.max_bin, *input_shape[3:])

    def get_config(self):
        return {**super().get_config(), "max_bin": self.max_bin}


@keras.saving.register_keras_serializable(package="tfsep")
class Masks(Float32Layer):
    """Soft masks from logits: sigmoid (each in [0, 1]), softmax across sources (they sum to 1), or ReLU.

    `relu_unbounded` masks are ReLU(logits): non-negative but not bounded by 1, so a stem's
    magnitude M_k ⊙ |X| may exceed the mixture's and the stems need not sum to it. This is
    Open-Unmix's output, ReLU(...) · |X|; its Wiener step (`WienerFilter`) then re-balances
    the stems against the mixture.

    Args:
        activation: "sigmoid", "softmax" or "relu_unbounded" (MASK_ACTIVATIONS).

    Input: logits (batch, frames, bins, channels, sources). Output: masks, same shape.
    """

    def __init__(self, activation="sigmoid", **kwargs):
        super().__init__(**kwargs)
        if activation not in MASK_ACTIVATIONS:
            raise ValueError(f"mask activation must be one of {MASK_ACTIVATIONS}, got {activation!r}")
        self.activation = activation

    def call(self, logits):
        logits = tf.cast(logits, tf.float32)
        if self.activation == "softmax":
            return tf.nn.softmax(logits, axis=-1)
        if self.activation == "relu_unbounded":
            return tf.nn.relu(logits)
        return tf.sigmoid(logits)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


@keras.saving.register_keras_serializable(package="tfsep")
class RatioMasks(Float32Layer):
    """Ratio masks of the masked magnitudes, as Spleeter forms them from its networks' outputs.

    With y_k = M_k ⊙ |X|: M'_k = (y_k^p + eps / K) / (Σ_j y_j^p + eps) for K sources and
    `exponent` p. They lie in [0, 1] and sum to 1 over the sources; where every y_k is 0
    (silence), each is 1 / K.

    Args:
        exponent: the separation exponent p (Spleeter's 2).
        eps: the regulariser ε (Spleeter's 1e-10); silence gets 1 / K even with 0.

    Inputs: [masks (batch, frames, bins, channels, sources), magnitude (batch, frames, bins, channels)].
    Output: masks, the shape of the input masks.
    """

    def __init__(self, exponent=2.0, eps=1e-10, **kwargs):
        super().__init__(**kwargs)
        if not exponent > 0:
            raise ValueError(f"ratio mask exponent must be positive, got {exponent!r}")
        self.exponent = exponent
        self.eps = eps

    def call(self, inputs):
        masks, magnitude = inputs
        powers = (tf.cast(masks, tf.float32) * tf.expand_dims(magnitude, -1)) ** self.exponent
        sources = masks.shape[-1]
        total = tf.reduce_sum(powers, axis=-1, keepdims=True) + self.eps
        # A float16 TFLite export stores eps as float16, where 1e-10 is 0: silence then gets 1 / K, not 0 / 0.
        return tf.where(total > 0.0, (powers + self.eps / sources) / tf.where(total > 0.0, total, 1.0), 1.0 / sources)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "exponent": self.exponent, "eps": self.eps}


@keras.saving.register_keras_serializable(package="tfsep")
class ExtendMasks(Float32Layer):
    """Extend band-limited masks to every bin of the mixture, as Spleeter and Open-Unmix do.

    Above the processed bins a mask takes, per frame, channel and source: its mean over the
    processed bins (`average`, which keeps softmax masks summing to 1), the value of the
    highest processed bin (`edge`), or 0 (`zeros`).

    Args:
        mode: "average", "edge" or "zeros" (MASK_EXTENSIONS).

    Inputs: [masks (batch, frames, max_bin, channels, sources), magnitude (batch, frames, bins, channels)].
    Output: masks (batch, frames, bins, channels, sources).
    """

    def __init__(self, mode="average", **kwargs):
        super().__init__(**kwargs)
        if mode not in MASK_EXTENSIONS:
            raise ValueError(f"mask extension must be one of {MASK_EXTENSIONS}, got {mode!r}")
        self.mode = mode

    def call(self, inputs):
        masks, magnitude = inputs
        missing = tf.shape(magnitude)[2] - tf.shape(masks)[2]
        if self.mode == "average":
            fill = tf.reduce_mean(masks, axis=2, keepdims=True)
        elif self.mode == "edge":
            fill = masks[:, :, -1:]
        else:
            fill = tf.zeros_like(masks[:, :, -1:])
        upper = tf.repeat(fill, missing, axis=2)
        return tf.concat([masks, upper], axis=2)

    def compute_output_shape(self, input_shape):
        masks_shape, magnitude_shape = input_shape
        return (*masks_shape[:2], magnitude_shape[2], *masks_shape[3:])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="tfsep")
class MaskMagnitude(Float32Layer):
    """|Ŷ_k| = M_k ⊙ |X|.

    Inputs: [masks (batch, frames, bins, channels, sources), magnitude (batch, frames, bins, channels)].
    Output: stem magnitudes (batch, frames, bins, channels, sources).
    """

    def call(self, inputs):
        masks, magnitude = inputs
        return tf.cast(masks, tf.float32) * tf.expand_dims(magnitude, -1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])


@keras.saving.register_keras_serializable(package="tfsep")
class ApplyMasks(Float32Layer):
    """Ȳ_k = M_k ⊙ X: the masks applied to the complex mixture spectrum, i.e. M_k ⊙ |X| with X's phase.

    One product, equal to `PhaseReuse` of `MaskMagnitude`'s output (to float rounding) at a
    fraction of its memory traffic.

    Args:
        bitcast: multiply in complex64, reading and writing the spectra in place
            (`spectral.complex_view`): the same values at about half the time in TensorFlow without
            XLA; False gives the real-valued product that XLA and TFLite builtins take.

    Inputs: [masks (batch, frames, bins, channels, sources), spectrum (batch, frames, bins, channels, 2)].
    Output: stem spectra (batch, frames, bins, channels, sources, 2).
    """

    def __init__(self, bitcast=False, **kwargs):
        super().__init__(**kwargs)
        self.bitcast = bool(bitcast)

    def call(self, inputs):
        masks, spectrum = inputs
        masks = tf.cast(masks, tf.float32)
        if self.bitcast:
            return spectral.real_view(tf.complex(masks, 0.0) * tf.expand_dims(spectral.complex_view(spectrum), -1))
        return tf.expand_dims(masks, -1) * tf.expand_dims(spectrum, -2)

    def compute_output_shape(self, input_shape):
        return (*input_shape[0], 2)

    def get_config(self):
        return {**super().get_config(), "bitcast": self.bitcast}


@keras.saving.register_keras_serializable(package="tfsep")
class PhaseReuse(Float32Layer):
    """Ȳ_k = |Ŷ_k| ⊙ exp(j∠X): stem magnitudes with the mixture's phase (angle 0 where X = 0).

    Inputs: [stem magnitudes (batch, frames, bins, channels, sources), spectrum (batch, frames, bins, channels, 2)].
    Output: stem spectra (batch, frames, bins, channels, sources, 2).
    """

    def call(self, inputs):
        stem_magnitudes, spectrum = inputs
        magnitude = spectral.magnitude(spectrum)
        nonzero = magnitude > 0.0
        safe = tf.where(nonzero, magnitude, 1.0)
        cos = tf.where(nonzero, spectrum[..., 0] / safe, 1.0)
        sin = tf.where(nonzero, spectrum[..., 1] / safe, 0.0)
        phasor = tf.expand_dims(tf.stack([cos, sin], axis=-1), -2)  # (batch, frames, bins, channels, 1, 2)
        return tf.expand_dims(stem_magnitudes, -1) * phasor

    def compute_output_shape(self, input_shape):
        return (*input_shape[0], 2)


MAX_ITERATIONS = 32  # Wiener EM and Griffin-Lim: each iteration costs about a whole separation's time
RELATIVE_LOAD = 1e-4  # diagonal loading of the mixture covariance, relative to its mean eigenvalue


@keras.saving.register_keras_serializable(package="tfsep")
class WienerFilter(Float32Layer):
    """Multichannel Wiener filtering by expectation-maximisation, as in norbert and Open-Unmix.

    Each iteration re-estimates every source's power spectral density v_j(t, f) (the mean
    over channels of |y_j|²) and spatial covariance R_j(f), then sets
    y_j = v_j R_j (Σ_i v_i R_i + √eps I)⁻¹ x. With 0 iterations the layer returns the stem
    spectra unchanged, i.e. soft masking with the mixture's phase. The √eps loading of the
    mixture covariance grows with its scale (see `_regularized_inverse`). Spectra are scaled down
    to peak at most `scale_factor` during the iterations, for numerical stability.

    Args:
        iterations: EM iterations, 0 to MAX_ITERATIONS.
        eps: the regulariser ε of the covariance inverse.
        scale_factor: the peak the spectra are scaled to during the iterations.
        window: None to filter the whole signal at once, or a number of frames: the frames are
            cut into consecutive windows of that many (the last one shorter), each filtered on
            its own, with its own scaling, power spectral densities and spatial covariances
            (time-varying spatial models; Open-Unmix's `wiener_win_len`, 300).
        relative_load: the diagonal loading of the mixture covariance relative to its mean
            eigenvalue, on top of √eps (`_regularized_inverse`); 0 loads by √eps alone, as
            norbert and Open-Unmix do.

    Inputs: [stem spectra (batch, frames, bins, channels, sources, 2), spectrum (batch, frames, bins, channels, 2)].
    Output: stem spectra, same shape.
    """

    def __init__(self, iterations=0, eps=1e-10, scale_factor=10.0, window=None, relative_load=RELATIVE_LOAD,
                 **kwargs):
        super().__init__(**kwargs)
        if not isinstance(iterations, int) or isinstance(iterations, bool) or not 0 <= iterations <= MAX_ITERATIONS:
            raise ValueError(f"Wiener iterations must be an integer from 0 to {MAX_ITERATIONS}, got {iterations!r}")
        if window is not None and (not isinstance(window, int) or isinstance(window, bool) or window < 1):
            raise ValueError(f"Wiener window must be None or a positive number of frames, got {window!r}")
        if not relative_load >= 0:
            raise ValueError(f"Wiener relative load must be >= 0, got {relative_load!r}")
        self.iterations = iterations
        self.eps = eps
        self.scale_factor = scale_factor
        self.window = window
        self.relative_load = relative_load

    def call(self, inputs):
        stems, spectrum = inputs
        if self.iterations == 0:
            return stems
        if self.window is None:
            return self._filtered(stems, spectrum)
        # Windows of frames as batch items: (batch · windows, window, ...), the last one padded with silent
        # frames, which add nothing to a window's peak, densities or covariances and come out silent. A signal
        # shorter than a window is one window of its own length.
        # The padding and the crop move frames of (batch, frames, everything else) views: TFLite's PAD and
        # STRIDED_SLICE builtins take at most 5 axes, the stem spectra have 6.
        batch, frames = tf.shape(stems)[0], tf.shape(stems)[1]
        window = tf.minimum(self.window, tf.maximum(frames, 1))
        count = (frames + window - 1) // window
        pad = [[0, 0], [0, count * window - frames], [0, 0]]
        stems_padded = tf.pad(tf.reshape(stems, [batch, frames, -1]), pad)
        spectrum_padded = tf.pad(tf.reshape(spectrum, [batch, frames, -1]), pad)
        filtered = self._filtered(_fold_windows(stems_padded, window, stems),
                                  _fold_windows(spectrum_padded, window, spectrum))
        filtered = tf.reshape(filtered, [batch, count * window, -1])[:, :frames]
        return _dims_reshape(filtered, [batch, frames], stems)

    def _filtered(self, stems, spectrum):
        """The EM iterations on whole stem spectra and spectrum (the layer's inputs)."""
        peak = tf.sqrt(tf.reduce_max(spectral.power(spectrum), axis=[1, 2, 3]))
        scale = tf.reshape(tf.maximum(1.0, peak / self.scale_factor), [-1, 1, 1, 1])  # (batch, 1, 1, 1)
        x = tuple(part / scale for part in tf.unstack(spectrum, 2, axis=-1))
        y = tuple(part / _trailing(scale, 1) for part in tf.unstack(stems, 2, axis=-1))  # TFLite slices <= 5-D
        step = self._stereo_em_step if spectrum.shape[3] == 2 else self._em_step
        for _ in range(self.iterations):
            y = step(y, x)
        return tf.stack([y[0], y[1]], axis=-1) * _trailing(scale, 2)

    def _covariance_weight(self, psd):
        """eps + Σ_t v_j: psd (batch, frames, bins, sources) -> (batch, bins, sources), the divisor of R_j.

        It is >= eps > 0 in float32. A TFLite file with float16 weights stores eps as 0: a source silent in a bin
        all window long (a ReLU mask's zeros) has weight 0 and covariance 0 there, and gets R = 0 / 1 = 0, as in
        float32, not 0 / 0 (tf.math.divide_no_nan's TFLite form fails to prepare at dynamic shapes).
        """
        weight = self.eps + tf.reduce_sum(psd, axis=1)
        return tf.where(tf.equal(weight, 0.0), 1.0, weight)

    def _stereo_em_step(self, y, x):
        """`_em_step` for 2 channels in closed form, every tensor at most (batch, frames, bins, sources): the same
        estimate, y_j = v_j R_j (Cxx⁻¹ x), without the 2 × 2 matrices' einsums and their (batch, frames, bins,
        sources, 2, 2) gains."""
        (y0_re, y1_re), (y0_im, y1_im) = (tf.unstack(part, 2, axis=3) for part in y)  # (batch, frames, bins, sources)
        (x0_re, x1_re), (x0_im, x1_im) = ([_trailing(channel, 1) for channel in tf.unstack(part, 2, axis=3)]
                                          for part in x)  # (batch, frames, bins, 1)
        power0, power1 = y0_re**2 + y0_im**2, y1_re**2 + y1_im**2
        psd = (power0 + power1) / 2.0
        # R_j = [[r00, r01], [conj(r01), r11]], each (batch, 1, bins, sources).
        weight = tf.expand_dims(self._covariance_weight(psd), 1)
        r00, r11, r01_re, r01_im = (tf.reduce_sum(product, axis=1, keepdims=True) / weight for product in
                                    (power0, power1, y0_re * y1_re + y0_im * y1_im, y0_im * y1_re - y0_re * y1_im))
        # Cxx = λ I + Σ_j v_j R_j, loaded as `_regularized_inverse` explains, and its inverse in closed form,
        # (batch, frames, bins, 1) each.
        a, d, b_re, b_im = (tf.reduce_sum(psd * r, axis=3, keepdims=True) for r in (r00, r11, r01_re, r01_im))
        load = np.sqrt(self.eps) + self.relative_load * (a + d) / 2.0
        a, d = a + load, d + load
        det = a * d - b_re**2 - b_im**2
        # z = Cxx⁻¹ x = [[d, -b], [-conj(b), a]] x / det
        z0_re = (d * x0_re - b_re * x1_re + b_im * x1_im) / det
        z0_im = (d * x0_im - b_re * x1_im - b_im * x1_re) / det
        z1_re = (a * x1_re - b_re * x0_re - b_im * x0_im) / det
        z1_im = (a * x1_im - b_re * x0_im + b_im * x0_re) / det
        # y_j = v_j R_j z
        new0_re = psd * (r00 * z0_re + r01_re * z1_re - r01_im * z1_im)
        new0_im = psd * (r00 * z0_im + r01_re * z1_im + r01_im * z1_re)
        new1_re = psd * (r01_re * z0_re + r01_im * z0_im + r11 * z1_re)
        new1_im = psd * (r01_re * z0_im - r01_im * z0_re + r11 * z1_im)
        return tf.stack([new0_re, new1_re], axis=3), tf.stack([new0_im, new1_im], axis=3)

    def _em_step(self, y, x):
        """One EM iteration; y: (re, im) of (batch, frames, bins, channels, sources), x: (re, im) of
        (batch, frames, bins, channels)."""
        y_re, y_im = y
        psd = tf.reduce_mean(y_re**2 + y_im**2, axis=3)  # (batch, frames, bins, sources)
        # Spatial covariance R_j[c, d] = Σ_t y_c conj(y_d) / Σ_t v_j, shape (batch, bins, sources, c, d).
        cov_re = tf.einsum("btfcs,btfds->bfscd", y_re, y_re) + tf.einsum("btfcs,btfds->bfscd", y_im, y_im)
        cov_im = tf.einsum("btfcs,btfds->bfscd", y_im, y_re) - tf.einsum("btfcs,btfds->bfscd", y_re, y_im)
        weight = _trailing(self._covariance_weight(psd), 2)  # (batch, bins, sources, 1, 1)
        r_re, r_im = cov_re / weight, cov_im / weight
        # Mixture covariance Cxx = √eps I + Σ_j v_j R_j, shape (batch, frames, bins, c, d).
        cxx_re = tf.einsum("btfs,bfscd->btfcd", psd, r_re)
        cxx_im = tf.einsum("btfs,bfscd->btfcd", psd, r_im)
        inv_re, inv_im = _regularized_inverse(cxx_re, cxx_im, np.sqrt(self.eps), self.relative_load)
        # Gain G_j = v_j R_j Cxx⁻¹, then y_j = G_j x.
        g_re = tf.einsum("bfsce,btfed->btfscd", r_re, inv_re) - tf.einsum("bfsce,btfed->btfscd", r_im, inv_im)
        g_im = tf.einsum("bfsce,btfed->btfscd", r_re, inv_im) + tf.einsum("bfsce,btfed->btfscd", r_im, inv_re)
        g_re, g_im = g_re * _trailing(psd, 2), g_im * _trailing(psd, 2)
        # y_j = G_j x as a broadcast product summed over d (this einsum has no TFLite builtin form).
        x_re, x_im = (tf.expand_dims(tf.expand_dims(part, 3), 3) for part in x)  # (batch, frames, bins, 1, 1, d)
        new_re = tf.reduce_sum(g_re * x_re - g_im * x_im, axis=-1)  # (batch, frames, bins, sources, c)
        new_im = tf.reduce_sum(g_re * x_im + g_im * x_re, axis=-1)
        return tf.transpose(new_re, [0, 1, 2, 4, 3]), tf.transpose(new_im, [0, 1, 2, 4, 3])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        config = {"iterations": self.iterations, "eps": self.eps, "scale_factor": self.scale_factor,
                  "window": self.window, "relative_load": self.relative_load}
        return {**super().get_config(), **config}


def _dims_reshape(tensor, leading, like):
    """`tensor` reshaped to `leading` followed by the axes of `like` after its first two, static sizes kept."""
    trailing = [size if size is not None else tf.shape(like)[axis]
                for axis, size in enumerate(like.shape) if axis >= 2]
    return tf.reshape(tensor, tf.stack(leading + trailing) if any(map(tf.is_tensor, leading + trailing))
                      else leading + trailing)


def _fold_windows(tensor, window, like):
    """(batch, windows · window, ...) -> (batch · windows, window, ...), the trailing axes those of `like`."""
    return _dims_reshape(tensor, [-1, window], like)


@keras.saving.register_keras_serializable(package="tfsep")
class GriffinLim(_FourierLayer):
    """Griffin-Lim phase refinement of stem spectra, started from the phase they have (the mixture's).

    Each iteration takes every stem to the waveform (`InverseSTFT`) and back (`STFT`) and keeps
    the new phase with the stem's own magnitude |Ȳ_k|, so the spectra move towards ones that a
    waveform can have (Griffin & Lim 1984). With 0 iterations the layer returns its input: the
    mixture's phase. `valid` framing is refused, since a chunk's edge frames see partial signal.

    Args:
        n_fft: FFT length, a power of two.
        hop: samples between frames, 1 to n_fft // 2.
        window: the analysis window, one of WINDOWS.
        framing: one of FRAMINGS, as `STFT`'s (not `valid`).
        iterations: Griffin-Lim iterations, 0 to MAX_ITERATIONS.
        inverse_fft: the `InverseSTFT` form, one of INVERSE_FFTS; "bitcast" also takes
            `STFT`'s bitcast form.

    Inputs: [stem spectra (batch, frames, bins, channels, sources, 2), mixture (batch, samples, channels)].
    Output: stem spectra, same shape.
    """

    def __init__(self, n_fft=4096, hop=1024, window="hann", framing="center", iterations=0, inverse_fft="signal",
                 **kwargs):
        super().__init__(n_fft, hop, window, framing, **kwargs)
        if not isinstance(iterations, int) or isinstance(iterations, bool) or not 0 <= iterations <= MAX_ITERATIONS:
            raise ValueError(f"Griffin-Lim iterations must be an integer from 0 to {MAX_ITERATIONS}, "
                             f"got {iterations!r}")
        if iterations and framing == "valid":
            raise ValueError("Griffin-Lim needs whole signals: framing 'center' or 'pad_end', not 'valid'")
        self.iterations = iterations
        self._stft = STFT(n_fft, hop, window, framing, bitcast=inverse_fft == "bitcast")
        self._istft = InverseSTFT(n_fft, hop, window, framing, inverse_fft)

    def build(self, input_shape):
        self._stft.built = self._istft.built = True  # weightless

    def call(self, inputs):
        stems, mixture = inputs
        if self.iterations == 0:
            return stems
        shape = tf.shape(stems)
        magnitude = spectral.magnitude(stems, keepdims=True)
        for _ in range(self.iterations):
            waveforms = self._istft([stems, mixture])  # (batch, samples, channels, sources)
            size = tf.shape(waveforms)
            spectra = self._stft(tf.reshape(waveforms, [size[0], size[1], -1]))  # channels × sources as channels
            spectra = tf.reshape(spectra, shape)
            norm = spectral.magnitude(spectra, keepdims=True)
            nonzero = norm > 0.0
            phasor = tf.where(nonzero, spectra / tf.where(nonzero, norm, 1.0), tf.constant([1.0, 0.0]))
            stems = magnitude * phasor
        return stems

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "iterations": self.iterations, "inverse_fft": self._istft.inverse_fft}



def _regularized_inverse(c_re, c_im, eps, relative_load=RELATIVE_LOAD):
    """(λ I + C)⁻¹ for Hermitian positive semi-definite C (..., c, c), given as real and imaginary parts.

    λ = eps + relative_load · tr(C) / c. Sources that are panned copies of a mono signal make
    C (nearly) rank one, and float32 rounding of its determinant then swamps a fixed eps;
    loading relative to C's scale (RELATIVE_LOAD) keeps the inverse accurate (and costs at most
    ~1e-4 of the estimate); 0 loads by eps alone, as norbert and Open-Unmix do. A closed form
    for 1 channel, which exports to TFLite builtins; a real 2c × 2c embedding [[Re, -Im],
    [Im, Re]] for more. (2 channels never come here: `WienerFilter._stereo_em_step` applies the
    same loaded inverse in closed form.)
    """
    channels = c_re.shape[-1]
    trace = tf.reduce_sum(c_re * tf.eye(channels, dtype=c_re.dtype), axis=[-2, -1])  # no MatrixDiagPart in TFLite
    load = eps + relative_load * trace / channels
    if channels == 1:
        return 1.0 / (_trailing(load, 2) + c_re), tf.zeros_like(c_im)
    loaded = c_re + tf.eye(channels, dtype=c_re.dtype) * _trailing(load, 2)
    embedded = tf.concat([tf.concat([loaded, -c_im], -1), tf.concat([c_im, loaded], -1)], -2)
    inverse = tf.linalg.inv(embedded)
    return inverse[..., :channels, :channels], inverse[..., channels:, :channels]


@keras.saving.register_keras_serializable(package="tfsep")
class MixtureConsistency(Float32Layer):
    """Stems that sum to the mixture: each takes an equal share of the residual, ŝ'_k = ŝ_k + (x − Σ_j ŝ_j) / K.

    The projection onto mixture-consistent stems nearest to the estimates (the unweighted one of
    Wisdom et al., "Differentiable consistency constraints for improved deep speech
    enhancement", ICASSP 2019). With `enabled` False the stems pass unchanged.

    Inputs: [stems (batch, samples, channels, sources), mixture (batch, samples, channels)].
    Output: stems, the same shape.
    """

    def __init__(self, enabled=True, **kwargs):
        super().__init__(**kwargs)
        self.enabled = bool(enabled)

    def call(self, inputs):
        stems, mixture = inputs
        if not self.enabled:
            return stems
        residual = tf.cast(mixture, tf.float32) - tf.reduce_sum(stems, axis=-1)
        return stems + tf.expand_dims(residual, -1) / stems.shape[-1]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "enabled": self.enabled}


@keras.saving.register_keras_serializable(package="tfsep")
class SplitSources(Float32Layer):
    """Split the stems along their last axis.

    Args:
        sources: the number of sources K.

    Input: stems (batch, samples, channels, sources). Output: a list of K tensors (batch, samples, channels).
    """

    def __init__(self, sources, **kwargs):
        super().__init__(**kwargs)
        self.sources = sources

    def call(self, stems):
        return tf.unstack(stems, num=self.sources, axis=-1)

    def compute_output_shape(self, input_shape):
        return [tuple(input_shape[:-1])] * self.sources

    def get_config(self):
        return {**super().get_config(), "sources": self.sources}

"""Multitrack data sets -> tf.data pipelines of (mixture, {source: stem}) for `model.fit`.

Data sets are folder trees, `ROOT/<subset>/<track>/{mixture,<source>...}.{wav,flac}`:
tfsep's rendered sets (subsets train, valid, test), MUSDB18-HQ (train, test; its official
14-track validation split is taken out of train by name), or any tree with named stems.
MUSDB18's `.stem.mp4` files load through the optional `musdb` package.

A source may be the remainder of the mix: with `remainder="accompaniment"`, a track that has
no accompaniment file gets the mixture minus its other sources, as MUSDB18 defines its
accompaniment, so a vocals/accompaniment model trains and is scored on a four-stem set.

Audio is decoded once into memory, or into `.npy` files in a cache folder that are then
memory-mapped, for sets larger than RAM; 16-bit wav files are memory-mapped where they are.
With working tensorflow-io kernels, wav and flac
are decoded inside tf.data (in parallel, without the GIL); otherwise with soundfile.

Training elements are random chunks whose stems may come from different tracks, each
with a random gain and channel swap; the mixture is the sum of the augmented stems.
Shapes: mixture (batch, samples, channels), each stem (batch, samples, channels).
"""

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from tfsep import audio, files

SUFFIXES = (".wav", ".flac")

# MUSDB18's official validation split, taken from its training set by track name (musdb's mus.yaml).
MUSDB_VALIDATION_TRACKS = (
    "Actions - One Minute Smile",
    "Clara Berry And Wooldog - Waltz For My Victims",
    "Johnny Lokke - Promises & Lies",
    "Patrick Talbot - A Reason To Leave",
    "Triviul - Angelsaint",
    "Alexander Ross - Goodbye Bolero",
    "Fergessen - Nos Palpitants",
    "Leaf - Summerghost",
    "Skelpolu - Human Mistakes",
    "Young Griffo - Pennies",
    "ANiMAL - Rockshow",
    "James May - On The Line",
    "Meaxic - Take A Step",
    "Traffic Experiment - Sirens",
)


class DatasetError(Exception):
    """A data set that cannot be used; the message names the track and the file."""


@dataclass(frozen=True)
class Track:
    """A track folder: `files` maps "mixture" and each source name to its audio file (None: the remainder)."""

    name: str
    files: dict

    def check(self):
        """Raise DatasetError unless every stem has the mixture's length, sample rate and channels."""
        try:
            found = {name: audio.info(path) for name, path in self.files.items() if path is not None}
        except audio.AudioError as error:
            raise DatasetError(f"track {self.name!r}: {error}") from None
        reference = found["mixture"]
        for name, info in found.items():
            for field in ("samples", "sample_rate", "channels"):
                if getattr(info, field) != getattr(reference, field):
                    raise DatasetError(
                        f"track {self.name!r}: {self.files[name]} has {field} {getattr(info, field)}, "
                        f"but the mixture has {getattr(reference, field)}"
                    )
        if reference.samples == 0:
            raise DatasetError(f"track {self.name!r}: {self.files['mixture']} holds no samples")


def _audio_file(folder, name):
    for suffix in SUFFIXES:
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    return None


def find_tracks(root, subset, sources, remainder=None):
    """The checked tracks of `subset` (train, valid or test) under `root`, sorted by name.

    For MUSDB18-HQ, which has no valid folder, `valid` is MUSDB18's 14-track validation
    split and `train` the rest of its train folder. The source `remainder`, where a track
    has no file for it, is the mixture minus the other sources (see `read_stems`). Raises
    DatasetError naming the track and file for a missing stem, stems whose length, rate or
    channels differ from the mixture's, or a subset with no tracks.
    """
    if remainder is not None and remainder not in sources:
        raise DatasetError(f"the remainder source {remainder!r} is not one of the sources {list(sources)}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such data set folder")
    folder, keep = root / subset, None
    if subset in ("train", "valid") and not (root / "valid").is_dir():
        folder = root / "train"
        if subset == "valid":
            keep = lambda name: name in MUSDB_VALIDATION_TRACKS  # noqa: E731
        else:
            keep = lambda name: name not in MUSDB_VALIDATION_TRACKS  # noqa: E731
    if not folder.is_dir():
        raise DatasetError(f"{root}: has no {folder.name}/ folder for subset {subset!r}")
    tracks = []
    for track_folder in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if keep is not None and not keep(track_folder.name):
            continue
        files = {}
        for name in ("mixture", *sources):
            files[name] = _audio_file(track_folder, name)
            if files[name] is None and name != remainder:
                hint = "" if name == "mixture" or remainder else (
                    f"; if {name} is the rest of the mix, make it the remainder source (mixture minus the others)")
                raise DatasetError(f"track {track_folder.name!r}: missing {name}.wav (or .flac) in {track_folder}"
                                   f"{hint}")
        track = Track(track_folder.name, files)
        track.check()
        tracks.append(track)
    if not tracks:
        raise DatasetError(f"{folder}: no tracks for subset {subset!r}")
    return tracks


def find_musdb_tracks(root, subset, sources):
    """MUSDB18 `.stem.mp4` tracks via the `musdb` package (needs ffmpeg): a list of `MusdbTrack`."""
    try:
        import musdb
    except ImportError:
        raise DatasetError("reading .stem.mp4 needs the musdb package and ffmpeg: pip install tfsep[musdb]") from None
    subsets, split = ("train", subset) if subset in ("train", "valid") else (subset, None)
    database = musdb.DB(root=str(root), subsets=subsets, split=split)
    if not database.tracks:
        raise DatasetError(f"{root}: no MUSDB18 tracks for subset {subset!r}")
    return [MusdbTrack(track.name, track, tuple(sources)) for track in database.tracks]


@dataclass(frozen=True)
class MusdbTrack:
    """A track read by the musdb package; it decodes to the same dict as a folder `Track`."""

    name: str
    track: object
    sources: tuple

    def decode(self, sample_rate):
        rate = self.track.rate
        stems = {name: self.track.targets[name].audio if name != "mixture" else self.track.audio
                 for name in ("mixture", *self.sources)}
        return {name: audio.resample(np.asarray(s, np.float32), rate, sample_rate) for name, s in stems.items()}


def _tensorflow_io_decoder(path, subtype):
    """A graph function from file contents to float32 (samples, channels) with tensorflow-io, or None."""
    tfio = audio.tensorflow_io()
    dtype, scale = {"PCM_16": (tf.int16, 2.0**15), "PCM_24": (tf.int32, 2.0**31), "PCM_32": (tf.int32, 2.0**31),
                    "FLOAT": (tf.float32, 1.0)}.get(subtype, (None, None))
    suffix = Path(path).suffix.lower()
    if tfio is None or dtype is None or (suffix == ".flac" and dtype == tf.float32):
        return None
    decode = tfio.audio.decode_flac if suffix == ".flac" else tfio.audio.decode_wav
    return lambda contents: tf.cast(decode(contents, dtype=dtype), tf.float32) / scale


def decode_files(paths, sample_rate, workers=4, tensorflow_io=True):
    """Decode audio files to float32 (samples, channels) at `sample_rate`, in parallel; a list in order.

    Files that tensorflow-io can decode are decoded inside tf.data, grouped by format; the
    rest, and everything when tensorflow-io's kernels do not load or `tensorflow_io` is
    False, with soundfile. Resampling, where a file's rate differs, is done with soxr.
    """
    infos = [audio.info(path) for path in paths]
    decoded = [None] * len(paths)
    groups = {}
    for i, (path, info) in enumerate(zip(paths, infos)):
        if tensorflow_io and _tensorflow_io_decoder(path, info.subtype) is not None:
            groups.setdefault((Path(path).suffix.lower(), info.subtype), []).append(i)
    for indices in groups.values():
        decoder = _tensorflow_io_decoder(paths[indices[0]], infos[indices[0]].subtype)
        files = tf.data.Dataset.from_tensor_slices([str(paths[i]) for i in indices])
        files = files.map(lambda path: decoder(tf.io.read_file(path)), num_parallel_calls=workers, deterministic=True)
        for i, signal in zip(indices, files.as_numpy_iterator()):
            decoded[i] = audio.resample(signal, infos[i].sample_rate, sample_rate)
    rest = [i for i in range(len(paths)) if decoded[i] is None]
    with ThreadPoolExecutor(max_workers=workers) as pool:  # libsndfile releases the GIL
        for i, signal in zip(rest, pool.map(lambda i: audio.read(paths[i], sample_rate)[0], rest)):
            decoded[i] = signal
    return decoded


def _cache_path(cache_dir, path, sample_rate):
    stat = Path(path).stat()
    key = f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{sample_rate}"
    return Path(cache_dir) / f"{hashlib.sha1(key.encode()).hexdigest()}.npy"


def load_tracks(tracks, sources, sample_rate, cache_dir=None, workers=4, progress=True):
    """Decode the sources of `tracks`: a list of {source: float32 (samples, channels)} at `sample_rate`.

    With `cache_dir`, each file is decoded once into a `.npy` file there (keyed by path,
    size, modification time and rate) and memory-mapped, so sets larger than RAM work.
    Raises DatasetError unless all tracks have the same number of channels, or for a file
    holding NaN or infinite samples (checked when decoded, before it is cached).
    """
    library = []
    for track in tqdm(tracks, desc="loading tracks", unit="track", disable=not progress):
        if isinstance(track, MusdbTrack):
            stems = track.decode(sample_rate)
            library.append({name: _finite(track, name, stems[name]) for name in sources})
            continue
        names = _needed(track, sources)
        paths = [track.files[name] for name in names]
        if cache_dir is None:
            signals = [_finite(track, path, signal) for path, signal in zip(paths, decode_files(paths, sample_rate,
                                                                                                  workers))]
        else:
            signals = _cached(track, paths, sample_rate, cache_dir, workers)
        library.append(_with_remainder(track, dict(zip(names, signals)), sources))
    channels = {stems[sources[0]].shape[1] for stems in library}
    if len(channels) > 1:
        raise DatasetError(f"tracks differ in channel count ({sorted(channels)}); convert them to one count first")
    return library


def _needed(track, sources):
    """The files to decode for `sources`: each source's, and the mixture's where one is the remainder."""
    missing = [name for name in sources if track.files[name] is None]
    return [name for name in sources if name not in missing] + ["mixture"] * bool(missing)


def _with_remainder(track, signals, sources):
    """{source: signal} for `sources` from decoded `signals`; a source without a file is the mixture minus the rest."""
    stems = {}
    for name in sources:
        if track.files[name] is None:
            others = [signals[other] for other in sources if other != name]
            stems[name] = (signals["mixture"] - np.sum(others, axis=0)).astype(np.float32)
        else:
            stems[name] = signals[name]
    return stems


def read_stems(track, sources, sample_rate=None):
    """(mixture (samples, channels), {source: stem}, rate) of a track, read whole; the remainder as in `load_tracks`."""
    names = ["mixture", *[name for name in sources if track.files[name] is not None]]
    signals, rate = {}, None
    for name in names:
        signals[name], rate = audio.read(track.files[name], sample_rate)
    return signals["mixture"], _with_remainder(track, signals, sources), rate


class PcmSignal:
    """16-bit PCM samples memory-mapped as int16 and read as float32 (value / 32768, as soundfile reads them).

    Slicing returns float32 (samples, channels).
    """

    def __init__(self, data):
        self.data = data
        self.shape = data.shape

    def __len__(self):
        return len(self.data)

    def __getitem__(self, key):
        return self.data[key].astype(np.float32) / np.float32(32768)

    def __array__(self, dtype=None, copy=None):
        return self[:].astype(dtype or np.float32, copy=False)


def wav_samples(path):
    """The int16 (frames, channels) samples of a 16-bit PCM wav file, memory-mapped from its `data` chunk;
    None for any other file (another format or sample type, or a data chunk whose size disagrees)."""
    info = audio.info(path)
    if Path(path).suffix.lower() != ".wav" or info.subtype != "PCM_16":
        return None
    with open(path, "rb") as file:
        start = file.read(12)
        if start[:4] != b"RIFF" or start[8:12] != b"WAVE":
            return None
        while header := file.read(8):
            if len(header) < 8:
                return None
            kind, size = header[:4], int.from_bytes(header[4:], "little")
            if kind == b"data":
                if size < info.samples * info.channels * 2:
                    return None
                return np.memmap(path, np.int16, "r", file.tell(), (info.samples, info.channels))
            file.seek(size + size % 2, 1)
    return None


def _cached(track, paths, sample_rate, cache_dir, workers):
    """The signals of `paths`, memory-mapped: 16-bit wav files at `sample_rate` in place (`wav_samples`),
    the rest decoded once into float32 `.npy` files in `cache_dir`."""
    signals = {}
    for i, path in enumerate(paths):
        if audio.info(path).sample_rate == sample_rate:
            mapped = wav_samples(path)
            if mapped is not None:
                signals[i] = PcmSignal(mapped)
    rest = [i for i in range(len(paths)) if i not in signals]
    cached = {i: _cache_path(cache_dir, paths[i], sample_rate) for i in rest}
    missing = [i for i in rest if not cached[i].is_file()]
    for i, signal in zip(missing, decode_files([paths[i] for i in missing], sample_rate, workers)):
        _finite(track, paths[i], signal)
        files.replace_atomically(cached[i], lambda partial: _save_npy(partial, signal))
    for i in rest:
        signals[i] = np.load(cached[i], mmap_mode="r")
    return [signals[i] for i in range(len(paths))]


def _save_npy(path, signal):
    with open(path, "wb") as file:  # np.save would append .npy to a temporary's name
        np.save(file, signal)


def _finite(track, path, signal):
    """`signal`, or DatasetError naming the track and file if it holds NaN or infinite samples."""
    if not np.isfinite(signal).all():
        raise DatasetError(f"track {track.name!r}: {path} holds NaN or infinite samples")
    return signal


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation, after Open-Unmix's recipe.

    remix: draw each source's chunk from an independently chosen track.
    gain: each stem is scaled by a factor drawn uniformly from this range.
    channel_swap: each stem's channels are swapped with probability 1/2.
    silence_threshold: redraw (up to 10 times) a source's chunk, or without remix the example's mixture,
        quieter than this, in dBFS; None keeps all.
    """

    remix: bool = True
    gain: tuple = (0.25, 1.25)
    channel_swap: bool = True
    silence_threshold: float = None


def augment(stems, rng, gain=(0.25, 1.25), channel_swap=True):
    """Random gain and channel swap per stem: stems (sources, samples, channels) -> (augmented, gains, swapped)."""
    gains = rng.uniform(gain[0], gain[1], len(stems)).astype(np.float32)
    swapped = rng.random(len(stems)) < 0.5 if channel_swap else np.zeros(len(stems), bool)
    augmented = np.stack([stem[:, ::-1] if swap else stem for stem, swap in zip(stems, swapped)])
    return augmented * gains[:, None, None], gains, swapped


def _chunk(signal, offset, samples):
    """signal[offset:offset + samples], zero-padded at the end if the signal is shorter."""
    chunk = np.asarray(signal[offset : offset + samples], np.float32)
    return np.pad(chunk, [(0, samples - len(chunk)), (0, 0)]) if len(chunk) < samples else chunk


def _loudness(chunk):
    return 10 * np.log10(np.mean(np.square(chunk)) + 1e-12)


def draw_example(library, sources, index, seed, samples, augmentation):
    """Training example `index`: stems (sources, samples, channels), drawn from generator (seed, index).

    With `remix` each source's chunk comes from a track and offset of its own; without, all
    come from one track at one offset, as they sound in its mix.
    """
    rng = np.random.default_rng([seed, index])
    tries = 10 if augmentation.silence_threshold is not None else 1
    if augmentation.remix:
        chunks = np.concatenate([_draw(lambda: [library[int(rng.integers(len(library)))][source]], rng, samples,
                                       augmentation.silence_threshold, tries) for source in sources])
    else:
        track = library[int(rng.integers(len(library)))]
        chunks = _draw(lambda: [track[source] for source in sources], rng, samples, augmentation.silence_threshold,
                       tries)
    return augment(chunks, rng, augmentation.gain, augmentation.channel_swap)[0]


def _draw(pick, rng, samples, threshold, tries):
    """Chunks (n, samples, channels) at one random offset of the equally long signals that `pick()` gives, drawn
    again (with a new pick, `tries` times at most) while their sum is quieter than `threshold` dBFS."""
    for _ in range(tries):
        signals = pick()
        offset = int(rng.integers(max(1, len(signals[0]) - samples + 1)))
        chunks = np.stack([_chunk(signal, offset, samples) for signal in signals])
        if threshold is None or _loudness(chunks.sum(0)) >= threshold:
            break
    return chunks


def _to_example(stems, sources):
    """(sources, samples, channels) -> (mixture = sum of stems, {source: stem})."""
    return tf.reduce_sum(stems, axis=0), {source: stems[k] for k, source in enumerate(sources)}


CHUNK_SAMPLES = 6 * 44100  # Open-Unmix's 6 s training chunks at 44.1 kHz


def training_dataset(library, sources, samples=CHUNK_SAMPLES, batch_size=16, seed=0, augmentation=Augmentation(),
                     start=0):
    """An endless, seeded tf.data pipeline of augmented random `samples`-long chunks, batched and prefetched.

    Example i depends only on (seed, i), so the stream is the same under any parallelism;
    it begins at example `start` (a resumed run's next).
    Elements: (mixture (batch, samples, channels), {source: (batch, samples, channels)}).
    """
    sources = tuple(sources)
    channels = library[0][sources[0]].shape[1]

    def draw(index):
        return draw_example(library, sources, int(index), seed, samples, augmentation)

    examples = tf.data.Dataset.counter(start).map(
        lambda index: tf.ensure_shape(tf.numpy_function(draw, [index], tf.float32), (len(sources), samples, channels)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    examples = examples.map(lambda stems: _to_example(stems, sources), num_parallel_calls=tf.data.AUTOTUNE)
    return examples.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def validation_dataset(library, sources, samples=CHUNK_SAMPLES, batch_size=16):
    """Every track cut into consecutive `samples`-long chunks (the last zero-padded), no augmentation.

    Deterministic and finite. Elements as in `training_dataset`.
    """
    sources = tuple(sources)
    channels = library[0][sources[0]].shape[1]
    positions = [(t, offset) for t, stems in enumerate(library)
                 for offset in range(0, max(1, len(stems[sources[0]])), samples)]

    def cut(position):
        track, offset = (int(v) for v in position)
        return np.stack([_chunk(library[track][source], offset, samples) for source in sources])

    chunks = tf.data.Dataset.from_tensor_slices(np.array(positions, np.int64)).map(
        lambda position: tf.ensure_shape(tf.numpy_function(cut, [position], tf.float32),
                                         (len(sources), samples, channels)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    chunks = chunks.map(lambda stems: _to_example(stems, sources))
    return chunks.batch(batch_size).prefetch(tf.data.AUTOTUNE)

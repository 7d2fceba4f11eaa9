"""Where the time of `tfsep separate` goes: per-stage timed sub-graphs of one model, and the command around them.

    python tools/profile_separate.py [--model M.keras] [--seconds 60] [--rounds 5] [--threads 2] [--litert]

`Separator.separate` runs the model on the chunks its default plan cuts (5 s crossfaded over
0.25 s for most models). Each graph stage is a tf.function built from the model's own layers,
timed over those same chunks, one after the other, so the stages sum to the model's calls
on the chunks:

- stft: the STFT layer;
- network: |X|, the bandwidth crop and the mask network to its masks (logits → masks);
- masks: mask extension to all bins, M ⊙ X, and Wiener filtering if the model has any;
- istft: the inverse STFT of every stem;
- chunk calls: the whole model on each chunk, of which the crossfades' share is computed twice;
- separator: `Separator.separate` (what `tfsep separate` runs), whose excess over the chunk
  calls is the chunking around the model (crossfades, copies);
- file I/O: reading a 48 kHz file, resampling it to the model's rate and the stems back,
  and writing the four float wav stems (`Separator.separate_file` minus `separate`);
- for comparison, one call of the model on the whole signal, which no command makes.

With `--litert`, a second table times the model's TFLite form (`formats.tflite_writer.convert_to_tflite` of
its builtin inverse-FFT form) in LiteRT on the same chunks. LiteRT runs whole files only, so
each stage is the difference between two files that cut the model after consecutive
stages, all taking the waveform (each file's time includes copying its output out); the
RFFT2D row is a file of nothing but the real FFTs the model computes on each chunk, one per
frame and channel for the STFT and one more per stem for each inverse.

Medians over the rounds, after one warm-up each; all stages take turns within a round.
"""

import argparse
import os
import tempfile
from pathlib import Path

import bench
import numpy as np
from bench.fft import builtin_tflite, litert_runner, rfft_function
from bench.separation import noise, set_threads

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def stage_functions(model):
    """{stage: (function, input)} for the graph stages of `model`, each input computed by the stage before."""
    import tensorflow as tf

    from tfsep._keras import keras

    def piece(inputs, output):
        sub = keras.Model(inputs, output)
        return tf.function(lambda *x: sub(list(x) if len(x) > 1 else x[0]), reduce_retracing=True)

    layer = model.get_layer
    stft = piece(model.input, layer("stft").output)
    network = piece(layer("stft").output, layer("masks").output)
    masks = piece([layer("stft").output, layer("masks").output], layer("wiener").output)
    istft = piece([layer("wiener").output, model.input], layer("istft").output)
    return stft, network, masks, istft


def litert_runs(model, chunks, threads):
    """{stage: zero-argument callable} running `model`'s TFLite form cut after each stage, and its FFTs alone, in
    LiteRT on `chunks` (float32 (1, samples, channels) arrays)."""
    from tfsep._keras import keras
    from tfsep.formats.tflite_writer import convert_to_tflite
    from tfsep.framing import num_frames
    from tfsep.models import reconfigure

    builtin = reconfigure(model, inverse_fft="builtin")
    config = builtin.get_config()

    def runs(flatbuffer, inputs):
        runner = litert_runner(flatbuffer, threads)
        return lambda: [runner(**item) for item in inputs]

    waveforms = [{"waveform": chunk} for chunk in chunks]
    cut = {"stft": "stft", "network": "masks", "masks": "wiener"}
    result = {stage: runs(convert_to_tflite(keras.Model(builtin.input, builtin.get_layer(end).output)), waveforms)
              for stage, end in cut.items()}
    result["istft"] = runs(convert_to_tflite(builtin), waveforms)
    ffts_per_frame = config["channels"] * (1 + len(builtin.sources))
    counts = [ffts_per_frame * num_frames(chunk.shape[1], config["hop"], config["n_fft"], config["framing"])
              for chunk in chunks]
    zeros = {count: np.zeros((count, config["n_fft"]), np.float32) for count in set(counts)}  # one per length
    frames = [{"frames": zeros[count]} for count in counts]
    result["rfft2d"] = runs(builtin_tflite(rfft_function(config["n_fft"], parts=("real",))), frames)
    return result


def separated_chunks(separator, mixture):
    """The chunks, float32 (1, samples, channels), that `separator` cuts from `mixture` (at its rate): recorded
    from `chunking.chunked` itself, with a stand-in for the model."""
    from tfsep import chunking

    chunks = []

    def record(batch):
        chunks.extend(chunk[None].copy() for chunk in batch)
        return [np.zeros((len(separator.sources),) + chunk.shape, np.float32) for chunk in batch]

    for _ in chunking.chunked(separator.plan, separator.description, record, [mixture]):
        pass
    return chunks


def print_table(rows, total, share):
    """A markdown table of (stage, seconds) rows, each also as a percentage of `total` seconds in column `share`."""
    print(bench.table(["stage", "seconds", share],
                      [[name, f"{seconds:.3f}", f"{100 * seconds / total:.0f} %"] for name, seconds in rows]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a .keras model (default: the shipped one, in its Keras form)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--litert", action="store_true", help="also time the TFLite form's stages in LiteRT")
    args = parser.parse_args()

    import soundfile
    import tensorflow as tf

    set_threads(args.threads)
    from tfsep import providers
    from tfsep.separate import Separator

    separator = Separator.load(providers.resolve(args.model))  # the Keras form, whose layers the stages are
    model, rate = separator.model, separator.sample_rate
    mixture = noise(args.seconds, 0.3, rate=rate)
    chunks = [tf.constant(chunk) for chunk in separated_chunks(separator, mixture)]
    stft, network, masks, istft = stage_functions(model)
    spectra = [stft(chunk) for chunk in chunks]
    mask = [network(spectrum) for spectrum in spectra]
    stems = [masks(spectrum, m) for spectrum, m in zip(spectra, mask)]
    whole = tf.function(lambda x: model(x), reduce_retracing=True)
    batch = tf.constant(mixture[None])
    folder = Path(tempfile.mkdtemp())
    song = folder / "song.wav"
    soundfile.write(song, noise(args.seconds, 0.3, seed=1, rate=48000), 48000, subtype="PCM_16")
    at_48k = soundfile.read(song, dtype="float32")[0]
    runs = {
        "stft": lambda: [stft(chunk) for chunk in chunks],
        "network": lambda: [network(spectrum) for spectrum in spectra],
        "masks": lambda: [masks(spectrum, m) for spectrum, m in zip(spectra, mask)],
        "istft": lambda: [istft(stem, chunk) for stem, chunk in zip(stems, chunks)],
        "chunk calls": lambda: [whole(chunk) for chunk in chunks],
        "separator": lambda: separator.separate(mixture, rate),
        "separator, 48 kHz array": lambda: separator.separate(at_48k, 48000),
        "separate_file, 48 kHz wav": lambda: separator.separate_file(song, folder / "out", overwrite=True),
        "whole call": lambda: whole(batch),
    }
    times = bench.median_seconds(runs, args.rounds)
    graph = sum(times[name] for name in ("stft", "network", "masks", "istft"))
    twice = 1 - len(mixture) / sum(chunk.shape[1] for chunk in chunks)
    rows = [
        ("STFT", times["stft"]),
        ("network (|X|, crop, mask network)", times["network"]),
        ("masks (extension, M ⊙ X, Wiener)", times["masks"]),
        ("inverse STFT of every stem", times["istft"]),
        ("sum of the stages", graph),
        (f"model calls on the {len(chunks)} chunks", times["chunk calls"]),
        (f"of which the crossfades, computed twice ({100 * twice:.0f} % of the audio)", twice * times["chunk calls"]),
        ("chunking around the model (separator − model calls)", times["separator"] - times["chunk calls"]),
        ("resampling 48 kHz ↔ model rate", times["separator, 48 kHz array"] - times["separator"]),
        ("file read and write", times["separate_file, 48 kHz wav"] - times["separator, 48 kHz array"]),
        ("tfsep separate's path, 48 kHz wav", times["separate_file, 48 kHz wav"]),
        ("for comparison: one whole-signal call", times["whole call"]),
    ]
    print(f"{bench.machine()}\n{args.seconds:g} s stereo, {args.threads} threads, medians of {args.rounds} rounds, "
          f"{model.get_config()['architecture']} {model.get_config()['size']}\n")
    print_table(rows, times["separate_file, 48 kHz wav"], "share of the path")
    if args.litert:
        lite = bench.median_seconds({**litert_runs(model, [chunk.numpy() for chunk in chunks], args.threads),
                                     "keras": runs["chunk calls"]}, args.rounds)
        rows = [("STFT", lite["stft"]), ("network (|X|, crop, mask network)", lite["network"] - lite["stft"]),
                ("masks (extension, M ⊙ X, Wiener)", lite["masks"] - lite["network"]),
                ("inverse STFT of every stem", lite["istft"] - lite["masks"]),
                (f"model calls on the {len(chunks)} chunks", lite["istft"]),
                ("of which RFFT2D, every real FFT of the STFT and the inverse STFTs", lite["rfft2d"]),
                ("for comparison: the Keras model's calls on the chunks", lite["keras"])]
        print(f"\nThe TFLite form in LiteRT, {args.threads} threads, the same chunks\n")
        print_table(rows, lite["istft"], "share of the calls")


if __name__ == "__main__":
    main()

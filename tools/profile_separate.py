"""Where the time of `tfsep separate` goes: per-stage timed sub-graphs of one model, and the command around them.

    python tools/profile_separate.py [--model M.keras] [--seconds 60] [--rounds 5] [--threads 2]

Stages, each a tf.function over the same `--seconds` of stereo at the model's rate, built
from the model's own layers (so the sum of the graph stages is one whole-signal call):

- stft: the STFT layer;
- network: |X|, the bandwidth crop and the mask network to its masks (logits → masks);
- masks: mask extension to all bins, M ⊙ X, and Wiener filtering if the model has any;
- istft: the inverse STFT of every stem;
- whole call: the model on the whole signal at once;
- separator: `Separator.separate` with its default chunks and overlap (what `tfsep separate`
  runs), whose excess over the whole call is the chunk overlap's recomputation;
- file I/O: reading a 48 kHz file, resampling it to the model's rate and the stems back,
  and writing the four float wav stems (`Separator.separate_file` minus `separate`).

Medians over the rounds, after one warm-up each; all stages take turns within a round.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

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


def median_times(runs, rounds):
    """{name: median seconds} of each zero-argument callable in `runs`, taking turns, after one warm-up."""
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a .keras model (default: the shipped one)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import soundfile
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from tfsep.separate import Separator

    separator = Separator.load(args.model)
    model, rate = separator.model, separator.sample_rate
    mixture = np.random.default_rng(0).uniform(-0.3, 0.3, (int(args.seconds * rate), 2)).astype(np.float32)
    batch = tf.constant(mixture[None])
    stft, network, masks, istft = stage_functions(model)
    spectrum = stft(batch)
    mask = network(spectrum)
    stems = masks(spectrum, mask)
    whole = tf.function(lambda x: model(x), reduce_retracing=True)
    folder = Path(tempfile.mkdtemp())
    song = folder / "song.wav"
    soundfile.write(song, np.random.default_rng(1).uniform(-0.3, 0.3, (int(args.seconds * 48000), 2)), 48000,
                    subtype="PCM_16")
    at_48k = soundfile.read(song, dtype="float32")[0]
    runs = {
        "stft": lambda: stft(batch),
        "network": lambda: network(spectrum),
        "masks": lambda: masks(spectrum, mask),
        "istft": lambda: istft(stems, batch),
        "whole call": lambda: whole(batch),
        "separator": lambda: separator.separate(mixture, rate),
        "separator, 48 kHz array": lambda: separator.separate(at_48k, 48000),
        "separate_file, 48 kHz wav": lambda: separator.separate_file(song, folder / "out", overwrite=True),
    }
    times = median_times(runs, args.rounds)
    graph = sum(times[name] for name in ("stft", "network", "masks", "istft"))
    rows = [
        ("STFT", times["stft"]),
        ("network (|X|, crop, mask network)", times["network"]),
        ("masks (extension, M ⊙ X, Wiener)", times["masks"]),
        ("inverse STFT of every stem", times["istft"]),
        ("sum of the stages", graph),
        ("whole-signal call", times["whole call"]),
        ("chunk overlap (separator − whole call)", times["separator"] - times["whole call"]),
        ("resampling 48 kHz ↔ model rate", times["separator, 48 kHz array"] - times["separator"]),
        ("file read and write", times["separate_file, 48 kHz wav"] - times["separator, 48 kHz array"]),
        ("tfsep separate's path, 48 kHz wav", times["separate_file, 48 kHz wav"]),
    ]
    print(f"{args.seconds:g} s stereo, {args.threads} threads, medians of {args.rounds} rounds, "
          f"{model.get_config()['architecture']} {model.get_config()['size']}\n")
    print("| stage | seconds | share of the path |")
    print("| --- | ---: | ---: |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} | {100 * seconds / times['separate_file, 48 kHz wav']:.0f} % |")


if __name__ == "__main__":
    main()

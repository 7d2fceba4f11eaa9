"""Throughput of the training pipeline against the training step it feeds, in one run.

    python tools/bench_data.py DATASET [--batches 20] [--batch-size 16] [--seconds 6] [--architecture bandconv]

Loads DATASET's train subset, then times (1) the tf.data pipeline alone, with every
augmentation on, in chunks per second, and (2) `train_on_batch` of the model at the same
batch shape, also in chunks per second. The pipeline keeps the model busy when (1) is
well above (2). Also times decoding the set with tensorflow-io (when its kernels load)
and with soundfile.
"""

import argparse

import bench
from bench.separation import set_threads

from tfsep import audio, data
from tfsep.models import build_model


def chunks_per_second(batches, batch_size, step):
    """Chunks per second of `batches` calls of `step`, each a batch of `batch_size`, after a warm-up call (tracing,
    first prefetch)."""
    step()
    return batches * batch_size / bench.timed(lambda: [step() for _ in range(batches)])[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--architecture", default="bandconv")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    set_threads(args.threads)
    sources = ("vocals", "drums", "bass", "other")
    tracks = data.find_tracks(args.dataset, "train", sources)
    paths = [track.files[s] for track in tracks for s in sources]

    decoders = {"tensorflow-io": True, "soundfile": False} if audio.tensorflow_io() else {"soundfile": False}
    decode = {name: lambda tfio=tfio: data.decode_files(paths, 44100, tensorflow_io=tfio)
              for name, tfio in decoders.items()}
    # the warm-up runs also fill the page cache and trace tf.data
    decode_times = bench.take_turns({name: bench.stopwatch(run) for name, run in decode.items()}, 2)
    library = data.load_tracks(tracks, sources, 44100, progress=False)
    hours = sum(len(stems[sources[0]]) for stems in library) / 44100 / 3600

    samples = int(args.seconds * 44100)
    augmentation = data.Augmentation(silence_threshold=-60.0)
    batches = iter(data.training_dataset(library, sources, samples, args.batch_size, augmentation=augmentation))
    pipeline = chunks_per_second(args.batches, args.batch_size, lambda: next(batches))

    model = build_model(args.architecture)
    model.compile(optimizer="adam", loss={s: "mae" for s in sources})
    mixture, stems = next(batches)
    training = chunks_per_second(max(3, args.batches // 5), args.batch_size,
                                 lambda: model.train_on_batch(mixture, stems))

    print(f"{bench.machine()}\n{len(tracks)} tracks, {hours * 60:.1f} min of audio, {args.threads} threads")
    for name, seconds in decode_times.items():
        print(f"decoding {len(paths)} stem files with {name}: {min(seconds):.2f} s (best of 2 warm runs)")
    print(f"pipeline ({args.seconds:g} s chunks, remix, gain, swap, silence skip): {pipeline:.1f} chunks/s")
    print(f"{args.architecture} train step at batch {args.batch_size}: {training:.2f} chunks/s")
    print(f"pipeline / training: {pipeline / training:.1f}x")


if __name__ == "__main__":
    main()

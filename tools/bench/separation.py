"""What the benchmarks time of tfsep's separation: the noise they separate, TensorFlow's threads, and one
separation through `Separator.separate` or through each form a model is exported in.

TensorFlow and tfsep are imported when a function is called, so that a process that only takes workers in
turn (`bench.workers`) holds none.
"""

import numpy as np

RATE = 44100


def noise(seconds, amplitude=0.5, seed=0, rate=RATE):
    """float32 (samples, 2): `seconds` of uniform stereo noise in ±`amplitude` at `rate`."""
    return np.random.default_rng(seed).uniform(-amplitude, amplitude, (int(seconds * rate), 2)).astype(np.float32)


def set_threads(threads):
    """TensorFlow's intra- and inter-op threads, before it first runs anything."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def separate_run(path=None, seconds=60.0, threads=2, amplitude=0.5, **options):
    """A zero-argument callable: `Separator.load(path, threads=threads, **options).separate` of `seconds` of stereo
    44.1 kHz noise, by default with its default chunks, what `tfsep separate` runs (`path` None: the shipped model,
    in its TFLite form where LiteRT is installed; a `.tflite` path runs in LiteRT)."""
    from tfsep.separate import Separator

    separator = Separator.load(path, threads=threads, **options)
    mixture = noise(seconds, amplitude)
    return lambda: separator.separate(mixture, RATE)


def form_run(form, path, seconds=60.0, threads=2):
    """A zero-argument callable that separates `seconds` of stereo 44.1 kHz noise through `form` of the model at
    `path`: `separator`, `separate_run`; `keras`, the .keras model as one traced tf.function call on the whole
    signal; `savedmodel`, the SavedModel's `serving_default` signature (tf.saved_model.load, as TF Serving runs
    it); `tflite`, the .tflite file in LiteRT, one whole-signal call. TensorFlow is loaded, on `threads` threads,
    for every form."""
    import tensorflow as tf

    set_threads(threads)
    if form == "separator":
        return separate_run(path, seconds, threads)
    waveform = noise(seconds)[None]
    if form == "keras":
        import tfsep

        run = tf.function(tfsep.load_model(path), input_signature=[tf.TensorSpec((None, None, 2), tf.float32)])
        return lambda: {k: v.numpy() for k, v in run(tf.constant(waveform)).items()}
    if form == "savedmodel":
        serve = tf.saved_model.load(path).signatures["serving_default"]
        return lambda: {k: v.numpy() for k, v in serve(waveform=tf.constant(waveform)).items()}
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path, num_threads=threads).get_signature_runner("serving_default")
    return lambda: runner(waveform=waveform)

"""The real FFT as the TFLite form runs it: a tf.function of frames, converted to TFLite's builtin ops alone
(RFFT2D) and run in LiteRT. `tools/bench_fft.py` times it beside other forms, `tools/profile_separate.py
--litert` as a share of the model's calls."""


def rfft_function(n_fft, parts=("real", "imag")):
    """A tf.function of float32 frames (rows, n_fft), its input named `frames`: {part: (rows, n_fft // 2 + 1)} of
    `tf.signal.rfft`, for each of `parts` ("real", "imag")."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None, n_fft), tf.float32, name="frames")])
    def rfft(frames):
        spectrum = tf.signal.rfft(frames)
        return {part: getattr(tf.math, part)(spectrum) for part in parts}

    return rfft


def builtin_tflite(function):
    """The TFLite flatbuffer of `function`, a tf.function with one input signature, in builtin ops alone."""
    import tensorflow as tf

    holder = tf.Module()  # the converter keeps the function's variables through a trackable that holds it
    holder.function = function
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], holder)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def litert_runner(flatbuffer, threads):
    """A LiteRT signature runner of `flatbuffer` on `threads` threads: inputs by name in, {output: array} out."""
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=flatbuffer, num_threads=threads).get_signature_runner()

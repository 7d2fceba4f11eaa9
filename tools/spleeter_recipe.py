"""The real Spleeter 2.4.2 (TensorFlow 2.12.1), run in the peer environment of `tools/peers.py`.

Not a tfsep module: it imports spleeter, and runs only in `.venv-spleeter`:

    .venv-spleeter/bin/python tools/spleeter_recipe.py separate CHECKPOINT_DIR CONFIG IN.npy OUT.npz [--graph]
    .venv-spleeter/bin/python tools/spleeter_recipe.py write-checkpoint CONFIG OUT_DIR [--seed N]
    .venv-spleeter/bin/python tools/spleeter_recipe.py bench CHECKPOINT_DIR CONFIG [--seconds S] [--graph]

CONFIG names one of Spleeter's embedded configurations (`2stems`, `4stems`, `5stems`, and their
`-16kHz` forms). CHECKPOINT_DIR holds a checkpoint (`model.index`, `model.data-*`).

`separate` separates the float32 (samples, channels) waveform in IN.npy and writes one array
per instrument to OUT.npz: by default through Spleeter's public `Separator.separate()`; with
`--graph`, through Spleeter's own prediction graph (`EstimatorSpecBuilder`), built once in a
session, which is what `separate()` computes without rebuilding it on every call.

`write-checkpoint` builds Spleeter's own graph for CONFIG, so that its variables take the
names, order and shapes that Spleeter gives them, fills them with random values (batch
norm statistics included, so that none is an identity), and saves them with Spleeter's
Saver as OUT_DIR/model (plus the `.probe` file that stops Spleeter from downloading).

`bench` is a timing worker for `tools/bench_peers.py` on S seconds of stereo noise: it
prints "ready" after a warm-up separation, then one time in seconds per "run" line on
stdin, and its peak RSS in bytes on "stop".
"""

import argparse
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def configuration(name):
    from spleeter.utils.configuration import load_configuration

    return load_configuration(f"spleeter:{name}")


class GraphSeparator:
    """Spleeter's prediction graph for `config`, built once, with the checkpoint in `folder` restored."""

    def __init__(self, folder, config):
        from spleeter.model import EstimatorSpecBuilder

        params = {**configuration(config), "MWF": False}
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.waveform = tf.compat.v1.placeholder(tf.float32, (None, params["n_channels"]), name="waveform")
            self.outputs = EstimatorSpecBuilder({"waveform": self.waveform}, params).outputs
            self.session = tf.compat.v1.Session(graph=self.graph)
            tf.compat.v1.train.Saver().restore(self.session, str(Path(folder) / "model"))

    def __call__(self, waveform):
        return self.session.run(self.outputs, {self.waveform: waveform})


class PublicSeparator:
    """Spleeter's public `Separator(...).separate()` on the checkpoint in `folder`, which it never downloads."""

    def __init__(self, folder, config):
        self.models = tempfile.mkdtemp()
        model_dir = configuration(config)["model_dir"]
        shutil.copytree(folder, Path(self.models) / model_dir)
        (Path(self.models) / model_dir / ".probe").write_text("OK")
        os.environ["MODEL_PATH"] = self.models  # read when spleeter.model.provider is first imported
        from spleeter.separator import Separator

        self.separator = Separator(f"spleeter:{config}", multiprocess=False)

    def __call__(self, waveform):
        return self.separator.separate(waveform)


def make_separator(folder, config, graph):
    return (GraphSeparator if graph else PublicSeparator)(folder, config)


def run_separate(args):
    waveform = np.load(args.input).astype(np.float32)
    stems = make_separator(args.checkpoint, args.config, args.graph)(waveform)
    np.savez(args.output, **{name: np.asarray(stem, np.float32) for name, stem in stems.items()})


def run_write_checkpoint(args):
    from spleeter.model import EstimatorSpecBuilder

    params = {**configuration(args.config), "MWF": False}
    rng = np.random.default_rng(args.seed)
    with tf.Graph().as_default():
        tf.compat.v1.train.get_or_create_global_step()
        waveform = tf.compat.v1.placeholder(tf.float32, (None, params["n_channels"]), name="waveform")
        _ = EstimatorSpecBuilder({"waveform": waveform}, params).outputs
        variables = tf.compat.v1.global_variables()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            for variable in variables:
                name, shape = variable.op.name, variable.shape.as_list()
                if name.endswith("moving_mean") or name.endswith("beta"):
                    variable.load(rng.normal(0.0, 0.1, shape).astype(np.float32), session)
                elif name.endswith("moving_variance") or name.endswith("gamma"):
                    variable.load(rng.uniform(0.5, 1.5, shape).astype(np.float32), session)
            out = Path(args.output)
            out.mkdir(parents=True, exist_ok=True)
            tf.compat.v1.train.Saver().save(session, str(out / "model"))
    (out / ".probe").write_text("OK")
    print(f"wrote {len(variables)} variables to {out / 'model'}")


def run_bench(args):
    from bench.workers import serve_lines

    separate = make_separator(args.checkpoint, args.config, args.graph)
    mixture = np.random.default_rng(0).uniform(-0.5, 0.5, (int(args.seconds * 44100), 2)).astype(np.float32)
    serve_lines(lambda: separate(mixture))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    separate, write, bench = (commands.add_parser(name) for name in ("separate", "write-checkpoint", "bench"))
    for command in (separate, bench):
        command.add_argument("checkpoint")
        command.add_argument("config")
        command.add_argument("--graph", action="store_true", help="Spleeter's graph, built once (default: separate())")
    separate.add_argument("input")
    separate.add_argument("output")
    write.add_argument("config")
    write.add_argument("output")
    write.add_argument("--seed", type=int, default=0)
    bench.add_argument("--seconds", type=float, default=60.0)
    bench.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.command == "bench":
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    {"separate": run_separate, "write-checkpoint": run_write_checkpoint, "bench": run_bench}[args.command](args)


if __name__ == "__main__":
    main()

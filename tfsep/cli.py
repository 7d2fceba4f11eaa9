"""The `tfsep` command: a thin argument shell over the package's functions.

Errors reach the user as one line on stderr and a non-zero exit; `--debug` shows the traceback.
"""

import argparse
import sys

import tfsep


def run_info(args):
    import keras
    import numpy as np
    import tensorflow as tf

    from tfsep import audio, networks

    print(f"tfsep {tfsep.__version__}")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__} ({keras.backend.backend()}), NumPy {np.__version__}")
    print(f"tensorflow-io: {audio.tensorflow_io_status()}")
    gpus = tf.config.list_physical_devices("GPU")
    print(f"GPUs: {len(gpus) or 'none'}")
    print(f"architectures: {', '.join(sorted(networks.NETWORKS))}; sizes: tiny, small, base")
    return 0


def run_render_dataset(args):
    from tfsep.render import render_dataset

    folders = render_dataset(args.out, args.layout, args.tracks, args.seed, args.jobs)
    print(f"rendered {len(folders)} tracks into {args.out}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="tfsep", description="Music source separation with TensorFlow and Keras.")
    parser.add_argument("--version", action="version", version=f"tfsep {tfsep.__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = commands.add_parser("info", help="versions, tensorflow-io and GPU status, architectures")
    info.set_defaults(run=run_info)

    render = commands.add_parser(
        "render-dataset", help="render a multitrack data set from Bach chorales with FluidSynth",
        description="Render OUT/{train,valid,test}/<track>/{mixture,<stems>}.wav from music21's Bach chorales. "
        "Needs fluidsynth and General MIDI soundfonts (apt-get install fluidsynth fluid-soundfont-gm "
        "timgm6mb-soundfont). Tracks already in OUT from the same settings are kept.",
    )
    render.add_argument("out", help="output folder")
    render.add_argument("--layout", choices=["band", "satb"], default="band",
                        help="band: vocals, drums, bass, other; satb: soprano, alto, tenor, bass")
    render.add_argument("--tracks", type=int, default=10, help="number of tracks, 10%% each go to valid and test")
    render.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    render.add_argument("--jobs", type=int, default=2, help="tracks rendered at once")
    render.set_defaults(run=run_render_dataset)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("tfsep: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        print(f"tfsep: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

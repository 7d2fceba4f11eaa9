"""The `tfsep` command: a thin argument shell over the package's functions.

Errors reach the user as one line on stderr and a non-zero exit; `--debug` shows the traceback.
"""

import argparse
import sys

import tfsep


def tensorflow_io_status():
    """One line on tensorflow-io: not installed, installed with working kernels, or broken."""
    try:
        import tensorflow as tf
        import tensorflow_io as tfio
    except ImportError:
        return "not installed"
    try:
        tfio.audio.resample(tf.zeros([8, 1]), rate_in=8, rate_out=4)
    except Exception as error:  # its kernels fail to load on TensorFlow >= 2.18
        return f"{tfio.__version__} installed, but its kernels do not load here ({type(error).__name__})"
    return f"{tfio.__version__}, kernels load"


def run_info(args):
    import keras
    import numpy as np
    import tensorflow as tf

    from tfsep import networks

    print(f"tfsep {tfsep.__version__}")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__} ({keras.backend.backend()}), NumPy {np.__version__}")
    print(f"tensorflow-io: {tensorflow_io_status()}")
    gpus = tf.config.list_physical_devices("GPU")
    print(f"GPUs: {len(gpus) or 'none'}")
    print(f"architectures: {', '.join(sorted(networks.NETWORKS))}; sizes: tiny, small, base")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="tfsep", description="Music source separation with TensorFlow and Keras.")
    parser.add_argument("--version", action="version", version=f"tfsep {tfsep.__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = commands.add_parser("info", help="versions, tensorflow-io and GPU status, architectures")
    info.set_defaults(run=run_info)
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

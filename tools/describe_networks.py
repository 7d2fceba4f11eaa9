"""Parameters and multiply-adds per second of audio for every architecture and size.

    python tools/describe_networks.py [--sizes tiny small base] [--seconds 10]

Multiply-adds are counted from each layer's weights and its real input and output shapes
on `--seconds` of stereo 44.1 kHz audio with the default STFT (n_fft 4096, hop 1024,
16 kHz bandwidth), then divided by the duration. They cover the mask network's dense,
convolution, LSTM and band layers; the STFT, inverse STFT and element-wise ops are left out.
Prints a markdown table.
"""

import argparse

import numpy as np

from tfsep import networks
from tfsep._keras import keras
from tfsep.models import build_model

layers = keras.layers
COUNTED = (
    layers.Dense,
    layers.Conv2D,
    layers.Conv2DTranspose,
    layers.DepthwiseConv2D,
    layers.Bidirectional,
    networks.bandconv.BandSplit,
    networks.bandconv.BandMerge,
)



def layer_macs(layer, inputs, outputs):
    """Multiply-adds of one call of `layer`, from its concrete input and output arrays (batch 1)."""
    if isinstance(layer, (networks.bandconv.BandSplit, networks.bandconv.BandMerge)):
        return outputs.shape[1] * sum(int(np.prod(kernel.shape)) for kernel in layer.kernels)
    if isinstance(layer, layers.Dense):
        return int(np.prod(outputs.shape[1:-1])) * int(np.prod(layer.kernel.shape))
    if isinstance(layer, layers.DepthwiseConv2D):
        return int(np.prod(outputs.shape[1:])) * int(np.prod(layer.kernel.shape[:2]))
    if isinstance(layer, layers.Conv2DTranspose):
        return int(np.prod(inputs.shape[1:3])) * int(np.prod(layer.kernel.shape))
    if isinstance(layer, layers.Conv2D):
        return int(np.prod(outputs.shape[1:3])) * int(np.prod(layer.kernel.shape))
    if isinstance(layer, layers.Bidirectional):
        lstm = layer.forward_layer
        features, units = inputs.shape[-1], lstm.units
        return 2 * inputs.shape[1] * 4 * (features + units) * units
    return 0


def count_macs(model, seconds):
    """Multiply-adds per second of audio of `model`'s network on `seconds` of noise."""
    counted = [
        layer
        for layer in model.layers
        if isinstance(layer, COUNTED)
    ]
    probe = keras.Model(model.input, [tensor for layer in counted for tensor in (layer.input, layer.output)])
    mixture = np.random.default_rng(0).uniform(-0.5, 0.5, (1, int(seconds * model.sample_rate), 2))
    values = probe.predict(mixture.astype(np.float32), verbose=0)
    total = sum(layer_macs(layer, values[2 * i], values[2 * i + 1]) for i, layer in enumerate(counted))
    return total / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small", "base"])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print("| architecture | size | options | parameters | multiply-adds per second of audio |")
    print("| --- | --- | --- | ---: | ---: |")
    for architecture in sorted(networks.NETWORKS):
        for size in args.sizes:
            model = build_model(architecture, size=size)
            options = ", ".join(f"{k}={v}" for k, v in networks.network_options(architecture, size).items())
            macs = count_macs(model, args.seconds)
            print(f"| `{architecture}` | {size} | {options} | "
                  f"{model.count_params() / 1e6:.2f} M | {macs / 1e6:,.0f} M |")


if __name__ == "__main__":
    main()

"""Open-Unmix's own model code, run in the peer environment of `tools/peers.py`, for tfsep's conversion tests.

Not a tfsep module (it imports torch and openunmix):

    .venv-openunmix/bin/python tools/openunmix_reference.py write FOLDER --hidden H --seed S
    .venv-openunmix/bin/python tools/openunmix_reference.py separate MIXTURE.npy OUT.npz FILE.pth... --niter N

`write` saves one random-weight `OpenUnmix` per target (hidden size H, n_fft 4096, 2 channels, 16 kHz
bandwidth, as `openunmix.umxhq_spec` builds them) with `torch.save(model.state_dict())` as
FOLDER/<target>-00000000.pth. Every parameter and buffer is randomised, the input and output means and scales
and the batch norms' statistics included, so that no weight is the identity that its initialisation gives.

`separate` loads the files into `OpenUnmix` models (the target is the name before the first `-` or `.`) and
runs openunmix's `Separator` as `openunmix.umxhq()` builds it (softmask=False, residual=False,
wiener_win_len=300, n_fft 4096, hop 1024, torch filterbank), with `niter` N, on MIXTURE.npy (samples,
channels); OUT.npz holds {target: (samples, channels)}.
"""

import argparse
import re
import sys
import types
from pathlib import Path

sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))  # only used for file I/O

import numpy as np  # noqa: E402
import torch  # noqa: E402
from openunmix import model, utils  # noqa: E402

TARGETS = ("vocals", "drums", "bass", "other")
RATE, N_FFT, HOP, CHANNELS, BANDWIDTH = 44100.0, 4096, 1024, 2, 16000


def target_model(hidden):
    max_bin = utils.bandwidth_to_max_bin(rate=RATE, n_fft=N_FFT, bandwidth=BANDWIDTH)
    return model.OpenUnmix(nb_bins=N_FFT // 2 + 1, nb_channels=CHANNELS, hidden_size=hidden, max_bin=max_bin)


def randomised(unmix, generator):
    """`unmix` with every parameter and buffer drawn at random, around values a trained model could have."""
    def uniform(tensor, low, high):
        tensor.copy_(low + (high - low) * torch.rand(tensor.shape, generator=generator))

    with torch.no_grad():
        uniform(unmix.input_mean, -1.0, 0.0)  # stores −mean
        uniform(unmix.input_scale, 0.5, 2.0)  # stores 1 / scale
        uniform(unmix.output_scale, 0.5, 1.5)
        uniform(unmix.output_mean, -0.5, 1.5)
        for norm in (unmix.bn1, unmix.bn2, unmix.bn3):
            uniform(norm.weight, 0.5, 1.5)
            uniform(norm.bias, -0.2, 0.2)
            uniform(norm.running_mean, -0.3, 0.3)
            uniform(norm.running_var, 0.5, 2.0)
        for name, parameter in unmix.named_parameters():
            if name.startswith(("fc", "lstm")):
                bound = 1.0 / np.sqrt(parameter.shape[-1])
                uniform(parameter, -bound, bound)
    return unmix.eval()


def write(args):
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(args.seed)
    for target in args.targets:
        torch.save(randomised(target_model(args.hidden), generator).state_dict(), folder / f"{target}-00000000.pth")


def separate(args):
    target_models = {}
    for path in args.files:
        state = torch.load(path, map_location="cpu", weights_only=True)
        unmix = target_model(state["fc1.weight"].shape[0])
        unmix.load_state_dict(state)
        target_models[re.split(r"[-.]", Path(path).name, maxsplit=1)[0]] = unmix.eval()
    separator = model.Separator(target_models, niter=args.niter, softmask=False, residual=False, sample_rate=RATE,
                                n_fft=N_FFT, n_hop=HOP, nb_channels=CHANNELS, wiener_win_len=args.wiener_win_len,
                                filterbank="torch").eval()
    mixture = torch.from_numpy(np.load(args.mixture).T.copy())[None]  # (1, channels, samples)
    with torch.no_grad():
        estimates = separator(mixture)[0].numpy()  # (targets, channels, samples)
    np.savez(args.output, **{target: estimates[k].T for k, target in enumerate(target_models)})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("write")
    command.add_argument("folder")
    command.add_argument("--hidden", type=int, default=512)
    command.add_argument("--seed", type=int, default=0)
    command.add_argument("--targets", nargs="+", default=list(TARGETS))
    command.set_defaults(run=write)
    command = commands.add_parser("separate")
    command.add_argument("mixture")
    command.add_argument("output")
    command.add_argument("files", nargs="+")
    command.add_argument("--niter", type=int, default=1)
    command.add_argument("--wiener-win-len", type=int, default=300)
    command.set_defaults(run=separate)
    args = parser.parse_args()
    torch.set_num_threads(2)
    args.run(args)


if __name__ == "__main__":
    main()

"""Open-Unmix's own training step, as its `scripts/train.py` runs it, timed on random audio.

Run by `tools/bench_train.py` in the peer environment of `tools/peers.py`:

    .venv-openunmix/bin/python tools/openunmix_train_step.py --batch 16 --seconds 6 --steps 3

One step trains one target model (Open-Unmix trains one model per source): STFT and
magnitude of mixture and target (batch, channels, samples), the model, MSE on magnitudes,
Adam with weight decay 1e-5. Prints one JSON line: step seconds (median), params, peak RSS in bytes.
"""

import argparse
import json
import sys
import types

sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))  # only used for file I/O

import bench  # noqa: E402
import torch  # noqa: E402
from openunmix import model, transforms, utils  # noqa: E402


def step(unmix, encoder, optimizer, mixture, target):
    """One training step of `unmix` on (batch, channels, samples) `mixture` and `target`: MSE on magnitudes."""
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(unmix(encoder(mixture)), encoder(target))
    loss.backward()
    optimizer.step()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    rate, n_fft, hop = 44100, 4096, 1024
    stft, _ = transforms.make_filterbanks(n_fft=n_fft, n_hop=hop, sample_rate=rate)
    encoder = torch.nn.Sequential(stft, model.ComplexNorm(mono=False))
    unmix = model.OpenUnmix(nb_bins=n_fft // 2 + 1, nb_channels=2, hidden_size=512,
                            max_bin=utils.bandwidth_to_max_bin(rate, n_fft, 16000))
    optimizer = torch.optim.Adam(unmix.parameters(), lr=1e-3, weight_decay=1e-5)
    samples = int(args.seconds * rate)
    target = 0.1 * torch.randn(args.batch, 2, samples)
    mixture = target + 0.1 * torch.randn(args.batch, 2, samples)

    unmix.train()
    steps = {"step": lambda: step(unmix, encoder, optimizer, mixture, target)}
    print(json.dumps({
        "step_seconds": bench.median_seconds(steps, args.steps)["step"],  # after a warm-up step
        "params": sum(p.numel() for p in unmix.parameters() if p.requires_grad),
        "peak_rss": bench.peak_rss(),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()

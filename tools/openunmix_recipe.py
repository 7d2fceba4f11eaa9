"""Open-Unmix's own training recipe and separator, run in the peer environment of `tools/peers.py`.

Called by `tools/train_openunmix.py`; not a tfsep module (it imports torch and openunmix):

    .venv-openunmix/bin/python tools/openunmix_recipe.py train ROOT OUT --minutes M
    .venv-openunmix/bin/python tools/openunmix_recipe.py separate ROOT OUT ESTIMATES --niter N
    .venv-openunmix/bin/python tools/openunmix_recipe.py bench --niter N --seconds S [--weights TARGET.pth ...]

`train` follows Open-Unmix 1.3's `scripts/train.py` with its MUSDB18 data set defaults,
on a MUSDB18-HQ-like tree (ROOT/train, ROOT/valid with one wav per source): one model per
target, hidden size 512, 16 kHz bandwidth, n_fft 4096, hop 1024, input mean/scale from the
training mixtures' magnitudes, batch 16 of 6 s excerpts, 64 excerpts per track and epoch,
every source from a random track at a random start ("random track mix") with gain
0.25–1.25 and channel swap, MSE on magnitudes, Adam (lr 1e-3, weight decay 1e-5),
ReduceLROnPlateau (factor 0.3, patience 80, cooldown 10) on the validation loss over full
validation tracks, the best epoch's weights kept. The one change: a budget of wall time
for all targets (input statistics included), split evenly over the targets; when a
target's share runs out mid-epoch, the epoch ends there with its validation. CPU time is
recorded beside it, since other work on the machine slows the run down.

`separate` writes ESTIMATES/<track>/<source>.wav for ROOT/test with openunmix's `Separator`
(`niter` 0: soft masks; 1: its default Wiener step), for `tfsep evaluate --estimates`.

`bench` is a timing worker for `tools/bench_peers.py`: openunmix's `umxhq` Separator with
random weights (pretrained ones cannot be downloaded here) on S seconds of stereo noise; with
`--weights`, each target's state dict is loaded from its file (the target is the name before
the first `-` or `.`), so that tfsep's conversion of the same files can be timed beside it.
It prints "ready" after a warm-up separation, then one time in seconds per "run" line on
stdin, and its peak RSS in bytes on "stop".
"""

import argparse
import json
import random
import sys
import time
import types
from pathlib import Path

sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))  # only used for file I/O

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import torch  # noqa: E402
from bench.workers import serve_lines  # noqa: E402
from openunmix import data, model, transforms, utils  # noqa: E402

SOURCES = ("vocals", "drums", "bass", "other")
RATE, N_FFT, HOP, HIDDEN, BANDWIDTH, CHANNELS = 44100, 4096, 1024, 512, 16000, 2
SEQ_SECONDS, BATCH, SAMPLES_PER_TRACK = 6.0, 16, 64


def tracks(root, subset):
    """Track folders of ROOT/subset that hold a wav for every source."""
    folders = sorted(p for p in (Path(root) / subset).iterdir() if p.is_dir())
    return [p for p in folders if all((p / f"{s}.wav").is_file() for s in SOURCES)]


def read(path, start=0, frames=-1):
    """(channels, samples) float32 tensor."""
    audio, _ = soundfile.read(path, start=start, frames=frames, dtype="float32", always_2d=True)
    return torch.from_numpy(audio.T.copy())


class RandomMixes(torch.utils.data.Dataset):
    """Open-Unmix's MUSDB training set: per item, each source from a random track at a random start."""

    def __init__(self, folders, target):
        self.folders, self.target = folders, target
        self.frames = {p: soundfile.info(p / "mixture.wav").frames for p in folders}
        self.augment = data.aug_from_str(["gain", "channelswap"])

    def __len__(self):
        return len(self.folders) * SAMPLES_PER_TRACK

    def __getitem__(self, index):
        length = int(SEQ_SECONDS * RATE)
        stems = []
        for source in SOURCES:
            folder = random.choice(self.folders)
            start = int(random.uniform(0, self.frames[folder] / RATE - SEQ_SECONDS) * RATE)
            stems.append(self.augment(read(folder / f"{source}.wav", start, length)))
        stems = torch.stack(stems)
        return stems.sum(0), stems[SOURCES.index(self.target)]


def input_statistics(encoder, folders):
    """Mean and scale per bin of the mono-downmixed mixture magnitude over all training frames."""
    total, squares, count = 0.0, 0.0, 0
    with torch.no_grad():
        for folder in folders:
            X = encoder(read(folder / "mixture.wav")[None]).mean(1)[0].T.double().numpy()  # (frames, bins)
            total, squares, count = total + X.sum(0), squares + (X ** 2).sum(0), count + len(X)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 0))
    return mean, np.maximum(std, 1e-4 * std.max())


def validation_loss(unmix, encoder, folders, target):
    unmix.eval()
    with torch.no_grad():
        losses = [torch.nn.functional.mse_loss(unmix(encoder(read(p / "mixture.wav")[None])),
                                               encoder(read(p / f"{target}.wav")[None])).item() for p in folders]
    unmix.train()
    return float(np.mean(losses))


def train_target(target, root, out, seconds, mean, scale, encoder, log):
    torch.manual_seed(42)
    random.seed(42)
    train, valid = tracks(root, "train"), tracks(root, "valid")
    loader = torch.utils.data.DataLoader(RandomMixes(train, target), batch_size=BATCH, shuffle=True)
    unmix = model.OpenUnmix(input_mean=mean, input_scale=scale, nb_bins=N_FFT // 2 + 1, nb_channels=CHANNELS,
                            hidden_size=HIDDEN, max_bin=utils.bandwidth_to_max_bin(RATE, N_FFT, BANDWIDTH))
    optimizer = torch.optim.Adam(unmix.parameters(), lr=1e-3, weight_decay=1e-5)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.3, patience=80, cooldown=10)
    start, cpu, steps, history, best = time.time(), time.process_time(), 0, [], float("inf")
    unmix.train()
    while time.time() - start < seconds:
        losses = []
        for x, y in loader:
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(unmix(encoder(x)), encoder(y))
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            steps += 1
            if time.time() - start >= seconds:
                break
        valid_loss = validation_loss(unmix, encoder, valid, target)
        scheduler.step(valid_loss)
        history.append({"epoch": len(history) + 1, "steps": steps, "train_loss": float(np.mean(losses)),
                        "valid_loss": valid_loss, "wall_seconds": time.time() - start,
                        "cpu_seconds": time.process_time() - cpu})
        log(f"{target}: epoch {len(history)}, {steps} steps, train {history[-1]['train_loss']:.4f}, "
            f"valid {valid_loss:.4f}, {history[-1]['wall_seconds'] / 60:.1f} min")
        if valid_loss < best:
            best = valid_loss
            torch.save(unmix.state_dict(), out / f"{target}.pth")
    args = {"nfft": N_FFT, "nhop": HOP, "hidden_size": HIDDEN, "nb_channels": CHANNELS, "bandwidth": BANDWIDTH,
            "batch_size": BATCH, "seq_dur": SEQ_SECONDS, "samples_per_track": SAMPLES_PER_TRACK}
    (out / f"{target}.json").write_text(json.dumps({"args": args, "history": history, "best_loss": best}, indent=2))
    return history


def run_train(args):
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = lambda line: print(line, flush=True)  # noqa: E731
    stft, _ = transforms.make_filterbanks(n_fft=N_FFT, n_hop=HOP, sample_rate=RATE)
    encoder = torch.nn.Sequential(stft, model.ComplexNorm(mono=False))
    start, cpu = time.time(), time.process_time()
    mean, scale = input_statistics(encoder, tracks(args.root, "train"))
    log(f"input statistics: {(time.time() - start) / 60:.1f} min")
    for k, target in enumerate(SOURCES):
        budget = (args.minutes * 60 - (time.time() - start)) / (len(SOURCES) - k)
        train_target(target, args.root, out, budget, mean, scale, encoder, log)
    summary = {"wall_minutes": (time.time() - start) / 60, "cpu_minutes": (time.process_time() - cpu) / 60,
               "threads": args.threads, "torch": torch.__version__}
    (out / "separator.json").write_text(json.dumps({"nfft": N_FFT, "nhop": HOP, "sample_rate": RATE,
                                                    "nb_channels": CHANNELS, "training": summary}, indent=2))
    log(json.dumps(summary))


def run_separate(args):
    torch.set_num_threads(args.threads)
    models = utils.load_target_models(list(SOURCES), model_str_or_path=args.out, device="cpu")
    separator = model.Separator(models, niter=args.niter, sample_rate=RATE, n_fft=N_FFT, n_hop=HOP,
                                nb_channels=CHANNELS)
    separator.freeze()
    seconds = 0.0
    for folder in tracks(args.root, "test"):
        mixture = read(folder / "mixture.wav")
        begin = time.perf_counter()
        with torch.no_grad():
            estimates = separator(mixture[None])[0]  # (targets, channels, samples)
        seconds += time.perf_counter() - begin
        target = Path(args.estimates) / folder.name
        target.mkdir(parents=True, exist_ok=True)
        for k, source in enumerate(SOURCES):
            soundfile.write(target / f"{source}.wav", estimates[k].T.numpy(), RATE, subtype="FLOAT")
    print(json.dumps({"separate_seconds": seconds, "niter": args.niter}), flush=True)


def run_bench(args):
    import openunmix

    torch.set_num_threads(args.threads)
    separator = openunmix.umxhq(niter=args.niter, pretrained=False, device="cpu")
    for path in args.weights:
        target = Path(path).name.replace(".", "-").split("-")[0]
        separator.target_models[target].load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    separator.freeze()
    mixture = torch.from_numpy(np.random.default_rng(0).uniform(-0.5, 0.5, (1, 2, int(args.seconds * RATE)))
                               .astype(np.float32))
    with torch.no_grad():
        serve_lines(lambda: separator(mixture))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train")
    train.add_argument("root")
    train.add_argument("out")
    train.add_argument("--minutes", type=float, required=True, help="wall time for all four targets")
    separate = commands.add_parser("separate")
    separate.add_argument("root")
    separate.add_argument("out")
    separate.add_argument("estimates")
    separate.add_argument("--niter", type=int, default=1)
    bench = commands.add_parser("bench")
    bench.add_argument("--niter", type=int, default=1)
    bench.add_argument("--seconds", type=float, default=60.0)
    bench.add_argument("--weights", nargs="*", default=[], help="TARGET.pth state dicts to load (random otherwise)")
    for command in (train, separate, bench):
        command.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    {"train": run_train, "separate": run_separate, "bench": run_bench}[args.command](args)


if __name__ == "__main__":
    main()

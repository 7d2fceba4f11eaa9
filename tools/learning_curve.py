"""Learning curves: validation SDR per source before training and after every epoch of a config's run, or
the mean validation SDR of several runs against their training time.

    python tools/learning_curve.py configs/band.yaml data.root=data/band20 schedule.epochs=10
    python tools/learning_curve.py --runs runs/bandconv runs/umx runs/unet --plot curves.png

The "before" row is the untrained model with its input normalisation already set from the
training data, exactly as `tfsep train` starts; the run itself is a plain `tfsep.train`.
Prints a markdown table and the training wall time.

`--runs` reads the `history.csv` of runs, finished or still going (its `minutes` column is
the training time after each epoch, validation included), prints each run's best mean
validation SDR by the same training time, and with `--plot` draws the curves.
"""

import argparse
import csv
import time
from pathlib import Path

from tfsep import config as configuration
from tfsep import train as training


def untrained_validation_sdr(config):
    """{source: global SDR} of the model `train(config)` starts from, on the validation set."""
    model = training.build_separation_model(config)
    train_batches, validation = training.make_datasets(config, progress=False)
    training.set_input_normalization(model, train_batches.take(config.schedule.normalization_batches))
    trainer = training.training_model(model, magnitudes=False)
    training.compile_model(trainer, configuration.load_config(config, ["loss.magnitude=0", "loss.l1=1"]))
    logs = trainer.evaluate(validation, verbose=0, return_dict=True)
    return {source: logs[f"{source}_sdr"] for source in config.data.sources}


def read_curve(run):
    """(minutes, mean validation SDR) after each epoch of the run in folder `run`."""
    with open(Path(run) / "history.csv", newline="") as file:
        rows = [row for row in csv.DictReader(file) if row.get("minutes") and row.get("val_sdr")]
    return [float(row["minutes"]) for row in rows], [float(row["val_sdr"]) for row in rows]


def compare_runs(runs, plot=None):
    """Print each run's best mean validation SDR within the shortest run's time and overall; plot the curves."""
    curves = {Path(run).name: read_curve(run) for run in runs}
    common = min(minutes[-1] for minutes, _ in curves.values() if minutes)
    print(f"| run | epochs | minutes | best val SDR within {common:.0f} min | best val SDR |")
    print("|---|---:|---:|---:|---:|")
    for name, (minutes, sdrs) in curves.items():
        within = max(s for m, s in zip(minutes, sdrs) if m <= common + 1e-9)
        print(f"| {name} | {len(sdrs)} | {minutes[-1]:.0f} | {within:.2f} | {max(sdrs):.2f} |")
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot

        figure, axes = pyplot.subplots(figsize=(7, 4))
        for name, (minutes, sdrs) in curves.items():
            axes.plot(minutes, sdrs, marker=".", label=name)
        axes.set_xlabel("training time (minutes, validation included)")
        axes.set_ylabel("mean validation global SDR (dB)")
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        figure.savefig(plot, dpi=120)
        print(f"wrote {plot}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")
    parser.add_argument("--runs", nargs="+", help="run folders to compare instead of training")
    parser.add_argument("--plot", help="with --runs: write their curves to this image")
    args = parser.parse_args()
    if args.runs:
        compare_runs(args.runs, args.plot)
        return
    if not args.config:
        parser.error("give a config to train, or --runs")
    config = configuration.load_config(args.config, args.overrides)
    sources = config.data.sources

    rows = [("before", untrained_validation_sdr(config), 0.0)]
    start = time.perf_counter()
    history = training.train(config).history
    elapsed = time.perf_counter() - start
    for epoch in range(len(history["loss"])):
        rows.append((str(epoch + 1), {s: history[f"val_{s}_sdr"][epoch] for s in sources}, None))

    print(f"\n| epoch | {' | '.join(sources)} | mean |\n|---|{'---|' * (len(sources) + 1)}")
    for epoch, sdrs, _ in rows:
        values = [sdrs[s] for s in sources]
        print(f"| {epoch} | {' | '.join(f'{v:.2f}' for v in values)} | {sum(values) / len(values):.2f} |")
    print(f"\ntraining wall time {elapsed / 60:.1f} min ({config.schedule.epochs} epochs x "
          f"{config.data.steps_per_epoch} steps x batch {config.data.batch_size})")


if __name__ == "__main__":
    main()

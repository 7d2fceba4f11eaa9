"""A learning curve: validation SDR per source before training and after every epoch of a config's run.

    python tools/learning_curve.py configs/band.yaml data.root=data/band20 schedule.epochs=10

The "before" row is the untrained model with its input normalisation already set from the
training data, exactly as `tfsep train` starts; the run itself is a plain `tfsep.train`.
Prints a markdown table and the training wall time.
"""

import argparse
import time

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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")
    args = parser.parse_args()
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

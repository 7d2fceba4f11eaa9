"""Evaluate a separator, or an oracle, on a data set: BSSEval v4, global SDR and SI-SDR, with a report.

Conventions:
- BSSEval v4 (museval): SDR, SIR, ISR and SAR over 1 s frames; per track the median
  over frames, then per source the median over tracks (SiSEC).
- Global SDR (MDX/SDX): 10·log10((Σs² + δ) / (Σ(s − ŝ)² + δ)) over the whole track, then
  the mean over tracks. SI-SDR: per track, then the mean over tracks.

museval is slow (about 12 s for a minute of 4 stereo stems), so it runs in worker
processes, one track each, while the main process separates the next track.
"""

import functools
import importlib.util
import json
import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tfsep import audio, bsseval, data, files, metrics
from tfsep.models import SOURCES
from tfsep.oracles import ORACLES, oracle_separate
from tfsep.plots import CEILING_DB, FLOOR_DB, log_spectrogram
from tfsep.separate import Separator

SUMMARY_KEYS = ("SDR", "global_SDR", "SI_SDR", "SIR", "SAR", "ISR")
PLOT_SECONDS = 20.0


def _read_track(track, sources, sample_rate=None):
    """(mixture (samples, channels), references (sources, samples, channels), rate) of a data set track."""
    mixture, stems, rate = data.read_stems(track, sources, sample_rate)
    return mixture, np.stack([stems[source] for source in sources]), rate


def _estimate(separator, oracle, estimates, track, mixture, references, rate):
    """Estimates (sources, samples, channels) of `track` by the separator, the oracle or the estimates folder.

    `oracle` is a function (mixture, references) -> estimates. With an estimates folder, `track`
    is a `data.Track`; its sources are its files' other than the mixture.
    """
    if separator is not None:
        stems = separator.separate(mixture, rate)
        return np.stack([stems[source] for source in separator.sources])
    if oracle is not None:
        return oracle(mixture, references)
    sources = [name for name in track.files if name != "mixture"]
    return _read_estimates(Path(estimates) / track.name, sources, references, rate)


def _read_estimates(folder, sources, references, rate):
    """folder/<source>.wav (or .flac) for each source, at `rate`, checked against its reference's shape."""
    stems = []
    for source, reference in zip(sources, references):
        path = next((folder / f"{source}{ext}" for ext in (".wav", ".flac") if (folder / f"{source}{ext}").is_file()),
                    folder / f"{source}.wav")
        if not path.is_file():
            raise data.DatasetError(f"{path}: no estimate for {source}")
        stem, _ = audio.read(path, rate)
        if stem.shape != reference.shape:
            raise data.DatasetError(f"{path}: estimate has {stem.shape[0]} samples × {stem.shape[1]} channels, "
                                    f"the reference {reference.shape[0]} × {reference.shape[1]}")
        stems.append(stem)
    return np.stack(stems)


def evaluate(dataset, subset="test", model=None, oracle=None, estimates=None, report=None, sources=SOURCES,
             wiener=None, jobs=2, max_tracks=None, n_fft=4096, hop=1024, progress=True, remainder=None,
             griffin_lim=None, consistent=None):
    """Separate every track of `subset` and score it; returns the metrics dict written to `report`/metrics.json.

    Give one of `model` (a model file, a SeparationModel, or a name such as "band", the shipped
    model), `oracle` (irm, ibm or wiener; computed at each track's own rate with
    `n_fft`/`hop`) or `estimates`, a folder of another system's estimates laid out as
    ESTIMATES/<track>/<source>.wav (museval's layout), scored as they are. Model estimates
    are computed at the model's rate and written back at the track's rate, as
    `tfsep separate` does. `remainder` names a source that tracks without a file for it
    take as the mixture minus the other sources (`data.find_tracks`), e.g. `accompaniment`
    for a vocals/accompaniment model on a four-stem set. `wiener`, `griffin_lim` and
    `consistent` set the model's options (`backends.OPTIONS`; None: the model's own);
    `griffin_lim` also refines an oracle's phase.
    """
    for module in ("museval", "matplotlib"):
        if importlib.util.find_spec(module) is None:
            raise ImportError(f"evaluation needs {module}: pip install 'tfsep[evaluate]'")
    if sum(x is not None for x in (model, oracle, estimates)) != 1:
        raise ValueError("give one of a model, an oracle or an estimates folder")
    if estimates is not None and not Path(estimates).is_dir():
        raise data.DatasetError(f"{estimates}: no such estimates folder")
    if oracle is not None and oracle not in ORACLES:
        raise ValueError(f"unknown oracle {oracle!r}; choose one of {list(ORACLES)}")
    separator = None
    label = None
    if oracle is not None:
        label = f"oracle {oracle}" + (f", {griffin_lim} Griffin-Lim iterations" if griffin_lim else "")
        oracle = functools.partial(oracle_separate, oracle, n_fft=n_fft, hop=hop, griffin_lim=griffin_lim or 0)
    if model is not None:
        options = {"wiener_iterations": wiener, "griffin_lim_iterations": griffin_lim, "mixture_consistent": consistent}
        separator = Separator(model, **options) if hasattr(model, "sources") else Separator.load(
            model, **options)
        sources = separator.sources
    sources = tuple(sources)
    tracks = data.find_tracks(dataset, subset, sources, remainder)[:max_tracks]

    results, futures, scored = {}, {}, {}
    context = multiprocessing.get_context("spawn")  # TensorFlow's threads do not survive a fork
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) if jobs > 1 else _InProcess() as pool:
        for track in tqdm(tracks, desc="separating", unit="track", disable=not progress):
            mixture, references, rate = _read_track(track, sources)
            stems = _estimate(separator, oracle, estimates, track, mixture, references, rate)
            global_sdr = metrics.sdr(references, stems).numpy()
            si_sdr = metrics.si_sdr(references, stems).numpy()
            results[track.name] = {source: {"global_SDR": float(global_sdr[k]), "SI_SDR": float(si_sdr[k])}
                                   for k, source in enumerate(sources)}
            futures[track.name] = pool.submit(bsseval.bsseval, references, stems, rate)
            pending = [name for name, future in futures.items() if name not in scored]
            if len(pending) > 2 * jobs:  # a bounded queue: at most 2 × jobs separated tracks wait in memory
                scored[pending[0]] = futures.pop(pending[0]).result()
        for name, future in tqdm(futures.items(), desc="BSSEval v4", unit="track", disable=not progress):
            scored[name] = future.result()
        for name, scores in scored.items():
            for metric, values in scores.items():
                for k, source in enumerate(sources):
                    value = float(values[k])
                    results[name][source][metric] = value if np.isfinite(value) else None  # silent reference

    report_data = {
        "dataset": str(dataset), "subset": subset,
        "separator": label if oracle else f"estimates {estimates}" if estimates is not None
        else str(getattr(model, "name", model)),
        "sources": list(sources), "tracks": results, "summary": summarize(results, sources),
    }
    if report is not None:
        write_report(report, report_data, tracks, separator, oracle, estimates)
    return report_data


class _InProcess:
    """A stand-in for ProcessPoolExecutor that runs each job at once, in this process (jobs=1)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, function, *args):
        future = Future()
        future.set_result(function(*args))
        return future


def summarize(results, sources):
    """Per source and their mean: SDR, SIR, SAR, ISR as the median over tracks; global SDR and SI-SDR as the mean."""
    summary = {}
    for source in sources:
        summary[source] = {}
        for key in SUMMARY_KEYS:
            values = np.array([track[source].get(key) for track in results.values()], float)  # None -> NaN
            aggregate = np.nanmean if key in ("global_SDR", "SI_SDR") else np.nanmedian
            summary[source][key] = float(aggregate(values)) if np.isfinite(values).any() else None
    summary["mean"] = {key: float(np.mean([summary[s][key] for s in sources]))
                       if all(summary[s][key] is not None for s in sources) else None for key in SUMMARY_KEYS}
    return summary


def markdown_table(report_data):
    """The summary as a markdown table, one row per source and a mean row."""
    count = len(report_data["tracks"])
    lines = [f"{report_data['separator']} on {report_data['dataset']} ({report_data['subset']}, "
             f"{count} track{'s' * (count != 1)})", "",
             "| source | SDR | global SDR | SI-SDR | SIR | SAR | ISR |", "| --- |" + " ---: |" * 6]
    for name, values in report_data["summary"].items():
        cells = [f"{values[key]:.2f}" if values[key] is not None else "–" for key in SUMMARY_KEYS]
        lines.append(f"| {'**mean**' if name == 'mean' else name} | " + " | ".join(cells) + " |")
    lines += ["", "SDR, SIR, SAR, ISR: BSSEval v4 (museval), median over 1 s frames, then over tracks. "
              "Global SDR (MDX) and SI-SDR: per track, mean over tracks. All in dB."]
    return "\n".join(lines) + "\n"


def write_report(report_dir, report_data, tracks, separator, oracle, estimates):
    """metrics.json, report.md, sdr_boxplot.png and spectrograms of the best and worst track into `report_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    files.replace_atomically(report_dir / "metrics.json",
                        lambda path: Path(path).write_text(json.dumps(report_data, indent=2, allow_nan=False)))
    files.replace_atomically(report_dir / "report.md", lambda path: Path(path).write_text(markdown_table(report_data)))
    sources = report_data["sources"]
    figure = _boxplot(report_data["tracks"], sources)
    files.replace_atomically(report_dir / "sdr_boxplot.png", lambda path: figure.savefig(path, format="png", dpi=100))
    plt.close(figure)

    by_name = {track.name: track for track in tracks}
    mean_sdr = {name: np.nanmean(np.array([values[s].get("SDR") for s in sources], float))
                for name, values in report_data["tracks"].items()}
    ranked = sorted((name for name in mean_sdr if np.isfinite(mean_sdr[name])), key=mean_sdr.get)
    for label, name in (("worst", ranked[0]), ("best", ranked[-1])) if ranked else ():
        mixture, references, rate = _read_track(by_name[name], sources)
        if estimates is not None:
            stems = _read_estimates(Path(estimates) / name, sources, references, rate)
        keep = int(PLOT_SECONDS * rate)
        mixture, references = mixture[:keep], references[:, :keep]
        if estimates is None:
            stems = _estimate(separator, oracle, None, None, mixture, references, rate)
        figure = _spectrograms(f"{label} track: {name} (mean SDR {mean_sdr[name]:.2f} dB)", mixture, references,
                               stems[:, :keep], sources, rate)
        files.replace_atomically(report_dir / f"spectrograms_{label}.png",
                            lambda path: figure.savefig(path, format="png", dpi=80))
        plt.close(figure)


def _boxplot(results, sources):
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(1.6 * len(sources) + 2, 4))
    values = [[track[s]["SDR"] for track in results.values() if track[s].get("SDR") is not None] for s in sources]
    axes.boxplot(values, showmeans=True)
    axes.set_xticks(range(1, len(sources) + 1), sources)
    axes.set_ylabel("SDR (dB), BSSEval v4 median over frames")
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


def _spectrograms(title, mixture, references, estimates, sources, rate):
    import matplotlib.pyplot as plt

    rows = [("mixture", mixture, None)] + [(s, references[k], estimates[k]) for k, s in enumerate(sources)]
    figure, axes = plt.subplots(len(rows), 2, figsize=(12, 2.2 * len(rows)), squeeze=False)
    extent = [0, len(mixture) / rate, 0, rate / 2000]
    for row, (name, reference, estimate) in enumerate(rows):
        for column, (label, signal) in enumerate((("reference", reference), ("estimate", estimate))):
            ax = axes[row, column]
            if signal is None:
                ax.axis("off")
                continue
            ax.imshow(log_spectrogram(signal), origin="lower", aspect="auto", extent=extent, vmin=FLOOR_DB,
                      vmax=CEILING_DB, cmap="magma")
            ax.set_title(f"{name}" if name == "mixture" else f"{name}: {label}", fontsize=9)
            ax.set_ylabel("kHz")
    axes[-1, 0].set_xlabel("seconds")
    axes[-1, 1].set_xlabel("seconds")
    figure.suptitle(title)
    figure.tight_layout()
    return figure

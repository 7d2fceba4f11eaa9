"""The `tfsep` command: a thin argument shell over the package's functions.

Errors reach the user as one line on stderr and a non-zero exit; `--debug` shows the traceback.
"""

import argparse
import json
import logging
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import tfsep
from tfsep import formats, names, providers, quiet, stops, terminal


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
    print(f"architectures: {', '.join(sorted(networks.NETWORKS))}; sizes: {', '.join(networks.SIZES)}")
    return 0


def run_render_dataset(args):
    from tfsep.corpus import render_dataset

    folders = render_dataset(args.out, args.layout, args.tracks, args.seed, args.jobs)
    print(f"rendered {len(folders)} tracks into {args.out}")
    return 0


def run_train(args):
    from tfsep.train import train

    train(args.config, args.overrides, restart=args.restart)
    return 0


def separation_options(args):
    """The model's weightless options that the command line asks for (`backends.OPTIONS`; None: the model's)."""
    return {"wiener_iterations": args.wiener, "griffin_lim_iterations": args.griffin_lim,
            "mixture_consistent": args.consistent}


def _needs_tensorflow(args):
    """Whether the command runs TensorFlow: all but render-dataset, and separate with a LiteRT model (as the
    shipped one runs where LiteRT is installed), which starts in a fraction of a second without it."""
    if args.command in ("render-dataset", "models"):
        return False
    return args.command != "separate" or formats.format_of(args.model_file) not in ("tflite", "web")


def run_separate(args):
    from tqdm.auto import tqdm

    from tfsep.audio import AudioError
    from tfsep.commits import recover_under
    from tfsep.outputs import (
        SeparationError,
        check_outputs,
        output_paths,
        refuse_existing,
        subtype,
        with_format,
    )
    from tfsep.separate import Separator

    model = args.model_file
    args.template = with_format(args.template, args.file_format)
    recover_under(args.output)  # what killed runs left there: finished or undone, and said so
    subtype(args.template, args.bits)  # a format that cannot hold these samples is refused before any work
    failures, inputs = [], list(args.inputs)
    sources = formats.describe(model)["sources"]  # outputs are checked once, before the model loads
    outputs = {path: output_paths(sources, path, args.output, args.template, args.residual) for path in inputs}
    check_outputs(outputs)
    for path, targets in outputs.items():
        try:
            refuse_existing(targets, args.overwrite)
        except SeparationError as error:
            failures.append(str(error))
            print(f"tfsep: error: {failures[-1]}", file=sys.stderr)
            inputs.remove(path)
    if inputs:
        separator = Separator.load(model, chunk_seconds=args.chunk, overlap_seconds=args.overlap,
                                   **separation_options(args))
    progress = not args.quiet
    for path in tqdm(inputs, desc="files", unit="file", disable=not progress or len(inputs) < 2):
        try:
            written = separator.separate_file(path, args.output, args.template, args.bits, args.residual,
                                              args.overwrite, progress=progress, checked=True)
        except (AudioError, SeparationError, OSError, ValueError) as error:
            if args.debug:
                raise
            failures.append(f"{path}: {error}" if str(path) not in str(error) else str(error))
            print(f"tfsep: error: {failures[-1]}", file=sys.stderr)
            continue
        if not args.quiet:
            print(f"{path} -> {', '.join(str(p) for p in written.values())}")
    if failures and len(args.inputs) > 1:  # each was said as it happened; a summary after several files
        print(f"tfsep: {len(failures)} of {len(args.inputs)} files failed:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
    return 1 if failures else 0


def run_batch(args):
    if not args.debug:
        logging.getLogger().setLevel(logging.ERROR)  # Beam's notes at import and from its runner
    try:
        from tfsep import batch
    except ImportError as error:
        raise ImportError(f"tfsep batch needs Apache Beam: pip install 'tfsep[beam]' ({error})") from None

    from tfsep.outputs import with_format

    start = time.perf_counter()
    template = with_format(args.template, args.file_format)
    result = batch.run(args.inputs, args.output, args.model, template, args.bits, args.residual, args.overwrite,
                       args.chunk, args.overlap, args.batch_size, pipeline_args=args.pipeline_args,
                       **separation_options(args))
    for line in result.failures.read_text().splitlines() if result.failures else []:
        print(f"tfsep: error: {json.loads(line)['reason']}", file=sys.stderr)
    print(f"separated {result.done} files ({result.audio_seconds:.1f} s of audio) in "
          f"{time.perf_counter() - start:.1f} s into {args.output}; skipped {result.skipped} whose stems were there; "
          f"{result.failed} failed" + (f" (listed in {result.failures})" if result.failures else ""))
    return 1 if result.failed else 0


def run_evaluate(args):
    from tfsep.evaluate import evaluate, markdown_table

    if sum(x is not None for x in (args.model, args.oracle, args.estimates)) > 1:
        raise ValueError("give one of --model, --oracle and --estimates")
    model = None if args.oracle or args.estimates else (args.model or "band")
    report = evaluate(args.dataset, args.subset, model=model, oracle=args.oracle, estimates=args.estimates,
                      report=args.report, sources=args.sources, wiener=args.wiener, jobs=args.jobs,
                      max_tracks=args.max_tracks, progress=not args.quiet, remainder=args.remainder,
                      griffin_lim=args.griffin_lim, consistent=args.consistent)
    print(markdown_table(report), end="")
    print(f"report written to {args.report}")
    return 0


def run_convert(args):
    if args.output.suffix != ".keras":
        raise ValueError(f"{args.output}: the output must be a .keras file")
    if args.output.exists() and not args.overwrite:
        raise FileExistsError(f"{args.output}: already exists (use --overwrite to replace it)")
    model = providers.convert(args.kind, args.checkpoint, args.config)
    formats.write("keras", model, args.output)
    inputs = " ".join(str(path) for path in args.checkpoint)
    print(f"converted {inputs} ({', '.join(model.sources)}) to {args.output}")
    return 0


def run_models(args):
    rows = [("name", "sources", "download", "licence", "published SDR, MUSDB18 (dB)", "cached")]
    for name, card, cached in providers.catalog():
        download = "shipped" if card.download_mb is None else f"{card.download_mb:g} MB"
        rows.append((name, ", ".join(card.sources), download, card.licence, card.scores, "yes" if cached else "no"))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    print(f"cached: converted already, in {providers.home() / 'models'}; the others are fetched, verified and "
          "converted the first time --model names them (download sizes are approximate)")
    return 0


# `tfsep export`'s options of the forms' writers (`formats.writer_options`): {write option: command-line flag}
EXPORT_OPTIONS = {"quantize": "--quantize", "block_seconds": "--stream-block", "context_seconds": "--stream-context",
                  "version": "--version", "chunk_seconds": "--chunk", "max_seconds": "--max-seconds",
                  "wiener_iterations": "--wiener", "griffin_lim_iterations": "--griffin-lim",
                  "mixture_consistent": "--consistent", "runtime_url": "--runtime-url"}


def run_export(args):
    from tfsep.models import load_model

    given = {option: getattr(args, flag[2:].replace("-", "_")) for option, flag in EXPORT_OPTIONS.items()}
    given = {option: value for option, value in given.items() if value is not None}
    for option in sorted(given.keys() - set(formats.writer_options(args.format))):
        takers = [form for form in formats.EXPORTS if option in formats.writer_options(form)]
        raise ValueError(f"{EXPORT_OPTIONS[option]} applies to --format {' and '.join(takers)} only")
    source = providers.resolve(args.model)
    if args.output.exists() and args.output.resolve() == Path(source).resolve():
        raise ValueError(f"{args.output}: is the model being exported; choose another --output")
    if args.format != "savedmodel" and args.output.exists() and not args.overwrite:  # (a version folder: refused)
        raise FileExistsError(f"{args.output}: already exists (use --overwrite to replace it)")
    if args.format == "web":  # the page names the model as the user did: band, or run/model.keras's folder
        given_path = Path(str(args.model))
        given["name"] = given_path.parent.name if given_path.stem == "model" else given_path.stem
    target = formats.write(args.format, load_model(source), args.output, **given)
    print(f"exported {args.model} to {target} ({_export_summary(args.format, target, given)})")
    return 0


def _export_summary(form, target, given):
    if form == "savedmodel":
        return "signatures serving_default, chunk, metadata"
    if form == "web":
        config = json.loads((target / "model.json").read_text())
        return (f"a page with LiteRT.js and a model of {config['chunk_samples'] / config['sample_rate']:g} s chunks; "
                f"serve it with: python {target / 'serve.py'}")
    quantize = given.get("quantize", "none")
    weights = {"none": "float32", "float16": "float16", "dynamic-int8": "dynamic-range int8"}[quantize]
    return (f"{target.stat().st_size / 2**20:.1f} MiB, {weights} weights, "
            f"{'whole clips' if given.get('block_seconds') is None else 'streaming'}")


GRIFFIN_LIM_HELP = "Griffin-Lim iterations from the mixture's phase (0: the mixture's phase, the default)"
MODEL_HELP = ("a .keras model, a whole-clip .tflite file, a SavedModel version folder from tfsep export, or a name: "
              "band (the shipped model, the default), or spleeter:2stems, spleeter:4stems, ..., umxhq, umxl "
              "(fetched and converted on first use; tfsep models lists them all)")


def _separation_options(command):
    """The options that `separate` and `batch` share: model, outputs and the chunk plan."""
    command.add_argument("-o", "--output", type=Path, default=Path("separated"), help="output folder (separated)")
    command.add_argument("--model", help=MODEL_HELP)
    command.add_argument("--template", default="{track}/{source}.wav",
                         help="output path inside the folder, with {track} and {source}; .wav, .flac or .mp3 "
                         "(default {track}/{source}.wav)")
    command.add_argument("--format", dest="file_format", choices=names.AUDIO_FORMATS,
                         help="stem file format (default: the template's, wav)")
    command.add_argument("--bits", choices=names.BIT_DEPTHS,
                         help="sample format of wav and flac stems: 16 (default), 24, or 32 = float (wav only); "
                         "samples beyond full scale are limited to it, and counted, unless float")
    command.add_argument("--residual", action="store_true", help="also write mixture minus the other stems")
    command.add_argument("--wiener", type=int, metavar="N", help="multichannel Wiener EM iterations")
    command.add_argument("--consistent", action=argparse.BooleanOptionalAction,
                         help="stems that sum to the mixture, each taking an equal share of the residual (default: "
                         "the model's own; on for the shipped model)")
    command.add_argument("--griffin-lim", type=int, metavar="N", help=GRIFFIN_LIM_HELP)
    command.add_argument("--chunk", type=float, default=names.CHUNK_SECONDS,
                         help=f"chunk length in seconds ({names.CHUNK_SECONDS:g}; whole 11.9 s segments, at "
                         "least one, for Spleeter models)")
    command.add_argument("--overlap", type=float,
                         help=f"crossfade between chunks in seconds ({names.OVERLAP_SECONDS:g}; Spleeter "
                         "models take none: their chunks are summed exactly)")
    command.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def build_parser():
    parser = argparse.ArgumentParser(prog="tfsep", description="Music source separation with TensorFlow and Keras.")
    parser.add_argument("--version", action="version", version=f"tfsep {tfsep.__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = commands.add_parser("info", help="versions, tensorflow-io and GPU status, architectures")
    info.set_defaults(run=run_info)

    render = commands.add_parser(
        "render-dataset", help="render a multitrack data set from chorales, folk tunes and General MIDI songs",
        description="Render OUT/{train,valid,test}/<track>/{mixture,<stems>}.wav and a manifest.json per track "
        "from music21's chorales and folk tunes (over mma grooves) and freedoom's General MIDI songs, played by "
        "Debian's soundfonts, drum kits and espeak-ng voices with varied mix production. Validation and test hold "
        "out whole songs, freedoom1's songs, and soundfonts, kits, voices and grooves of their own. Needs the Debian "
        "packages of the README's install line. Tracks already in OUT from the same settings are kept; songs "
        "that fail are logged in OUT/render.log and replaced.",
    )
    render.add_argument("out", help="output folder")
    render.add_argument("--layout", choices=names.LAYOUTS, default="band",
                        help="band: vocals, drums, bass, other; satb: soprano, alto, tenor, bass (chorales only)")
    render.add_argument("--tracks", type=int, default=10, help="number of tracks, 10%% each go to valid and test")
    render.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    render.add_argument("--jobs", type=int, default=2, help="tracks rendered at once")
    render.set_defaults(run=run_render_dataset)

    separate = commands.add_parser(
        "separate", help="separate audio files into stems",
        description="Separate each INPUT (wav, flac, ogg; mp3, m4a with ffmpeg) into stems, written at the "
        "input's sample rate. Long files are processed in overlapping chunks with bounded memory.",
    )
    separate.add_argument("inputs", nargs="+", metavar="INPUT", type=Path)
    _separation_options(separate)
    separate.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    separate.set_defaults(run=run_separate)

    batch = commands.add_parser(
        "batch", help="separate a whole catalog on Apache Beam (locally, or on Dataflow, Flink or Spark)",
        usage="tfsep batch [options] INPUT [INPUT ...] -o OUT [-- BEAM_PIPELINE_OPTIONS]",
        description="Separate every audio file that the INPUTs (files, folders, globs; gs://, s3://, hdfs:// where "
        "Beam's extras for them are installed) match, writing the stems that `tfsep separate` writes, with the "
        "model loaded once per worker. Files that fail are listed in OUT/_failures.jsonl and the exit status is 1; "
        "each file's stems are written as soon as it is done, and a rerun skips files whose stems are all there "
        "and does the rest again. Arguments "
        "after -- are Beam's pipeline options (default: the local runner, one worker per core).",
    )
    batch.add_argument("inputs", nargs="+", metavar="INPUT")
    _separation_options(batch)
    batch.add_argument("--batch-size", type=int, default=1, metavar="N",
                       help="chunks of a file per model call (1; a GPU keeps busier with more, using more memory)")
    batch.set_defaults(run=run_batch, pipeline_args=[])

    evaluate = commands.add_parser(
        "evaluate", help="score a model or an oracle on a data set (BSSEval v4, global SDR, SI-SDR)",
        description="Separate every track of a data set subset with a model (default: the shipped one) or an "
        "oracle mask, score it, and write metrics.json, report.md and plots into the report folder.",
    )
    evaluate.add_argument("--dataset", type=Path, required=True, help="data set root (MUSDB18-HQ-like tree)")
    evaluate.add_argument("--subset", default="test", choices=names.SPLITS)
    evaluate.add_argument("--model", help=MODEL_HELP)
    evaluate.add_argument("--oracle", choices=names.ORACLES,
                          help="score an oracle instead of a model (mixture: the mixture / K, doing nothing)")
    evaluate.add_argument("--estimates", type=Path, metavar="DIR",
                          help="score another system's estimates, DIR/<track>/<source>.wav, instead of a model")
    evaluate.add_argument("--sources", nargs="+", default=["vocals", "drums", "bass", "other"],
                          help="stems to score with --oracle (a model brings its own)")
    evaluate.add_argument("--remainder", metavar="SOURCE",
                          help="a source that is the rest of the mix: tracks without its file score it against the "
                          "mixture minus the other sources (e.g. accompaniment for spleeter:2stems)")
    evaluate.add_argument("--report", type=Path, required=True, help="folder for the report")
    evaluate.add_argument("--wiener", type=int, metavar="N", help="Wiener EM iterations for the model")
    evaluate.add_argument("--consistent", action=argparse.BooleanOptionalAction,
                          help="stems that sum to the mixture (default: the model's own)")
    evaluate.add_argument("--griffin-lim", type=int, metavar="N", help=GRIFFIN_LIM_HELP + ", for the model or oracle")
    evaluate.add_argument("--jobs", type=int, default=2, help="museval worker processes (2)")
    evaluate.add_argument("--max-tracks", type=int, help="score only the first N tracks")
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    evaluate.set_defaults(run=run_evaluate)

    export = commands.add_parser(
        "export", help="export a model for serving (TF Serving), devices (TFLite) or the browser (web)",
        description="Export a .keras model as a SavedModel in TF Serving's layout, OUTPUT/<version>/, as a "
        "TFLite file OUTPUT with builtin ops only, or as a folder OUTPUT that a static host serves: a page that "
        "separates songs in the browser with LiteRT.js (docs/web.md).",
    )
    export.add_argument("model", metavar="MODEL",
                        help="a .keras model or a name: band (the shipped model), spleeter:2stems")
    export.add_argument("--format", choices=formats.EXPORTS, default="savedmodel")
    export.add_argument("--output", type=Path, required=True,
                        help="savedmodel: model folder, the export goes into OUTPUT/<version>; tflite: the file; "
                        "web: the folder")
    export.add_argument("--quantize", choices=names.QUANTIZATIONS, help="tflite: weight quantisation (none)")
    export.add_argument("--version", type=int, help="savedmodel: model version folder, a positive integer (1)")
    export.add_argument("--overwrite", action="store_true", help="tflite, web: replace an existing file or folder")
    export.add_argument("--chunk", type=float, help="savedmodel: chunk length of the chunk signature, seconds (10)")
    export.add_argument("--wiener", type=int, metavar="N", help="Wiener EM iterations in the exported graph")
    export.add_argument("--consistent", action=argparse.BooleanOptionalAction,
                        help="stems that sum to the mixture in the exported graph (default: the model's own)")
    export.add_argument("--griffin-lim", type=int, metavar="N", help=GRIFFIN_LIM_HELP + ", in the exported graph")
    export.add_argument("--max-seconds", type=float,
                        help="savedmodel: most audio per request, batch × duration, refused beyond (120)")
    export.add_argument("--stream-block", type=float, metavar="SECONDS",
                        help="tflite: the streaming form, taking blocks of this length with explicit state")
    export.add_argument("--stream-context", type=float, metavar="SECONDS",
                        help="tflite streaming: context on each side of a block, which is also the latency "
                        "(default: the network's receptive field, exact away from the start)")
    export.add_argument("--runtime-url", metavar="URL",
                        help="web: the npm registry (or a mirror of its paths) to fetch LiteRT.js from, verified "
                        "by npm's integrity hash (https://registry.npmjs.org)")
    export.set_defaults(run=run_export)

    convert = commands.add_parser(
        "convert", help="convert another system's checkpoint into a tfsep .keras model",
        description="Convert a Spleeter checkpoint folder (pretrained_models/2stems, 4stems, 5stems, their -16kHz "
        "forms, or a release archive unpacked) into a tfsep model that computes what Spleeter computes, or "
        "Open-Unmix's state dicts, one TARGET.pth (or TARGET-HASH.pth) per target (openunmix vocals.pth drums.pth "
        "bass.pth other.pth), into one that computes what Open-Unmix's Separator computes. Reads the weights only: "
        "no Spleeter or torch install, no TF1 graph, no pickled code run.",
    )
    convert.add_argument("kind", choices=sorted(providers.PROVIDERS), help="the checkpoint's system")
    convert.add_argument("checkpoint", type=Path, nargs="+", metavar="CHECKPOINT",
                         help="the checkpoint's files or folder (spleeter: the folder with model.index and data; "
                         "openunmix: one .pth file per target)")
    convert.add_argument("--output", type=Path, required=True, help="the .keras file to write")
    convert.add_argument("--config", help="Spleeter configuration: a published name (2stems, 4stems, 5stems, "
                         "...-16kHz) or its JSON file (default: from the folder's name, else its U-Net count); "
                         "openunmix: umxhq or umxl, which names the model and checks the hidden size")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing output")
    convert.set_defaults(run=run_convert)

    models = commands.add_parser(
        "models", help="list the names --model takes: sources, download, licence, published scores, cached")
    models.set_defaults(run=run_models)

    train = commands.add_parser(
        "train", help="train a model with model.fit from a YAML config",
        description="Train as CONFIG describes (see configs/); section.key=value overrides change it. "
        "Run the same command again to resume after a crash; a finished run says so and exits.",
    )
    train.add_argument("--config", help="YAML config file (default: all defaults)")
    train.add_argument("--restart", action="store_true", help="train the run again from its first epoch, replacing it")
    train.add_argument("overrides", nargs="*", metavar="section.key=value", help="e.g. schedule.epochs=10")
    train.set_defaults(run=run_train)
    return parser


def _show_notices():
    """Print each `files.Notice` (clipped samples, a recovered commit) as one line on stderr, as it comes."""
    from tfsep import files

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, files.Notice):
            print(f"tfsep: {category.prefix}{message}", file=sys.stderr, flush=True)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.simplefilter("always", files.Notice)
    warnings.showwarning = show


def _stopped(number, completed=()):
    """Say in one line that a stop ended the command, and what it had written just before; the exit status."""
    reason, code = stops.exit_code(number)
    written = f"; {', '.join(map(str, completed))} had been written whole" if completed else ""
    print(f"tfsep: {reason}{written}", file=sys.stderr)
    return code


def _dashed_file(argv):
    """The first argument before any `--` that names an existing file but starts with a dash, or None."""
    for token in argv:
        if token == "--":
            return None
        if token.startswith("-") and not token.startswith("--") and "." in token and Path(token).is_file():
            return token
    return None


def _beam_options(argv):
    """(argv, Beam pipeline options): for `tfsep batch`, what follows the first `--` is Beam's."""
    commands = [token for token in argv if not token.startswith("-")]
    if commands[:1] != ["batch"] or "--" not in argv:
        return argv, []
    split = argv.index("--")
    return argv[:split], argv[split + 1:]


def main(argv=None):
    """Run one tfsep command; the exit status. Its output streams never stop it (`terminal.guarded`)."""
    with terminal.guarded():
        return _main(sys.argv[1:] if argv is None else list(argv))


def _main(argv):
    dashed = _dashed_file(argv)
    if dashed:
        print(f"tfsep: error: {dashed}: a file name that starts with a dash reads as an option; "
              f"write -- {dashed} or ./{dashed}", file=sys.stderr)
        return 2
    if "--debug" in argv[:argv.index("--") if "--" in argv else len(argv)]:  # also after the subcommand
        argv = ["--debug", *[token for token in argv if token != "--debug"]]
    argv, pipeline_args = _beam_options(argv)
    args = build_parser().parse_args(argv)
    if args.command == "batch":
        args.pipeline_args = pipeline_args
    if args.debug:  # TensorFlow's and LiteRT's own log lines too
        os.environ[quiet.DEBUG] = "1"
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        warnings.filterwarnings("ignore", module=r"(keras|tensorflow|absl|ai_edge_litert)\b")
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    stops.install()
    _show_notices()
    try:
        if args.command == "separate":  # the model file it runs, found once and before TensorFlow loads
            args.model_file = providers.separation_model(args.model, **separation_options(args))
        if _needs_tensorflow(args):
            quiet.import_tensorflow()
        code = args.run(args)
        return _stopped(stops.requested()) if stops.requested() else code  # a stop held until the work was done
    except KeyboardInterrupt as error:
        return _stopped(getattr(error, "number", signal.SIGINT), getattr(error, "completed", []))
    except Exception as error:
        if stops.requested():
            return _stopped(stops.requested())
        if args.debug:
            raise
        print(f"tfsep: error: {error or type(error).__name__}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""Catalog-scale batch separation on Apache Beam: the stems that `tfsep separate` writes, for many files, on
Beam's local runner or on a Dataflow, Flink or Spark cluster.

The pipeline, for the files that the inputs match (`match`), is one stage, `SeparateFiles`:
each worker process loads the model once (Beam's `Shared` handle, for every thread of the
process) and runs `Separator.separate_file` on each file it is given, so that each file is
decoded once, in bounded memory, into exactly the stems `tfsep separate` writes, committed as
a set as soon as that file is done: an interrupted catalog keeps every file it finished.
`--batch-size` chunks of a file go to the model in one call.

A file that cannot be read or separated, or that changes while it is read, goes to the
dead-letter output, `OUT/_failures.jsonl` (one JSON line per file: path and reason), and never
stops the others. Counters in the `tfsep` namespace count files done and failed and seconds of
audio. An input whose stems are all there is skipped unless `overwrite`; one with only some of
them is separated again, so a rerun completes what an earlier run left partial. Before the
plan, what killed runs left in the output folder is finished or undone (`commits.recover_under`).
"""

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.utils.shared import Shared

from tfsep import audio, names, providers
from tfsep.audio import AudioError
from tfsep.commits import recover_under
from tfsep.outputs import DEFAULT_TEMPLATE, SeparationError, check_outputs, output_paths
from tfsep.separate import Separator

NAMESPACE = "tfsep"
FAILURES = "_failures.jsonl"
AUDIO_SUFFIXES = {".wav", ".flac", ".aif", ".aiff", ".ogg", ".rf64", *audio.FFMPEG_SUFFIXES}
FILE_ERRORS = (AudioError, SeparationError, OSError, ValueError)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a worker needs: the model (its file, loading options, weightless options) and `tfsep separate`'s
    output and chunk options."""

    model: str
    outdir: str
    template: str = DEFAULT_TEMPLATE
    bits: str | None = None
    residual: bool = False
    chunk_seconds: float = names.CHUNK_SECONDS
    overlap_seconds: float | None = None
    threads: int = 2
    batch_size: int = 1
    options: dict = dataclasses.field(default_factory=dict)


def _separator(settings):
    """The Separator that a worker's threads share, loaded once per process."""
    return Separator.load(settings.model, settings.chunk_seconds, settings.overlap_seconds, settings.threads,
                          settings.batch_size, **settings.options)


class _Loaded:
    """A holder that Beam's `Shared` can keep a weak reference to."""

    def __init__(self, separator):
        self.separator = separator


@contextlib.contextmanager
def local_copy(path):
    """A local path for a file that Beam's FileSystems can open (gs://, s3://, hdfs://...): the path itself if it is
    local, else a temporary copy with the same name."""
    if "://" not in str(path):
        yield Path(path)
        return
    folder = Path(tempfile.mkdtemp(prefix="tfsep-input-"))
    try:
        target = folder / Path(str(path).rstrip("/")).name
        with FileSystems.open(str(path)) as source, open(target, "wb") as copy:
            shutil.copyfileobj(source, copy)
        yield target
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _failure(path, error):
    return path, str(error) if str(path) in str(error) else f"{path}: {error}"


class SeparateFiles(beam.DoFn):
    """(path, overwrite) -> path, its stems written and committed as `tfsep separate` writes them; failures go to
    the `failed` output."""

    def __init__(self, settings):
        self.settings = settings
        self.shared = Shared()
        self.done = Metrics.counter(NAMESPACE, "files_done")
        self.milliseconds = Metrics.counter(NAMESPACE, "audio_milliseconds")

    def setup(self):
        self.separator = self.shared.acquire(lambda: _Loaded(_separator(self.settings))).separator

    def process(self, element):
        path, overwrite = element
        settings = self.settings
        try:
            with local_copy(path) as local:
                found = audio.info(local)
                self.separator.separate_file(local, settings.outdir, settings.template, settings.bits,
                                             settings.residual, overwrite, checked=True)  # by `_plan`
            self.done.inc()
            self.milliseconds.inc(int(round(1000 * found.samples / found.sample_rate)))
            yield path
        except FILE_ERRORS as error:
            yield beam.pvalue.TaggedOutput("failed", _failure(path, error))


def _dead_letter(failure):
    """(path, reason) -> its line in OUT/_failures.jsonl, counted as a failed file."""
    Metrics.counter(NAMESPACE, "files_failed").inc()
    path, reason = failure
    return json.dumps({"path": path, "reason": reason})


def match(inputs):
    """(paths, failures): the audio files that `inputs` name, in order and each once, and (input, reason) for inputs
    that match nothing. An input is a file, a folder (every audio file below it) or a glob, on any filesystem that
    Beam's FileSystems reads."""
    paths, failures = [], []
    for text in map(str, inputs):
        local = "://" not in text
        if local and Path(text).is_dir():
            found = sorted(str(p) for p in Path(text).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        else:
            pattern = text.rstrip("/") + "/**" if not local and text.endswith("/") else text
            try:
                found = sorted(m.path for r in FileSystems.match([pattern]) for m in r.metadata_list)
            except Exception as error:  # a filesystem whose extra is not installed, a bad pattern
                failures.append((text, f"{text}: cannot list it ({audio.error_reason(error)})"))
                continue
            if pattern != text or any(c in text for c in "*?["):
                found = [p for p in found if Path(p).suffix.lower() in AUDIO_SUFFIXES]
        if not found:
            failures.append((text, f"{text}: no such file" if local and not any(c in text for c in "*?[")
                             else f"{text}: matches no audio file"))
        paths += [path for path in found if path not in paths]
    return paths, failures


def pipeline_options(args=()):
    """PipelineOptions from Beam's own command-line `args`; with no runner given, the portable local runner
    (FnApiRunner: `DirectRunner` with one worker thread per core), which needs no network, unlike the Prism
    runner that Beam otherwise picks and that downloads a binary when it starts.

    Threads rather than processes: TensorFlow releases the GIL while it computes, the model
    is loaded once, and on 2 cores this ran 2 files in 5.1 s against 14.2 s with worker
    processes (`--direct_running_mode=multi_processing`), which each import TensorFlow.
    """
    options = PipelineOptions(list(args))
    standard, direct = options.view_as(StandardOptions), options.view_as(DirectOptions)
    if standard.runner is None:
        standard.runner = "DirectRunner"
        if "--direct_running_mode" not in " ".join(args):
            direct.direct_running_mode = "multi_threading"
        if "--direct_num_workers" not in " ".join(args):
            direct.direct_num_workers = os.cpu_count() or 1
    return options


@dataclasses.dataclass
class BatchResult:
    """What a batch run did: files separated, skipped (their stems were all there) and failed, seconds of audio."""

    done: int
    skipped: int
    failed: int
    audio_seconds: float
    failures: Path | None  # OUT/_failures.jsonl, if any file failed


def _plan(paths, sources, settings, overwrite):
    """([(path, overwrite)] to do, skipped) for the matched `paths`, refusing colliding outputs before any work. An
    input whose outputs are all there is skipped unless `overwrite` (stems are committed as a set, so they come
    from a finished run); one with only some of them is done again, replacing those."""
    outputs = {path: output_paths(sources, path, settings.outdir, settings.template, settings.residual)
               for path in paths}
    check_outputs(outputs)
    todo, skipped = [], []
    for path, targets in outputs.items():
        present = [target.exists() for target in targets.values()]
        if all(present) and not overwrite:
            skipped.append(path)
        else:
            todo.append((path, overwrite or any(present)))
    return todo, skipped


def run(inputs, outdir, model=None, template=DEFAULT_TEMPLATE, bits=None, residual=False, overwrite=False,
        chunk_seconds=names.CHUNK_SECONDS, overlap_seconds=None, batch_size=1, threads=2, pipeline_args=(),
        **options):
    """Separate every audio file that `inputs` match into `outdir`, as `tfsep separate` would, on Apache Beam.

    The options are `tfsep separate`'s; `batch_size` is the most chunks of a file run in one
    model call, `pipeline_args` Beam's own options (default: the local runner on every core,
    `pipeline_options`). Returns a BatchResult; the failures are in `outdir/_failures.jsonl`.
    """
    settings = Settings(str(providers.separation_model(model, **options)), str(outdir), template,
                        None if bits is None else str(bits), residual, chunk_seconds, overlap_seconds, threads,
                        batch_size, options)
    sources = _separator(settings).sources  # the model and the options are checked here, before the pipeline
    Path(outdir).mkdir(parents=True, exist_ok=True)
    recover_under(outdir)
    _remove_old_scratch(outdir)
    paths, failures = match(inputs)
    todo, skipped = _plan(paths, sources, settings, overwrite)
    with beam.Pipeline(options=pipeline_options(pipeline_args)) as pipeline:
        separated = (pipeline | "files" >> beam.Create(todo) | "spread" >> beam.Reshuffle()
                     | "separate" >> beam.ParDo(SeparateFiles(settings)).with_outputs("failed", main="written"))
        ((separated.failed, pipeline | "unmatched" >> beam.Create(failures)) | beam.Flatten()
         | "one per file" >> beam.CombinePerKey(min) | "as json" >> beam.Map(_dead_letter)
         | "dead letters" >> beam.io.WriteToText(str(Path(outdir) / FAILURES), shard_name_template=""))
    result = pipeline.result
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(
        MetricsFilter().with_namespace(NAMESPACE))["counters"]}
    failures_path = Path(outdir) / FAILURES
    lines = failures_path.read_text().splitlines() if failures_path.is_file() else []
    if not lines:
        failures_path.unlink(missing_ok=True)
    return BatchResult(counters.get("files_done", 0), len(skipped), len(lines),
                       counters.get("audio_milliseconds", 0) / 1000, failures_path if lines else None)


def _remove_old_scratch(outdir):
    """Remove the scratch folders (`.tfsep-batch-*`) that tfsep batch used before 2026-12-07 to hold separated
    chunks; none is made now. One younger than an hour may belong to an older tfsep still running: kept."""
    for folder in Path(outdir).glob(".tfsep-batch-*"):
        if folder.is_dir() and time.time() - folder.stat().st_mtime > 3600:
            shutil.rmtree(folder, ignore_errors=True)

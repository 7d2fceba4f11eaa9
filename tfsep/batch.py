"""Catalog-scale batch separation on Apache Beam: the stems that `tfsep separate` writes, for many files, on
Beam's local runner or on a Dataflow, Flink or Spark cluster.

The pipeline, for the files that the inputs match (`match`):

1. `CutChunks` decodes each file in a worker and cuts it into the chunks of `tfsep
   separate`'s plan (`chunking`): the same Separator code runs on a `Recorder` backend,
   which keeps each chunk batch the model would see instead of separating it;
2. `RunInference` with `SeparationModelHandler` separates the chunks, batched across
   files, with the model loaded once per worker process (Beam's shared-model mechanism);
3. `StoreChunk` writes each chunk's stems to a scratch folder, so that what is grouped
   per file is a list of chunk numbers and memory stays bounded by the chunk whatever the
   file's length;
4. `WriteStems` runs `Separator.separate_file` on a `Replayer` backend, which hands back
   the stored stems in order: the crossfades or sums, the residual, the resampling back
   and the all-or-nothing commit of the stems are `tfsep separate`'s own.

A file that cannot be read or separated goes to the dead-letter output, `OUT/_failures.jsonl`
(one JSON line per file: path and reason), and never stops the others. Counters in the
`tfsep` namespace count files done and failed and seconds of audio. Inputs whose stems are
all present are skipped unless `overwrite`, so an interrupted catalog resumes.
"""

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from tfsep import audio, backends, formats, names, pretrained
from tfsep.audio import AudioError
from tfsep.outputs import DEFAULT_TEMPLATE, SeparationError, check_outputs, output_paths
from tfsep.separate import Separator

NAMESPACE = "tfsep"
FAILURES = "_failures.jsonl"
SCRATCH_PREFIX = ".tfsep-batch-"
AUDIO_SUFFIXES = {".wav", ".flac", ".aif", ".aiff", ".ogg", ".rf64", *audio.FFMPEG_SUFFIXES}
FILE_ERRORS = (AudioError, SeparationError, OSError, ValueError)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the cutting and writing stages need: the model's description (`models.describe`) and `tfsep
    separate`'s output and chunk options."""

    description: dict
    outdir: str
    template: str = DEFAULT_TEMPLATE
    bits: str | None = None
    residual: bool = False
    overwrite: bool = False
    chunk_seconds: float = names.CHUNK_SECONDS
    overlap_seconds: float | None = None


class Recorder(backends.Backend):
    """A backend that keeps every batch it is given (`batches`) and returns silence of the same shape (one
    read-only array for every source: the Separator only reads it)."""

    def __init__(self, description):
        self.description, self.batches = description, []

    def __call__(self, batch):
        self.batches.append(np.asarray(batch, np.float32))
        silence = np.zeros_like(self.batches[-1])
        silence.flags.writeable = False
        return dict.fromkeys(self.description["sources"], silence)


class Replayer(backends.Backend):
    """A backend that returns, call by call, the stems of `results`, an iterable of {source: (batch, samples,
    channels)} in the order in which a `Recorder` was given their chunks."""

    def __init__(self, description, results):
        self.description, self._results = description, iter(results)

    def __call__(self, batch):
        stems = next(self._results, None)
        if stems is None or any(np.shape(stem) != np.shape(batch) for stem in stems.values()):
            raise SeparationError("the separated chunks do not match the file (it changed while it was separated)")
        return stems


def _separator(settings, backend):
    return Separator(backend, settings.chunk_seconds, settings.overlap_seconds)


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


class CutChunks(beam.DoFn):
    """path -> ((path, k), chunk batch k): the model-shaped chunk batches (groups, samples, channels) that
    `tfsep separate` would run for the file, in order; unreadable files go to the `failed` output."""

    def __init__(self, settings):
        self.settings = settings

    def process(self, path):
        recorder = Recorder(self.settings.description)
        separator, index = _separator(self.settings, recorder), 0
        try:
            with local_copy(path) as local:
                found, blocks = audio.blocks(local)
                # The residual changes no chunk the model sees, so the recording leaves it out.
                for _ in separator.stream(blocks, found.sample_rate, found.channels, False, str(path)):
                    for batch in recorder.batches:
                        yield (path, index), batch
                        index += 1
                    recorder.batches.clear()
        except FILE_ERRORS as error:
            yield beam.pvalue.TaggedOutput("failed", _failure(path, error))


class SeparationModelHandler(ModelHandler):
    """A Beam model handler over tfsep's own loaders (`formats.backend`): `.keras`, a SavedModel version folder
    (its `serving_default`), `.tflite` in LiteRT, or a pretrained name such as `spleeter:2stems`.

    Beam's own TensorFlow handlers load models with `tf.keras.models.load_model` and
    `tensorflow_hub`, and under Keras 3 legacy SavedModels fail to load there
    (apache/beam#30616); tfsep's loaders also refuse untrusted `.keras` files (safe mode).
    An example is one chunk batch (groups, samples, channels); a batch of examples of one
    length runs as one call, and the inference is {source: (groups, samples, channels)}.
    """

    def __init__(self, model, threads=2, max_batch_size=4, **options):
        """`model`: the model file or folder's path (pretrained names are resolved by the launcher); `options`:
        its weightless options (`backends.OPTIONS`)."""
        super().__init__(min_batch_size=1, max_batch_size=max_batch_size)
        self.model, self.threads, self.options = model, threads, options

    def load_model(self):
        return formats.backend(self.model, self.threads, **self.options)

    def run_inference(self, batch, model, inference_args=None):
        results = [None] * len(batch)
        by_shape = {}
        for k, example in enumerate(batch):
            by_shape.setdefault(np.shape(example), []).append(k)
        for members in by_shape.values():
            stems = model(np.concatenate([batch[k] for k in members]))
            start = 0
            for k in members:
                size = len(batch[k])
                results[k] = PredictionResult(batch[k], {s: v[start:start + size] for s, v in stems.items()})
                start += size
        return results

    def get_num_bytes(self, batch):
        return sum(np.asarray(example).nbytes for example in batch)

    def get_metrics_namespace(self):
        return NAMESPACE


def _chunk_folder(scratch, path):
    return f"{scratch}/{hashlib.sha256(str(path).encode()).hexdigest()[:24]}"


class StoreChunk(beam.DoFn):
    """((path, k), its PredictionResult) -> (path, k), the chunk's stems written to the scratch folder."""

    def __init__(self, scratch):
        self.scratch = scratch

    def process(self, element):
        (path, index), result = element
        buffer = io.BytesIO()
        np.savez(buffer, **result.inference)
        with FileSystems.create(f"{_chunk_folder(self.scratch, path)}/{index:08d}.npz") as file:
            file.write(buffer.getvalue())
        yield path, index


class WriteStems(beam.DoFn):
    """(path, its chunk numbers) -> path, its stems written as `tfsep separate` writes them; failures go to the
    `failed` output."""

    def __init__(self, settings, scratch):
        self.settings, self.scratch = settings, scratch
        self.done = Metrics.counter(NAMESPACE, "files_done")
        self.milliseconds = Metrics.counter(NAMESPACE, "audio_milliseconds")

    def _stored(self, path, count):
        folder = _chunk_folder(self.scratch, path)
        for index in range(count):
            with FileSystems.open(f"{folder}/{index:08d}.npz") as file:
                with np.load(io.BytesIO(file.read())) as stems:
                    yield {source: stems[source] for source in stems.files}

    def process(self, element):
        path, indices = element
        indices = sorted(indices)
        settings = self.settings
        try:
            if indices != list(range(len(indices))):
                raise SeparationError(f"{path}: chunks {sorted(set(range(indices[-1] + 1)) - set(indices))} were lost")
            separator = _separator(settings, Replayer(settings.description, self._stored(path, len(indices))))
            with local_copy(path) as local:
                found = audio.info(local)
                separator.separate_file(local, settings.outdir, settings.template, settings.bits, settings.residual,
                                        settings.overwrite)
            self.done.inc()
            self.milliseconds.inc(int(round(1000 * found.samples / found.sample_rate)))
            yield path
        except FILE_ERRORS as error:
            yield beam.pvalue.TaggedOutput("failed", _failure(path, error))
        finally:
            folder = _chunk_folder(self.scratch, path)
            if FileSystems.exists(folder):
                FileSystems.delete([folder])


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


def _plan(paths, sources, settings):
    """(to do, skipped) for the matched `paths`, refusing colliding outputs before any work. Inputs with outputs
    already there are skipped unless `overwrite`: stems are committed as a set, so they come from a finished run."""
    outputs = {path: output_paths(sources, path, settings.outdir, settings.template, settings.residual)
               for path in paths}
    check_outputs(outputs)
    todo, skipped = [], []
    for path, targets in outputs.items():
        done = not settings.overwrite and any(target.exists() for target in targets.values())
        (skipped if done else todo).append(path)
    return todo, skipped


def run(inputs, outdir, model=None, template=DEFAULT_TEMPLATE, bits=None, residual=False, overwrite=False,
        chunk_seconds=names.CHUNK_SECONDS, overlap_seconds=None, batch_size=4, threads=2, pipeline_args=(),
        **options):
    """Separate every audio file that `inputs` match into `outdir`, as `tfsep separate` would, on Apache Beam.

    The options are `tfsep separate`'s; `batch_size` is the most chunks run in one model
    call, `pipeline_args` Beam's own options (default: the local runner on every core,
    `pipeline_options`). Returns a BatchResult; the failures are in `outdir/_failures.jsonl`.
    """
    spec = str(pretrained.separation_model(model, **options))
    check = Separator.load(spec, chunk_seconds, overlap_seconds, threads, **options)
    settings = Settings(check.description, str(outdir), template, None if bits is None else str(bits), residual,
                        overwrite, chunk_seconds, overlap_seconds)
    del check  # the workers load their own copy
    Path(outdir).mkdir(parents=True, exist_ok=True)
    paths, failures = match(inputs)
    todo, skipped = _plan(paths, settings.description["sources"], settings)
    scratch = tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=outdir)
    handler = KeyedModelHandler(SeparationModelHandler(spec, threads, batch_size, **options))
    try:
        with beam.Pipeline(options=pipeline_options(pipeline_args)) as pipeline:
            cut = (pipeline | "files" >> beam.Create(todo) | "spread" >> beam.Reshuffle()
                   | "cut chunks" >> beam.ParDo(CutChunks(settings)).with_outputs("failed", main="chunks"))
            written = (cut.chunks | "separate" >> RunInference(handler)
                       | "store chunks" >> beam.ParDo(StoreChunk(scratch)) | "per file" >> beam.GroupByKey()
                       | "write stems" >> beam.ParDo(WriteStems(settings, scratch)).with_outputs("failed",
                                                                                                 main="written"))
            ((cut.failed, written.failed, pipeline | "unmatched" >> beam.Create(failures)) | beam.Flatten()
             | "one per file" >> beam.CombinePerKey(min) | "as json" >> beam.Map(_dead_letter)
             | "dead letters" >> beam.io.WriteToText(str(Path(outdir) / FAILURES), shard_name_template=""))
        result = pipeline.result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(
        MetricsFilter().with_namespace(NAMESPACE))["counters"]}
    failures_path = Path(outdir) / FAILURES
    lines = failures_path.read_text().splitlines() if failures_path.is_file() else []
    if not lines:
        failures_path.unlink(missing_ok=True)
    return BatchResult(counters.get("files_done", 0), len(skipped), len(lines),
                       counters.get("audio_milliseconds", 0) / 1000, failures_path if lines else None)

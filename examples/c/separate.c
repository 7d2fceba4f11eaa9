/* separate: splits a WAV file into stems with a tfsep .tflite model, through
 * LiteRT's C API (libLiteRt.so from the ai-edge-litert wheel).
 *
 *   separate [-t THREADS] [-k delegate|builtin|reference] [-v] MODEL.tflite IN.wav OUTDIR
 *
 * The model is a whole-clip export (`tfsep export --format tflite`): one
 * signature whose input is a float32 waveform [batch, samples, channels] with
 * a free length, and one output per source, named by the source, of the same
 * shape. The whole clip runs as one call after resizing the input to it, so
 * memory grows with the clip's length. Each stem is written as
 * OUTDIR/<source>.wav, 32-bit float, at the model's rate. Any failure prints
 * one line on stderr, writes nothing and exits with status 1. What LiteRT and
 * TFLite print themselves goes to stderr only with -v. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "litert.h"
#include "wav.h"

#define USAGE "usage: separate [-t THREADS] [-k delegate|builtin|reference] [-v] " \
              "MODEL.tflite IN.wav OUTDIR (runs the whole clip in one call)"
#define MAX_SOURCES 16

/* What separate.c needs to know about a model, read from the file. */
typedef struct {
    LiteRtModel handle;
    int sample_rate;                    /* from the "tfsep" metadata */
    int channels;                       /* the input's last dimension */
    size_t sources;                     /* the signature's outputs */
    const char *names[MAX_SOURCES];     /* owned by the model */
} Model;

/* Where say() writes: stderr, or a copy of it once quiet() has run. */
static FILE *messages;

/* Prints one line on stderr, prefixed with the program's name. */
static void say(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    fputs("separate: ", messages);
    vfprintf(messages, format, args);
    fputc('\n', messages);
    va_end(args);
}

/* Points file descriptor 2 at /dev/null, keeping a copy of it for say().
 * LiteRT logs INFO lines to stderr, and TFLite's error reporter prints
 * there too (a bad model gives "ERROR: Model provided has model identifier
 * ..."), so without this an error would not be one line. */
static void quiet(void)
{
    int copy = dup(2), null = open("/dev/null", O_WRONLY);
    FILE *stream = copy >= 0 ? fdopen(copy, "w") : NULL;
    if (stream && null >= 0 && dup2(null, 2) >= 0)
        messages = stream;
    if (null >= 0)
        close(null);
}

/* Returns 0 if `status` is success, else says which LiteRT call failed. */
static int check(LiteRtStatus status, const char *call)
{
    if (status == LITERT_OK)
        return 0;
    say("%s failed (LiteRT status %d)", call, status);
    return -1;
}

/* Seconds on a monotonic clock. */
static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* A buffer of `size` bytes on a 64-byte boundary, or NULL. LiteRT refuses
 * host memory that is not 64-byte aligned (status 3), and plain malloc
 * promises only 16. */
static float *aligned_floats(size_t size)
{
    void *buffer;
    return posix_memalign(&buffer, LITERT_HOST_ALIGNMENT, size) == 0 ? buffer : NULL;
}

/* The model's sample rate from the JSON that tfsep export stores in the
 * flatbuffer's metadata under "tfsep"; 0 if it is missing. */
static int metadata_sample_rate(LiteRtModel model)
{
    const void *buffer;
    size_t size;
    int rate = 0;
    if (LiteRtGetModelMetadata(model, "tfsep", &buffer, &size) != LITERT_OK)
        return 0;
    char *json = malloc(size + 1); /* the metadata is not NUL-terminated */
    if (!json)
        return 0;
    memcpy(json, buffer, size);
    json[size] = '\0';
    const char *key = strstr(json, "\"sample_rate\"");
    if (key) {
        key += strlen("\"sample_rate\"");
        key += strspn(key, " \t\n:");
        rate = atoi(key);
    }
    free(json);
    return rate;
}

/* Whether `name` can be a file name inside OUTDIR. */
static int safe_name(const char *name)
{
    return name[0] && name[0] != '.' && !strchr(name, '/');
}

/* Reads the signature of `model->handle` into `model`: a float32 input of
 * rank 3 with a known channel count, and named outputs. */
static int describe(const char *path, Model *model)
{
    LiteRtSignature signature;
    LiteRtParamIndex count;
    LiteRtTensor input;
    LiteRtRankedTensorType type;
    int type_id;
    if (check(LiteRtGetNumModelSignatures(model->handle, &count),
              "LiteRtGetNumModelSignatures"))
        return -1;
    if (count < 1) {
        say("%s: the model has no signature", path);
        return -1;
    }
    if (check(LiteRtGetModelSignature(model->handle, 0, &signature), "LiteRtGetModelSignature") ||
        check(LiteRtGetNumSignatureInputs(signature, &count), "LiteRtGetNumSignatureInputs"))
        return -1;
    if (count != 1) {
        say("%s: the model takes %zu inputs, not one waveform", path, count);
        return -1;
    }
    if (check(LiteRtGetSignatureInputTensorByIndex(signature, 0, &input),
              "LiteRtGetSignatureInputTensorByIndex") ||
        check(LiteRtGetTensorTypeId(input, &type_id), "LiteRtGetTensorTypeId"))
        return -1;
    if (type_id != LITERT_RANKED_TENSOR_TYPE) {
        say("%s: the model's input has no rank", path);
        return -1;
    }
    if (check(LiteRtGetRankedTensorType(input, &type), "LiteRtGetRankedTensorType"))
        return -1;
    if (type.element_type != LITERT_FLOAT32 || type.layout.rank != 3 ||
        type.layout.dimensions[2] < 1) {
        say("%s: the model's input is not a float32 waveform [batch, samples, channels]", path);
        return -1;
    }
    model->channels = type.layout.dimensions[2];
    if (check(LiteRtGetNumSignatureOutputs(signature, &model->sources),
              "LiteRtGetNumSignatureOutputs"))
        return -1;
    if (model->sources < 1 || model->sources > MAX_SOURCES) {
        say("%s: the model has %zu outputs (1 to %d sources expected)", path,
            model->sources, MAX_SOURCES);
        return -1;
    }
    for (size_t i = 0; i < model->sources; i++) {
        if (check(LiteRtGetSignatureOutputName(signature, i, &model->names[i]),
                  "LiteRtGetSignatureOutputName"))
            return -1;
        if (!safe_name(model->names[i])) {
            say("%s: output \"%s\" cannot name a file", path, model->names[i]);
            return -1;
        }
    }
    model->sample_rate = metadata_sample_rate(model->handle);
    if (model->sample_rate <= 0) {
        say("%s: no sample rate in its \"tfsep\" metadata (not written by tfsep export)", path);
        return -1;
    }
    return 0;
}

/* Whether `mode` names one of LiteRT's CPU kernel modes: "delegate"
 * (XNNPACK, LiteRT's default and what Python's Interpreter uses), "builtin"
 * (TFLite's own kernels) or "reference" (slow, unoptimized kernels). */
static int kernel_mode(const char *mode)
{
    return !strcmp(mode, "delegate") || !strcmp(mode, "builtin") || !strcmp(mode, "reference");
}

/* Compiles `model` for the CPU, in kernel `mode` on `threads` threads.
 * Without CPU options LiteRT runs on one thread, and the CPU-option helpers
 * (LrtCreateCpuOptions, ...) are not exported by the wheel's library, so the
 * settings go in as opaque options: the identifier "xnnpack" and a TOML
 * payload, which the runtime frees with free(). */
static int compile(LiteRtEnvironment environment, LiteRtModel model, const char *mode,
                   int threads, LiteRtCompiledModel *compiled)
{
    LiteRtOptions options;
    LiteRtOpaqueOptions cpu;
    char toml[64];
    snprintf(toml, sizeof toml, "kernel_mode = \"%s\"\nnum_threads = %d\n", mode, threads);
    char *payload = strdup(toml);
    if (!payload) {
        say("out of memory");
        return -1;
    }
    if (check(LiteRtCreateOpaqueOptions("xnnpack", payload, free, &cpu),
              "LiteRtCreateOpaqueOptions")) {
        free(payload);
        return -1;
    }
    if (check(LiteRtCreateOptions(&options), "LiteRtCreateOptions")) {
        LiteRtDestroyOpaqueOptions(cpu);
        return -1;
    }
    /* From here `options` owns `cpu` and the payload. */
    int failed = check(LiteRtAddOpaqueOptions(options, cpu), "LiteRtAddOpaqueOptions") ||
                 check(LiteRtSetOptionsHardwareAccelerators(options, LITERT_ACCELERATOR_CPU),
                       "LiteRtSetOptionsHardwareAccelerators") ||
                 check(LiteRtCreateCompiledModel(environment, model, options, compiled),
                       "LiteRtCreateCompiledModel");
    LiteRtDestroyOptions(options);
    return failed ? -1 : 0;
}

/* Runs the compiled model once on the whole clip: resizes the input to
 * [1, frames, channels] and fills `stems`, one buffer per source. */
static int run(LiteRtCompiledModel compiled, const Model *model, const Wav *wav,
               float **stems)
{
    size_t size = wav->frames * (size_t)wav->channels * sizeof(float);
    int dims[3] = {1, (int)wav->frames, wav->channels};
    LiteRtRankedTensorType type = {LITERT_FLOAT32, {.rank = 3, .dimensions = {1, dims[1], dims[2]}}};
    LiteRtTensorBuffer buffers[1 + MAX_SOURCES];
    float *input = aligned_floats(size);
    if (!input) {
        say("out of memory for %zu bytes of input", size);
        return -1;
    }
    memcpy(input, wav->samples, size);
    if (check(LiteRtCompiledModelResizeInputTensor(compiled, 0, 0, dims, 3),
              "LiteRtCompiledModelResizeInputTensor") ||
        check(LiteRtCreateTensorBufferFromHostMemory(&type, input, size, NULL, &buffers[0]),
              "LiteRtCreateTensorBufferFromHostMemory (input)"))
        return -1;
    /* Each stem has the input's shape. Size its buffer from the input, not
     * from LiteRtGetCompiledModelOutputTensorLayouts: after a resize that
     * still reports [1, 1, channels], and XNNPACK writes past buffers of
     * that size. */
    for (size_t i = 0; i < model->sources; i++) {
        stems[i] = aligned_floats(size);
        if (!stems[i]) {
            say("out of memory for %zu bytes of stems", size);
            return -1;
        }
        if (check(LiteRtCreateTensorBufferFromHostMemory(&type, stems[i], size, NULL,
                                                         &buffers[1 + i]),
                  "LiteRtCreateTensorBufferFromHostMemory (output)"))
            return -1;
    }
    if (check(LiteRtRunCompiledModel(compiled, 0, 1, buffers, model->sources, buffers + 1),
              "LiteRtRunCompiledModel"))
        return -1;
    for (size_t i = 0; i < 1 + model->sources; i++)
        LiteRtDestroyTensorBuffer(buffers[i]);
    free(input);
    return 0;
}

/* Writes each stem to OUTDIR/<source>.wav: all to hidden temporaries first,
 * then each renamed into place, so that a failed write leaves no stems. */
static int write_stems(const char *outdir, const Model *model, size_t frames, float **stems)
{
    char temporary[MAX_SOURCES][4096], final[MAX_SOURCES][4096];
    if (mkdir(outdir, 0777) != 0 && errno != EEXIST) {
        say("%s: %s", outdir, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < model->sources; i++) {
        snprintf(final[i], sizeof final[i], "%s/%s.wav", outdir, model->names[i]);
        if ((size_t)snprintf(temporary[i], sizeof temporary[i], "%s/.%s.wav.part", outdir,
                             model->names[i]) >= sizeof temporary[i]) { /* the longer one */
            say("%s: the path is too long", outdir);
            return -1;
        }
        if (wav_write_float(temporary[i], stems[i], frames, model->channels,
                            model->sample_rate)) {
            say("%s: %s", final[i], strerror(errno));
            for (size_t j = 0; j <= i; j++)
                remove(temporary[j]);
            return -1;
        }
    }
    for (size_t i = 0; i < model->sources; i++) {
        if (rename(temporary[i], final[i]) != 0) {
            say("%s: %s", final[i], strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* Reads the clip, checks it against the model, separates it and writes the
 * stems. On a failure it says why and returns 1 at once, leaving what it
 * allocated to the operating system. */
int main(int argc, char **argv)
{
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), verbose = 0, option;
    const char *mode = "delegate";
    messages = stderr;
    opterr = 0; /* getopt's own messages would make a second line */
    while ((option = getopt(argc, argv, "t:k:v")) != -1) {
        if (option == 'v')
            verbose = 1;
        else if (option == 'k' && kernel_mode(optarg))
            mode = optarg;
        else if (option != 't' || (threads = atoi(optarg)) < 1) {
            say(USAGE);
            return 1;
        }
    }
    if (argc - optind != 3) {
        say(USAGE);
        return 1;
    }
    const char *model_path = argv[optind], *in_path = argv[optind + 1],
               *outdir = argv[optind + 2];

    char error[512];
    Wav wav;
    if (wav_read(in_path, &wav, error, sizeof error)) {
        say("%s", error);
        return 1;
    }
    if (wav.frames > 0x7fffffff) {
        say("%s: too long for one run (%zu frames)", in_path, wav.frames);
        return 1;
    }

    LiteRtEnvironment environment;
    Model model = {0};
    if (!verbose)
        quiet();
    if (check(LiteRtCreateEnvironment(0, NULL, &environment), "LiteRtCreateEnvironment"))
        return 1;
    if (LiteRtCreateModelFromFile(environment, model_path, &model.handle) != LITERT_OK) {
        say("%s: not a model LiteRT can load (LiteRtCreateModelFromFile failed)", model_path);
        return 1;
    }
    if (describe(model_path, &model))
        return 1;
    if (wav.channels != model.channels || wav.sample_rate != model.sample_rate) {
        say("%s: %d channel(s) at %d Hz, but the model takes %d at %d Hz; convert it first",
            in_path, wav.channels, wav.sample_rate, model.channels, model.sample_rate);
        return 1;
    }

    LiteRtCompiledModel compiled;
    float *stems[MAX_SOURCES];
    double start = now();
    if (compile(environment, model.handle, mode, threads, &compiled))
        return 1;
    double compiled_at = now();
    if (run(compiled, &model, &wav, stems))
        return 1;
    double ran_at = now();
    if (write_stems(outdir, &model, wav.frames, stems))
        return 1;

    printf("%zu stems of %.2f s in %s (%s kernels, %d threads, compile %.2f s, run %.2f s)\n",
           model.sources, (double)wav.frames / wav.sample_rate, outdir, mode, threads,
           compiled_at - start, ran_at - compiled_at);
    for (size_t i = 0; i < model.sources; i++)
        free(stems[i]);
    free(wav.samples);
    LiteRtDestroyCompiledModel(compiled);
    LiteRtDestroyModel(model.handle);
    LiteRtDestroyEnvironment(environment);
    return 0;
}

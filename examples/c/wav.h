/* Reading and writing WAV files as interleaved float32 samples. */
#ifndef SEPARATE_WAV_H
#define SEPARATE_WAV_H

#include <stddef.h>

/* A clip: frames × channels samples, interleaved, in [-1, 1] for PCM input. */
typedef struct {
    float *samples; /* allocated by wav_read, released with free() */
    size_t frames;
    int channels;
    int sample_rate;
} Wav;

/* Reads `path` (PCM 16/24/32-bit or float32) into `wav`. Returns 0, or -1
 * with one line saying why in `error` (of `error_size` bytes). */
int wav_read(const char *path, Wav *wav, char *error, size_t error_size);

/* Writes `frames` × `channels` interleaved samples to `path` as a 32-bit
 * float WAV. Returns 0, or -1 with errno set. */
int wav_write_float(const char *path, const float *samples, size_t frames,
                    int channels, int sample_rate);

#endif

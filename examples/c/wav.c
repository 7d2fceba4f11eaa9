/* RIFF/WAVE reading (PCM 16/24/32-bit, float32, plain or extensible header)
 * and float32 writing, byte by byte so that it works on any host. */
#include "wav.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { FORMAT_PCM = 1, FORMAT_FLOAT = 3, FORMAT_EXTENSIBLE = 0xFFFE };

/* The little-endian 16-bit number at `b`. */
static uint32_t le16(const unsigned char *b) { return b[0] | (uint32_t)b[1] << 8; }

/* The little-endian 32-bit number at `b`. */
static uint32_t le32(const unsigned char *b)
{
    return b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* Stores `value` at `b` as `count` little-endian bytes. */
static void put_le(unsigned char *b, uint32_t value, int count)
{
    for (int i = 0; i < count; i++)
        b[i] = (unsigned char)(value >> (8 * i));
}

/* One sample at `b` as a float. PCM is scaled by 2^(bits-1), as libsndfile
 * (and so Python's soundfile) does, so 16-bit input reads the same in both. */
static float decode(const unsigned char *b, int format, int bits)
{
    if (format == FORMAT_FLOAT) {
        uint32_t word = le32(b);
        float value;
        memcpy(&value, &word, sizeof value);
        return value;
    }
    if (bits == 16)
        return (float)((int32_t)le16(b) - (b[1] & 0x80 ? 0x10000 : 0)) / 32768.0f;
    if (bits == 24) {
        int32_t value = (int32_t)(b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16);
        return (float)(value - (b[2] & 0x80 ? 0x1000000 : 0)) / 8388608.0f;
    }
    return (float)((double)(int32_t)le32(b) / 2147483648.0);
}

/* Checks the format chunk's encoding; returns 0, or -1 with the reason. */
static int check_encoding(const char *path, int format, int bits, int channels,
                          char *error, size_t error_size)
{
    int pcm = format == FORMAT_PCM && (bits == 16 || bits == 24 || bits == 32);
    int ieee = format == FORMAT_FLOAT && bits == 32;
    if (channels < 1) {
        snprintf(error, error_size, "%s: the WAV header gives no channels", path);
        return -1;
    }
    if (!pcm && !ieee) {
        snprintf(error, error_size,
                 "%s: unsupported WAV encoding (format %d, %d-bit): use PCM "
                 "16/24/32-bit or float32", path, format, bits);
        return -1;
    }
    return 0;
}

/* Reads the `size` bytes of the data chunk from `file` into `wav` as floats. */
static int read_data(FILE *file, const char *path, uint32_t size, int format,
                     int bits, Wav *wav, char *error, size_t error_size)
{
    size_t width = (size_t)bits / 8, frame = width * (size_t)wav->channels;
    unsigned char *bytes = malloc(size ? size : 1);
    if (!bytes) {
        snprintf(error, error_size, "%s: out of memory for %u bytes", path, size);
        return -1;
    }
    if (fread(bytes, 1, size, file) != size) {
        snprintf(error, error_size, "%s: the WAV data chunk is truncated", path);
        free(bytes);
        return -1;
    }
    wav->frames = size / frame;
    if (wav->frames == 0) {
        snprintf(error, error_size, "%s: the WAV file holds no samples", path);
        free(bytes);
        return -1;
    }
    wav->samples = malloc(wav->frames * (size_t)wav->channels * sizeof(float));
    if (!wav->samples) {
        snprintf(error, error_size, "%s: out of memory for its samples", path);
        free(bytes);
        return -1;
    }
    for (size_t i = 0; i < wav->frames * (size_t)wav->channels; i++)
        wav->samples[i] = decode(bytes + i * width, format, bits);
    free(bytes);
    return 0;
}

/* Walks the RIFF chunks of an open file: "fmt " first, then "data". */
static int read_chunks(FILE *file, const char *path, Wav *wav, char *error,
                       size_t error_size)
{
    unsigned char header[40];
    int format = 0, bits = 0;
    if (fread(header, 1, 12, file) != 12 || memcmp(header, "RIFF", 4) != 0 ||
        memcmp(header + 8, "WAVE", 4) != 0) {
        snprintf(error, error_size, "%s: not a WAV file (no RIFF/WAVE header)", path);
        return -1;
    }
    while (fread(header, 1, 8, file) == 8) {
        uint32_t size = le32(header + 4);
        if (memcmp(header, "fmt ", 4) == 0 && size >= 16 && size <= sizeof header) {
            if (fread(header, 1, size, file) != size)
                break;
            format = (int)le16(header);
            wav->channels = (int)le16(header + 2);
            wav->sample_rate = (int)le32(header + 4);
            bits = (int)le16(header + 14);
            if (format == FORMAT_EXTENSIBLE && size >= 26)
                format = (int)le16(header + 24); /* the subformat GUID's first two bytes */
            if (check_encoding(path, format, bits, wav->channels, error, error_size))
                return -1;
            if (size & 1)
                fseek(file, 1, SEEK_CUR);
        } else if (memcmp(header, "data", 4) == 0) {
            if (!format) {
                snprintf(error, error_size, "%s: the WAV data chunk comes before its format", path);
                return -1;
            }
            return read_data(file, path, size, format, bits, wav, error, error_size);
        } else if (fseek(file, (long)size + (size & 1), SEEK_CUR) != 0) {
            break;
        }
    }
    snprintf(error, error_size, "%s: the WAV file has no %s chunk", path,
             format ? "data" : "readable format");
    return -1;
}

int wav_read(const char *path, Wav *wav, char *error, size_t error_size)
{
    FILE *file = fopen(path, "rb");
    if (!file) {
        snprintf(error, error_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    memset(wav, 0, sizeof *wav);
    int result = read_chunks(file, path, wav, error, error_size);
    fclose(file);
    return result;
}

int wav_write_float(const char *path, const float *samples, size_t frames,
                    int channels, int sample_rate)
{
    uint64_t data_size = (uint64_t)frames * (uint64_t)channels * 4;
    unsigned char header[58];
    if (data_size > UINT32_MAX - sizeof header) {
        errno = EFBIG;
        return -1;
    }
    /* A float WAV: an 18-byte format chunk (format 3, no extension) and the
     * "fact" chunk that non-PCM formats carry, then the data. */
    memcpy(header, "RIFF", 4);
    put_le(header + 4, (uint32_t)(sizeof header - 8 + data_size), 4);
    memcpy(header + 8, "WAVEfmt ", 8);
    put_le(header + 16, 18, 4);
    put_le(header + 20, FORMAT_FLOAT, 2);
    put_le(header + 22, (uint32_t)channels, 2);
    put_le(header + 24, (uint32_t)sample_rate, 4);
    put_le(header + 28, (uint32_t)sample_rate * (uint32_t)channels * 4, 4);
    put_le(header + 32, (uint32_t)channels * 4, 2);
    put_le(header + 34, 32, 2);
    put_le(header + 36, 0, 2);
    memcpy(header + 38, "fact", 4);
    put_le(header + 42, 4, 4);
    put_le(header + 46, (uint32_t)frames, 4);
    memcpy(header + 50, "data", 4);
    put_le(header + 54, (uint32_t)data_size, 4);

    FILE *file = fopen(path, "wb");
    if (!file)
        return -1;
    int ok = fwrite(header, 1, sizeof header, file) == sizeof header;
    for (size_t i = 0; ok && i < frames * (size_t)channels; i++) {
        uint32_t word;
        unsigned char bytes[4];
        memcpy(&word, &samples[i], sizeof word);
        put_le(bytes, word, 4);
        ok = fwrite(bytes, 1, 4, file) == 4;
    }
    if (fclose(file) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

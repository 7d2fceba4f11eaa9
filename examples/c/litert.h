/* The part of LiteRT's C API that separate.c calls, declared by hand.
 *
 * The ai-edge-litert wheel ships libLiteRt.so but no headers, so these
 * declarations were written from the exported names (nm -D libLiteRt.so) and
 * the signatures in LiteRT's public source (the litert/c/ headers), for the
 * ai-edge-litert 2.3.0 wheel. Handles are opaque pointers; enums are plain
 * ints with only the values used here. Only the two structs passed by pointer
 * (a tensor's layout and type) need their exact memory layout. */
#ifndef SEPARATE_LITERT_H
#define SEPARATE_LITERT_H

#include <stddef.h>
#include <stdint.h>

/* Every call returns a status; 0 is success. */
typedef int LiteRtStatus;
#define LITERT_OK 0

/* Opaque handles, each created and destroyed by the library. */
typedef struct LiteRtEnvironmentT *LiteRtEnvironment;
typedef struct LiteRtModelT *LiteRtModel;
typedef struct LiteRtSignatureT *LiteRtSignature;
typedef struct LiteRtTensorT *LiteRtTensor;
typedef struct LiteRtOptionsT *LiteRtOptions;
typedef struct LiteRtOpaqueOptionsT *LiteRtOpaqueOptions;
typedef struct LiteRtCompiledModelT *LiteRtCompiledModel;
typedef struct LiteRtTensorBufferT *LiteRtTensorBuffer;

/* An index into a model's signatures, inputs or outputs. */
typedef size_t LiteRtParamIndex;

/* Element types (LiteRtElementType, the TfLiteType numbers). */
#define LITERT_FLOAT32 1

/* A bit set of hardware accelerators (LiteRtHwAcceleratorSet). */
#define LITERT_ACCELERATOR_CPU 1

/* LiteRtTensorTypeId: whether a tensor's type has a shape. */
#define LITERT_RANKED_TENSOR_TYPE 0

/* Host buffers handed to LiteRtCreateTensorBufferFromHostMemory must start
 * on this boundary, or the call fails with status 3 (runtime failure). */
#define LITERT_HOST_ALIGNMENT 64

#define LITERT_MAX_RANK 8

/* A tensor's shape: 68 bytes, the rank in a 7-bit field beside a strides flag. */
typedef struct {
    unsigned int rank : 7;
    unsigned int has_strides : 1;
    int32_t dimensions[LITERT_MAX_RANK]; /* -1 where the model leaves it free */
    uint32_t strides[LITERT_MAX_RANK];
} LiteRtLayout;

/* An element type with a shape: 72 bytes. */
typedef struct {
    int element_type;
    LiteRtLayout layout;
} LiteRtRankedTensorType;

/* The environment holds runtime-wide settings; separate.c passes none. */
LiteRtStatus LiteRtCreateEnvironment(int num_options, const void *options,
                                     LiteRtEnvironment *environment);
void LiteRtDestroyEnvironment(LiteRtEnvironment environment);

/* Loading a .tflite file and reading its signatures and metadata. */
LiteRtStatus LiteRtCreateModelFromFile(LiteRtEnvironment environment,
                                       const char *filename, LiteRtModel *model);
void LiteRtDestroyModel(LiteRtModel model);
LiteRtStatus LiteRtGetModelMetadata(LiteRtModel model, const char *key,
                                    const void **buffer, size_t *size);
LiteRtStatus LiteRtGetNumModelSignatures(LiteRtModel model,
                                         LiteRtParamIndex *count);
LiteRtStatus LiteRtGetModelSignature(LiteRtModel model, LiteRtParamIndex index,
                                     LiteRtSignature *signature);
LiteRtStatus LiteRtGetNumSignatureInputs(LiteRtSignature signature,
                                         LiteRtParamIndex *count);
LiteRtStatus LiteRtGetSignatureInputName(LiteRtSignature signature,
                                         LiteRtParamIndex index,
                                         const char **name);
LiteRtStatus LiteRtGetSignatureInputTensorByIndex(LiteRtSignature signature,
                                                  LiteRtParamIndex index,
                                                  LiteRtTensor *tensor);
LiteRtStatus LiteRtGetNumSignatureOutputs(LiteRtSignature signature,
                                          LiteRtParamIndex *count);
LiteRtStatus LiteRtGetSignatureOutputName(LiteRtSignature signature,
                                          LiteRtParamIndex index,
                                          const char **name);
LiteRtStatus LiteRtGetTensorTypeId(LiteRtTensor tensor, int *type_id);
LiteRtStatus LiteRtGetRankedTensorType(LiteRtTensor tensor,
                                       LiteRtRankedTensorType *type);

/* Compilation options. The CPU-option helpers (LrtCreateCpuOptions, ...) are
 * not exported by the wheel's library, so CPU settings travel as opaque
 * options: an identifier and a payload that the runtime reads as TOML and
 * frees with payload_destructor. */
LiteRtStatus LiteRtCreateOptions(LiteRtOptions *options);
void LiteRtDestroyOptions(LiteRtOptions options);
LiteRtStatus LiteRtSetOptionsHardwareAccelerators(LiteRtOptions options,
                                                  int accelerators);
LiteRtStatus LiteRtCreateOpaqueOptions(const char *identifier, void *payload,
                                       void (*payload_destructor)(void *),
                                       LiteRtOpaqueOptions *opaque_options);
void LiteRtDestroyOpaqueOptions(LiteRtOpaqueOptions opaque_options);
/* Takes ownership of opaque_options. */
LiteRtStatus LiteRtAddOpaqueOptions(LiteRtOptions options,
                                    LiteRtOpaqueOptions opaque_options);

/* The compiled model: resize, run, destroy. */
LiteRtStatus LiteRtCreateCompiledModel(LiteRtEnvironment environment,
                                       LiteRtModel model, LiteRtOptions options,
                                       LiteRtCompiledModel *compiled_model);
void LiteRtDestroyCompiledModel(LiteRtCompiledModel compiled_model);
LiteRtStatus LiteRtCompiledModelResizeInputTensor(
    LiteRtCompiledModel compiled_model, LiteRtParamIndex signature_index,
    LiteRtParamIndex input_index, const int *dims, size_t dims_size);
LiteRtStatus LiteRtRunCompiledModel(LiteRtCompiledModel compiled_model,
                                    LiteRtParamIndex signature_index,
                                    size_t num_inputs, LiteRtTensorBuffer *inputs,
                                    size_t num_outputs,
                                    LiteRtTensorBuffer *outputs);

/* A tensor buffer over memory the caller owns (deallocator NULL). */
LiteRtStatus LiteRtCreateTensorBufferFromHostMemory(
    const LiteRtRankedTensorType *type, void *host_memory, size_t size,
    void (*deallocator)(void *), LiteRtTensorBuffer *buffer);
void LiteRtDestroyTensorBuffer(LiteRtTensorBuffer buffer);

#endif

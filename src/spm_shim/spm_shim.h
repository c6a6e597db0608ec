/* C interface of the SentencePiece shim (libziprerank_spm.so). Loaded with dlopen so that the
 * protobuf copy inside libsentencepiece never meets libtorch's protobuf in one symbol namespace. */
#ifndef ZIPRERANK_SPM_SHIM_H
#define ZIPRERANK_SPM_SHIM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZR_SPM_ABI_VERSION 1

typedef struct zr_spm zr_spm;

int zr_spm_abi_version(void);
/* Returns NULL on failure and writes a message into err (NUL-terminated, at most errlen bytes). */
zr_spm* zr_spm_load(const char* path, char* err, size_t errlen);
void zr_spm_free(zr_spm* model);
/* Encodes text into ids; *ids is malloc'ed (free with zr_spm_free_buffer). 0 on success. */
int zr_spm_encode(const zr_spm* model, const char* text, size_t len, int** ids, size_t* n,
                  char* err, size_t errlen);
/* Decodes ids into malloc'ed UTF-8 text of *len bytes. 0 on success. */
int zr_spm_decode(const zr_spm* model, const int* ids, size_t n, char** text, size_t* len,
                  char* err, size_t errlen);
void zr_spm_free_buffer(void* p);
int zr_spm_piece_size(const zr_spm* model);
/* -1 when the piece is not in the vocabulary. */
int zr_spm_piece_to_id(const zr_spm* model, const char* piece);
/* Pointer valid while the model lives; NULL for an id out of range. */
const char* zr_spm_id_to_piece(const zr_spm* model, int id);

#ifdef __cplusplus
}
#endif
#endif

/* A generic test driver for one bnnc-compiled model.
 *
 * Build (the model is chosen at compile time; its generated header is force-
 * included, so the driver also checks that the header compiles and that the
 * entry points match its prototypes):
 *
 *   cc -std=c99 -Wall -Wextra -Werror -DBNNC_MODEL=<model> -include <model>.h \
 *      driver.c <model>.o -lm -o driver
 *
 * Run:
 *
 *   driver IN.bin OUT.bin
 *
 * IN.bin, every integer a little-endian uint64:
 *
 *   magic            the 8 bytes "BNNCDRV1"
 *   batch            samples to run
 *   workspace_bytes  what <model>_workspace_size(batch) must return
 *   workspace_shift  bytes added to the workspace pointer (to test that any
 *                    alignment works, as the header promises)
 *   max_batch        the largest batch the model accepts (2^64 - 1: no limit)
 *   n_inputs
 *   n_outputs
 *   n_inputs times:  nbytes, then nbytes bytes of the input in the generated
 *                    code's layout (float / int32_t row-major, b1 packed words)
 *   n_outputs times: nbytes of the output
 *
 * OUT.bin: the outputs' bytes, concatenated in declaration order.
 *
 * The driver fills the workspace and the outputs with a garbage pattern before
 * the call (the code must not rely on zeroed memory), calls
 * <model>_run_checked with the exact workspace size, and first checks the
 * error paths: a null output pointer gives status 1 (NULL_POINTER), also when
 * the workspace is too small as well (the null pointer wins); max_batch + 1
 * gives status 2 (BATCH_TOO_LARGE) with <model>_workspace_size returning
 * SIZE_MAX; a workspace one byte short gives status 3 (WORKSPACE_TOO_SMALL);
 * none of them writes an output or the workspace. When the workspace of batch
 * 0 is 0 bytes, <model>_run_checked(batch 0) with a NULL workspace returns 0.
 *
 * Exit status: 0 on success; 1 bad usage or I/O; 2 malformed IN.bin;
 * 3 the workspace size differs; 4 the model returned a nonzero status;
 * 5 an error path returned the wrong status.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef BNNC_MODEL
#error "compile with -DBNNC_MODEL=<model name> -include <model>.h"
#endif

#define BNNC_PASTE2(a, b) a##b
#define BNNC_PASTE(a, b) BNNC_PASTE2(a, b)
#define RUN_V BNNC_PASTE(BNNC_MODEL, _run_v)
#define RUN_CHECKED BNNC_PASTE(BNNC_MODEL, _run_checked)
#define WORKSPACE_SIZE BNNC_PASTE(BNNC_MODEL, _workspace_size)

/* Largest number of inputs or outputs the driver accepts. */
#define MAX_IO 64

static unsigned char *in_data;
static size_t in_len, in_pos;

static int take_u64(uint64_t *v) {
    int i;
    if (in_len - in_pos < 8) return 0;
    *v = 0;
    for (i = 7; i >= 0; i--) *v = (*v << 8) | in_data[in_pos + (size_t)i];
    in_pos += 8;
    return 1;
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0, got;
    if (!f) return NULL;
    for (;;) {
        if (n == cap) {
            unsigned char *nb;
            cap = cap ? 2 * cap : 1 << 16;
            nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = n;
    return buf;
}

/* malloc that never returns NULL for 0 bytes and fills with a pattern. */
static void *alloc_filled(size_t n, int byte) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "driver: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    memset(p, byte, n ? n : 1);
    return p;
}

int main(int argc, char **argv) {
    uint64_t batch, ws_bytes, ws_shift, max_batch, n_in, n_out, k;
    const void *ins[MAX_IO];
    void *outs[MAX_IO];
    uint64_t out_bytes[MAX_IO];
    unsigned char *ws_base, *ws;
    size_t got_ws;
    int32_t status;
    FILE *f;

    if (argc != 3) {
        fprintf(stderr, "usage: %s IN.bin OUT.bin\n", argv[0]);
        return 1;
    }
    in_data = read_file(argv[1], &in_len);
    if (!in_data) {
        perror(argv[1]);
        return 1;
    }
    if (in_len < 8 || memcmp(in_data, "BNNCDRV1", 8) != 0) {
        fprintf(stderr, "driver: %s: bad magic\n", argv[1]);
        return 2;
    }
    in_pos = 8;
    if (!take_u64(&batch) || !take_u64(&ws_bytes) || !take_u64(&ws_shift) ||
        !take_u64(&max_batch) || !take_u64(&n_in) || !take_u64(&n_out) || n_in > MAX_IO ||
        n_out > MAX_IO || ws_shift > 64) {
        fprintf(stderr, "driver: %s: bad header\n", argv[1]);
        return 2;
    }
    for (k = 0; k < n_in; k++) {
        uint64_t nb;
        void *p;
        if (!take_u64(&nb) || in_len - in_pos < nb) {
            fprintf(stderr, "driver: %s: input %u truncated\n", argv[1], (unsigned)k);
            return 2;
        }
        p = alloc_filled((size_t)nb, 0);
        memcpy(p, in_data + in_pos, (size_t)nb);
        in_pos += (size_t)nb;
        ins[k] = p;
    }
    for (k = 0; k < n_out; k++) {
        if (!take_u64(&out_bytes[k])) {
            fprintf(stderr, "driver: %s: output sizes truncated\n", argv[1]);
            return 2;
        }
        outs[k] = alloc_filled((size_t)out_bytes[k], 0xA5);
    }
    if (in_pos != in_len) {
        fprintf(stderr, "driver: %s: %zu trailing bytes\n", argv[1], in_len - in_pos);
        return 2;
    }

    got_ws = WORKSPACE_SIZE((size_t)batch);
    if ((uint64_t)got_ws != ws_bytes) {
        fprintf(stderr, "driver: workspace_size(%llu) = %llu, expected %llu\n",
                (unsigned long long)batch, (unsigned long long)got_ws,
                (unsigned long long)ws_bytes);
        return 3;
    }
    ws_base = alloc_filled((size_t)ws_bytes + 64, 0xCD);
    ws = ws_base + ws_shift;

    /* Error paths first (they must not write anything that matters). */
    if (n_out > 0) {
        void *saved = outs[n_out - 1];
        outs[n_out - 1] = NULL;
        status = RUN_V(ins, (void *const *)outs, ws, (size_t)batch);
        outs[n_out - 1] = saved;
        if (status != 1) {
            fprintf(stderr, "driver: a null output gave status %d, expected 1\n", (int)status);
            return 5;
        }
    }
    if (n_out > 0 && ws_bytes > 0) {
        void *saved = outs[n_out - 1];
        outs[n_out - 1] = NULL;
        status = RUN_CHECKED(ins, (void *const *)outs, ws, (size_t)ws_bytes - 1, (size_t)batch);
        outs[n_out - 1] = saved;
        if (status != 1) {
            fprintf(stderr, "driver: a null output and a small workspace gave status %d, expected 1\n",
                    (int)status);
            return 5;
        }
    }
    if (ws_bytes > 0) {
        status = RUN_CHECKED(ins, (void *const *)outs, ws, (size_t)ws_bytes - 1, (size_t)batch);
        if (status != 3) {
            fprintf(stderr, "driver: a workspace one byte short gave status %d, expected 3\n",
                    (int)status);
            return 5;
        }
    }
    if (WORKSPACE_SIZE(0) == 0) {
        status = RUN_CHECKED(ins, (void *const *)outs, NULL, 0, 0);
        if (status != 0) {
            fprintf(stderr, "driver: batch 0 with a NULL workspace gave status %d, expected 0\n",
                    (int)status);
            return 5;
        }
        /* Batch 0 may write unbatched outputs: restore the garbage pattern. */
        for (k = 0; k < n_out; k++) memset(outs[k], 0xA5, (size_t)out_bytes[k]);
    }
    if (max_batch < (uint64_t)SIZE_MAX) {
        size_t too_many = (size_t)max_batch + 1;
        if (WORKSPACE_SIZE(too_many) != SIZE_MAX) {
            fprintf(stderr, "driver: workspace_size(max_batch + 1) is not SIZE_MAX\n");
            return 5;
        }
        status = RUN_V(ins, (void *const *)outs, ws, too_many);
        if (status != 2) {
            fprintf(stderr, "driver: batch max_batch + 1 gave status %d, expected 2\n",
                    (int)status);
            return 5;
        }
    }

    for (k = 0; k < n_out; k++) {
        uint64_t b;
        for (b = 0; b < out_bytes[k]; b++) {
            if (((unsigned char *)outs[k])[b] != 0xA5) {
                fprintf(stderr, "driver: an error path wrote output %u\n", (unsigned)k);
                return 5;
            }
        }
    }
    for (k = 0; k < ws_bytes; k++) {
        if (ws[k] != 0xCD) {
            fprintf(stderr, "driver: an error path wrote the workspace\n");
            return 5;
        }
    }

    status = RUN_CHECKED(ins, (void *const *)outs, ws, (size_t)ws_bytes, (size_t)batch);
    if (status != 0) {
        fprintf(stderr, "driver: the model returned status %d\n", (int)status);
        return 4;
    }

    f = fopen(argv[2], "wb");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    for (k = 0; k < n_out; k++) {
        if (fwrite(outs[k], 1, (size_t)out_bytes[k], f) != (size_t)out_bytes[k]) {
            perror(argv[2]);
            fclose(f);
            return 1;
        }
    }
    if (fclose(f) != 0) {
        perror(argv[2]);
        return 1;
    }
    for (k = 0; k < n_in; k++) free((void *)ins[k]);
    for (k = 0; k < n_out; k++) free(outs[k]);
    free(ws_base);
    free(in_data);
    return 0;
}

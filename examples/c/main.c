/* mnist_classify: classify 28x28 grey images with the trained binary MNIST
 * CNN (examples/train/mnist_cnn_packed.ir, 98.79% on the MNIST test set)
 * compiled to native code by bnnc.
 *
 *   mnist_classify IMAGES.f32
 *
 * IMAGES.f32 holds any number of images as raw little-endian float32
 * pixels, 784 per image (28 rows of 28, row-major), values in [0, 1];
 * e.g. from numpy: images.reshape(-1, 784).astype("<f4").tofile("x.f32").
 * All images run as one batch. For each image the program prints
 *
 *   image <index>: class <argmax of the 10 logits>
 *
 * The generated header, mnist_cnn.h, gives the entry point, the byte size of
 * each input and output for a batch, and the workspace size; the object file
 * holds the code and the weights, and needs nothing but libm.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mnist_cnn.h"

/* Reads a whole file; returns NULL on error. */
static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0, got;
    if (!f) return NULL;
    do {
        if (n == cap) {
            unsigned char *grown = realloc(buf, cap = cap ? 2 * cap : 1 << 16);
            if (!grown) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    if (ferror(f)) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = n;
    return buf;
}

/* A little-endian float32 at p, whatever this machine's byte order. */
static float le_f32(const unsigned char *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

int main(int argc, char **argv) {
    const size_t in_bytes = MNIST_CNN_INPUT0_BYTES(1);   /* 784 floats */
    const size_t out_bytes = MNIST_CNN_OUTPUT0_BYTES(1); /* 10 floats */
    const size_t pixels = in_bytes / sizeof(float);
    const size_t classes = out_bytes / sizeof(float);
    unsigned char *file;
    size_t len = 0, batch, i, j;
    float *x, *logits;
    void *workspace;
    int32_t status;

    if (argc != 2) {
        fprintf(stderr, "usage: %s IMAGES.f32\n", argv[0]);
        return 2;
    }
    file = read_file(argv[1], &len);
    if (!file) {
        perror(argv[1]);
        return 1;
    }
    if (len == 0 || len % in_bytes != 0) {
        fprintf(stderr, "%s: %zu bytes is not a whole number of %zu-byte images\n", argv[1], len,
                in_bytes);
        return 1;
    }
    batch = len / in_bytes;
    if (batch > MNIST_CNN_MAX_BATCH) {
        fprintf(stderr, "%s: %zu images, at most %zu per batch\n", argv[1], batch,
                (size_t)MNIST_CNN_MAX_BATCH);
        return 1;
    }

    x = malloc(MNIST_CNN_INPUT0_BYTES(batch));
    logits = malloc(MNIST_CNN_OUTPUT0_BYTES(batch));
    /* The workspace holds the intermediate tensors (it may be null only when
     * its size is 0). */
    workspace = malloc(MNIST_CNN_WORKSPACE_SIZE(batch));
    if (!x || !logits || (!workspace && MNIST_CNN_WORKSPACE_SIZE(batch) != 0)) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (i = 0; i < batch * pixels; i++) x[i] = le_f32(file + 4 * i);

    status = mnist_cnn_run(x, logits, workspace, batch);
    if (status != MNIST_CNN_OK) {
        fprintf(stderr, "mnist_cnn_run failed with status %d\n", (int)status);
        return 1;
    }

    for (i = 0; i < batch; i++) {
        const float *row = logits + i * classes;
        size_t best = 0;
        /* The first maximum wins, as in bnnc's argmax. */
        for (j = 1; j < classes; j++)
            if (row[j] > row[best]) best = j;
        printf("image %zu: class %zu\n", i, best);
    }

    free(workspace);
    free(logits);
    free(x);
    free(file);
    return 0;
}

/* Two bnnc models in one C program: the binary MNIST MLP and the binary CNN
 * (examples/mnist_mlp.ir, examples/bireal_cnn.ir). Both headers are included
 * in one translation unit and both objects linked into one program, which
 * shows that their symbols and macros do not clash. The MLP runs through its
 * typed entry point, the CNN through the pointer-array one.
 *
 *   two_models IMAGES.f32 MLP_LOGITS.bin CNN_LOGITS.bin
 *
 * IMAGES.f32: raw float32 pixels in this machine's byte order, 784 per image
 * (both models take 28x28x1 inputs); all images run as one batch. Each
 * output file receives that model's logits, [batch, 10] float32. Exits 0 on
 * success, 1 on an I/O error or a nonzero status.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bireal_cnn.h"
#include "mnist_mlp.h"

#if MNIST_MLP_NUM_INPUTS != 1 || BIREAL_CNN_NUM_INPUTS != 1 || MNIST_MLP_NUM_OUTPUTS != 1 || \
    BIREAL_CNN_NUM_OUTPUTS != 1
#error "both models have one input and one output"
#endif

static int write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) {
        perror(path);
        if (f) fclose(f);
        return 0;
    }
    if (fclose(f) != 0) {
        perror(path);
        return 0;
    }
    return 1;
}

int main(int argc, char **argv) {
    FILE *f;
    long len;
    size_t batch;
    float *x, *mlp_logits, *cnn_logits;
    void *ws_mlp, *ws_cnn;
    const void *ins[1];
    void *outs[1];
    int32_t status;

    if (argc != 4) {
        fprintf(stderr, "usage: %s IMAGES.f32 MLP_LOGITS.bin CNN_LOGITS.bin\n", argv[0]);
        return 1;
    }
    if (MNIST_MLP_INPUT0_BYTES(1) != BIREAL_CNN_INPUT0_BYTES(1)) {
        fprintf(stderr, "the models take inputs of different sizes\n");
        return 1;
    }
    f = fopen(argv[1], "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) <= 0 ||
        (size_t)len % MNIST_MLP_INPUT0_BYTES(1) != 0 || fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "%s: cannot read a whole number of images\n", argv[1]);
        return 1;
    }
    batch = (size_t)len / MNIST_MLP_INPUT0_BYTES(1);
    x = malloc(MNIST_MLP_INPUT0_BYTES(batch));
    mlp_logits = malloc(MNIST_MLP_OUTPUT0_BYTES(batch));
    cnn_logits = malloc(BIREAL_CNN_OUTPUT0_BYTES(batch));
    ws_mlp = malloc(MNIST_MLP_WORKSPACE_SIZE(batch));
    ws_cnn = malloc(bireal_cnn_workspace_size(batch));
    if (!x || !mlp_logits || !cnn_logits || !ws_mlp || !ws_cnn) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    if (fread(x, 1, (size_t)len, f) != (size_t)len) {
        perror(argv[1]);
        return 1;
    }
    fclose(f);

    status = mnist_mlp_run(x, mlp_logits, ws_mlp, batch);
    if (status != MNIST_MLP_OK) {
        fprintf(stderr, "mnist_mlp_run: status %d\n", (int)status);
        return 1;
    }
    ins[0] = x;
    outs[0] = cnn_logits;
    status = bireal_cnn_run_v(ins, outs, ws_cnn, batch);
    if (status != BIREAL_CNN_OK) {
        fprintf(stderr, "bireal_cnn_run_v: status %d\n", (int)status);
        return 1;
    }

    if (!write_file(argv[2], mlp_logits, MNIST_MLP_OUTPUT0_BYTES(batch)) ||
        !write_file(argv[3], cnn_logits, BIREAL_CNN_OUTPUT0_BYTES(batch)))
        return 1;
    free(ws_cnn);
    free(ws_mlp);
    free(cnn_logits);
    free(mlp_logits);
    free(x);
    return 0;
}

/* libFuzzer harness for the transform pipeline: fuzzed bytes -> an image and a pipeline spec ->
 * af_pipeline_build (must accept or refuse cleanly) -> af_pipeline_run on the image (must succeed or
 * fail cleanly, writing only inside the output it announced). Built by `make fuzz`.
 *
 * Input layout: byte 0 = number of stages (mod 8), then per stage: kind byte, nparams byte, and two
 * bytes per parameter (mode bit: small integer 0..255 or a fraction b/255, sign bit), then a 2-byte
 * RNG stream, then the image: an encoded JPEG/PNG/BMP if it decodes, else raw pixels with
 * h = b0 % 48 + 1, w = b1 % 48 + 1, channels 1 or 3 from b2, filled cyclically from the rest.
 * Sizes stay below 256 so each run takes microseconds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "image/transforms.h"

typedef struct {
    const uint8_t *p;
    size_t n;
} cursor;

static int take(cursor *c) {
    if (c->n == 0) return 0;
    c->n--;
    return *c->p++;
}

static double param(cursor *c) {
    int a = take(c), b = take(c);
    double v = (a & 1) ? b / 255.0 : (double)b; /* fractions reach p, scale, ratio, magnitudes */
    if (a & 2) v = -v;                          /* negative values must be refused */
    if ((a & 0xFC) == 0xFC) v = (a & 1) ? 1e300 : 65537; /* limits */
    return v;
}

static int raw_image(cursor *c, af_image *img) {
    int h = take(c) % 48 + 1, w = take(c) % 48 + 1, ch = (take(c) & 1) ? 3 : 1;
    if (af_image_alloc(img, h, w, ch) != AF_OK) return -1;
    size_t n = (size_t)h * w * ch;
    for (size_t i = 0; i < n; i++) img->data[i] = c->n ? c->p[i % c->n] : (uint8_t)(i * 37);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cursor c = {data, size};
    double spec[8 * (2 + 16)];
    int64_t n = 0;
    int nstages = take(&c) % 8;
    for (int s = 0; s < nstages; s++) {
        spec[n++] = take(&c) % (AF_STAGE_KIND_END + 1); /* includes 0 and END: unknown kinds */
        int np = take(&c) % 17;
        spec[n++] = np;
        for (int k = 0; k < np; k++) spec[n++] = param(&c);
    }
    uint64_t stream = (uint64_t)take(&c) << 8 | (uint64_t)take(&c);
    af_pipeline *p = NULL;
    if (af_pipeline_build(spec, n, &p) != AF_OK) {
        af_error_clear();
        return 0;
    }
    af_image img = {0};
    if (af_image_decode(c.p, c.n, 1 << 16, "<fuzz>", &img) != AF_OK) {
        af_error_clear();
        if (raw_image(&c, &img) != 0) goto done;
    }
    float *out = NULL;
    int C = 0, H = 0, W = 0;
    if (af_pipeline_has_to_tensor(p)) {
        if (af_pipeline_output_shape(p, img.height, img.width, &C, &H, &W) == AF_OK) {
            out = malloc((size_t)C * H * W * sizeof(float) + 1);
        } else {
            af_error_clear();
        }
    }
    af_rng rng = af_rng_make(1, stream, 0);
    if (af_pipeline_run(p, &img, &rng, out) == AF_OK && img.data) {
        volatile uint8_t sink = img.data[(size_t)img.height * img.width * img.channels - 1];
        (void)sink;
    }
    free(out);
done:
    af_error_clear();
    af_image_free(&img);
    af_pipeline_free(p);
    return 0;
}

/* libFuzzer harness for the decoder: arbitrary bytes -> af_image_decode (stb_image behind our
 * header checks and pixel limit). Every input must either decode into a consistent image or fail
 * with an af_status; ASan/UBSan catch memory errors inside stb_image. A file that decodes must also
 * decode straight to gray (af_image_decode_gray, 1 or 3 channels by the input's length) into exactly
 * what Grayscale makes of the RGB image: 1-component files take their own 1-channel path there.
 * Built by `make fuzz`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/transforms.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    af_image img = {0};
    /* a small pixel cap keeps each run fast and exercises the "too large" refusal */
    if (af_image_decode(data, size, 1 << 20, "<fuzz>", &img) == AF_OK) {
        if (img.height < 1 || img.width < 1 || img.channels != 3 || (int64_t)img.height * img.width > (1 << 20)) abort();
        volatile uint8_t sink = img.data[(size_t)img.height * img.width * img.channels - 1]; /* last byte readable */
        (void)sink;
        int g = size & 1 ? 3 : 1;
        af_image gray = {0}, ref = {0};
        if (af_image_decode_gray(data, size, 1 << 20, "<fuzz>", g, &gray) != AF_OK || af_img_grayscale(&img, g, &ref) != AF_OK)
            abort();
        if (gray.height != ref.height || gray.width != ref.width || gray.channels != g ||
            memcmp(gray.data, ref.data, (size_t)ref.height * ref.width * g) != 0)
            abort();
        af_image_free(&gray);
        af_image_free(&ref);
    }
    af_image_free(&img);
    af_error_clear();
    return 0;
}

/* libFuzzer harness for the decoder: arbitrary bytes -> af_image_decode (stb_image behind our
 * header checks and pixel limit). Every input must either decode into a consistent image or fail
 * with an af_status; ASan/UBSan catch memory errors inside stb_image. Built by `make fuzz`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    af_image img = {0};
    /* a small pixel cap keeps each run fast and exercises the "too large" refusal */
    if (af_image_decode(data, size, 1 << 20, "<fuzz>", &img) == AF_OK) {
        if (img.height < 1 || img.width < 1 || img.channels != 3 || (int64_t)img.height * img.width > (1 << 20)) abort();
        volatile uint8_t sink = img.data[(size_t)img.height * img.width * img.channels - 1]; /* last byte readable */
        (void)sink;
    }
    af_image_free(&img);
    af_error_clear();
    return 0;
}

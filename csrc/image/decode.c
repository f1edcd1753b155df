/* Image memory and decoding: JPEG, PNG and BMP through stb_image (Debian's libstb-dev, found by
 * setup.py; never a copy in our tree).
 *
 * Hardening, because decoders are where malformed files bite:
 * - only the three decoders we need are compiled in (STBI_ONLY_*), no stdio (we read files ourselves);
 * - stbi_info_from_memory reads the header first, and images over max_pixels (or over stb's own
 *   STBI_MAX_DIMENSIONS, lowered here to 1 << 16 per side) are refused before any pixel is decoded;
 * - 16-bit PNGs are decoded as 8 bits (stbi_load_from_memory converts by taking the high byte,
 *   after the same size checks);
 * - vertical flipping is never enabled (stb's flip flag is process-global and not thread-safe).
 * stb_image is thread-safe for concurrent loads as long as no global setting is changed, which we
 * never do, so loader threads may decode in parallel. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../core/tensor.h"
#include "image.h"

#ifndef AF_HAVE_STB
#error "affectfer needs stb_image.h (Debian: libstb-dev, or `make stb`); setup.py defines AF_HAVE_STB when found"
#endif

#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_MAX_DIMENSIONS (1 << 16)
#define STBI_MALLOC(sz) malloc(sz)
#define STBI_REALLOC(p, newsz) realloc(p, newsz)
#define STBI_FREE(p) free(p)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmisleading-indentation"
#include <stb_image.h>
#pragma GCC diagnostic pop

af_status af_image_alloc(af_image *img, int height, int width, int channels) {
    memset(img, 0, sizeof(*img));
    if (height < 0 || width < 0 || (channels != 1 && channels != 3))
        return AF_FAIL(AF_ERR_VALUE, "image: invalid size %dx%dx%d", height, width, channels);
    size_t n = (size_t)height * (size_t)width * (size_t)channels;
    img->data = af_alloc_host(n ? n : 1);
    if (!img->data) return AF_FAIL(AF_ERR_OOM, "image: cannot allocate %zu bytes", n);
    img->height = height;
    img->width = width;
    img->channels = channels;
    return AF_OK;
}

void af_image_free(af_image *img) {
    if (img->data && !img->borrowed) af_free_host(img->data);
    memset(img, 0, sizeof(*img));
}

af_status af_image_make_owned(af_image *img) {
    if (!img->borrowed) return AF_OK;
    af_image copy;
    AF_TRY(af_image_alloc(&copy, img->height, img->width, img->channels));
    memcpy(copy.data, img->data, (size_t)img->height * img->width * img->channels);
    *img = copy;
    return AF_OK;
}

/* stb_image decodes truncated JPEG and BMP files without complaint (missing data reads as zeros),
 * so completeness is checked here. JPEG: an end-of-image marker must follow the last
 * start-of-scan marker (entropy-coded data cannot contain FF DA: its FF bytes are stuffed as FF 00
 * or are restart markers). BMP: the file must hold every row the header promises. */
static int jpeg_complete(const uint8_t *b, size_t n) {
    size_t last_sos = 0;
    for (size_t i = n - 1; i >= 1; i--)
        if (b[i - 1] == 0xFF && b[i] == 0xDA) {
            last_sos = i;
            break;
        }
    if (!last_sos) return 0;
    for (size_t i = last_sos + 1; i + 1 < n; i++)
        if (b[i] == 0xFF && b[i + 1] == 0xD9) return 1;
    return 0;
}

/* stb_image 2.30 computes `NULL + 0` (undefined behaviour, caught by UBSan in `make fuzz`) when the
 * first IDAT chunk of a PNG is empty; legal but never written by real encoders, so refused. */
static int png_first_idat_empty(const uint8_t *b, size_t n) {
    size_t pos = 8;
    while (pos + 8 <= n) {
        uint32_t len = (uint32_t)b[pos] << 24 | (uint32_t)b[pos + 1] << 16 | (uint32_t)b[pos + 2] << 8 | b[pos + 3];
        if (!memcmp(b + pos + 4, "IDAT", 4)) return len == 0;
        if (len > n) return 0;
        pos += 12 + (size_t)len;
    }
    return 0;
}

static uint32_t le32(const uint8_t *p) { return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static int bmp_complete(const uint8_t *b, size_t n) {
    if (n < 34) return 0;
    uint32_t offset = le32(b + 10), header = le32(b + 14);
    if (header < 40) return 1; /* OS/2 headers: leave the checks to stb */
    int64_t w = (int32_t)le32(b + 18), h = (int32_t)le32(b + 22);
    int bpp = b[28] | b[29] << 8;
    uint32_t compression = le32(b + 30);
    if (compression != 0 && compression != 3) return 1; /* stb refuses RLE itself */
    if (h < 0) h = -h;
    int64_t stride = ((w * bpp + 31) / 32) * 4;
    return (int64_t)offset + stride * h <= (int64_t)n;
}

af_status af_image_decode(const uint8_t *bytes, size_t nbytes, int64_t max_pixels, const char *name, af_image *out) {
    memset(out, 0, sizeof(*out));
    if (!name) name = "<memory>";
    if (nbytes == 0) return AF_FAIL(AF_ERR_VALUE, "cannot decode '%s': the file is empty", name);
    if (nbytes > (size_t)INT32_MAX) return AF_FAIL(AF_ERR_VALUE, "cannot decode '%s': larger than 2 GiB", name);
    int w = 0, h = 0, comp = 0;
    if (!stbi_info_from_memory(bytes, (int)nbytes, &w, &h, &comp))
        return AF_FAIL(AF_ERR_VALUE, "cannot decode '%s': %s (JPEG, PNG and BMP are supported)", name,
                       stbi_failure_reason() ? stbi_failure_reason() : "unknown format");
    if (w <= 0 || h <= 0) return AF_FAIL(AF_ERR_VALUE, "cannot decode '%s': invalid size %dx%d", name, w, h);
    if (max_pixels > 0 && (int64_t)w * h > max_pixels)
        return AF_FAIL(AF_ERR_VALUE, "cannot decode '%s': %dx%d = %lld pixels is over the limit of %lld", name, w, h,
                       (long long)w * h, (long long)max_pixels);
    if (nbytes >= 2 && bytes[0] == 0xFF && bytes[1] == 0xD8 && !jpeg_complete(bytes, nbytes))
        return AF_FAIL(AF_ERR_VALUE, "cannot decode '%s': truncated JPEG (no end-of-image marker after the last scan)", name);
    if (nbytes >= 8 && !memcmp(bytes, "\x89PNG\r\n\x1a\n", 8) && png_first_idat_empty(bytes, nbytes))
        return AF_FAIL(AF_ERR_VALUE, "cannot decode '%s': PNG with an empty first IDAT chunk", name);
    if (nbytes >= 2 && bytes[0] == 'B' && bytes[1] == 'M' && !bmp_complete(bytes, nbytes))
        return AF_FAIL(AF_ERR_VALUE, "cannot decode '%s': truncated BMP (fewer pixel bytes than the header says)", name);
    int dw = 0, dh = 0, dcomp = 0;
    /* Always ask for 3 channels: stb converts gray, gray+alpha and RGBA to RGB (alpha dropped) and
     * 16-bit samples to their high byte. */
    uint8_t *pixels = stbi_load_from_memory(bytes, (int)nbytes, &dw, &dh, &dcomp, 3);
    if (!pixels)
        return AF_FAIL(AF_ERR_VALUE, "cannot decode '%s': %s (corrupt or truncated?)", name,
                       stbi_failure_reason() ? stbi_failure_reason() : "decoder error");
    if (dw != w || dh != h) {
        stbi_image_free(pixels);
        return AF_FAIL(AF_ERR_VALUE, "cannot decode '%s': header says %dx%d but decoded %dx%d", name, w, h, dw, dh);
    }
    af_status st = af_image_alloc(out, h, w, 3);
    if (st == AF_OK) memcpy(out->data, pixels, (size_t)h * w * 3);
    stbi_image_free(pixels);
    return st;
}

af_status af_image_read_file(const char *path, int64_t max_pixels, af_image *out) {
    memset(out, 0, sizeof(*out));
    FILE *f = fopen(path, "rb");
    if (!f) return AF_FAIL(AF_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    uint8_t *buf = NULL;
    af_status st = AF_OK;
    if (fseek(f, 0, SEEK_END) != 0) AF_CHECK_FAIL(AF_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    long size = ftell(f);
    if (size < 0) AF_CHECK_FAIL(AF_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    if (size > INT32_MAX) AF_CHECK_FAIL(AF_ERR_VALUE, "cannot decode '%s': larger than 2 GiB", path);
    rewind(f);
    buf = malloc(size ? (size_t)size : 1);
    if (!buf) AF_CHECK_FAIL(AF_ERR_OOM, "cannot read '%s': out of memory for %ld bytes", path, size);
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) AF_CHECK_FAIL(AF_ERR_IO, "cannot read '%s': short read", path);
    st = af_image_decode(buf, (size_t)size, max_pixels, path, out);
fail:
    free(buf);
    fclose(f);
    return st;
}

/* Image memory and decoding: JPEG and PNG through stb_image (Debian's libstb-dev, found by
 * setup.py; never a copy in our tree).
 *
 * Hardening, because decoders are where malformed files bite:
 * - only the two decoders face datasets need are compiled in (STBI_ONLY_JPEG, STBI_ONLY_PNG): every
 *   other format is refused before any decoder runs; no stdio (we read files ourselves, regular
 *   files only, so a FIFO or a device never blocks a loader thread);
 * - stbi_info_from_memory reads the header first, and images over max_pixels (which must be >= 1:
 *   a small file can declare a huge image) or over stb's own STBI_MAX_DIMENSIONS, lowered here to
 *   1 << 16 per side, are refused before any pixel is decoded;
 * - 16-bit PNGs are decoded as 8 bits (stbi_load_from_memory converts by taking the high byte,
 *   after the same size checks);
 * - vertical flipping is never enabled (stb's flip flag is process-global and not thread-safe).
 * stb_image is thread-safe for concurrent loads as long as no global setting is changed, which we
 * never do, so loader threads may decode in parallel. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/cpu.h"
#include "../core/tensor.h"
#include "transforms.h"

#ifndef AF_HAVE_STB
#error "affectfer needs stb_image.h (Debian: libstb-dev, or `make stb`); setup.py defines AF_HAVE_STB when found"
#endif

#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_MAX_DIMENSIONS (1 << 16)
/* stb allocates through our host allocator: its output buffer then becomes the af_image's pixels
 * as it is (no copy), and its large work buffers (component planes, the PNG inflate buffer) come
 * from the host block cache (csrc/core/alloc.c) instead of fresh pages for every image. Every
 * allocation is zeroed: on some malformed JPEGs that stb accepts (a component no scan covers), it
 * reads planes it never wrote, and the decoded pixels were whatever the memory held before, a
 * different image at each decode. Zeroed, they are the same every time. */
static void *stb_malloc(size_t size);
static void *stb_realloc_sized(void *p, size_t old_size, size_t new_size);
#define STBI_MALLOC(sz) stb_malloc(sz)
#define STBI_REALLOC_SIZED(p, oldsz, newsz) stb_realloc_sized(p, oldsz, newsz)
#define STBI_FREE(p) af_free_host(p)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmisleading-indentation"
#include <stb_image.h>
#pragma GCC diagnostic pop

static void *stb_malloc(size_t size) {
    void *p = af_alloc_host(size);
    if (p) memset(p, 0, size);
    return p;
}

static void *stb_realloc_sized(void *p, size_t old_size, size_t new_size) {
    void *q = stb_malloc(new_size);
    if (!q) return NULL; /* stb keeps and later frees p, as after a failed realloc */
    if (p) {
        memcpy(q, p, old_size < new_size ? old_size : new_size);
        af_free_host(p);
    }
    return q;
}

/* Ping-pong pixel buffers. A pipeline stage that changes the image's size writes a new image and
 * frees the one before it, so a loader worker would allocate and free a buffer per stage of every
 * sample. Instead each thread keeps the last two buffers it freed (of at most SCRATCH_MAX_BYTES
 * each) and hands them to its next allocations: after the first sample, a worker's stages
 * alternate between two buffers and allocate nothing. The buffers are af_alloc_host blocks, freed
 * when the thread exits. Off under AddressSanitizer, like the host cache (alloc.c): a reused buffer
 * would hide a use after free from it. */
#define SCRATCH_MAX_BYTES ((size_t)16 << 20)
typedef struct {
    uint8_t *data[2];
    size_t size[2]; /* the image bytes the buffer held (its block may be larger) */
} scratch_pair;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_ok;

static void scratch_release(void *arg) {
    scratch_pair *s = arg;
    for (int k = 0; k < 2; k++) af_free_host(s->data[k]);
    free(s);
}

static void scratch_init(void) {
#if !defined(AF_ASAN)
    scratch_ok = pthread_key_create(&scratch_key, scratch_release) == 0;
#endif
}

static scratch_pair *thread_scratch(void) {
    pthread_once(&scratch_once, scratch_init);
    if (!scratch_ok) return NULL;
    scratch_pair *s = pthread_getspecific(scratch_key);
    if (!s && (s = calloc(1, sizeof(*s))) && pthread_setspecific(scratch_key, s) != 0) {
        free(s);
        s = NULL;
    }
    return s;
}

af_status af_image_alloc(af_image *img, int height, int width, int channels) {
    memset(img, 0, sizeof(*img));
    if (height < 0 || width < 0 || (channels != 1 && channels != 3))
        return AF_FAIL(AF_ERR_VALUE, "image: invalid size %dx%dx%d", height, width, channels);
    size_t n = (size_t)height * (size_t)width * (size_t)channels;
    if (!n) n = 1;
    scratch_pair *s = thread_scratch();
    int best = -1; /* the smallest kept buffer that fits */
    for (int k = 0; s && k < 2; k++)
        if (s->data[k] && s->size[k] >= n && (best < 0 || s->size[k] < s->size[best])) best = k;
    if (best >= 0) {
        img->data = s->data[best];
        s->data[best] = NULL;
    } else {
        img->data = af_alloc_host(n);
        if (!img->data) return AF_FAIL(AF_ERR_OOM, "image: cannot allocate %zu bytes", n);
    }
    img->height = height;
    img->width = width;
    img->channels = channels;
    return AF_OK;
}

void af_image_free(af_image *img) {
    if (img->data && !img->borrowed) {
        size_t n = (size_t)img->height * img->width * img->channels;
        scratch_pair *s = n <= SCRATCH_MAX_BYTES ? thread_scratch() : NULL;
        /* keep it in an empty slot, or in place of a smaller buffer */
        int slot = !s ? -1 : !s->data[0] ? 0 : !s->data[1] ? 1 : s->size[0] <= s->size[1] ? 0 : 1;
        if (slot >= 0 && s->data[slot] && s->size[slot] >= n) slot = -1;
        if (slot >= 0) {
            af_free_host(s->data[slot]);
            s->data[slot] = img->data;
            s->size[slot] = n ? n : 1;
        } else {
            af_free_host(img->data);
        }
    }
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

/* stb_image decodes truncated JPEG files without complaint (missing data reads as zeros), so
 * completeness is checked here: an end-of-image marker must follow the last start-of-scan marker
 * (entropy-coded data cannot contain FF DA: its FF bytes are stuffed as FF 00 or are restart
 * markers). */
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

/* stb's failure reason, printable: some quote raw bytes of the file (a PNG chunk type), which are
 * not text; those become \xNN. */
static const char *decode_reason(char *buf, size_t size, const char *fallback) {
    const char *r = stbi_failure_reason();
    if (!r) r = fallback;
    size_t n = 0;
    for (; *r && n + 5 < size; r++) {
        unsigned char c = (unsigned char)*r;
        if (c >= 0x20 && c < 0x7F) buf[n++] = (char)c;
        else n += (size_t)snprintf(buf + n, size - n, "\\x%02x", c);
    }
    buf[n] = 0;
    return buf;
}

/* RGBA -> RGB in place, 4 pixels per 16-byte shuffle: each block is read whole before its 12 bytes
 * (and 4 spare ones, rewritten by the next block) are stored at or below where it was read, and
 * the next block is read from above everything stored so far. */
AF_CPU_DISPATCH
static void rgba_to_rgb_in_place(uint8_t *p, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        af_v16u8 v;
        memcpy(&v, p + 4 * i, 16);
        v = AF_SHUFFLE16(v, 0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 15, 15, 15, 15);
        memcpy(p + 3 * i, &v, i + 4 < n ? 16 : 12); /* the last block stores 12: the 4 spare bytes would be past the image */
    }
    for (; i < n; i++) memmove(p + 3 * i, p + 4 * i, 3);
}

/* One stb decode to `req` channels (1, 3 or 4), adopted as `out` (stb allocates with af_alloc_host);
 * *file_comp receives the file's own channel count. req 4 is for colour JPEGs: stb's SIMD YCbCr
 * conversion only handles 4-byte pixels (3-byte ones take its scalar loop, a fifth of a 256x256
 * decode), so they are decoded to RGBA and packed down to RGB here. The bytes are the same: stb's
 * SIMD and scalar conversions agree on all 2^24 (Y, Cb, Cr) inputs (checked against stb 2.30 by
 * calling both on every combination), and nothing else in its JPEG path depends on the request. */
static af_status decode_pixels(const uint8_t *bytes, size_t nbytes, int w, int h, int req, const char *name,
                               int *file_comp, af_image *out) {
    char reason[128];
    int dw = 0, dh = 0;
    uint8_t *pixels = stbi_load_from_memory(bytes, (int)nbytes, &dw, &dh, file_comp, req);
    if (!pixels)
        return AF_FAIL(AF_ERR_VALUE, "cannot decode '%s': %s (corrupt or truncated?)", name,
                       decode_reason(reason, sizeof(reason), "decoder error"));
    if (dw != w || dh != h) {
        stbi_image_free(pixels);
        return AF_FAIL(AF_ERR_VALUE, "cannot decode '%s': header says %dx%d but decoded %dx%d", name, w, h, dw, dh);
    }
    if (req == 4) rgba_to_rgb_in_place(pixels, (size_t)w * h);
    *out = (af_image){.data = pixels, .height = h, .width = w, .channels = req == 4 ? 3 : req};
    return AF_OK;
}

af_status af_image_decode_gray(const uint8_t *bytes, size_t nbytes, int64_t max_pixels, const char *name, int gray,
                               af_image *out) {
    memset(out, 0, sizeof(*out));
    if (!name) name = "<memory>";
    char reason[128];
    if (gray != 0 && gray != 1 && gray != 3)
        return AF_FAIL(AF_ERR_VALUE, "cannot decode '%s': gray must be 0, 1 or 3, got %d", name, gray);
    if (max_pixels < 1)
        return AF_FAIL(AF_ERR_VALUE, "cannot decode '%s': 'max_pixels' must be >= 1, got %lld", name, (long long)max_pixels);
    if (nbytes == 0) return AF_FAIL(AF_ERR_VALUE, "cannot decode '%s': the file is empty", name);
    if (nbytes > (size_t)INT32_MAX) return AF_FAIL(AF_ERR_VALUE, "cannot decode '%s': larger than 2 GiB", name);
    int w = 0, h = 0, comp = 0;
    if (!stbi_info_from_memory(bytes, (int)nbytes, &w, &h, &comp))
        return AF_FAIL(AF_ERR_VALUE, "cannot decode '%s': %s (JPEG and PNG are supported)", name,
                       decode_reason(reason, sizeof(reason), "unknown format"));
    if (w <= 0 || h <= 0) return AF_FAIL(AF_ERR_VALUE, "cannot decode '%s': invalid size %dx%d", name, w, h);
    if ((int64_t)w * h > max_pixels)
        return AF_FAIL(AF_ERR_VALUE, "cannot decode '%s': %dx%d = %lld pixels is over the limit of %lld", name, w, h,
                       (long long)w * h, (long long)max_pixels);
    if (nbytes >= 2 && bytes[0] == 0xFF && bytes[1] == 0xD8 && !jpeg_complete(bytes, nbytes))
        return AF_FAIL(AF_ERR_VALUE, "cannot decode '%s': truncated JPEG (no end-of-image marker after the last scan)", name);
    if (nbytes >= 8 && !memcmp(bytes, "\x89PNG\r\n\x1a\n", 8) && png_first_idat_empty(bytes, nbytes))
        return AF_FAIL(AF_ERR_VALUE, "cannot decode '%s': PNG with an empty first IDAT chunk", name);
    int file_comp = 0;
    if (gray && comp == 1) {
        /* A 1-component file (a gray JPEG, a gray PNG): stb's RGB output would only replicate the
         * channel, so decode the channel alone and map it as Grayscale maps R = G = B. A file whose
         * decode disagrees with its header goes the RGB way below, never through stb's own luma. */
        AF_TRY(decode_pixels(bytes, nbytes, w, h, 1, name, &file_comp, out));
        if (file_comp == 1) {
            af_img_grayscale_of_gray(out);
            if (gray == 1) return AF_OK;
            af_image rgb;
            af_status st = af_img_grayscale(out, 3, &rgb); /* a 1-channel source is replicated */
            af_image_free(out);
            *out = rgb;
            return st;
        }
        af_image_free(out);
    }
    /* RGB: stb converts gray, gray+alpha and RGBA to RGB (alpha dropped) and 16-bit samples to their
     * high byte. A colour file asked for gray is converted by Grayscale itself (stb's 1-channel output
     * of a colour file is its own luma, not torchvision's weights). */
    int jpeg = nbytes >= 2 && bytes[0] == 0xFF && bytes[1] == 0xD8;
    AF_TRY(decode_pixels(bytes, nbytes, w, h, jpeg && comp == 3 ? 4 : 3, name, &file_comp, out));
    if (!gray) return AF_OK;
    af_image g;
    af_status st = af_img_grayscale(out, gray, &g);
    af_image_free(out);
    *out = g;
    return st;
}

af_status af_image_decode(const uint8_t *bytes, size_t nbytes, int64_t max_pixels, const char *name, af_image *out) {
    return af_image_decode_gray(bytes, nbytes, max_pixels, name, 0, out);
}

af_status af_image_read_file_gray(const char *path, int64_t max_pixels, int gray, af_image *out) {
    memset(out, 0, sizeof(*out));
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever (and a loader
     * thread stuck there cannot be joined); fstat then refuses anything but a regular file. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return AF_FAIL(AF_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    uint8_t *buf = NULL;
    af_status st = AF_OK;
    struct stat info;
    if (fstat(fd, &info) != 0) AF_CHECK_FAIL(AF_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    if (!S_ISREG(info.st_mode))
        AF_CHECK_FAIL(AF_ERR_IO, "cannot read '%s': not a regular file (%s)", path,
                      S_ISDIR(info.st_mode) ? "a directory" : S_ISFIFO(info.st_mode) ? "a FIFO" : "a device or socket");
    if (info.st_size > INT32_MAX) AF_CHECK_FAIL(AF_ERR_VALUE, "cannot decode '%s': larger than 2 GiB", path);
    size_t size = (size_t)info.st_size, got = 0;
    buf = malloc(size ? size : 1);
    if (!buf) AF_CHECK_FAIL(AF_ERR_OOM, "cannot read '%s': out of memory for %zu bytes", path, size);
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) AF_CHECK_FAIL(AF_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
        if (n == 0) AF_CHECK_FAIL(AF_ERR_IO, "cannot read '%s': the file shrank while being read", path);
        got += (size_t)n;
    }
    st = af_image_decode_gray(buf, size, max_pixels, path, gray, out);
fail:
    free(buf);
    close(fd);
    return st;
}

af_status af_image_read_file(const char *path, int64_t max_pixels, af_image *out) {
    return af_image_read_file_gray(path, max_pixels, 0, out);
}

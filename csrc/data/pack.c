/* Packs: a dataset's images decoded once into one file that training memory-maps.
 *
 * Why: decoding a JPEG costs far more than any augmentation of a face crop, and it is paid again
 * every epoch. A pack stores the decoded uint8 HWC pixels (optionally shrunk so the shorter side is
 * at most max_side), so a loader worker's "read" is a pointer into the page cache.
 *
 * File layout, version 1 (all integers little-endian; docs/pack-format.md has the same table):
 *
 *   offset  size  field
 *   0       8     magic "AFPACK\r\n" (the CR LF catches text-mode transfers, like PNG's signature)
 *   8       4     version (1)
 *   12      4     header size (128)
 *   16      8     count N (<= 2^40)
 *   24      4     number of classes K (<= 65536)
 *   28      4     number of targets T per sample (<= 65536)
 *   32      8     strings offset (128)           40  8  strings size
 *   48      8     table offset                   56  8  table size
 *   64      8     data offset                    72  8  file size (exact)
 *   80      4     max_side used when packing (0: not resized)
 *   84      4     flags (0)
 *   88      4     header CRC: CRC-32 of bytes [0, data offset) with these 4 bytes read as 0
 *   92      36    zeros
 *   128           strings: K class names, then T target names; each a u32 byte length + UTF-8 bytes
 *   table         five columns, each starting on a 64-byte boundary, in this order:
 *                 offsets u64[N], labels i64[N], shapes u32[N][3] (H, W, C), pixel CRC-32 u32[N],
 *                 targets f32[N][T]
 *   data          sample i: H*W*C uint8 bytes (HWC, row-major) at offsets[i], a multiple of 64,
 *                 samples in index order, zero bytes between them.
 *
 * Every section position is a function of (N, K's and T's names, T), so a reader recomputes them
 * and refuses a file whose header says otherwise; a writer given the same samples writes the same
 * bytes (nothing depends on time, thread count or file-system order). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../image/image.h"
#include "../image/transforms.h"
#include "data.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pack.c reads and writes little-endian integers by memcpy: a big-endian port needs byte swaps"
#endif

static const uint8_t PACK_MAGIC[8] = {'A', 'F', 'P', 'A', 'C', 'K', '\r', '\n'};
#define CRC_FIELD 88

/* ---- CRC-32, slicing by 8 (Intel's method: eight table lookups per 8 input bytes) ---- */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++) crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
}

uint32_t af_crc32(uint32_t crc, const void *data, size_t n) {
    pthread_once(&crc_once, crc_init);
    const uint8_t *p = data;
    uint32_t c = ~crc;
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= c;
        c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^ crc_table[5][(lo >> 16) & 0xFF] ^ crc_table[4][lo >> 24] ^
            crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^ crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
        p += 8, n -= 8;
    }
    while (n--) c = crc_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return ~c;
}

/* ---- layout ---- */
typedef struct {
    uint64_t strings, strings_size, table, offsets, labels, shapes, crcs, targets, table_size, data;
} pack_layout;

static uint64_t align_up(uint64_t x) { return (x + AF_PACK_ALIGN - 1) & ~(uint64_t)(AF_PACK_ALIGN - 1); }

/* Callers keep N <= 2^40, T <= 2^16 and strings_size < 2^40, so no sum below can overflow. */
static void compute_layout(uint64_t N, uint64_t T, uint64_t strings_size, pack_layout *L) {
    L->strings = AF_PACK_HEADER_SIZE;
    L->strings_size = strings_size;
    L->table = align_up(L->strings + strings_size);
    L->offsets = L->table;
    L->labels = align_up(L->offsets + 8 * N);
    L->shapes = align_up(L->labels + 8 * N);
    L->crcs = align_up(L->shapes + 12 * N);
    L->targets = align_up(L->crcs + 4 * N);
    L->table_size = L->targets + 4 * N * T - L->table;
    L->data = align_up(L->table + L->table_size);
}

static uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

uint64_t af_pack_offset(const af_pack *p, int64_t i) { return rd64(p->offsets + 8 * i); }
int64_t af_pack_label(const af_pack *p, int64_t i) { return (int64_t)rd64(p->labels + 8 * i); }
uint32_t af_pack_crc(const af_pack *p, int64_t i) { return rd32(p->crcs + 4 * i); }
void af_pack_shape(const af_pack *p, int64_t i, int *H, int *W, int *C) {
    const uint8_t *s = p->shapes + 12 * i;
    *H = (int)rd32(s), *W = (int)rd32(s + 4), *C = (int)rd32(s + 8);
}

void af_pack_name(const af_pack *p, int k, const char **s, uint32_t *len) {
    const uint8_t *q = p->strings; /* parse checked the lengths */
    for (int j = 0; j < k; j++) q += 4 + rd32(q);
    *len = rd32(q);
    *s = (const char *)q + 4;
}

void af_pack_image(const af_pack *p, int64_t i, af_image *img) {
    af_pack_shape(p, i, &img->height, &img->width, &img->channels);
    img->data = (uint8_t *)(p->base + af_pack_offset(p, i)); /* const in spirit: borrowed is never written */
    img->borrowed = 1;
}

/* ---- reading ---- */
#define BAD(...) AF_FAIL(AF_ERR_VALUE, __VA_ARGS__)

static af_status check_header_field(const char *name, const char *field, uint64_t got, uint64_t want) {
    if (got != want)
        return BAD("'%s': corrupt pack header: %s is %llu, the layout gives %llu", name, field, (unsigned long long)got,
                   (unsigned long long)want);
    return AF_OK;
}

static af_status parse(const uint8_t *d, uint64_t size, const char *name, af_pack *p) {
    if (size < AF_PACK_HEADER_SIZE)
        return BAD("'%s': not a pack: %llu bytes, shorter than the %u-byte header (truncated?)", name,
                   (unsigned long long)size, AF_PACK_HEADER_SIZE);
    if (memcmp(d, PACK_MAGIC, 8) != 0) return BAD("'%s': not an affectfer pack (wrong magic bytes)", name);
    uint32_t version = rd32(d + 8);
    if (version != AF_PACK_VERSION)
        return BAD("'%s': pack version %u is not supported (this affectfer reads version %u)", name, version, AF_PACK_VERSION);
    AF_TRY(check_header_field(name, "the header size", rd32(d + 12), AF_PACK_HEADER_SIZE));
    uint64_t N = rd64(d + 16), K = rd32(d + 24), T = rd32(d + 28);
    if (N > (uint64_t)AF_PACK_MAX_COUNT)
        return BAD("'%s': corrupt pack header: count %llu is over the limit of 2^40", name, (unsigned long long)N);
    if (K > AF_PACK_MAX_NAMES || T > AF_PACK_MAX_NAMES)
        return BAD("'%s': corrupt pack header: %llu classes and %llu targets (at most %d each)", name, (unsigned long long)K,
                   (unsigned long long)T, AF_PACK_MAX_NAMES);
    uint64_t file_size = rd64(d + 72);
    if (file_size != size)
        return BAD("'%s': the header says %llu bytes but the file has %llu (truncated or appended to)", name,
                   (unsigned long long)file_size, (unsigned long long)size);
    uint64_t strings_size = rd64(d + 40);
    if (strings_size > size)
        return BAD("'%s': corrupt pack header: strings size %llu is beyond the end of the file", name, (unsigned long long)strings_size);
    pack_layout L;
    compute_layout(N, T, strings_size, &L);
    AF_TRY(check_header_field(name, "the strings offset", rd64(d + 32), L.strings));
    AF_TRY(check_header_field(name, "the table offset", rd64(d + 48), L.table));
    AF_TRY(check_header_field(name, "the table size", rd64(d + 56), L.table_size));
    AF_TRY(check_header_field(name, "the data offset", rd64(d + 64), L.data));
    if (L.data > size)
        return BAD("'%s': the table of %llu samples ends at byte %llu, beyond the end of the file (%llu bytes)", name,
                   (unsigned long long)N, (unsigned long long)L.data, (unsigned long long)size);
    uint32_t max_side = rd32(d + 80), flags = rd32(d + 84);
    if (flags != 0) return BAD("'%s': unknown pack flags 0x%x", name, flags);
    if (max_side > AF_PACK_MAX_SIDE) return BAD("'%s': corrupt pack header: max_side %u", name, max_side);
    for (int k = 92; k < (int)AF_PACK_HEADER_SIZE; k++)
        if (d[k]) return BAD("'%s': corrupt pack header: reserved byte %d is not zero", name, k);
    static const uint8_t zero4[4] = {0};
    uint32_t crc = af_crc32(0, d, CRC_FIELD);
    crc = af_crc32(crc, zero4, 4);
    crc = af_crc32(crc, d + CRC_FIELD + 4, L.data - CRC_FIELD - 4);
    if (crc != rd32(d + CRC_FIELD))
        return BAD("'%s': header checksum mismatch (stored %08x, computed %08x): the header or table is corrupt", name,
                   rd32(d + CRC_FIELD), crc);
    /* strings: exactly K + T length-prefixed names filling the section */
    const uint8_t *q = d + L.strings, *end = q + strings_size;
    for (uint64_t k = 0; k < K + T; k++) {
        if (end - q < 4) return BAD("'%s': the names section ends inside name %llu", name, (unsigned long long)k);
        uint32_t len = rd32(q);
        if (len > AF_PACK_MAX_NAME_BYTES || (uint64_t)(end - q - 4) < len)
            return BAD("'%s': name %llu has length %u (past the names section or over %d bytes)", name, (unsigned long long)k,
                       len, AF_PACK_MAX_NAME_BYTES);
        q += 4 + len;
    }
    if (q != end) return BAD("'%s': %lld stray bytes after the names", name, (long long)(end - q));
    memset(p, 0, sizeof(*p));
    p->base = d, p->size = size, p->count = (int64_t)N, p->num_classes = (int)K, p->num_targets = (int)T;
    p->max_side = max_side;
    p->strings = d + L.strings, p->strings_size = strings_size;
    p->offsets = d + L.offsets, p->labels = d + L.labels, p->shapes = d + L.shapes, p->crcs = d + L.crcs;
    p->targets = d + L.targets;
    for (int64_t i = 0; i < (int64_t)N; i++) {
        int H, W, C;
        af_pack_shape(p, i, &H, &W, &C);
        if (H < 1 || W < 1 || H > AF_PACK_MAX_SIDE || W > AF_PACK_MAX_SIDE || (C != 1 && C != 3))
            return BAD("'%s': sample %lld has shape (%u, %u, %u): sides must be in [1, %d] and channels 1 or 3", name,
                       (long long)i, (unsigned)H, (unsigned)W, (unsigned)C, AF_PACK_MAX_SIDE);
        uint64_t off = af_pack_offset(p, i), nbytes = (uint64_t)H * W * C;
        if (off < L.data || off % AF_PACK_ALIGN || off > size || nbytes > size - off)
            return BAD("'%s': sample %lld (%llu bytes at offset %llu) is outside the data section [%llu, %llu) or not "
                       "64-byte aligned", name, (long long)i, (unsigned long long)nbytes, (unsigned long long)off,
                       (unsigned long long)L.data, (unsigned long long)size);
        int64_t label = af_pack_label(p, i);
        if (label < -1 || label >= (int64_t)K)
            return BAD("'%s': sample %lld has label %lld, outside [-1, %llu)", name, (long long)i, (long long)label,
                       (unsigned long long)K);
    }
    return AF_OK;
}

af_status af_pack_parse(const uint8_t *data, uint64_t size, const char *name, af_pack *out) {
    memset(out, 0, sizeof(*out));
    if (!name) name = "<memory>";
    AF_TRY(parse(data, size, name, out));
    out->name = strdup(name);
    if (!out->name) return AF_FAIL(AF_ERR_OOM, "pack: out of memory");
    return AF_OK;
}

af_status af_pack_verify(const af_pack *p) {
    for (int64_t i = 0; i < p->count; i++) {
        int H, W, C;
        af_pack_shape(p, i, &H, &W, &C);
        uint32_t crc = af_crc32(0, p->base + af_pack_offset(p, i), (size_t)H * W * C);
        if (crc != af_pack_crc(p, i))
            return BAD("'%s': sample %lld is corrupt (pixel checksum %08x, the table says %08x)", p->name, (long long)i, crc,
                       af_pack_crc(p, i));
    }
    return AF_OK;
}

af_status af_pack_open(const char *path, int verify_crc, af_pack **out) {
    *out = NULL;
    af_status st = AF_OK;
    void *map = NULL;
    struct stat sb;
    af_pack *p = NULL;
    /* O_NONBLOCK: opening a FIFO must not hang; it is then refused as not a regular file */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return AF_FAIL(AF_ERR_IO, "cannot open pack '%s': %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0) AF_CHECK_FAIL(AF_ERR_IO, "cannot stat pack '%s': %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) AF_CHECK_FAIL(AF_ERR_IO, "pack '%s' is not a regular file", path);
    if (sb.st_size < (off_t)AF_PACK_HEADER_SIZE)
        AF_CHECK_FAIL(AF_ERR_VALUE, "'%s': not a pack: %lld bytes, shorter than the %u-byte header (truncated?)", path,
                      (long long)sb.st_size, AF_PACK_HEADER_SIZE);
    map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        map = NULL;
        AF_CHECK_FAIL(AF_ERR_IO, "cannot map pack '%s': %s", path, strerror(errno));
    }
    p = calloc(1, sizeof(*p));
    if (!p) AF_CHECK_FAIL(AF_ERR_OOM, "pack: out of memory");
    AF_CHECK(af_pack_parse(map, (uint64_t)sb.st_size, path, p));
    p->mapping = map;
    map = NULL;
    if (verify_crc) AF_CHECK(af_pack_verify(p));
    close(fd);
    *out = p;
    return AF_OK;
fail:
    if (map) munmap(map, (size_t)sb.st_size);
    af_pack_close(p);
    close(fd);
    return st;
}

void af_pack_close(af_pack *p) {
    if (!p) return;
    if (p->mapping) munmap(p->mapping, (size_t)p->size);
    free(p->name);
    free(p);
}

/* ---- writing ---- */
struct af_pack_writer {
    char *path, *tmp;
    FILE *f;
    int64_t count, written;
    int num_targets, num_classes, max_side;
    uint64_t pos;     /* the file position of f */
    uint8_t *head;    /* header + strings + table: bytes [0, layout.data), filled as samples arrive */
    pack_layout L;
    int created, finished;
};

af_status af_pack_writer_open(const char *path, int64_t count, int num_classes, int num_targets,
                              const char *const *names, const uint32_t *name_lens, int max_side, af_pack_writer **out) {
    *out = NULL;
    if (count < 0 || count > AF_PACK_MAX_COUNT)
        return AF_FAIL(AF_ERR_VALUE, "pack: a pack holds 0 to 2^40 samples, got %lld", (long long)count);
    if (num_classes < 0 || num_classes > AF_PACK_MAX_NAMES || num_targets < 0 || num_targets > AF_PACK_MAX_NAMES)
        return AF_FAIL(AF_ERR_VALUE, "pack: %d classes and %d targets (at most %d each)", num_classes, num_targets, AF_PACK_MAX_NAMES);
    if (max_side < 0 || max_side > AF_PACK_MAX_SIDE)
        return AF_FAIL(AF_ERR_VALUE, "pack: 'max_side' must be in [1, %d] (or 0 for none), got %d", AF_PACK_MAX_SIDE, max_side);
    uint64_t strings_size = 0;
    for (int k = 0; k < num_classes + num_targets; k++) {
        if (name_lens[k] > AF_PACK_MAX_NAME_BYTES)
            return AF_FAIL(AF_ERR_VALUE, "pack: name %d is %u bytes long (at most %d)", k, name_lens[k], AF_PACK_MAX_NAME_BYTES);
        strings_size += 4 + name_lens[k];
    }
    af_status st = AF_OK;
    af_pack_writer *w = calloc(1, sizeof(*w));
    if (!w) return AF_FAIL(AF_ERR_OOM, "pack: out of memory");
    w->count = count, w->num_classes = num_classes, w->num_targets = num_targets, w->max_side = max_side;
    compute_layout((uint64_t)count, (uint64_t)num_targets, strings_size, &w->L);
    w->path = strdup(path);
    size_t tmp_len = strlen(path) + 32;
    w->tmp = malloc(tmp_len);
    w->head = calloc(1, w->L.data);
    if (!w->path || !w->tmp || !w->head) AF_CHECK_FAIL(AF_ERR_OOM, "pack: out of memory for the table of %lld samples", (long long)count);
    snprintf(w->tmp, tmp_len, "%s.%ld.tmp", path, (long)getpid());
    uint8_t *q = w->head + w->L.strings;
    for (int k = 0; k < num_classes + num_targets; k++) {
        wr32(q, name_lens[k]);
        memcpy(q + 4, names[k], name_lens[k]);
        q += 4 + name_lens[k];
    }
    int fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd < 0) AF_CHECK_FAIL(AF_ERR_IO, "cannot create '%s': %s", w->tmp, strerror(errno));
    w->created = 1;
    w->f = fdopen(fd, "wb");
    if (!w->f) {
        close(fd);
        AF_CHECK_FAIL(AF_ERR_IO, "cannot write '%s': %s", w->tmp, strerror(errno));
    }
    /* the header and table are written last: until then the file starts with zeros, not the magic */
    if (fseeko(w->f, (off_t)w->L.data, SEEK_SET) != 0) AF_CHECK_FAIL(AF_ERR_IO, "cannot write '%s': %s", w->tmp, strerror(errno));
    w->pos = w->L.data;
    *out = w;
    return AF_OK;
fail:
    af_pack_writer_free(w);
    return st;
}

/* One decoded (and maybe shrunk) sample waiting to be written. */
typedef struct {
    af_image img;      /* owned pixels, or borrowed from the item */
    uint32_t crc;
} pack_result;

static af_status prepare(const af_pack_item *it, int max_side, int64_t max_pixels, pack_result *r) {
    if (it->path) {
        AF_TRY(af_image_read_file(it->path, max_pixels, &r->img));
    } else {
        if (it->height < 1 || it->width < 1 || it->height > AF_PACK_MAX_SIDE || it->width > AF_PACK_MAX_SIDE ||
            (it->channels != 1 && it->channels != 3))
            return AF_FAIL(AF_ERR_VALUE, "pack: image of shape (%d, %d, %d) (sides in [1, %d], 1 or 3 channels)", it->height,
                           it->width, it->channels, AF_PACK_MAX_SIDE);
        r->img = (af_image){(uint8_t *)it->pixels, it->height, it->width, it->channels, 1};
    }
    if (max_side > 0 && (r->img.height < r->img.width ? r->img.height : r->img.width) > max_side) {
        int oh, ow;
        af_image small = {0};
        af_resize_output_size(r->img.height, r->img.width, max_side, 0, &oh, &ow);
        AF_TRY(af_img_resize(&r->img, oh, ow, 1, &small)); /* antialiased, torchvision's default */
        af_image_free(&r->img);
        r->img = small;
    }
    r->crc = af_crc32(0, r->img.data, (size_t)r->img.height * r->img.width * r->img.channels);
    return AF_OK;
}

static af_status write_bytes(af_pack_writer *w, const void *data, size_t n) {
    if (n && fwrite(data, 1, n, w->f) != n) return AF_FAIL(AF_ERR_IO, "cannot write '%s': %s", w->tmp, strerror(errno));
    w->pos += n;
    return AF_OK;
}

af_status af_pack_writer_add(af_pack_writer *w, const af_pack_item *items, int n, int workers, int64_t max_pixels) {
    if (!w->f || w->finished) return AF_FAIL(AF_ERR_RUNTIME, "pack: the writer is closed");
    if (n < 0 || n > w->count - w->written)
        return AF_FAIL(AF_ERR_VALUE, "pack: %d more samples for a pack of %lld with %lld written", n, (long long)w->count,
                       (long long)w->written);
    if (workers < 1) workers = 1;
    for (int k = 0; k < n; k++) {
        int64_t label = items[k].label;
        if (label < -1 || label >= w->num_classes)
            return AF_FAIL(AF_ERR_VALUE, "pack: sample %lld has label %lld, outside [-1, %d)", (long long)(w->written + k),
                           (long long)label, w->num_classes);
        if (w->num_targets && !items[k].targets)
            return AF_FAIL(AF_ERR_VALUE, "pack: sample %lld has no targets", (long long)(w->written + k));
    }
    pack_result *res = calloc((size_t)(n ? n : 1), sizeof(*res));
    if (!res) return AF_FAIL(AF_ERR_OOM, "pack: out of memory");
    int first_bad = n;
    af_status bad_st = AF_OK;
    char bad_msg[768] = "";
    /* decoding, shrinking and checksums on `workers` threads; writing below, in order, on this one */
#pragma omp parallel for num_threads(workers) schedule(dynamic, 1)
    for (int k = 0; k < n; k++) {
        af_status s = prepare(&items[k], w->max_side, max_pixels, &res[k]);
        if (s != AF_OK) {
#pragma omp critical(af_pack_error)
            if (k < first_bad) {
                first_bad = k, bad_st = s;
                snprintf(bad_msg, sizeof(bad_msg), "%s", af_error_message());
            }
        }
    }
    af_status st = AF_OK;
    if (first_bad < n) {
        const char *name = items[first_bad].path;
        if (name && strstr(bad_msg, name)) st = AF_FAIL(bad_st, "%s", bad_msg);
        else st = AF_FAIL(bad_st, "pack: sample %lld (%s): %s", (long long)(w->written + first_bad), name ? name : "in memory", bad_msg);
    }
    static const uint8_t zeros[AF_PACK_ALIGN] = {0};
    for (int k = 0; k < n && st == AF_OK; k++) {
        const af_image *img = &res[k].img;
        int64_t i = w->written;
        size_t nbytes = (size_t)img->height * img->width * img->channels;
        st = write_bytes(w, zeros, align_up(w->pos) - w->pos);
        if (st != AF_OK) break;
        uint8_t *h = w->head, *s = h + w->L.shapes + 12 * i;
        wr64(h + w->L.offsets + 8 * i, w->pos);
        wr64(h + w->L.labels + 8 * i, (uint64_t)items[k].label);
        wr32(s, (uint32_t)img->height), wr32(s + 4, (uint32_t)img->width), wr32(s + 8, (uint32_t)img->channels);
        wr32(h + w->L.crcs + 4 * i, res[k].crc);
        if (w->num_targets) memcpy(h + w->L.targets + 4 * (uint64_t)i * w->num_targets, items[k].targets, 4 * (size_t)w->num_targets);
        st = write_bytes(w, img->data, nbytes);
        w->written++;
    }
    for (int k = 0; k < n; k++) af_image_free(&res[k].img);
    free(res);
    return st;
}

/* fsync of the folder holding `path`, so that the rename itself survives a power cut. */
static af_status sync_dir(const char *path) {
    char *copy = strdup(path);
    if (!copy) return AF_FAIL(AF_ERR_OOM, "pack: out of memory");
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    af_status st = AF_OK;
    if (fd < 0 || fsync(fd) != 0) st = AF_FAIL(AF_ERR_IO, "cannot sync the folder of '%s': %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    free(copy);
    return st;
}

af_status af_pack_writer_finish(af_pack_writer *w) {
    if (!w->f || w->finished) return AF_FAIL(AF_ERR_RUNTIME, "pack: the writer is closed");
    if (w->written != w->count)
        return AF_FAIL(AF_ERR_RUNTIME, "pack: %lld of %lld samples written", (long long)w->written, (long long)w->count);
    uint8_t *h = w->head;
    memcpy(h, PACK_MAGIC, 8);
    wr32(h + 8, AF_PACK_VERSION);
    wr32(h + 12, AF_PACK_HEADER_SIZE);
    wr64(h + 16, (uint64_t)w->count);
    wr32(h + 24, (uint32_t)w->num_classes);
    wr32(h + 28, (uint32_t)w->num_targets);
    wr64(h + 32, w->L.strings), wr64(h + 40, w->L.strings_size);
    wr64(h + 48, w->L.table), wr64(h + 56, w->L.table_size);
    wr64(h + 64, w->L.data), wr64(h + 72, w->pos);
    wr32(h + 80, (uint32_t)w->max_side);
    wr32(h + 84, 0);
    wr32(h + CRC_FIELD, 0);
    wr32(h + CRC_FIELD, af_crc32(0, h, w->L.data));
    af_status st = AF_OK;
    if (fflush(w->f) != 0 || fseeko(w->f, 0, SEEK_SET) != 0 || fwrite(h, 1, w->L.data, w->f) != w->L.data || fflush(w->f) != 0 ||
        fsync(fileno(w->f)) != 0)
        st = AF_FAIL(AF_ERR_IO, "cannot write '%s': %s", w->tmp, strerror(errno));
    int closed = fclose(w->f);
    w->f = NULL;
    if (st == AF_OK && closed != 0) st = AF_FAIL(AF_ERR_IO, "cannot write '%s': %s", w->tmp, strerror(errno));
    if (st == AF_OK && rename(w->tmp, w->path) != 0)
        st = AF_FAIL(AF_ERR_IO, "cannot rename '%s' to '%s': %s", w->tmp, w->path, strerror(errno));
    if (st != AF_OK) return st;
    w->finished = 1;
    return sync_dir(w->path);
}

void af_pack_writer_free(af_pack_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    if (w->created && !w->finished) unlink(w->tmp); /* never leave a partial pack behind on an error */
    free(w->path);
    free(w->tmp);
    free(w->head);
    free(w);
}

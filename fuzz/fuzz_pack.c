/* libFuzzer harness for the pack reader: arbitrary bytes -> af_pack_parse (header, names, table,
 * every sample's bounds). Whatever it accepts must be safe to use: every name and every sample's
 * pixels are read to their last byte (ASan flags any read outside the input) and the pixel CRCs are
 * checked. When the input is long enough, its header CRC is recomputed first, so mutations reach the
 * bounds checks behind the checksum instead of stopping at it. Built by `make fuzz`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "image/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    if (size >= AF_PACK_HEADER_SIZE) {
        uint64_t end;
        memcpy(&end, buf + 64, 8); /* the data offset: the CRC covers [0, end) */
        if (end >= AF_PACK_HEADER_SIZE && end <= size) {
            memset(buf + 88, 0, 4);
            uint32_t crc = af_crc32(0, buf, end);
            memcpy(buf + 88, &crc, 4);
        }
    }
    af_pack p;
    if (af_pack_parse(buf, size, "<fuzz>", &p) == AF_OK) {
        volatile uint8_t sink = 0;
        for (int k = 0; k < p.num_classes + p.num_targets; k++) {
            const char *s;
            uint32_t len;
            af_pack_name(&p, k, &s, &len);
            if (len) sink ^= (uint8_t)s[len - 1];
        }
        for (int64_t i = 0; i < p.count; i++) {
            af_image img = {0};
            af_pack_image(&p, i, &img);
            if (img.height < 1 || img.width < 1 || (img.channels != 1 && img.channels != 3)) abort();
            sink ^= img.data[(size_t)img.height * img.width * img.channels - 1];
            (void)af_pack_label(&p, i);
        }
        if (p.num_targets && p.count) sink ^= p.targets[4 * (size_t)p.count * p.num_targets - 1];
        (void)sink;
        (void)af_pack_verify(&p);
        free(p.name);
    }
    af_error_clear();
    free(buf);
    return 0;
}

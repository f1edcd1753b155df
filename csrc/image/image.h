/* Images and transform pipelines, the contract between csrc/image/ and the loader (csrc/data/).
 *
 * An af_image is uint8, HWC, row-major, channels 1 or 3 (decoding yields 3, RGB, unless asked for the gray
 * image a leading Grayscale would make: af_image_decode_gray). A pipeline
 * is what affectfer.transforms.Compose compiles into: an ordered list of stages with numeric
 * parameters, immutable once built, so any number of loader threads may run it at once. All
 * randomness of one run comes from the af_rng it is given (the loader passes the stream of
 * (seed, epoch, sample index)), so a sample's augmentation never depends on thread scheduling.
 *
 * Stages work on the uint8 image in place (it may change size); a pipeline may end with a
 * to-tensor stage (ToTensor + optional Normalize) that writes float32 CHW. */
#ifndef AF_IMAGE_H
#define AF_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "../core/rng.h"
#include "../core/status.h"

typedef struct af_image {
    uint8_t *data; /* height * width * channels bytes from af_alloc_host; owned by the image */
    int height, width, channels;
    int borrowed; /* 1: data is read-only memory the image does not own (a pack mapping, csrc/data/pack.c):
                   * never written nor freed; af_pipeline_run copies it before the first in-place stage */
} af_image;

af_status af_image_alloc(af_image *img, int height, int width, int channels);
void af_image_free(af_image *img); /* frees data unless borrowed, zeroes the struct; safe on a zeroed struct */
/* Gives a borrowed image its own copy of the pixels (no-op for an owned image). */
af_status af_image_make_owned(af_image *img);

/* The default decoding limit (affectfer.io.MAX_PIXELS): face crops are small, and a 700-byte JPEG
 * can declare 16000 x 16000 pixels (768 MB decoded), so the default is 4096 x 4096 (48 MB of RGB);
 * callers raise it per call or per loader for larger photos. */
#define AF_IMAGE_DEFAULT_MAX_PIXELS (4096ll * 4096)

/* Decoding (stb_image, JPEG and PNG only). Checks the header before decoding and refuses images of
 * more than max_pixels pixels (max_pixels >= 1); `name` appears in error messages (a file name, or
 * "<memory>"). af_image_read_file reads regular files only (never blocks on a FIFO). */
af_status af_image_decode(const uint8_t *bytes, size_t nbytes, int64_t max_pixels, const char *name,
                          af_image *out);
af_status af_image_read_file(const char *path, int64_t max_pixels, af_image *out);
/* The same, giving the image that Grayscale(num_output_channels=gray) makes of the RGB decode (gray 1
 * or 3; 0 = RGB as above), bit for bit. A 1-component file (FER2013's gray JPEGs) is decoded to its one
 * channel and mapped through a 256-entry table, skipping the expansion to RGB and the weighted sum;
 * any other file is decoded to RGB and converted by af_img_grayscale. */
af_status af_image_decode_gray(const uint8_t *bytes, size_t nbytes, int64_t max_pixels, const char *name, int gray,
                               af_image *out);
af_status af_image_read_file_gray(const char *path, int64_t max_pixels, int gray, af_image *out);

typedef struct af_pipeline af_pipeline; /* opaque, see csrc/image/pipeline.c */

/* Output of a pipeline ending in a to-tensor stage, for an input of in_h x in_w: float32 of shape
 * (channels, height, width). channels is 3 (RGB, as decoded; a 1-channel input is widened) unless a
 * Grayscale/SobelEdges stage sets it. Fails with AF_ERR_VALUE when the size is not fixed by the pipeline
 * (no Resize/crop to a fixed size) and so cannot be batched. */
af_status af_pipeline_output_shape(const af_pipeline *p, int in_h, int in_w, int *channels, int *height,
                                   int *width);
/* Runs every uint8 stage on img (in place); when the pipeline ends with a to-tensor stage and `out` is
 * not NULL, also writes the float32 CHW result to out. */
af_status af_pipeline_run(const af_pipeline *p, af_image *img, af_rng *rng, float *out);
/* The run from stage `first` on (the stages before it are taken as done: the loader's gray decode
 * stands in for a leading Grayscale). */
af_status af_pipeline_run_from(const af_pipeline *p, int first, af_image *img, af_rng *rng, float *out);
/* When the pipeline starts with a Grayscale that always applies (p = 1, no random draw), the number
 * of channels it makes of a decoded RGB image (1 or 3); otherwise 0. A decoder may then produce that
 * image itself (af_image_decode_gray) and the run start at stage 1. */
int af_pipeline_leading_gray(const af_pipeline *p);
int af_pipeline_has_to_tensor(const af_pipeline *p);

#endif

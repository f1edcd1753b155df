/* The Winograd kernels of conv2d (3x3, stride 1, no dilation, groups 1), in conv2d_winograd.c, called
 * by conv2d.c: x (N, Cin, H, W), w (Cout, Cin, 3, 3), y and dy (N, Cout, Ho, Wo). The backward ones
 * accumulate into dx and dw. They return non-zero when a scratch buffer could not be allocated
 * (nothing written then). */
#ifndef AF_OPS_CONV2D_WINOGRAD_H
#define AF_OPS_CONV2D_WINOGRAD_H

#include "conv2d.h"

/* Fewer channels than this on either side leave the 16 GEMMs too thin to pay for the transforms;
 * at 16 (batch 32, 56x56) Winograd still ran the forward 1.35x and forward + backward 1.1x faster
 * than im2col on one thread. */
#define CONV_WINOGRAD_MIN_CHANNELS 16
/* The transforms keep a few rows of the padded plane on the stack. */
#define CONV_WINOGRAD_MAX_WIDTH 1024

/* The shapes that take the Winograd path; padding up to 2 keeps dx a stride-1 convolution of dy
 * with padding 2 - pad. */
static inline int conv_use_winograd(const conv_geom *g) {
    return g->KH == 3 && g->KW == 3 && g->sh == 1 && g->sw == 1 && g->dh == 1 && g->dw == 1 && g->G == 1 &&
           g->ph <= 2 && g->pw <= 2 && g->Cin >= CONV_WINOGRAD_MIN_CHANNELS &&
           g->Cout >= CONV_WINOGRAD_MIN_CHANNELS && g->W <= CONV_WINOGRAD_MAX_WIDTH &&
           g->Wo <= CONV_WINOGRAD_MAX_WIDTH;
}

int conv2d_winograd_forward_f32(const conv_geom *g, const float *x, const float *w, const float *bias, float *y);
int conv2d_winograd_forward_f64(const conv_geom *g, const double *x, const double *w, const double *bias,
                                double *y);
int conv2d_winograd_backward_dx_f32(const conv_geom *g, const float *w, const float *dy, float *dx);
int conv2d_winograd_backward_dx_f64(const conv_geom *g, const double *w, const double *dy, double *dx);
int conv2d_winograd_backward_dw_f32(const conv_geom *g, const float *x, const float *dy, float *dw);
int conv2d_winograd_backward_dw_f64(const conv_geom *g, const double *x, const double *dy, double *dw);

#endif

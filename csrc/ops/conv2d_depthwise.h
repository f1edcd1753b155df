/* The depthwise kernels of conv2d (Cin/G == 1, G > 1), in conv2d_depthwise.c, called by conv2d.c's
 * forward and backward: x (N, Cin, H, W), w (Cout, 1, KH, KW), y and dy (N, Cout, Ho, Wo); backward
 * accumulates into dx and dw, either of which may be NULL. They return non-zero when a scratch plane
 * could not be allocated. */
#ifndef AF_OPS_CONV2D_DEPTHWISE_H
#define AF_OPS_CONV2D_DEPTHWISE_H

#include "conv2d.h"

int conv2d_depthwise_forward_f32(const conv_geom *g, const float *x, const float *w, const float *bias, float *y);
int conv2d_depthwise_forward_f64(const conv_geom *g, const double *x, const double *w, const double *bias,
                                 double *y);
int conv2d_depthwise_backward_f32(const conv_geom *g, const float *x, const float *w, const float *dy, float *dx,
                                  float *dw);
int conv2d_depthwise_backward_f64(const conv_geom *g, const double *x, const double *w, const double *dy,
                                  double *dx, double *dw);

#endif

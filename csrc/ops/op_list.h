/* Every op, once: AF_OP(name, NAME) -> id AF_OP_NAME, definition af_op_def_name in csrc/ops/.
 * Python sees them as affectfer._C.ops["name"]. tests/test_op_table.py fails when an op listed here
 * lacks a reference test or a gradient check. Groups are kept apart so parallel additions merge. */

/* elementwise.c: binary with broadcasting */
AF_OP(add, ADD)
AF_OP(sub, SUB)
AF_OP(mul, MUL)
AF_OP(div, DIV)
AF_OP(maximum, MAXIMUM)
/* elementwise.c: unary */
AF_OP(neg, NEG)
AF_OP(exp, EXP)
AF_OP(log, LOG)
AF_OP(sqrt, SQRT)
AF_OP(relu, RELU)
AF_OP(gelu, GELU)
AF_OP(silu, SILU)
AF_OP(sigmoid, SIGMOID)
AF_OP(tanh, TANH)
AF_OP(scale, SCALE)
AF_OP(add_scalar, ADD_SCALAR)
AF_OP(pow_scalar, POW_SCALAR)
AF_OP(abs, ABS)
AF_OP(clamp, CLAMP)
AF_OP(softplus, SOFTPLUS)
AF_OP(log_sigmoid, LOG_SIGMOID)
AF_OP(hardswish, HARDSWISH)
AF_OP(hardsigmoid, HARDSIGMOID)
/* elementwise.c: ternary */
AF_OP(where, WHERE)

/* shape.c, reduce.c, linear.c, matmul.c */
AF_OP(reshape, RESHAPE)
AF_OP(permute, PERMUTE)
AF_OP(cat, CAT)
AF_OP(split, SPLIT)
AF_OP(slice, SLICE)
AF_OP(cast, CAST)
AF_OP(sum, SUM)
AF_OP(mean, MEAN)
AF_OP(var, VAR)
AF_OP(std, STD)
AF_OP(max, MAX)
AF_OP(argmax, ARGMAX)
AF_OP(matmul, MATMUL)
AF_OP(linear, LINEAR)
AF_OP(scaled_dot_product_attention, SCALED_DOT_PRODUCT_ATTENTION)

/* index.c */
AF_OP(gather, GATHER)
AF_OP(index_select, INDEX_SELECT)
AF_OP(one_hot, ONE_HOT)

/* conv2d.c, pool.c */
AF_OP(conv2d, CONV2D)
AF_OP(max_pool2d, MAX_POOL2D)
AF_OP(avg_pool2d, AVG_POOL2D)
AF_OP(adaptive_avg_pool2d, ADAPTIVE_AVG_POOL2D)

/* pad.c, interpolate.c */
AF_OP(pad, PAD)
AF_OP(interpolate, INTERPOLATE)

/* group_norm.c */
AF_OP(group_norm, GROUP_NORM)

/* batchnorm.c, layernorm.c, dropout.c, softmax.c, loss_ce.c */
AF_OP(batch_norm, BATCH_NORM)
AF_OP(batch_norm_relu, BATCH_NORM_RELU)
AF_OP(batch_norm_silu, BATCH_NORM_SILU)
AF_OP(layer_norm, LAYER_NORM)
AF_OP(dropout, DROPOUT)
AF_OP(softmax, SOFTMAX)
AF_OP(log_softmax, LOG_SOFTMAX)
AF_OP(cross_entropy, CROSS_ENTROPY)

/* all_reduce.c: a differentiable sum over the ranks (SyncBatchNorm) */
AF_OP(all_reduce, ALL_REDUCE)

/* optim.c and other non-differentiable ops */
AF_OP(sgd_step, SGD_STEP)
AF_OP(adam_step, ADAM_STEP)

/* fill.c: in-place writes (no outputs; they write their first input) and the anomaly check */
AF_OP(fill_, FILL_)
AF_OP(copy_, COPY_)
AF_OP(uniform_, UNIFORM_)
AF_OP(normal_, NORMAL_)
AF_OP(add_, ADD_)
AF_OP(nonfinite_index, NONFINITE_INDEX)

/* loss_misc.c: the seed methods' other losses */
AF_OP(bce_with_logits, BCE_WITH_LOGITS)
AF_OP(focal_loss, FOCAL_LOSS)
AF_OP(ccc_loss, CCC_LOSS)
AF_OP(affinity_loss, AFFINITY_LOSS)
AF_OP(partition_loss, PARTITION_LOSS)

/* Flat arenas: many tensors of one dtype living side by side in one storage.
 *
 * The idea is llm.c's single parameter buffer: when every parameter of a model is a slice of one
 * flat array, the optimizer update is one loop over that array and zero_grad is one memset, and a
 * gradient arena with the same layout lets backward accumulate straight into it. Here an arena is
 * an ordinary 1-D tensor; its members are ordinary tensor headers whose (storage, offset) point
 * into it, so every op, the tape and Python see a member as the same tensor as before packing.
 *
 *   af_arena_pack           copy n tensors into a fresh arena and re-point their headers at it
 *   af_arena_attach_grads   a gradient arena of the same layout; each member's grad_slot is its
 *                           view, which backward adopts as .grad (see csrc/autograd/tape.c)
 *   af_arena_status         are the members still where pack put them, are their grads the slots
 *   af_tensor_view_at       a header over part of a tensor's storage (segments, moment views)
 *   af_tensor_set_data      re-point one header at another tensor's bytes (torch's `p.data = x`)
 *
 * Re-pointing changes a header in place, so every holder of that header (a Parameter, an
 * optimizer's list, a recorded graph) follows; headers that merely shared the old storage (an
 * earlier .detach(), a NumPy view) keep the old bytes. */
#ifndef AF_ARENA_H
#define AF_ARENA_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A header over `base`'s storage starting `start` elements after base's first element, with
 * `shape` (ndim dims), which must fit inside base. No autograd links. */
af_status af_tensor_view_at(const af_tensor *base, int64_t start, int ndim, const int64_t *shape,
                            af_tensor **out);

/* t takes src's storage, offset, dtype, shape and memory format. A change of dtype or shape drops
 * t's gradient and grad slot (they no longer match) and is refused while anything besides the
 * caller holds the header (a recorded graph saved it: its backward would read the wrong layout). */
af_status af_tensor_set_data(af_tensor *t, const af_tensor *src);

/* A new 1-D tensor holding members[0..n) back to back (same dtype and device, each header once);
 * each member is re-pointed at its slice. n may be 0 (an empty arena). */
af_status af_arena_pack(af_tensor *const *members, int64_t n, af_tensor **out);

/* A zero-filled gradient arena shaped like `arena`; every member (which must live in `arena`)
 * gets grad_slot = its view. A member's existing .grad is copied into its slot and replaced by it,
 * so gradients survive packing. */
af_status af_arena_attach_grads(af_tensor *const *members, int64_t n, const af_tensor *arena,
                                af_tensor **grad_arena_out);

/* 0 (AF_ARENA_INTACT): every member sits where pack put it and its .grad is its slot in
 * grad_arena, so one call over the arena is the same as one call per member. Otherwise flags:
 * AF_ARENA_NO_GRAD some member's .grad is None; AF_ARENA_FOREIGN_GRAD some .grad is another tensor
 * (assigned by the user); AF_ARENA_MOVED some member lives elsewhere now (repacked, set_data), and
 * then nothing else is reported. grad_arena NULL: only placement is checked (moment arenas). */
enum { AF_ARENA_INTACT = 0, AF_ARENA_NO_GRAD = 1, AF_ARENA_FOREIGN_GRAD = 2, AF_ARENA_MOVED = 4 };
int af_arena_status(af_tensor *const *members, int64_t n, const af_tensor *arena, const af_tensor *grad_arena);

#ifdef __cplusplus
}
#endif

#endif

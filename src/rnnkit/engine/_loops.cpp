// Sequence loops of rnnkit's cells: the forward pass and the hand-written BPTT backward pass.
//
// Compiled on first use by rnnkit/engine/native_build.py and called through ctypes from
// native.py; no torch headers, so it builds in a second or two. The recurrent products go to
// the loops' own register-blocked kernel (AVX2 + FMA or AVX-512 builds; see "The recurrent
// products on few rows") or else to the BLAS inside torch (its sgemm_/dgemm_, handed over by
// rnnkit_set_blas); the pointwise part of each step is one fused loop, split over rows with
// OpenMP (torch's own libgomp, which the loader shares), or, in a small call, the whole call is
// one parallel region whose threads each own some hidden units (_loops_units.h).
//
// One translation unit in parts, included below in this order, each using those before it:
//   _loops_products.h      the BLAS, the loops' threads, the own kernel of the recurrent products
//   _loops_geo.h           the geometry block (Geo), the row loop, step_mm (a step's product)
//   _loops_units.h         the split by hidden units: one parallel region a call
//   _loops_cells.h         Elman, LSTM (peepholes optional), GRU with the reset after
//   _loops_reset_before.h  GRU with the reset before, MGU, MUT1-3
//   _loops_nas_ln.h        NAS, LayerNorm LSTM
//   _loops_rows.h          row copies between layouts, the finite check, column blocks
// native_build.py builds the library from this file and keys its cache on all the parts.
//
// Layout (shapes use rnnkit's glossary; every matrix is row-major and contiguous):
//   * A sequence is processed in `steps` steps; step s works on the first n[s] rows of the batch
//     (rows are sorted by decreasing length, so the active rows always form a prefix).
//   * Per-row tensors (gx, y, saved activations, gradients) are "packed": step s owns rows
//     off[s] .. off[s] + n[s]. Without lengths this is the (T, B) layout, with off[s] = t·B
//     (t = s, or T-1-s for the backward direction).
//   * The state entering step s is h0/c0 for s = 0 and the rows of step s-1 otherwise.
//   * Forward-only calls (full = 0) keep saved activations in two alternating blocks of B rows
//     instead of N rows.
//   * In place: a training forward pass (full = 1) may write its saved activations over its
//     input projection (act == gx), and the backward pass its input-projection gradient over
//     the saved activations (dgx == act); see each kernel's list. The row loops that touch such
//     a pair read every element of a column j before they write that column's output, and
//     carry `#pragma omp simd` instead of __restrict on the pair, which keeps them vectorised
//     (a restrict pair that aliases is undefined behaviour; a runtime overlap check would pick
//     the scalar loop).
//   * Backward: dh and dc (B, H) hold, on entry, the gradient of the final state; a row keeps
//     it until the loop reaches the row's last step. On exit they hold the gradient of h0/c0.
//     dgx receives the gradient of every step's input projection; the weight gradients are
//     large matrix products done by the caller after the loop, from dgx and the saved buffers.
//
// Every entry point has the signature
//     void rnnkit_<cell>_<forward|backward>_<f32|f64>(const int64_t* geo, void* const* p,
//                                                    const double* scalars, void* const* rows)
// geo = [steps, B, H, full, threads, v0..v4, turn, n[steps], off[steps], (perm[B] when turn)]
// (v: the cell's variant integers); p: the data pointers in the order listed above each kernel.
// turn: 0, or the step m at which the rows go from the batch's order to the sorted order. The
// packed rows of steps 0..m-1 (every row running) are then the batch's rows as they come, and
// those of steps m on are sorted by length, perm[r] being sorted row r's batch row. Only at
// step m is the previous step's block not row for row that of the step: the forward and
// backward loops read it gathered through perm (Geo::prior), and the backward loop moves its
// running state gradients back to the batch's order after step m (Geo::unturn).
// turn = -1 marks a masked call instead (a small layer with lengths), -2 one of the backward
// direction: every step runs all B rows in the batch's order (n[s] = B, off[s] = t·B) and geo
// ends with lens[B], each row's length. Forwards, a row is frozen from its length on: the
// forward loop writes zeros as its outputs and leaves its state where it is (an LSTM's c
// carried into the step's saved block), and the backward loop writes zeros as its
// input-projection gradient and passes its state gradients through unchanged (Geo::frozen;
// step_mm runs a step's products on the running rows alone where that saves a block of the
// own kernel, else on every row around Geo::hold and Geo::release). Backwards (t = T-1-s), a
// row is frozen until its last valid step t = lens[r] - 1, where it starts from its initial
// state (Geo::prior puts h0/c0 in its row of the previous block). So the outputs need no
// scatter and the inputs no gather.
// rows: null, or {map, out, ldy}. map (or null) is for a batch with lengths whose caller wants its
// outputs in the padded (T·B, H) layout: map[r] (int64) is packed row r's flat position t·B + b
// there. The forward loop then also writes each output row at map[r] of out (the caller zeroes
// the padding), and the backward loop reads the output gradient of packed row r at row map[r]
// of dy (T·B, H). This spares a scatter of y and a gather of dy outside the loops, each a pass
// over N rows. ldy (an integer in the pointer's place, 0 for H) is the distance in elements
// between two rows of dy, which may be a column block of a wider matrix.

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

using i64 = int64_t;

#include "_loops_products.h"
#include "_loops_geo.h"
#include "_loops_units.h"
#include "_loops_cells.h"
#include "_loops_reset_before.h"
#include "_loops_nas_ln.h"
#include "_loops_rows.h"

// ---------------------------------------------------------------------------------------------
// C entry points
// ---------------------------------------------------------------------------------------------
#define RNNKIT_ENTRY(cell, direction, T, suffix)                                              \
    extern "C" void rnnkit_##cell##_##direction##_##suffix(const i64* g, void* const* p,         \
                                                          const double* s, void* const* rows) { \
        cell##_##direction<T>(g, p, s, rows);                                                    \
    }
#define RNNKIT_EXPORT(cell)                 \
    RNNKIT_ENTRY(cell, forward, float, f32)  \
    RNNKIT_ENTRY(cell, forward, double, f64) \
    RNNKIT_ENTRY(cell, backward, float, f32) \
    RNNKIT_ENTRY(cell, backward, double, f64)

RNNKIT_EXPORT(elman)
RNNKIT_EXPORT(lstm)
RNNKIT_EXPORT(gru)
RNNKIT_EXPORT(rb)
RNNKIT_EXPORT(nas)
RNNKIT_EXPORT(lnlstm)

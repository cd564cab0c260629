/* Skip-gram with negative sampling: the inner loop of rnnkit.word2vec's "c" engine.
 *
 * The algorithm and its symbols are those of rnnkit/word2vec/model.py (Mikolov et al. 2013,
 * word2vec.c): for a kept centre word o at position i of a sentence and a reduced window
 * w = 1 + (r mod W), every neighbour c within w positions trains
 *
 *     v_c += alpha * sum_k g_k u_k,    u_k += alpha * g_k v_c,    g_k = label_k - sigma(u_k . v_c)
 *
 * over k = o (label 1) and K noise words drawn from the unigram^0.75 distribution (label 0;
 * a draw equal to o is skipped). v = syn0 (input vectors), u = syn1 (output vectors).
 * Several threads call sgns_train on different jobs at once and update the shared tables
 * without locks ("Hogwild!", as word2vec.c and gensim do).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* splitmix64: a small, fast generator with good low bits (word2vec.c's LCG has poor ones). */
static inline uint64_t next_u64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline float next_unit(uint64_t *state) { /* uniform in [0, 1) */
    return (float)(next_u64(state) >> 40) * (1.0f / 16777216.0f);
}

/* Walker's alias method: word i with probability p_i in O(1). */
static inline int32_t sample_noise(const float *prob, const int32_t *alias, int64_t V,
                                   uint64_t *state) {
    uint64_t r = next_u64(state);
    int64_t i = (int64_t)((r >> 32) % (uint64_t)V);
    float u = (float)(r & 0xFFFFFF) * (1.0f / 16777216.0f);
    return u < prob[i] ? (int32_t)i : alias[i];
}

static inline float dot(const float *restrict a, const float *restrict b, int64_t n) {
    float s = 0.0f;
    for (int64_t k = 0; k < n; k++) s += a[k] * b[k];
    return s;
}

static inline void axpy(float alpha, const float *restrict x, float *restrict y, int64_t n) {
    for (int64_t k = 0; k < n; k++) y[k] += alpha * x[k];
}

/* One (centre o, context c) pair. Adds -log sigma(u_o.v_c) - sum_k log sigma(-u_k.v_c) to
 * *loss when want_loss; returns the number of noise words used. */
static inline int64_t train_pair(float *restrict syn0, float *restrict syn1, int64_t E,
                                 int32_t o, int32_t c, int64_t negative, float alpha,
                                 const float *prob, const int32_t *alias, int64_t V,
                                 uint64_t *state, float *restrict neu1e, int want_loss,
                                 double *loss) {
    float *v = syn0 + (int64_t)c * E;
    int64_t used = 0;
    memset(neu1e, 0, (size_t)E * sizeof(float));
    for (int64_t d = 0; d <= negative; d++) {
        int32_t target;
        float label;
        if (d == 0) {
            target = o;
            label = 1.0f;
        } else {
            target = sample_noise(prob, alias, V, state);
            if (target == o) continue;
            label = 0.0f;
            used++;
        }
        float *u = syn1 + (int64_t)target * E;
        float f = dot(v, u, E);
        if (f > 30.0f) f = 30.0f;
        if (f < -30.0f) f = -30.0f;
        float e = expf(-f);
        float sig = 1.0f / (1.0f + e);
        if (want_loss) /* -log sigma(f) = log(1+e^-f); -log sigma(-f) = f + log(1+e^-f) */
            *loss += (double)(log1pf(e) + (label > 0.5f ? 0.0f : f));
        float g = (label - sig) * alpha;
        axpy(g, u, neu1e, E);
        axpy(g, v, u, E);
    }
    axpy(1.0f, neu1e, v, E);
    return used;
}

/* Train on sentences [0, n_sents) of a job.
 *
 * ids: the corpus' word ids; sentence k of the job is ids[start_k : ends[k]) where
 * start_0 = start and start_k = ends[k-1]. keep[w]: the probability of keeping an occurrence
 * of w (frequent-word sub-sampling). stats (out): [loss sum, pairs, noise words used,
 * words kept]. Returns 0, or -1 if a buffer could not be allocated.
 */
int sgns_train(float *syn0, float *syn1, int64_t E, int64_t V, const int32_t *ids,
               const int64_t *ends, int64_t n_sents, int64_t start, const float *keep,
               const float *prob, const int32_t *alias, int64_t window, int64_t negative,
               float alpha, uint64_t seed, int want_loss, double *stats) {
    int64_t longest = 0, s0 = start;
    for (int64_t k = 0; k < n_sents; k++) {
        if (ends[k] - s0 > longest) longest = ends[k] - s0;
        s0 = ends[k];
    }
    int32_t *kept = (int32_t *)malloc((size_t)(longest > 0 ? longest : 1) * sizeof(int32_t));
    float *neu1e = (float *)malloc((size_t)E * sizeof(float));
    if (kept == NULL || neu1e == NULL) {
        free(kept);
        free(neu1e);
        return -1;
    }
    uint64_t state = seed;
    double loss = 0.0;
    int64_t pairs = 0, used = 0, n_kept = 0;
    s0 = start;
    for (int64_t k = 0; k < n_sents; k++) {
        int64_t n = 0;
        for (int64_t t = s0; t < ends[k]; t++) {
            int32_t w = ids[t];
            if (keep[w] >= 1.0f || next_unit(&state) < keep[w]) kept[n++] = w;
        }
        s0 = ends[k];
        n_kept += n;
        for (int64_t i = 0; i < n; i++) {
            int64_t reach = 1 + (int64_t)(next_u64(&state) % (uint64_t)window);
            int64_t lo = i - reach < 0 ? 0 : i - reach;
            int64_t hi = i + reach >= n ? n - 1 : i + reach;
            for (int64_t j = lo; j <= hi; j++) {
                if (j == i) continue;
                used += train_pair(syn0, syn1, E, kept[i], kept[j], negative, alpha, prob, alias,
                                   V, &state, neu1e, want_loss, &loss);
                pairs++;
            }
        }
    }
    free(kept);
    free(neu1e);
    stats[0] = loss;
    stats[1] = (double)pairs;
    stats[2] = (double)used;
    stats[3] = (double)n_kept;
    return 0;
}

/* Draw n noise words into out (for testing the sampler against its distribution). */
void sgns_sample_noise(const float *prob, const int32_t *alias, int64_t V, int64_t n,
                       uint64_t seed, int32_t *out) {
    uint64_t state = seed;
    for (int64_t k = 0; k < n; k++) out[k] = sample_noise(prob, alias, V, &state);
}

#include <oneapi/dnnl/dnnl.h>
#include "dnnl_shim.h"

/* Debian's oneDNN runs on GNU OpenMP. Tessera calls it from its own threads (one GEMM per thread),
   so each calling thread's OpenMP team is kept at one thread; omp.h is not needed for this one call. */
extern void omp_set_num_threads(int);

int tessera_dnnl_sgemm(char transa, char transb, long m, long n, long k, float alpha,
                       const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc) {
    static _Thread_local int single = 0;
    if (!single) {
        omp_set_num_threads(1);
        single = 1;
    }
    return dnnl_sgemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) == dnnl_success ? 0 : 1;
}

int tessera_cpu_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
}

int tessera_cpu_is_intel(void) {
    __builtin_cpu_init();
    return __builtin_cpu_is("intel") ? 1 : 0;
}

/* dst[c * ldd + r] = src[r * lds + c] (+ beta · dst[c * ldd + r] when beta is not 0) for r < rows,
   c < cols. Tiles of 8 × 8 so that every source and destination row a tile touches stays in cache;
   the inner loops are plain so the compiler may vectorise them for the host. */
void tessera_transpose(const float *restrict src, long rows, long cols, long lds,
                       float *restrict dst, long ldd, float beta) {
    for (long r0 = 0; r0 < rows; r0 += 8) {
        long r1 = r0 + 8 < rows ? r0 + 8 : rows;
        for (long c0 = 0; c0 < cols; c0 += 8) {
            long c1 = c0 + 8 < cols ? c0 + 8 : cols;
            for (long c = c0; c < c1; c++) {
                float *d = dst + c * ldd;
                const float *s = src + c;
                if (beta == 0.0f) {
                    for (long r = r0; r < r1; r++) d[r] = s[r * lds];
                } else {
                    for (long r = r0; r < r1; r++) d[r] = s[r * lds] + beta * d[r];
                }
            }
        }
    }
}

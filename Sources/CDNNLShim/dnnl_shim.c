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

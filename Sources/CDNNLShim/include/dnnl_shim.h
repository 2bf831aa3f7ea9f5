#ifndef TESSERA_DNNL_SHIM_H
#define TESSERA_DNNL_SHIM_H
/// Row-major SGEMM through oneDNN on the calling thread only: C = alpha op(A) op(B) + beta C.
/// Returns 0 on success.
int tessera_dnnl_sgemm(char transa, char transb, long m, long n, long k, float alpha,
                       const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc);
/// 1 when the CPU runs AVX-512F (OpenBLAS and oneDNN then take their AVX-512 kernels), else 0.
int tessera_cpu_has_avx512(void);
/// 1 on an Intel CPU, else 0.
int tessera_cpu_is_intel(void);
/// dst = srcᵀ (+ beta · dst when beta is not 0): src is rows × cols (row stride lds), dst cols × rows
/// (row stride ldd). With beta 0, dst is written without being read.
void tessera_transpose(const float *src, long rows, long cols, long lds, float *dst, long ldd, float beta);
#endif

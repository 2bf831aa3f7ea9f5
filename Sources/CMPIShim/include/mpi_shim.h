#ifndef TESSERA_MPI_SHIM_H
#define TESSERA_MPI_SHIM_H
/// Open MPI through plain C functions (its handles are macros Swift cannot import).
/// Initialises MPI with MPI_THREAD_FUNNELED; returns 0 on success. Errors abort every rank
/// (MPI_ERRORS_ARE_FATAL), so a dead peer never leaves the others waiting.
int tessera_mpi_init(void);
int tessera_mpi_rank(void);
int tessera_mpi_size(void);
/// In-place sums over every rank (a fixed reduction order for a fixed size and count).
int tessera_mpi_allreduce_sum_f32(float *data, long count);
int tessera_mpi_allreduce_sum_f64(double *data, long count);
/// Rank 0's `count` bytes at `data` copied to every rank's `data`.
int tessera_mpi_bcast_bytes(void *data, long count);
int tessera_mpi_barrier(void);
void tessera_mpi_abort(int code);
void tessera_mpi_finalize(void);
#endif

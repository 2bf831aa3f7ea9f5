#include <mpi.h>
#include <limits.h>
#include "mpi_shim.h"

int tessera_mpi_init(void) {
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) return 1;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    return 0;
}

int tessera_mpi_rank(void) { int r = 0; MPI_Comm_rank(MPI_COMM_WORLD, &r); return r; }
int tessera_mpi_size(void) { int s = 1; MPI_Comm_size(MPI_COMM_WORLD, &s); return s; }

/* MPI counts are int: long buffers go in chunks of at most INT_MAX / 2 elements. */
int tessera_mpi_allreduce_sum_f32(float *data, long count) {
    for (long at = 0; at < count; at += INT_MAX / 2) {
        long n = count - at < INT_MAX / 2 ? count - at : INT_MAX / 2;
        if (MPI_Allreduce(MPI_IN_PLACE, data + at, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS) return 1;
    }
    return 0;
}

int tessera_mpi_allreduce_sum_f64(double *data, long count) {
    for (long at = 0; at < count; at += INT_MAX / 2) {
        long n = count - at < INT_MAX / 2 ? count - at : INT_MAX / 2;
        if (MPI_Allreduce(MPI_IN_PLACE, data + at, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS) return 1;
    }
    return 0;
}

int tessera_mpi_bcast_bytes(void *data, long count) {
    for (long at = 0; at < count; at += INT_MAX / 2) {
        long n = count - at < INT_MAX / 2 ? count - at : INT_MAX / 2;
        if (MPI_Bcast((char *)data + at, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) return 1;
    }
    return 0;
}
int tessera_mpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD) == MPI_SUCCESS ? 0 : 1; }
void tessera_mpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }
void tessera_mpi_finalize(void) { MPI_Finalize(); }

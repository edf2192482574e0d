/* Native C MPI all-reduce, measured like slurm_ai.health.measure (and nccl-tests):
 * per size: warm-up, barrier, `iters` MPI_Allreduce(SUM, float) back to back,
 * time per iteration averaged over ranks, algbw = bytes/time, busbw = algbw*2(n-1)/n.
 * Usage: mpirun -np N ./allreduce_native ITERS WARMUP SIZE_BYTES...
 * Prints one line per size on rank 0: "size_bytes time_us algbw_gbps busbw_gbps wrong". */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, world;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (argc < 4) {
        if (rank == 0) fprintf(stderr, "usage: %s ITERS WARMUP SIZE...\n", argv[0]);
        MPI_Finalize();
        return 2;
    }
    int iters = atoi(argv[1]), warmup = atoi(argv[2]);
    for (int a = 3; a < argc; a++) {
        long size = atol(argv[a]);
        long count = size / (long)sizeof(float);
        float *send = malloc(count * sizeof(float)), *recv = malloc(count * sizeof(float));
        if (!send || !recv) MPI_Abort(MPI_COMM_WORLD, 3);
        for (long i = 0; i < count; i++) send[i] = (float)((i + 3 * rank) % 13 + 1);
        MPI_Allreduce(send, recv, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        long wrong = 0;
        for (long i = 0; i < count; i++) {
            float expect = 0;
            for (int r = 0; r < world; r++) expect += (float)((i + 3 * r) % 13 + 1);
            if (recv[i] != expect) wrong++;
        }
        for (int i = 0; i < warmup; i++)
            MPI_Allreduce(send, recv, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        for (int i = 0; i < iters; i++)
            MPI_Allreduce(send, recv, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        double dt = (MPI_Wtime() - t0) / iters, sum_dt, total_wrong;
        double w = (double)wrong;
        MPI_Allreduce(&dt, &sum_dt, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        MPI_Allreduce(&w, &total_wrong, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        double avg = sum_dt / world, bytes = (double)count * sizeof(float);
        double algbw = bytes / avg / 1e9, busbw = algbw * 2.0 * (world - 1) / world;
        if (rank == 0)
            printf("%ld %.3f %.4f %.4f %.0f\n", (long)bytes, avg * 1e6, algbw, busbw, total_wrong);
        free(send);
        free(recv);
    }
    MPI_Finalize();
    return 0;
}

/*
 * sai_bind_harness: sai_plan_task() outside Slurm, for the tests and for a
 * look at a node's plan by hand.
 *
 *   sai_bind_harness [--repeat N] PLAN NTASKS RANK ALLOWED_CPUS [NAME=VALUE...]
 *
 * ALLOWED_CPUS is a CPU list ("0-7"); NAME=VALUE pairs are the task's
 * environment (SLURM_STEP_GPUS, CUDA_VISIBLE_DEVICES, user variables).
 * Prints "cpus LIST", "numa N|-", "env NAME=VALUE" and "warning TEXT" lines;
 * exit 1 with "error TEXT" when the plan cannot be used (the plugin then
 * leaves the task unpinned). --repeat N reads and plans N times and adds
 * "us_per_task T": the plugin's own work per task (bench/spank_task_start.py).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sai_bind.h"

struct args {
	int n;
	char **kv;
};

static const char *lookup(void *ctx, const char *name)
{
	struct args *a = ctx;
	size_t len = strlen(name);

	for (int i = 0; i < a->n; i++)
		if (!strncmp(a->kv[i], name, len) && a->kv[i][len] == '=')
			return a->kv[i] + len + 1;
	return NULL;
}

int main(int argc, char **argv)
{
	static struct sai_layout layout;
	static struct sai_task task;
	static unsigned char allowed[SAI_MAX_CPUS];
	static char cpus[6 * SAI_MAX_CPUS];
	struct sai_request req = {0};
	struct args env;
	char err[256] = "";
	struct timespec t0, t1;
	long repeat = 1;

	if (argc > 2 && !strcmp(argv[1], "--repeat")) {
		repeat = atol(argv[2]);
		argc -= 2;
		argv += 2;
	}
	if (argc < 5 || repeat < 1) {
		fprintf(stderr, "usage: %s [--repeat N] PLAN NTASKS RANK ALLOWED_CPUS [NAME=VALUE...]\n",
			argv[0]);
		return 2;
	}
	env.n = argc - 5;
	env.kv = argv + 5;
	if (sai_read_plan(argv[1], 0, &layout, err, sizeof(err)) ||
	    sai_parse_cpu_list(argv[4], allowed)) {
		printf("error %s\n", err[0] ? err : "bad ALLOWED_CPUS");
		return 1;
	}
	req.ntasks = atoi(argv[2]);
	req.rank = atoi(argv[3]);
	req.allowed = allowed;
	req.gpus = lookup(&env, "SLURM_STEP_GPUS");
	if (!req.gpus)
		req.gpus = lookup(&env, "SLURM_JOB_GPUS");
	req.getenv = lookup;
	req.getenv_ctx = &env;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < repeat; i++) {
		if ((i && sai_read_plan(argv[1], 0, &layout, err, sizeof(err))) ||
		    sai_plan_task(&layout, &req, &task, err, sizeof(err))) {
			printf("error %s\n", err);
			return 1;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	sai_format_cpu_list(task.cpus, task.ncpus, cpus, sizeof(cpus));
	printf("cpus %s\n", cpus);
	if (task.numa >= 0)
		printf("numa %d\n", task.numa);
	else
		printf("numa -\n");
	for (int i = 0; i < task.env.count; i++)
		printf("env %s=%s\n", task.env.item[i].name, task.env.item[i].value);
	for (int i = 0; i < task.nwarnings; i++)
		printf("warning %s\n", task.warning[i]);
	if (repeat > 1)
		printf("us_per_task %.1f\n",
		       ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e3 / repeat);
	return 0;
}

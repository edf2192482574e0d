/*
 * sai_bind_harness: the plugin's core outside Slurm, for the tests and for a
 * look at a node's plan by hand.
 *
 *   sai_bind_harness [--repeat N] [--env-max N] [--denied PATHS] PLAN NTASKS RANK ALLOWED_CPUS
 *                    [NAME=VALUE...]
 *   sai_bind_harness --user-binding SLURM_CPU_BIND SLURM_GPU_BIND SRUN_ARGV...
 *   sai_bind_harness --fuzz SEED ROUNDS
 *   sai_bind_harness --memory-policy
 *
 * ALLOWED_CPUS is a CPU list ("0-7"): the task's own mask; NAME=VALUE pairs
 * are the task's environment (SLURM_STEP_GPUS, CUDA_VISIBLE_DEVICES, user
 * variables, SLURM_CPU_BIND_TYPE / _LIST / SLURM_CPU_BIND, whose masks add to
 * the allowed CPUs as in the plugin). Variables are read as the plugin reads
 * them through spank_getenv(): into a buffer grown up to --env-max bytes
 * (default SAI_ENV_MAX_BYTES); longer ones are set but unreadable.
 * Prints "cpus LIST", "numa N|-", "env NAME=VALUE" and "warning TEXT" lines;
 * exit 1 with "error TEXT" when the plan cannot be used (the plugin then
 * leaves the task unpinned). --denied: comma-separated device files the task may
 * not open (its device cgroup's EPERM, as the plugin's access() sees it).
 * --repeat N reads and plans N times and adds
 * "us_per_task T": the plugin's own work per task (bench/spank_task_start.py).
 *
 * --user-binding: what the plugin decides in srun from srun's command line
 * and its SLURM_CPU_BIND / SLURM_GPU_BIND ("-": unset): "user cpu|gpu|
 * cpu,gpu|none", then "why TEXT" when in doubt.
 * --memory-policy: "memory-policy set|default" as task_init sees it (a policy this
 * process inherited, say from Slurm's --mem-bind, is left alone).
 * --fuzz: every parser on ROUNDS pseudo-random inputs (built with ASan/UBSan
 * by the tests, which then catch any read or write out of bounds).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sai_bind.h"

struct args {
	int n;
	char **kv;
};

static const char *denied = "";

/* The plugin's may_open(), with the device cgroup's answer from --denied. */
static int may_open(const char *path)
{
	size_t n = strlen(path);

	for (const char *p = denied; *p;) {
		size_t len = strcspn(p, ",");

		if (len == n && !strncmp(p, path, n))
			return 0;
		p += len + (p[len] == ',');
	}
	return 1;
}

static const char *lookup(struct args *a, const char *name)
{
	size_t len = strlen(name);

	for (int i = 0; i < a->n; i++)
		if (!strncmp(a->kv[i], name, len) && a->kv[i][len] == '=')
			return a->kv[i] + len + 1;
	return NULL;
}

/* spank_getenv()'s contract: copy what fits, say when it did not. */
static int copy_env(void *ctx, const char *name, char *buf, size_t len)
{
	const char *value = lookup(ctx, name);
	size_t n;

	if (!value)
		return -1;
	n = strlen(value);
	if (!len)
		return 1;
	memcpy(buf, value, n < len ? n : len - 1);
	buf[n < len ? n : len - 1] = '\0';
	return n >= len;
}

static struct sai_envreader task_env;

static const char *read_env(void *ctx, const char *name)
{
	(void)ctx;
	return sai_env_read(&task_env, name);
}

static int user_binding(int argc, char **argv)
{
	char why[128];
	const char *cpu = strcmp(argv[0], "-") ? argv[0] : NULL;
	const char *gpu = strcmp(argv[1], "-") ? argv[1] : NULL;
	int bits = sai_user_binding(argc - 2, argv + 2, cpu, gpu, why, sizeof(why));

	printf("user %s\n", bits == (SAI_USER_CPU | SAI_USER_GPU) ? "cpu,gpu"
			    : bits == SAI_USER_CPU		 ? "cpu"
			    : bits == SAI_USER_GPU		 ? "gpu"
							 : "none");
	if (why[0])
		printf("why %s\n", why);
	return 0;
}

/* ---- fuzzing ------------------------------------------------------------ */

static uint64_t rng_state;

static unsigned rnd(unsigned n)
{
	rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
	return n ? (unsigned)(rng_state >> 33) % n : 0;
}

/* A string of up to max bytes from parser-relevant pieces (malloc'ed, exact size). */
static char *rnd_text(size_t max)
{
	static const char *const pieces[] = {
		"0", "1", "7", "9", "a", "f", "F", "x", "X", "0x", "0X", ",", ",,", "*", "*2", "*0",
		":", "=", "-", "--", " ", "map_cpu:", "mask_cpu:", "map_cpu", "mask_cpu", "cores,",
		"quiet,", "verbose,", "none", "NONE", "gres/gpu:", "4095", "4096", "ffffffffffffffff",
		"\xff", "--cpu-b", "--gpu-bind=", "--cpu", "-n", "-F", "-I", ":", "--", "cmd",
	};
	size_t len = rnd(8) ? rnd((unsigned)max + 1) : max;
	char *s = malloc(len + 1);
	size_t used = 0;

	if (!s)
		exit(3);
	while (used < len) {
		const char *p = rnd(4) ? pieces[rnd(sizeof(pieces) / sizeof(pieces[0]))] : NULL;
		char one[2] = { (char)(1 + rnd(255)), '\0' };

		for (p = p ? p : one; *p && used < len; p++)
			s[used++] = *p;
	}
	s[used] = '\0';
	return s;
}

static int fuzz(unsigned long seed, long rounds)
{
	static unsigned char flags[SAI_MAX_CPUS];
	static struct sai_layout layout;
	char err[256], why[128];

	rng_state = seed;
	for (long r = 0; r < rounds; r++) {
		char *a = rnd_text(rnd(16) ? 64 : 20000), *b = rnd_text(64), *c = rnd_text(200);
		char *argv[12];
		int argc = 1 + (int)rnd(11);

		sai_parse_cpu_list(a, flags);
		sai_parse_mask_list(a, flags);
		sai_parse_map_list(a, flags);
		sai_bind_masks(rnd(2) ? b : NULL, rnd(2) ? a : NULL, rnd(2) ? c : NULL, flags, err,
			       sizeof(err));
		argv[0] = "srun";
		for (int i = 1; i < argc; i++)
			argv[i] = rnd(2) ? a : rnd(2) ? b : c;
		sai_user_binding(argc, argv, rnd(2) ? b : NULL, rnd(2) ? c : NULL, why, sizeof(why));
		sai_parse_plan(c, strlen(c), &layout, err, sizeof(err));
		{
			char *kv[1];
			struct args env = { 1, kv };
			struct sai_envreader reader = { copy_env, &env, 1 + rnd(300), NULL, 0 };

			kv[0] = malloc(strlen(a) + 3);
			if (!kv[0])
				exit(3);
			sprintf(kv[0], "V=%s", a);
			sai_env_read(&reader, "V");
			sai_env_read(&reader, "W");
			sai_env_done(&reader);
			free(kv[0]);
		}
		free(a);
		free(b);
		free(c);
	}
	printf("fuzz %ld rounds\n", rounds);
	return 0;
}

int main(int argc, char **argv)
{
	static struct sai_layout layout;
	static struct sai_task task;
	static unsigned char allowed[SAI_MAX_CPUS];
	static char cpus[6 * SAI_MAX_CPUS];
	static char gpus[6 * SAI_MAX_UNITS];
	int own[SAI_MAX_UNITS], nown;
	struct sai_request req = {0};
	struct args env;
	char err[256] = "";
	struct timespec t0, t1;
	long repeat = 1;
	size_t env_max = 0;

	if (argc > 3 && !strcmp(argv[1], "--user-binding"))
		return user_binding(argc - 2, argv + 2);
	if (argc == 2 && !strcmp(argv[1], "--memory-policy")) {
		int set = sai_memory_policy_set();

		printf("memory-policy %s\n", set < 0 ? "unknown" : set ? "set" : "default");
		return set < 0;
	}
	if (argc == 4 && !strcmp(argv[1], "--fuzz"))
		return fuzz(strtoul(argv[2], NULL, 10), atol(argv[3]));
	for (;;) {
		if (argc > 2 && !strcmp(argv[1], "--repeat"))
			repeat = atol(argv[2]);
		else if (argc > 2 && !strcmp(argv[1], "--env-max"))
			env_max = (size_t)atol(argv[2]);
		else if (argc > 2 && !strcmp(argv[1], "--denied"))
			denied = argv[2];
		else
			break;
		argc -= 2;
		argv += 2;
	}
	if (argc < 5 || repeat < 1) {
		fprintf(stderr, "usage: %s [--repeat N] [--env-max N] [--denied PATHS] PLAN NTASKS "
			"RANK ALLOWED_CPUS [NAME=VALUE...]\n", argv[0]);
		return 2;
	}
	env.n = argc - 5;
	env.kv = argv + 5;
	task_env.copy = copy_env;
	task_env.ctx = &env;
	task_env.max = env_max;
	if (sai_read_plan(argv[1], 0, &layout, err, sizeof(err)) ||
	    sai_parse_cpu_list(argv[4], allowed)) {
		printf("error %s\n", err[0] ? err : "bad ALLOWED_CPUS");
		return 1;
	}
	{
		/* As allowed_cpus() in the plugin. */
		struct sai_envreader r[3] = { { copy_env, &env, env_max, NULL, 0 },
					      { copy_env, &env, env_max, NULL, 0 },
					      { copy_env, &env, env_max, NULL, 0 } };
		const char *type = sai_env_read(&r[0], "SLURM_CPU_BIND_TYPE");
		const char *list = sai_env_read(&r[1], "SLURM_CPU_BIND_LIST");
		const char *bind = sai_env_read(&r[2], "SLURM_CPU_BIND");
		int bad = type == sai_env_unreadable || list == sai_env_unreadable ||
			  bind == sai_env_unreadable;

		if (bad)
			snprintf(err, sizeof(err), "SLURM_CPU_BIND* too long to read");
		if (!bad)
			bad = sai_bind_masks(type, list, bind, allowed, err, sizeof(err));
		for (int i = 0; i < 3; i++)
			sai_env_done(&r[i]);
		if (bad) {
			printf("error %s\n", err);
			return 1;
		}
	}
	req.ntasks = atoi(argv[2]);
	req.rank = atoi(argv[3]);
	req.allowed = allowed;
	nown = sai_confined_gpus(&layout, may_open, own);
	if (nown > 0) { /* as the plugin */
		sai_format_cpu_list(own, nown, gpus, sizeof(gpus));
		req.gpus = gpus;
	} else {
		req.gpus = lookup(&env, "SLURM_STEP_GPUS");
		if (!req.gpus)
			req.gpus = lookup(&env, "SLURM_JOB_GPUS");
	}
	req.getenv = read_env;
	req.getenv_ctx = NULL;
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
	sai_format_cpu_list(task.gpus, task.ngpus, gpus, sizeof(gpus));
	printf("gpus %s\n", task.ngpus ? gpus : "-");
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
	sai_env_done(&task_env);
	return 0;
}

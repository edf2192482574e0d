/*
 * slurm_ai_spank.so: pins every task of every job at task start, inside
 * slurmstepd, with no wrapper in the job script.
 *
 * Registered by `slurm-ai install` in plugstack.conf.d as
 *   optional /path/slurm_ai_spank.so spool=/var/spool/slurm-ai bind=auto
 * User options (srun/sbatch/salloc --help):
 *   --sai-bind=auto|off|verbose   default: the bind= argument
 *   --sai-workload=NAME           the job's workload class in its record; the
 *                                 plugin writes it into the job's root-only
 *                                 spool directory, where the Epilog reads it
 *
 * In srun (local context) it notes whether the user asked for a binding of
 * their own (--cpu-bind / --gpu-bind other than none): Slurm's choice then
 * stays. In each task (remote context):
 *   task_init_privileged (root, before the task drops privileges): read the
 *     job's plan file the Prolog wrote in the root-only spool;
 *   task_init (just before exec, after Slurm's own task binding): compute
 *     this task's binding with the core (sai_bind.c) and apply it:
 *     sched_setaffinity, preferred memory node, CUDA_VISIBLE_DEVICES, NIC
 *     variables, OMP_NUM_THREADS.
 * Fail open: no plan, a corrupt or oversized one, an unknown rank: the task
 * runs unpinned with one line in slurmd's log. Every entry point returns 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <slurm/spank.h>

#include "sai_bind.h"

SPANK_PLUGIN(slurm_ai, 1);

#define USER_BIND_VAR "SLURM_AI_USER_BIND"
#define PLAN_NAME "task-plan"
#define PINNED_NAME "pinned-by-plugin"
#define WORKLOAD_NAME "workload"
#define MPOL_PREFERRED 1
/* Step ids above this are the batch, extern and interactive steps. */
#define MAX_NORMAL_STEP 0xfffffff0u

enum { BIND_UNSET = -1, BIND_AUTO, BIND_OFF, BIND_VERBOSE };

static int site_bind = BIND_AUTO;
static int user_bind = BIND_UNSET;
static char spool_dir[PATH_MAX - 256] = "/var/spool/slurm-ai";

/* Per task: read while root, planned and applied just before exec. */
static struct sai_layout layout;
static struct sai_task task;

static int bind_mode_of(const char *text)
{
	if (!strcmp(text, "auto"))
		return BIND_AUTO;
	if (!strcmp(text, "off"))
		return BIND_OFF;
	if (!strcmp(text, "verbose"))
		return BIND_VERBOSE;
	return BIND_UNSET;
}

static int opt_bind(int val, const char *optarg, int remote)
{
	int mode = bind_mode_of(optarg ? optarg : "");

	(void)val;
	if (mode == BIND_UNSET) {
		/* srun/sbatch refuse it; in slurmstepd (a client of another version
		 * during an upgrade) the task runs with the site's default. */
		if (remote) {
			slurm_info("slurm-ai: --sai-bind=%s not known here: the site default applies",
				   optarg ? optarg : "");
			return 0;
		}
		slurm_error("slurm-ai: --sai-bind=%s: expected auto, off or verbose",
			    optarg ? optarg : "");
		return -1;
	}
	user_bind = mode;
	return 0;
}

/* slurm_ai/accounting/marks.py WORKLOADS (a test keeps the two in step). */
static const char *const workloads[] = { "training", "fine-tuning", "inference", "data-science" };
static char workload[32];

static int opt_workload(int val, const char *optarg, int remote)
{
	(void)val;
	for (size_t i = 0; optarg && i < sizeof(workloads) / sizeof(workloads[0]); i++)
		if (!strcmp(optarg, workloads[i])) {
			strcpy(workload, workloads[i]);
			return 0;
		}
	if (remote) { /* as opt_bind: never fail a task over a label */
		slurm_info("slurm-ai: --sai-workload=%s not known here: not recorded",
			   optarg ? optarg : "");
		return 0;
	}
	slurm_error("slurm-ai: --sai-workload=%s: expected training, fine-tuning, inference or "
		    "data-science", optarg ? optarg : "");
	return -1;
}

/* Registered with spank_option_register(): the only way sbatch and salloc
 * (allocator context) see them; an exported spank_options table is not. */
static struct spank_option options[] = {
	{ "sai-bind", "auto|off|verbose",
	  "slurm-ai task pinning (CPUs, memory node, GPU order, NICs from the node's topology): "
	  "auto, off (keep Slurm's binding), verbose (print each task's binding)",
	  1, 0, opt_bind },
	{ "sai-workload", "NAME",
	  "workload class of this job in slurm-ai's records and reports: training, fine-tuning, "
	  "inference, data-science (wins over `slurm-ai mark workload=`)",
	  1, 1, opt_workload },
	SPANK_OPTIONS_TABLE_END
};

static void parse_args(int ac, char **av)
{
	for (int i = 0; i < ac; i++) {
		if (!strncmp(av[i], "spool=", 6) && strlen(av[i] + 6) < sizeof(spool_dir) &&
		    av[i][6] == '/') {
			strcpy(spool_dir, av[i] + 6);
		} else if (!strncmp(av[i], "bind=", 5) && bind_mode_of(av[i] + 5) != BIND_UNSET) {
			site_bind = bind_mode_of(av[i] + 5);
		} else {
			slurm_error("slurm-ai: plugstack.conf argument '%s' ignored", av[i]);
		}
	}
}

int slurm_spank_init(spank_t sp, int ac, char **av)
{
	parse_args(ac, av);
	for (struct spank_option *opt = options; opt->name; opt++)
		if (spank_option_register(sp, opt) != ESPANK_SUCCESS)
			slurm_error("slurm-ai: cannot register --%s", opt->name);
	return 0;
}

/* Words of a --cpu-bind/--gpu-bind value that choose no binding (srun takes
 * the abbreviations too). */
static int neutral_word(const char *word, size_t n)
{
	static const char *const words[] = { "none", "no", "quiet", "q", "verbose", "v", "help" };

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strlen(words[i]) == n && !strncmp(word, words[i], n))
			return 1;
	return 0;
}

/* A --cpu-bind/--gpu-bind value that is the user's own choice of binding:
 * one of its comma-separated words is more than none/quiet/verbose
 * ("quiet,cores" binds; "verbose,none" does not). */
static int binds(const char *value)
{
	for (const char *w = value; *w;) {
		size_t n = strcspn(w, ",");

		if (n && !neutral_word(w, n))
			return 1;
		w += n + (w[n] == ',');
	}
	return 0;
}

/* srun's short options that take a value ("-n 2", "-n2"), from its getopt
 * string; the others are flags. */
#define SRUN_SHORT_WITH_VALUE "AbBcCdDeGiJLmMnNopqrStTwWx"

/* srun's long options that take no value, or only an attached one (--opt=v):
 * after them, a word that is no option is the command. Any other long option
 * without '=' takes the next word as its value. */
static int long_flag(const char *arg)
{
	static const char *const flags[] = {
		"--exact", "--exclusive", "--overlap", "--unbuffered", "--label", "--quiet",
		"--verbose", "--pty", "--multi-prog", "--no-kill", "--kill-on-bad-exit",
		"--disable-status", "--spread-job", "--test-only", "--use-min-nodes",
		"--contiguous", "--hold", "--immediate", "--oversubscribe", "--overcommit",
		"--preserve-env", "--no-allocate", "--help", "--usage", "--version", "--reboot",
		"--send-libs", "--x11", "--bcast", "--compress", "--propagate", "--resv-ports",
		"--nice", "--whole", "--jobid-only", "--external-launcher",
	};

	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		if (!strcmp(arg, flags[i]))
			return 1;
	return 0;
}

/* Does option word `arg` (no '=' in a long one) take the next word as its value? */
static int takes_next_word(const char *arg)
{
	if (arg[1] == '-')
		return !strchr(arg, '=') && !long_flag(arg);
	for (const char *c = arg + 1; *c; c++) /* "-ln": flags, then maybe one with a value */
		if (strchr(SRUN_SHORT_WITH_VALUE, *c))
			return c[1] == '\0'; /* attached ("-n2") or the next word */
	return 0;
}

/* An explicit --cpu-bind=/--gpu-bind= of srun, other than none: the SPANK
 * API does not expose srun's options, so read srun's own command line up to
 * the command (the first word that is neither an option nor an option's
 * value). Without the option, srun takes SLURM_CPU_BIND / SLURM_GPU_BIND from
 * its environment (its input variables), so those count as the user's
 * choice too, except the "quiet,..."/"verbose,..." form Slurm itself sets in
 * a step's tasks, which a nested srun would inherit. */
static void note_user_binding(void)
{
	static char buf[65536];
	static const struct {
		const char *name;
		int kind; /* 0 cpu, 1 gpu */
	} options[] = { { "--cpu-bind", 0 }, { "--cpu_bind", 0 }, { "--gpu-bind", 1 } };
	char what[16] = "";
	int seen[2] = { 0, 0 }, chosen[2] = { 0, 0 };
	ssize_t len = 0, r;
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	int value_next = 0;

	if (fd >= 0) {
		while (len < (ssize_t)sizeof(buf) - 1 &&
		       (r = read(fd, buf + len, sizeof(buf) - 1 - (size_t)len)) > 0)
			len += r;
		close(fd);
	}
	buf[len > 0 ? len : 0] = '\0';
	for (char *arg = buf + strlen(buf) + 1; arg < buf + len; arg += strlen(arg) + 1) {
		if (value_next) { /* the previous option's value */
			value_next = 0;
			continue;
		}
		if (!strcmp(arg, "--") || arg[0] != '-' || !arg[1])
			break; /* the command */
		for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
			size_t n = strlen(options[i].name);
			const char *value = NULL;

			if (!strncmp(arg, options[i].name, n) && arg[n] == '=')
				value = arg + n + 1;
			else if (!strcmp(arg, options[i].name) && arg + n + 1 < buf + len)
				value = arg + n + 1;
			if (value) { /* srun takes the last one */
				seen[options[i].kind] = 1;
				chosen[options[i].kind] = binds(value);
			}
		}
		value_next = takes_next_word(arg);
	}
	for (int k = 0; k < 2; k++) {
		const char *env = getenv(k ? "SLURM_GPU_BIND" : "SLURM_CPU_BIND");

		if (!seen[k] && env && strncmp(env, "quiet,", 6) && strncmp(env, "verbose,", 8) &&
		    binds(env))
			chosen[k] = 1;
	}
	snprintf(what, sizeof(what), "%s%s%s", chosen[0] ? "cpu" : "",
		 chosen[0] && chosen[1] ? "," : "", chosen[1] ? "gpu" : "");
	/* srun's own environment is what its tasks get (spank_setenv is for
	 * the remote side only). */
	if (what[0])
		setenv(USER_BIND_VAR, what, 1);
	else
		unsetenv(USER_BIND_VAR);
}

/* slurmstepd, root: the job's workload option into its spool directory
 * (created by the Prolog; without it there is no record to label). */
static void write_workload(spank_t sp)
{
	char path[PATH_MAX];
	uint32_t job = 0;
	int fd;

	if (!workload[0] || spank_get_item(sp, S_JOB_ID, &job))
		return;
	snprintf(path, sizeof(path), "%s/jobs/%u/%s", spool_dir, job, WORKLOAD_NAME);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, workload, strlen(workload)) != (ssize_t)strlen(workload))
		slurm_info("slurm-ai: job %u: workload not recorded: %s", job, strerror(errno));
	if (fd >= 0)
		close(fd);
}

int slurm_spank_init_post_opt(spank_t sp, int ac, char **av)
{
	(void)ac;
	(void)av;
	if (spank_context() == S_CTX_LOCAL)
		note_user_binding();
	else if (spank_remote(sp))
		write_workload(sp);
	return 0;
}

static const char *task_getenv(void *ctx, const char *name)
{
	static char value[8192];

	if (spank_getenv((spank_t)ctx, name, value, sizeof(value)) != ESPANK_SUCCESS)
		return NULL;
	return value;
}

static void mark_pinned(uint32_t job_id)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/jobs/%u/%s", spool_dir, job_id, PINNED_NAME);
	fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
}

/* Per task, from task_init_privileged (root) to task_init (the user's). */
static int have_plan;
static double spent_ms; /* the plugin's own time in this task (verbose shows it) */
static char user_choice[64];
static uint32_t job_id, step_id, task_id, ntasks;

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* The job's plan, if the Prolog wrote one and the task wants pinning. */
static void read_plan(spank_t sp)
{
	int mode = user_bind != BIND_UNSET ? user_bind : site_bind;
	char path[PATH_MAX], err[256] = "";

	if (!spank_remote(sp) || mode == BIND_OFF)
		return;
	if (spank_get_item(sp, S_JOB_ID, &job_id) || spank_get_item(sp, S_JOB_STEPID, &step_id) ||
	    spank_get_item(sp, S_TASK_ID, &task_id) ||
	    spank_get_item(sp, S_JOB_LOCAL_TASK_COUNT, &ntasks) || step_id > MAX_NORMAL_STEP)
		return;
	if (spank_getenv(sp, USER_BIND_VAR, user_choice, sizeof(user_choice)) != ESPANK_SUCCESS)
		user_choice[0] = '\0';
	if (strstr(user_choice, "cpu") && strstr(user_choice, "gpu"))
		return; /* the user chose both: nothing left to do */
	snprintf(path, sizeof(path), "%s/jobs/%u/%s", spool_dir, job_id, PLAN_NAME);
	if (sai_read_plan(path, 1, &layout, err, sizeof(err))) {
		if (task_id == 0)
			slurm_info("slurm-ai: job %u step %u runs unpinned: %s", job_id, step_id, err);
		return;
	}
	if (task_id == 0 && !strstr(user_choice, "cpu"))
		mark_pinned(job_id); /* the record's plan.pinned_by: the user's binding is not ours */
	have_plan = 1;
}

/* Root part: the plan file is root-only, so it is read before privileges go. */
int slurm_spank_task_init_privileged(spank_t sp, int ac, char **av)
{
	double start = now_ms();

	(void)ac;
	(void)av;
	have_plan = 0;
	read_plan(sp);
	spent_ms = now_ms() - start;
	return 0;
}

/* CPUs the task may use: its own mask now (the step's, or Slurm's per-task
 * mask) and every mask Slurm gave the step's tasks, visible only here, after
 * Slurm's task plugin set SLURM_CPU_BIND_*. */
static void allowed_cpus(spank_t sp, unsigned char *allowed)
{
	static char masks[65536];
	char kind[64];
	cpu_set_t *set = CPU_ALLOC(SAI_MAX_CPUS);
	size_t size = CPU_ALLOC_SIZE(SAI_MAX_CPUS);

	memset(allowed, 0, SAI_MAX_CPUS);
	if (set && !sched_getaffinity(0, size, set))
		for (int c = 0; c < SAI_MAX_CPUS; c++)
			allowed[c] = CPU_ISSET_S(c, size, set) ? 1 : 0;
	if (set)
		CPU_FREE(set);
	if (spank_getenv(sp, "SLURM_CPU_BIND_TYPE", kind, sizeof(kind)) != ESPANK_SUCCESS ||
	    spank_getenv(sp, "SLURM_CPU_BIND_LIST", masks, sizeof(masks)) != ESPANK_SUCCESS)
		return;
	/* As alloc.cpus_from_cpu_bind(); a bad list adds what parsed before it. */
	if (!strncmp(kind, "mask_cpu", 8))
		sai_parse_mask_list(masks, allowed);
	else if (!strncmp(kind, "map_cpu", 7))
		sai_parse_cpu_list(masks, allowed);
}

static int plan_this_task(spank_t sp)
{
	static unsigned char allowed[SAI_MAX_CPUS];
	static char gpus[4096];
	struct sai_request req = { 0 };
	char err[256] = "";

	allowed_cpus(sp, allowed);
	req.ntasks = (int)ntasks;
	req.rank = (int)task_id;
	req.allowed = allowed;
	if (spank_getenv(sp, "SLURM_STEP_GPUS", gpus, sizeof(gpus)) == ESPANK_SUCCESS ||
	    spank_getenv(sp, "SLURM_JOB_GPUS", gpus, sizeof(gpus)) == ESPANK_SUCCESS)
		req.gpus = gpus;
	req.getenv = task_getenv;
	req.getenv_ctx = sp;
	if (sai_plan_task(&layout, &req, &task, err, sizeof(err))) {
		if (task_id == 0)
			slurm_info("slurm-ai: job %u step %u runs unpinned: %s", job_id, step_id, err);
		return -1;
	}
	for (int i = 0; i < task.env.count; i++) {
		const char *name = task.env.item[i].name;

		/* The user's --cpu-bind stays, and with it every choice that follows
		 * from the CPUs: thread count and memory node. */
		if ((strstr(user_choice, "cpu") && !strcmp(name, "OMP_NUM_THREADS")) ||
		    (strstr(user_choice, "gpu") && !strcmp(name, "CUDA_VISIBLE_DEVICES")))
			task.env.item[i].name[0] = '\0';
	}
	if (strstr(user_choice, "cpu")) {
		task.ncpus = 0;
		task.numa = -1;
	}
	if (task_id == 0)
		for (int i = 0; i < task.nwarnings; i++)
			slurm_info("slurm-ai: job %u step %u: %s", job_id, step_id, task.warning[i]);
	return 0;
}

static void prefer_node(int node, char *why, size_t len)
{
	unsigned long mask[SAI_MAX_NODES / (8 * sizeof(unsigned long)) + 1] = { 0 };

	mask[node / (8 * sizeof(unsigned long))] = 1UL << (node % (8 * sizeof(unsigned long)));
	if (syscall(SYS_set_mempolicy, MPOL_PREFERRED, mask, sizeof(mask) * 8 + 1))
		snprintf(why, len, "memory policy not set: %s", strerror(errno));
}

int slurm_spank_task_init(spank_t sp, int ac, char **av)
{
	static char cpus[6 * SAI_MAX_CPUS];
	int mode = user_bind != BIND_UNSET ? user_bind : site_bind;
	double start = now_ms();
	char why[128] = "";
	cpu_set_t *set;
	size_t size = CPU_ALLOC_SIZE(SAI_MAX_CPUS);

	(void)ac;
	(void)av;
	if (!have_plan || !spank_remote(sp) || plan_this_task(sp))
		return 0;
	if (task.ncpus && !(set = CPU_ALLOC(SAI_MAX_CPUS))) {
		snprintf(why, sizeof(why), "CPUs not set: out of memory");
		task.ncpus = 0;
	} else if (task.ncpus) {
		CPU_ZERO_S(size, set);
		for (int i = 0; i < task.ncpus; i++)
			CPU_SET_S(task.cpus[i], size, set); /* below SAI_MAX_CPUS (sai_bind.c) */
		if (sched_setaffinity(0, size, set)) {
			snprintf(why, sizeof(why), "CPUs not set: %s", strerror(errno));
			task.ncpus = 0;
		} else if (task.numa >= 0 && layout.nnodes > 1) {
			prefer_node(task.numa, why, sizeof(why));
		}
		CPU_FREE(set);
	}
	for (int i = 0; i < task.env.count; i++)
		if (task.env.item[i].name[0])
			spank_setenv(sp, task.env.item[i].name, task.env.item[i].value, 1);
	if (why[0] && task_id == 0)
		slurm_info("slurm-ai: %s", why);
	if (mode == BIND_VERBOSE) {
		sai_format_cpu_list(task.cpus, task.ncpus, cpus, sizeof(cpus));
		fprintf(stderr, "slurm-ai: task %u: CPUs %s", task_id, task.ncpus ? cpus : "unchanged");
		if (task.numa >= 0 && layout.nnodes > 1 && !why[0])
			fprintf(stderr, "; memory preferred on NUMA node %d", task.numa);
		for (int i = 0; i < task.env.count; i++)
			if (task.env.item[i].name[0])
				fprintf(stderr, "; %s=%s", task.env.item[i].name, task.env.item[i].value);
		fprintf(stderr, " (in %.2f ms)\n", spent_ms + now_ms() - start);
		for (int i = 0; i < task.nwarnings; i++)
			fprintf(stderr, "slurm-ai: task %u: warning: %s\n", task_id, task.warning[i]);
		if (why[0])
			fprintf(stderr, "slurm-ai: task %u: warning: %s\n", task_id, why);
	}
	return 0;
}

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
 * their own (--cpu-bind / --gpu-bind other than none, in any heterogeneous
 * component, abbreviated as srun allows; sai_args.c): Slurm's choice then
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
#define SAI_CMDLINE_MAX (64u << 20)
#define DOUBT_MARK "in-doubt"
#define USER_CHOICE_MAX 256
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

/* srun's whole command line (NUL-separated words), malloc'ed; NULL if unread. */
static char *read_cmdline(size_t *len)
{
	size_t cap = 65536, used = 0;
	char *buf = malloc(cap + 1);
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	ssize_t r;

	if (!buf || fd < 0) {
		free(buf);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	for (;;) {
		if (used == cap) {
			char *grown = cap < SAI_CMDLINE_MAX ? realloc(buf, 2 * cap + 1) : NULL;

			if (!grown) { /* over any ARG_MAX this srun could have had */
				free(buf);
				buf = NULL;
				break;
			}
			buf = grown;
			cap *= 2;
		}
		r = read(fd, buf + used, cap - used);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(buf);
			buf = NULL;
		}
		if (r <= 0)
			break;
		used += (size_t)r;
	}
	close(fd);
	if (buf)
		buf[used] = '\0';
	*len = used;
	return buf;
}

/* In srun: did the user choose a binding (sai_args.c says how that is read)?
 * The answer goes to the tasks in SLURM_AI_USER_BIND ("cpu", "gpu",
 * "cpu,gpu", then ";" DOUBT_MARK " " and the reason when srun's options were
 * read in doubt, for slurmd's log: srun's own log level is not raised yet
 * here): srun's own environment is what its tasks get (spank_setenv is for
 * the remote side only). A command line that cannot be read counts as both:
 * in doubt, Slurm's binding stays. */
static void note_user_binding(void)
{
	char why[128] = "", what[USER_CHOICE_MAX];
	size_t len = 0;
	char *buf = read_cmdline(&len);
	char **argv = NULL;
	int argc = 0, chosen = SAI_USER_CPU | SAI_USER_GPU;

	if (buf) {
		for (size_t i = 0; i < len; i++)
			argc += !buf[i];
		argc += len && buf[len - 1]; /* a last word without its NUL */
		argv = calloc((size_t)argc + 1, sizeof(char *));
	}
	if (argv) {
		int n = 0;

		for (size_t i = 0; i < len && n < argc; i += strlen(buf + i) + 1)
			argv[n++] = buf + i;
		chosen = sai_user_binding(n, argv, getenv("SLURM_CPU_BIND"), getenv("SLURM_GPU_BIND"),
					  why, sizeof(why));
	} else {
		snprintf(why, sizeof(why), "srun's command line not readable");
	}
	free(argv);
	free(buf);
	snprintf(what, sizeof(what), "%s%s%s%s", chosen & SAI_USER_CPU ? "cpu" : "",
		 chosen == (SAI_USER_CPU | SAI_USER_GPU) ? "," : "",
		 chosen & SAI_USER_GPU ? "gpu" : "", why[0] ? ";" DOUBT_MARK " " : "");
	if (why[0])
		strncat(what, why, sizeof(what) - strlen(what) - 1);
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

/* spank_getenv() for sai_env_read(): ESPANK_NOSPACE when buf is too small. */
static int copy_task_env(void *ctx, const char *name, char *buf, size_t len)
{
	spank_err_t rc = spank_getenv((spank_t)ctx, name, buf, len > INT_MAX ? INT_MAX : (int)len);

	if (rc == ESPANK_SUCCESS)
		return 0;
	return rc == ESPANK_NOSPACE ? 1 : -1;
}

/* The task's variables, read whole (a user's variable of any length is the
 * user's choice; one over SAI_ENV_MAX_BYTES too, unread). */
static struct sai_envreader task_env = { copy_task_env, NULL, 0, NULL, 0 };

static const char *task_getenv(void *ctx, const char *name)
{
	task_env.ctx = ctx;
	return sai_env_read(&task_env, name);
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
static char user_choice[USER_CHOICE_MAX];
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
	switch ((int)spank_getenv(sp, USER_BIND_VAR, user_choice, sizeof(user_choice))) {
	case ESPANK_SUCCESS:
		break;
	case ESPANK_NOSPACE: /* not what srun wrote: in doubt, Slurm's binding */
		strcpy(user_choice, "cpu,gpu");
		break;
	default:
		user_choice[0] = '\0';
	}
	if (strchr(user_choice, ';')) {
		const char *why = strchr(user_choice, ';') + 1;

		*strchr(user_choice, ';') = '\0'; /* the choice itself: "cpu", "gpu", "cpu,gpu" */
		if (task_id == 0 && !strncmp(why, DOUBT_MARK " ", strlen(DOUBT_MARK) + 1))
			slurm_info("slurm-ai: job %u step %u: srun's options read in doubt (%s): "
				   "bindings left to Slurm: %s", job_id, step_id,
				   why + strlen(DOUBT_MARK) + 1, user_choice[0] ? user_choice : "none");
	}
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
 * Slurm's task plugin set SLURM_CPU_BIND_* (sai_bind_masks() reads them, with
 * SLURM_CPU_BIND when the list is empty). -1 with a reason: a binding not
 * understood (the task then runs as Slurm started it). */
static int allowed_cpus(spank_t sp, unsigned char *allowed, char *err, size_t errlen)
{
	static const char *const names[] = { "SLURM_CPU_BIND_TYPE", "SLURM_CPU_BIND_LIST",
					     "SLURM_CPU_BIND" };
	struct sai_envreader r[3];
	const char *value[3];
	cpu_set_t *set = CPU_ALLOC(SAI_MAX_CPUS);
	size_t size = CPU_ALLOC_SIZE(SAI_MAX_CPUS);
	int rc = 0;

	memset(allowed, 0, SAI_MAX_CPUS);
	if (set && !sched_getaffinity(0, size, set))
		for (int c = 0; c < SAI_MAX_CPUS; c++)
			allowed[c] = CPU_ISSET_S(c, size, set) ? 1 : 0;
	if (set)
		CPU_FREE(set);
	for (int i = 0; i < 3; i++) {
		r[i] = (struct sai_envreader){ copy_task_env, sp, 0, NULL, 0 };
		value[i] = sai_env_read(&r[i], names[i]);
		if (value[i] == sai_env_unreadable && !rc) {
			snprintf(err, errlen, "%s too long to read", names[i]);
			rc = -1;
		}
	}
	if (!rc)
		rc = sai_bind_masks(value[0], value[1], value[2], allowed, err, errlen);
	for (int i = 0; i < 3; i++)
		sai_env_done(&r[i]);
	return rc;
}

/* May this task open the device file? The device cgroup answers access() too
 * (inode_permission() asks it), so no driver is opened: EPERM is its "no". */
static int may_open(const char *path)
{
	return access(path, R_OK | W_OK) == 0 || errno != EPERM;
}

static int plan_this_task(spank_t sp)
{
	static unsigned char allowed[SAI_MAX_CPUS];
	static char gpus[4096];
	int own[SAI_MAX_UNITS], nown;
	struct sai_request req = { 0 };
	char err[256] = "";

	if (allowed_cpus(sp, allowed, err, sizeof(err))) {
		if (task_id == 0)
			slurm_info("slurm-ai: job %u step %u runs unpinned: %s", job_id, step_id, err);
		return -1;
	}
	req.ntasks = (int)ntasks;
	req.rank = (int)task_id;
	req.allowed = allowed;
	nown = sai_confined_gpus(&layout, may_open, own);
	if (nown > 0) {
		/* The GPUs the device cgroup lets this task open, by the node's numbering:
		 * Slurm's SLURM_STEP_GPUS counts from 0 there too. */
		sai_format_cpu_list(own, nown, gpus, sizeof(gpus));
		req.gpus = gpus;
	} else if (spank_getenv(sp, "SLURM_STEP_GPUS", gpus, sizeof(gpus)) == ESPANK_SUCCESS ||
		   spank_getenv(sp, "SLURM_JOB_GPUS", gpus, sizeof(gpus)) == ESPANK_SUCCESS) {
		req.gpus = gpus;
	}
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
		    (strstr(user_choice, "gpu") &&
		     (!strcmp(name, "CUDA_VISIBLE_DEVICES") || !strcmp(name, "ROCR_VISIBLE_DEVICES") ||
		      !strcmp(name, "HIP_VISIBLE_DEVICES"))))
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
			if (sai_memory_policy_set() == 0) {
				prefer_node(task.numa, why, sizeof(why));
			} else { /* the user's --mem-bind, applied by Slurm before us */
				if (task_id == 0)
					slurm_info("slurm-ai: job %u step %u: memory policy left as "
						   "set (--mem-bind)", job_id, step_id);
				task.numa = -1;
			}
		}
		CPU_FREE(set);
	}
	for (int i = 0; i < task.env.count; i++)
		if (task.env.item[i].name[0])
			spank_setenv(sp, task.env.item[i].name, task.env.item[i].value, 1);
	if (why[0] && task_id == 0)
		slurm_info("slurm-ai: %s", why);
	if (mode == BIND_VERBOSE) {
		if (task.ngpus) { /* the node's numbering: CUDA_VISIBLE_DEVICES may count from 0 */
			sai_format_cpu_list(task.gpus, task.ngpus, cpus, sizeof(cpus));
			fprintf(stderr, "slurm-ai: task %u: GPU %s; ", task_id, cpus);
		} else {
			fprintf(stderr, "slurm-ai: task %u: ", task_id);
		}
		sai_format_cpu_list(task.cpus, task.ncpus, cpus, sizeof(cpus));
		fprintf(stderr, "CPUs %s", task.ncpus ? cpus : "unchanged");
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

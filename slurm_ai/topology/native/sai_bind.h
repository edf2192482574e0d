/*
 * sai_bind: the binding of one task, computed at task start from the plan
 * file the Prolog wrote (slurm_ai/topology/planfile.py writes it).
 *
 * The Prolog cannot plan the tasks itself: it knows neither the step's task
 * count on the node nor the CPUs each task may use. It writes the node's
 * layout instead (each online CPU's NUMA node and core, NUMA distances, the
 * GPU units with their NIC variables, the NIC variables of GPU-less ranks)
 * and sai_plan_task() applies the rules of slurm_ai/topology/plan.py to it:
 *
 * - A rank's CPUs come from its GPU's NUMA node; ranks sharing a home split
 *   its cores evenly; whole cores unless there are more ranks than cores
 *   (then threads), no CPU shared unless there are more ranks than CPUs.
 * - A GPU whose NUMA node holds none of the allowed CPUs: the nearest node
 *   (SLIT distance, then more cores) that has some.
 * - CPU-only ranks (and GPUs of unknown NUMA node) spread over the nodes.
 * - More ranks than GPUs: neighbouring ranks share one; fewer: each rank a
 *   contiguous group. MIG: only the rank's own instance is visible.
 * - CUDA_VISIBLE_DEVICES: the rank's GPUs first, the job's others kept
 *   (CUDA IPC / P2P), unless the site asked for own_gpu_only.
 * - Allowed CPUs with no online CPU of the layout: split them evenly, warn.
 *
 * tests/topology/test_spank_core.py checks that this agrees with
 * compute_plan() on every recorded machine. No Slurm header is needed here:
 * the test harness (sai_bind_harness.c) builds without Slurm.
 */
#ifndef SAI_BIND_H
#define SAI_BIND_H

#include <stddef.h>

#define SAI_PLAN_VERSION 1
#define SAI_PLAN_MAX_BYTES (1 << 20)
#define SAI_MAX_CPUS 4096
#define SAI_MAX_UNITS 64
#define SAI_MAX_NODES 64
#define SAI_MAX_ENV 8
#define SAI_NAME_MAX 64
#define SAI_VALUE_MAX 1024 /* 24 GPU UUIDs in CUDA_VISIBLE_DEVICES */
#define SAI_UUID_MAX 96
#define SAI_DEV_MAX 128 /* a GPU's device file path (gres.conf File=) */
#define SAI_MAX_WARNINGS 8
#define SAI_WARNING_MAX 200

struct sai_env {
	char name[SAI_NAME_MAX];
	char value[SAI_VALUE_MAX];
};

struct sai_envset {
	int count;
	struct sai_env item[SAI_MAX_ENV];
};

struct sai_unit {
	int index;       /* Slurm's GPU index on the node (MIG instances flattened) */
	int numa;        /* -1: unknown */
	int mig;
	char uuid[SAI_UUID_MAX]; /* "" when unknown */
	char dev[SAI_DEV_MAX];   /* its device file ("gpu_dev"), "" when unknown */
	struct sai_envset env;   /* NIC variables of a rank whose first GPU this is */
};

struct sai_layout {
	unsigned char online[SAI_MAX_CPUS];
	short numa[SAI_MAX_CPUS];  /* -1: unknown */
	short core[SAI_MAX_CPUS];  /* lowest CPU of its SMT group */
	int nunits;
	struct sai_unit unit[SAI_MAX_UNITS];
	int njob_gpus;              /* the job's GPUs as the Prolog saw them */
	int job_gpus[SAI_MAX_UNITS];
	short dist[SAI_MAX_NODES][SAI_MAX_NODES]; /* 0: unknown */
	int nnodes;                 /* NUMA nodes with CPUs (for the memory policy) */
	struct sai_envset node_env[SAI_MAX_NODES + 1]; /* [node + 1]; [0]: no single node */
	char visible[16];           /* auto|index|relative|uuid */
	int own_gpu_only;
	int override_user_env;
	int rocm;                   /* gpu_runtime rocm: every GPU is AMD */
};

/* Looks a variable up in the task's environment: NULL when unset,
 * sai_env_unreadable when set but not readable whole (then it counts as set:
 * the user's choice, never overridden; its content is not guessed at). */
typedef const char *(*sai_getenv_fn)(void *ctx, const char *name);
extern const char sai_env_unreadable[];

/* Reading a variable whole, however long (spank_getenv() copies into a buffer
 * the caller sizes, and says ESPANK_NOSPACE when it is too small).
 * copy(): 0 copied, 1 set but longer than len - 1, -1 unset. */
#define SAI_ENV_MAX_BYTES (1 << 20) /* Linux execs no variable over 128 KiB */
typedef int (*sai_copyenv_fn)(void *ctx, const char *name, char *buf, size_t len);
struct sai_envreader {
	sai_copyenv_fn copy;
	void *ctx;
	size_t max;  /* 0: SAI_ENV_MAX_BYTES */
	char *buf;   /* grown as needed; sai_env_done() frees it */
	size_t cap;
};
/* The value (valid until the next call on r), NULL or sai_env_unreadable. */
const char *sai_env_read(struct sai_envreader *r, const char *name);
void sai_env_done(struct sai_envreader *r);

struct sai_request {
	int ntasks;                 /* tasks of the step on this node */
	int rank;                   /* the task's local id */
	const unsigned char *allowed; /* SAI_MAX_CPUS flags: CPUs the task may use */
	const char *gpus;           /* SLURM_STEP_GPUS or SLURM_JOB_GPUS; NULL: the plan's */
	sai_getenv_fn getenv;       /* may be NULL */
	void *getenv_ctx;
};

struct sai_task {
	int ncpus;
	int cpus[SAI_MAX_CPUS];     /* ascending */
	int numa;                   /* -1: none (no memory policy) */
	int ngpus;
	int gpus[SAI_MAX_UNITS];    /* its own GPUs, by the node's numbering */
	struct sai_envset env;      /* to set, already filtered */
	int nwarnings;
	char warning[SAI_MAX_WARNINGS][SAI_WARNING_MAX];
};

/* 0 on success; -1 with a reason in err. Never reads past len. */
int sai_parse_plan(const char *text, size_t len, struct sai_layout *out,
		   char *err, size_t errlen);
/* Reads a root-owned regular file (no symlink followed, size-bounded). */
int sai_read_plan(const char *path, int require_root, struct sai_layout *out,
		  char *err, size_t errlen);
/* 0 on success; -1 with a reason in err (then nothing must be applied). */
/* The job's GPUs this task may open (into out, Slurm's indices), when a device
 * cgroup lets it open some but not all of them (ConstrainDevices with per-task or
 * per-step GPUs: Slurm's own variables then count from 0 and name no GPU of the
 * node). may_open(path) says whether the task may open the device file. 0: not
 * confined, or not known (a job GPU without a device file in the plan). */
int sai_confined_gpus(const struct sai_layout *layout, int (*may_open)(const char *path),
		      int *out);

int sai_plan_task(const struct sai_layout *layout, const struct sai_request *req,
		  struct sai_task *out, char *err, size_t errlen);
/* "0-3,8" into flags; -1 on bad syntax or CPUs >= SAI_MAX_CPUS. */
int sai_parse_cpu_list(const char *text, unsigned char *flags);
/* Union of a mask_cpu list ("0x3,c": hex, "0x" optional) into flags; -1 if bad. */
int sai_parse_mask_list(const char *text, unsigned char *flags);
/* Union of a map_cpu list ("0x1,3": hex after "0x", decimal otherwise). */
int sai_parse_map_list(const char *text, unsigned char *flags);
/* The CPUs Slurm bound the step's tasks on this node to, from the task's
 * SLURM_CPU_BIND_TYPE and SLURM_CPU_BIND_LIST, or SLURM_CPU_BIND when the list
 * is empty or unset (NULL: unset), unioned into flags. 0: done, also when
 * there is no map or mask; -1 with a reason: the binding is not understood. */
int sai_bind_masks(const char *type, const char *list, const char *bind, unsigned char *flags,
		   char *err, size_t errlen);

/* ---- srun's command line (sai_args.c) ----------------------------------- */

#define SAI_USER_CPU 1
#define SAI_USER_GPU 2
/* Which bindings the user chose for srun (SAI_USER_* bits): --cpu-bind,
 * --gpu-bind (and --tres-bind naming a GPU) in any heterogeneous component of
 * argv (srun's own, argv[0] first), else SLURM_CPU_BIND / SLURM_GPU_BIND
 * (env_cpu, env_gpu; NULL: unset). In doubt (an option srun's table does not
 * hold, a prefix that could be two options) the reading that finds a binding,
 * the reason in why. */
int sai_user_binding(int argc, char *const *argv, const char *env_cpu, const char *env_gpu,
		     char *why, size_t whylen);
/* "0-3,8" from an ascending list. */
void sai_format_cpu_list(const int *cpus, int n, char *buf, size_t len);
/* Whether this process already has a memory policy of its own (not MPOL_DEFAULT):
 * in task_init, Slurm's task plugin has applied the user's --mem-bind by then, and
 * the plugin's preferred node must not replace it. 1 yes, 0 no, -1 unknown (errno). */
int sai_memory_policy_set(void);

#endif

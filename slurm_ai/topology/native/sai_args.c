/*
 * sai_args: did the user choose a CPU or GPU binding for this srun? The SPANK
 * API does not expose srun's options, so the plugin reads srun's own command
 * line (/proc/self/cmdline in srun) the way srun's getopt_long() does:
 *
 * - Options up to the command: the first word that is neither an option nor
 *   an option's value, or the word after "--". Which options take a value is
 *   srun's table below; after the command, the command's own words are not
 *   srun's, up to a ":" word.
 * - A ":" word starts the next component of a heterogeneous step, with options
 *   of its own (srun -n1 a : -n1 --cpu-bind=none b). The plugin's task side
 *   cannot tell which component a task is in (no SPANK item says so, and the
 *   components of one allocation share job and step ids), so a binding chosen
 *   in any component counts for all: none of them is pinned by the plugin.
 * - getopt_long() takes any unambiguous prefix of a long option (--cpu-b=cores,
 *   --gpu-bi=closest): a prefix matching options that all mean the same here
 *   (binding kind, whether the next word is the value) is that option.
 * - srun takes the last --cpu-bind of a component; without one,
 *   SLURM_CPU_BIND / SLURM_GPU_BIND (srun's input variables) count, except the
 *   "quiet,..."/"verbose,..." form Slurm itself sets in a step's tasks, which a
 *   srun inside a step inherits.
 * - In doubt, the reading that finds a binding wins (the plugin then leaves
 *   it to Slurm): after an option missing from the table (another SPANK
 *   plugin's, a newer srun's) or a prefix of options that differ, with no
 *   "=value", both readings (the next word its value, or not) are followed;
 *   past MAX_DOUBTS such words, both bindings count as the user's.
 *
 * The table is srun's own, read off srun 22.05.8 (Debian 12) and srun 24.11.5
 * (Debian 13): every long option from getopt's "ambiguous; possibilities:"
 * list for --a ... --z, "requires an argument" / "doesn't allow an argument"
 * for each; the union of both releases (no option differs between them in
 * whether it takes the next word). Short options with a value:
 * ABCDFGJLMNSTWbcdeimnopqrtwx; with an attached value only: I and K.
 */
#include "sai_bind.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define TRES 4 /* --tres-bind: a GPU binding when it names one */
#define MAX_DOUBTS 4

static const struct srun_option {
	const char *name;
	int takes_value; /* required argument: "--opt value" takes the next word */
	int kind;        /* SAI_USER_CPU, SAI_USER_GPU, TRES or 0 */
} srun_options[] = {
	{ "accel-bind", 1, 0 },
	{ "account", 1, 0 },
	{ "acctg-freq", 1, 0 },
	{ "autocomplete", 1, 0 },
	{ "bb", 1, 0 },
	{ "bbf", 1, 0 },
	{ "bcast", 0, 0 },
	{ "bcast-exclude", 1, 0 },
	{ "begin", 1, 0 },
	{ "chdir", 1, 0 },
	{ "cluster", 1, 0 },
	{ "cluster-constraint", 1, 0 },
	{ "clusters", 1, 0 },
	{ "comment", 1, 0 },
	{ "compress", 0, 0 },
	{ "constraint", 1, 0 },
	{ "container", 1, 0 },
	{ "container-id", 1, 0 },
	{ "context", 1, 0 },
	{ "contiguous", 0, 0 },
	{ "core-spec", 1, 0 },
	{ "cores-per-socket", 1, 0 },
	{ "cpu-bind", 1, SAI_USER_CPU },
	{ "cpu-freq", 1, 0 },
	{ "cpu_bind", 1, SAI_USER_CPU },
	{ "cpus-per-gpu", 1, 0 },
	{ "cpus-per-task", 1, 0 },
	{ "deadline", 1, 0 },
	{ "debugger-test", 0, 0 },
	{ "delay-boot", 1, 0 },
	{ "dependency", 1, 0 },
	{ "disable-status", 0, 0 },
	{ "distribution", 1, 0 },
	{ "epilog", 1, 0 },
	{ "error", 1, 0 },
	{ "exact", 0, 0 },
	{ "exclude", 1, 0 },
	{ "exclusive", 0, 0 },
	{ "export", 1, 0 },
	{ "external-launcher", 0, 0 },
	{ "extra", 1, 0 },
	{ "extra-node-info", 1, 0 },
	{ "gid", 1, 0 },
	{ "gpu-bind", 1, SAI_USER_GPU },
	{ "gpu-freq", 1, 0 },
	{ "gpus", 1, 0 },
	{ "gpus-per-node", 1, 0 },
	{ "gpus-per-socket", 1, 0 },
	{ "gpus-per-task", 1, 0 },
	{ "gres", 1, 0 },
	{ "gres-flags", 1, 0 },
	{ "help", 0, 0 },
	{ "het-group", 1, 0 },
	{ "hint", 1, 0 },
	{ "hold", 0, 0 },
	{ "immediate", 0, 0 },
	{ "input", 1, 0 },
	{ "interactive", 0, 0 },
	{ "job-name", 1, 0 },
	{ "jobid", 1, 0 },
	{ "kill-on-bad-exit", 0, 0 },
	{ "label", 0, 0 },
	{ "licenses", 1, 0 },
	{ "mail-type", 1, 0 },
	{ "mail-user", 1, 0 },
	{ "mcs-label", 1, 0 },
	{ "mem", 1, 0 },
	{ "mem-bind", 1, 0 },
	{ "mem-per-cpu", 1, 0 },
	{ "mem-per-gpu", 1, 0 },
	{ "mincpus", 1, 0 },
	{ "mpi", 1, 0 },
	{ "msg-timeout", 1, 0 },
	{ "multi-prog", 0, 0 },
	{ "network", 1, 0 },
	{ "nice", 0, 0 },
	{ "no-allocate", 0, 0 },
	{ "no-kill", 0, 0 },
	{ "nodefile", 1, 0 },
	{ "nodelist", 1, 0 },
	{ "nodes", 1, 0 },
	{ "ntasks", 1, 0 },
	{ "ntasks-per-core", 1, 0 },
	{ "ntasks-per-gpu", 1, 0 },
	{ "ntasks-per-node", 1, 0 },
	{ "ntasks-per-socket", 1, 0 },
	{ "ntasks-per-tres", 1, 0 },
	{ "oom-kill-step", 0, 0 },
	{ "open-mode", 1, 0 },
	{ "output", 1, 0 },
	{ "overcommit", 0, 0 },
	{ "overlap", 0, 0 },
	{ "oversubscribe", 0, 0 },
	{ "pack-group", 1, 0 },
	{ "partition", 1, 0 },
	{ "power", 1, 0 },
	{ "prefer", 1, 0 },
	{ "preserve-env", 0, 0 },
	{ "priority", 1, 0 },
	{ "profile", 1, 0 },
	{ "prolog", 1, 0 },
	{ "propagate", 0, 0 },
	{ "pty", 0, 0 },
	{ "qos", 1, 0 },
	{ "quiet", 0, 0 },
	{ "quit-on-interrupt", 0, 0 },
	{ "reboot", 0, 0 },
	{ "relative", 1, 0 },
	{ "reservation", 1, 0 },
	{ "resv-ports", 0, 0 },
	{ "sai-bind", 1, 0 },
	{ "sai-workload", 1, 0 },
	{ "segment", 1, 0 },
	{ "send-libs", 0, 0 },
	{ "signal", 1, 0 },
	{ "slurmd-debug", 1, 0 },
	{ "sockets-per-node", 1, 0 },
	{ "spread-job", 0, 0 },
	{ "stepmgr", 0, 0 },
	{ "switches", 1, 0 },
	{ "task-epilog", 1, 0 },
	{ "task-prolog", 1, 0 },
	{ "tasks-per-node", 1, 0 },
	{ "test-only", 0, 0 },
	{ "thread-spec", 1, 0 },
	{ "threads", 1, 0 },
	{ "threads-per-core", 1, 0 },
	{ "time", 1, 0 },
	{ "time-min", 1, 0 },
	{ "tmp", 1, 0 },
	{ "treewidth", 1, 0 },
	{ "tres-bind", 1, TRES },
	{ "tres-per-task", 1, 0 },
	{ "uid", 1, 0 },
	{ "unbuffered", 0, 0 },
	{ "usage", 0, 0 },
	{ "use-min-nodes", 0, 0 },
	{ "verbose", 0, 0 },
	{ "version", 0, 0 },
	{ "wait", 1, 0 },
	{ "wckey", 1, 0 },
	{ "whole", 0, 0 },
	{ "x11", 0, 0 },
};

#define SHORT_WITH_VALUE "ABCDFGJLMNSTWbcdeimnopqrtwx"
#define SHORT_ATTACHED_ONLY "IK"

/* Words of a --cpu-bind/--gpu-bind value that choose nothing (Slurm compares
 * them without case): how loud, not how to bind. For the GPU binding "none"/"no"
 * are Slurm's default and choose nothing either; for the CPU binding they are the
 * user saying "do not bind my tasks" (Slurm then binds nothing), a choice. */
static int neutral_word(const char *word, size_t n, int kind)
{
	static const char *const words[] = { "quiet", "q", "verbose", "v", "help", "none", "no" };
	size_t count = sizeof(words) / sizeof(words[0]) - (kind == SAI_USER_CPU ? 2 : 0);

	for (size_t i = 0; i < count; i++)
		if (strlen(words[i]) == n && !strncasecmp(word, words[i], n))
			return 1;
	return 0;
}

/* A value that is the user's choice of `kind`: one of its comma-separated words is
 * more than quiet/verbose ("quiet,cores", "verbose,none", "none" for the CPUs;
 * "closest" but not "none" for the GPUs). */
static int binds(const char *value, int kind)
{
	for (const char *w = value; *w;) {
		size_t n = strcspn(w, ",");

		if (n && !neutral_word(w, n, kind))
			return 1;
		w += n + (w[n] == ',');
	}
	return 0;
}

enum { FOUND, UNKNOWN, AMBIGUOUS };

/* The option `name` (n characters, no "=") names, as getopt_long() resolves
 * it: an exact name, else every option it is a prefix of, if they agree. */
static int find_option(const char *name, size_t n, struct srun_option *out, int *kinds)
{
	size_t count = sizeof(srun_options) / sizeof(srun_options[0]);
	int found = 0, agree = 1;

	*kinds = 0;
	if (!n)
		return UNKNOWN;
	for (size_t i = 0; i < count; i++)
		if (strlen(srun_options[i].name) == n && !strncmp(srun_options[i].name, name, n)) {
			*out = srun_options[i];
			*kinds = out->kind;
			return FOUND;
		}
	for (size_t i = 0; i < count; i++) {
		const struct srun_option *o = &srun_options[i];

		if (strncmp(o->name, name, n))
			continue;
		*kinds |= o->kind;
		if (found++ && (o->takes_value != out->takes_value || o->kind != out->kind))
			agree = 0;
		if (found == 1)
			*out = *o;
	}
	if (!found)
		return UNKNOWN;
	return agree ? FOUND : AMBIGUOUS;
}

struct scan {
	int argc;
	char *const *argv;
	const char *env[2]; /* SLURM_CPU_BIND, SLURM_GPU_BIND */
	char *why;
	size_t whylen;
};

struct state {
	int any;    /* chosen in a finished component */
	int seen;   /* this component: kinds its command line set */
	int chosen; /* this component: kinds that bind */
};

static void note_value(struct state *st, int kind, const char *value, int sure)
{
	if (kind == TRES) { /* "gres/gpu:closest": any mention of a GPU */
		for (const char *p = value; *p; p++)
			if (!strncasecmp(p, "gpu", 3))
				st->chosen |= SAI_USER_GPU;
		return;
	}
	if (!sure) { /* maybe this option: it may add a choice, never take one away */
		if (binds(value, kind))
			st->chosen |= kind;
		return;
	}
	st->seen |= kind;
	if (binds(value, kind)) /* srun takes the last one */
		st->chosen |= kind;
	else
		st->chosen &= ~kind;
}

static void finish_component(const struct scan *s, struct state *st)
{
	for (int k = 0; k < 2; k++) {
		int bit = k ? SAI_USER_GPU : SAI_USER_CPU;
		const char *env = s->env[k];

		if (!(st->seen & bit) && env && strncmp(env, "quiet,", 6) &&
		    strncmp(env, "verbose,", 8) && binds(env, bit))
			st->chosen |= bit;
	}
	st->any |= st->chosen;
	st->seen = st->chosen = 0;
}

/* The first doubt, printable only (it ends up in slurmd's log). */
static void say_why(const struct scan *s, const char *what, const char *arg)
{
	if (!s->why || !s->whylen || s->why[0])
		return;
	snprintf(s->why, s->whylen, "%s %.60s", what, arg);
	for (char *c = s->why; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
			*c = '?';
}

static int scan_from(const struct scan *s, int i, struct state st, int doubts)
{
	while (i < s->argc) {
		const char *arg = s->argv[i];

		if (!strcmp(arg, ":")) { /* the next component */
			finish_component(s, &st);
			i++;
			continue;
		}
		if (!strcmp(arg, "--") || arg[0] != '-' || !arg[1]) {
			/* The command: its words are its own, up to a ":". */
			for (i += !strcmp(arg, "--"); i < s->argc && strcmp(s->argv[i], ":"); i++)
				;
			continue;
		}
		if (arg[1] == '-') {
			const char *name = arg + 2;
			size_t n = strcspn(name, "=");
			const char *attached = name[n] == '=' ? name + n + 1 : NULL;
			struct srun_option opt = { 0 };
			int kinds, how = find_option(name, n, &opt, &kinds);

			if (how == FOUND) {
				const char *value = attached;

				if (!value && opt.takes_value)
					value = i + 1 < s->argc ? s->argv[i + 1] : NULL;
				if (opt.kind && value)
					note_value(&st, opt.kind, value, 1);
				i += 1 + (!attached && opt.takes_value);
				continue;
			}
			if (attached) { /* one word whatever it is */
				for (int k = SAI_USER_CPU; k <= TRES; k <<= 1)
					if (kinds & k)
						note_value(&st, k, attached, 0);
				i++;
				continue;
			}
			/* Value next or not: follow both. */
			say_why(s, how == UNKNOWN ? "srun option not known here:"
						  : "srun option prefix of several:", arg);
			if (doubts >= MAX_DOUBTS)
				return SAI_USER_CPU | SAI_USER_GPU;
			return scan_from(s, i + 1, st, doubts + 1) | scan_from(s, i + 2, st, doubts + 1);
		}
		/* Short options, maybe several in one word ("-ln2"). */
		{
			int next = 0;

			for (const char *c = arg + 1; *c; c++) {
				if (strchr(SHORT_WITH_VALUE, *c)) {
					next = !c[1]; /* "-n2" or "-n 2" */
					break;
				}
				if (strchr(SHORT_ATTACHED_ONLY, *c))
					break; /* "-I60": the rest of the word */
			}
			i += 1 + next;
		}
	}
	finish_component(s, &st);
	return st.any;
}

int sai_user_binding(int argc, char *const *argv, const char *env_cpu, const char *env_gpu,
		     char *why, size_t whylen)
{
	struct scan s = { argc, argv, { env_cpu, env_gpu }, why, whylen };
	struct state st = { 0, 0, 0 };

	if (why && whylen)
		why[0] = '\0';
	return argc > 0 ? scan_from(&s, 1, st, 0) : 0;
}

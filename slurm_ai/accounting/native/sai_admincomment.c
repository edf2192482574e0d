/*
 * sai_admincomment: set a finished job's AdminComment through Slurm's own
 * C API (slurmdb_job_modify), keeping the value byte for byte.
 *
 * Why: `sacctmgr modify job ... set AdminComment=V` on Slurm 22.05 lowercases
 * V (its parser calls strip_quotes(..., make_lower)) and turns quotes into
 * backticks, which destroys other tools' content (jobstats' JS1:<base64>).
 * `scontrol update` refuses jobs that have ended. This program sends the
 * same modify request sacctmgr sends, without the parser in between.
 *
 * Built on the node by slurm_ai/accounting/native.py against the installed
 * <slurm/slurmdb.h>, so the struct layouts always match the running Slurm.
 *
 * Usage:  sai_admincomment [--cluster NAME] JOBID [JOBID...]  < VALUE
 *         sai_admincomment --version
 * VALUE on stdin: "<byte count> <hex of the bytes>\n". Hex keeps the value
 * out of argv (ps shows argv), out of any quoting and out of any text
 * encoding; the count catches a truncated pipe.
 *
 * Exit codes (native.py maps them):
 *   0 modified (one "modified <what slurmdbd returned>" line per job)
 *   2 bad usage or bad input, nothing sent
 *   3 cannot reach slurmdbd
 *   4 nothing modified: the job is not in accounting (yet)
 *   5 slurmdbd refused or failed the request
 *   6 commit failed
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <slurm/slurm.h>
#include <slurm/slurm_errno.h>
#include <slurm/slurmdb.h>
#include <slurm/slurm_version.h>

#if SLURM_VERSION_NUMBER < SLURM_VERSION_NUM(22, 5, 0)
#error "sai_admincomment needs Slurm >= 22.05 (slurm_init, step_list in slurmdb_job_cond_t)"
#endif

/* The list types were renamed across releases (List/ListIterator, later
 * list_t * / list_itr_t *): take them from the prototypes instead. */
typedef __typeof__(slurm_list_create(NULL)) sai_list_t;
typedef __typeof__(slurm_list_iterator_create(NULL)) sai_list_itr_t;

/* Exported by libslurm but not declared in the public headers; the type is. */
extern slurm_conf_t slurm_conf;

#define MAX_VALUE_BYTES 65535 /* AdminComment is a MySQL TEXT column */
#define MAX_JOBS 1024

enum {
	EXIT_OK = 0,
	EXIT_USAGE = 2,
	EXIT_CONNECT = 3,
	EXIT_NOTHING = 4,
	EXIT_REQUEST = 5,
	EXIT_COMMIT = 6,
};

static int usage(const char *why)
{
	fprintf(stderr, "sai_admincomment: %s\n"
		"usage: sai_admincomment [--cluster NAME] JOBID... < "
		"'<bytes> <hex>\\n'\n", why);
	return EXIT_USAGE;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Read "<n> <hex>\n" from stdin into a NUL-terminated buffer of n bytes. */
static char *read_value(const char **why)
{
	unsigned long n = 0;
	int c, digits = 0;

	while ((c = getchar()) != EOF && c >= '0' && c <= '9') {
		n = n * 10 + (unsigned long) (c - '0');
		if (++digits > 6 || n > MAX_VALUE_BYTES) {
			*why = "value longer than 65535 bytes";
			return NULL;
		}
	}
	if (!digits || c != ' ') {
		*why = "stdin must start with '<byte count> '";
		return NULL;
	}
	char *value = malloc(n + 1);
	if (!value) {
		*why = "out of memory";
		return NULL;
	}
	for (unsigned long i = 0; i < n; i++) {
		int hi = hexval(getchar());
		int lo = hexval(getchar());
		if (hi < 0 || lo < 0) {
			*why = "value shorter than its byte count, or not hex";
			free(value);
			return NULL;
		}
		value[i] = (char) (hi << 4 | lo);
		if (value[i] == '\0') {
			*why = "value contains a NUL byte";
			free(value);
			return NULL;
		}
	}
	value[n] = '\0';
	c = getchar();
	if (c == '\n')
		c = getchar();
	if (c != EOF) {
		*why = "value longer than its byte count";
		free(value);
		return NULL;
	}
	return value;
}

static bool parse_job_id(const char *text, uint32_t *out)
{
	char *end = NULL;
	unsigned long id;

	if (!text[0] || strspn(text, "0123456789") != strlen(text))
		return false;
	errno = 0;
	id = strtoul(text, &end, 10);
	if (errno || id == 0 || id >= NO_VAL)
		return false;
	*out = (uint32_t) id;
	return true;
}

int main(int argc, char **argv)
{
	const char *cluster = NULL, *why = NULL;
	static slurm_selected_step_t steps[MAX_JOBS];
	int njobs = 0, i, rc;

	if (argc == 2 && !strcmp(argv[1], "--version")) {
		/* The Slurm release it was compiled against (native.py checks it
		 * against the headers) and the API of the libslurm it loaded. */
		printf("%d.%02d.%d %ld\n",
		       (int) SLURM_VERSION_MAJOR(SLURM_VERSION_NUMBER),
		       (int) SLURM_VERSION_MINOR(SLURM_VERSION_NUMBER),
		       (int) SLURM_VERSION_MICRO(SLURM_VERSION_NUMBER),
		       slurm_api_version());
		return EXIT_OK;
	}
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--cluster") && i + 1 < argc) {
			cluster = argv[++i];
			if (!cluster[0])
				return usage("empty cluster name");
			continue;
		}
		if (njobs >= MAX_JOBS)
			return usage("too many job ids");
		memset(&steps[njobs], 0, sizeof(steps[njobs]));
		if (!parse_job_id(argv[i], &steps[njobs].step_id.job_id))
			return usage("job ids must be positive integers");
		/* What slurm_addto_step_list() makes of a plain "N". */
		steps[njobs].step_id.step_id = NO_VAL;
		steps[njobs].step_id.step_het_comp = NO_VAL;
		steps[njobs].array_task_id = NO_VAL;
		steps[njobs].het_job_offset = NO_VAL;
		njobs++;
	}
	if (!njobs)
		return usage("no job id given");
	char *value = read_value(&why);
	if (!value)
		return usage(why);

	slurm_init(NULL);
	if (!cluster)
		cluster = slurm_conf.cluster_name;
	if (!cluster || !cluster[0]) {
		fprintf(stderr, "sai_admincomment: no ClusterName in slurm.conf "
			"and no --cluster\n");
		return EXIT_USAGE;
	}

	/* The same condition sacctmgr's "modify job where jobid=N" builds:
	 * job ids as selected steps, the cluster, and no default time window
	 * (so a job that ended long ago still matches). Lists own nothing. */
	slurmdb_job_cond_t cond;
	memset(&cond, 0, sizeof(cond));
	cond.db_flags = SLURMDB_JOB_FLAG_NOTSET;
	cond.flags = JOBCOND_FLAG_NO_DEFAULT_USAGE;
	cond.cluster_list = slurm_list_create(NULL);
	slurm_list_append(cond.cluster_list, (void *) cluster);
	cond.step_list = slurm_list_create(NULL);
	for (i = 0; i < njobs; i++)
		slurm_list_append(cond.step_list, &steps[i]);

	/* Only the fields slurmdbd's modify looks at are set; NO_VAL marks
	 * the numeric ones "unchanged" (as slurmdb_create_job_rec does). */
	slurmdb_job_rec_t job;
	memset(&job, 0, sizeof(job));
	job.admin_comment = value;
	job.derived_ec = NO_VAL;
	job.array_task_id = NO_VAL;
	job.lft = NO_VAL;
	job.resvid = NO_VAL;
	job.requid = (uint32_t) -1;

	errno = 0;
	void *db = slurmdb_connection_get(NULL);
	if (!db || errno) {
		int err = errno ? errno : ESLURM_DB_CONNECTION;
		fprintf(stderr, "sai_admincomment: cannot reach slurmdbd: %s\n",
			slurm_strerror(err));
		if (db)
			slurmdb_connection_close(&db);
		return EXIT_CONNECT;
	}

	errno = 0;
	sai_list_t ret = slurmdb_job_modify(db, &cond, &job);
	if (!ret && errno == SLURM_NO_CHANGE_IN_DATA) {
		/* Slurm 24.11 answers a job it does not have (yet) this way;
		 * 22.05 with an empty list (below). */
		fprintf(stderr, "sai_admincomment: nothing modified: job not in "
			"accounting for cluster %s (%s)\n", cluster,
			slurm_strerror(errno));
		rc = EXIT_NOTHING;
	} else if (!ret) {
		int err = errno ? errno : SLURM_ERROR;
		fprintf(stderr, "sai_admincomment: modify failed: %s\n",
			slurm_strerror(err));
		rc = (err == ESLURM_DB_CONNECTION) ? EXIT_CONNECT : EXIT_REQUEST;
	} else if (!slurm_list_count(ret)) {
		/* slurmdbd answers the same when the caller may not modify
		 * jobs (not root, SlurmUser or an admin). */
		fprintf(stderr, "sai_admincomment: nothing modified: job not in "
			"accounting for cluster %s (or this user may not modify "
			"jobs)\n", cluster);
		rc = EXIT_NOTHING;
	} else {
		sai_list_itr_t it = slurm_list_iterator_create(ret);
		char *what;
		while ((what = slurm_list_next(it)))
			printf("modified %s\n", what);
		slurm_list_iterator_destroy(it);
		rc = EXIT_OK;
		if (slurmdb_connection_commit(db, true) != SLURM_SUCCESS) {
			fprintf(stderr, "sai_admincomment: commit failed: %s\n",
				slurm_strerror(errno ? errno : SLURM_ERROR));
			rc = EXIT_COMMIT;
		}
	}
	if (ret)
		slurm_list_destroy(ret);
	slurm_list_destroy(cond.step_list);
	slurm_list_destroy(cond.cluster_list);
	slurmdb_connection_close(&db);
	free(value);
	slurm_fini();
	return rc;
}

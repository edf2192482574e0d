/* A record token ("sai1:<hex(zlib(json))>") to its JSON: hex digits, then inflate (Intel
 * ISA-L's when built with it, else zlib's), as record.token_payload reads it; -1 where
 * Python might answer otherwise (it then decides). */
#include "fastrow.h"

#ifdef FASTROW_ISAL
#include <isa-l/igzip_lib.h>
#else
#include <zlib.h>
#endif

unsigned char *in_buf;  /* ONE_SHOT_BYTES: the token's bytes */
unsigned char *out_buf; /* MAX_JSON_BYTES: the record's JSON */

int ensure_buffers(void) {
    if (!in_buf) in_buf = PyMem_RawMalloc(ONE_SHOT_BYTES);
    if (!out_buf) out_buf = PyMem_RawMalloc(MAX_JSON_BYTES);
    if (!in_buf || !out_buf) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Hex digit -> value; 0xff: not a hex digit (a table: the token is ~1.6k digits). */
static unsigned char HEX[256];

void init_hex(void) {
    memset(HEX, 0xff, sizeof HEX);
    for (int i = 0; i < 10; i++) HEX['0' + i] = (unsigned char)i;
    for (int i = 0; i < 6; i++) HEX['a' + i] = HEX['A' + i] = (unsigned char)(10 + i);
}

int hex_value(unsigned char c) { return HEX[c] == 0xff ? -1 : HEX[c]; }

/* token -> its JSON in out_buf; the JSON's length, or -1: decline. */
Py_ssize_t token_json(const char *tok, Py_ssize_t len) {
    static const char prefix[] = "sai1:";
    if (len < 5) return -1;
    for (int i = 0; i < 5; i++) {
        char c = tok[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != prefix[i]) return -1;
    }
    Py_ssize_t hex_len = len - 5;
    /* odd length or empty: binascii/zlib raise; larger: Python's bounded path decides */
    if (hex_len <= 0 || hex_len % 2 || hex_len / 2 > ONE_SHOT_BYTES) return -1;
    Py_ssize_t n = hex_len / 2;
    const unsigned char *h = (const unsigned char *)tok + 5;
    unsigned bad = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned hi = HEX[h[2 * i]], lo = HEX[h[2 * i + 1]];
        bad |= hi | lo; /* 0xff marks a non-digit: checked once, after the loop */
        in_buf[i] = (unsigned char)(hi << 4 | (lo & 0x0f));
    }
    if (bad & 0xf0) return -1;
    /* zlib header as zlib.decompress (wbits 15) takes it: deflate, a 32 KiB window (the
     * only one both inflaters treat alike), check bits, no preset dictionary. */
    if (n < 2 || (in_buf[0] & 0x0f) != 8 || (in_buf[0] >> 4) != 7 ||
        ((in_buf[0] << 8) | in_buf[1]) % 31 != 0 || (in_buf[1] & 0x20))
        return -1;
#ifdef FASTROW_ISAL
    struct inflate_state state;
    isal_inflate_init(&state);
    state.next_in = in_buf;
    state.avail_in = (uint32_t)n;
    state.next_out = out_buf;
    state.avail_out = MAX_JSON_BYTES;
    state.crc_flag = ISAL_ZLIB; /* parses the header, verifies the Adler-32 */
    if (isal_inflate_stateless(&state) != ISAL_DECOMP_OK) return -1;
    if (state.block_state != ISAL_BLOCK_FINISH) return -1;
    Py_ssize_t out_len = (Py_ssize_t)state.total_out;
#else
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK) return -1;
    zs.next_in = in_buf;
    zs.avail_in = (uInt)n;
    zs.next_out = out_buf;
    zs.avail_out = MAX_JSON_BYTES;
    int rc = inflate(&zs, Z_FINISH);
    Py_ssize_t out_len = (Py_ssize_t)zs.total_out;
    inflateEnd(&zs);
    if (rc != Z_STREAM_END) return -1;
#endif
    /* record.py: a record of MAX_JSON_BYTES or more is the bounded path's to word */
    if (out_len < 0 || out_len >= MAX_JSON_BYTES) return -1;
    return out_len;
}


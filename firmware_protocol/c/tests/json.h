/*
 * A minimal JSON reader for the test vectors (host tests only).
 *
 * json_parse() tokenises a whole document into a caller-supplied node array: each
 * node records its type and the span of its text; containers link to their first
 * child and each child to its next sibling (an object's children alternate key,
 * value). Numbers stay text until read with json_u64/json_i64/json_double, so 64-bit
 * integers are exact.
 */
#ifndef PMLD_TEST_JSON_H
#define PMLD_TEST_JSON_H

#include <stddef.h>
#include <stdint.h>

enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

typedef struct {
    int type;
    const char *text; /* first character (for strings: after the opening quote) */
    size_t len;       /* for strings: raw length between the quotes */
    int first;        /* first child, or -1 */
    int next;         /* next sibling, or -1 */
    int count;        /* children (for objects: key/value pairs) */
} json_node;

/* Parse text[0..len); returns the number of nodes used (root is node 0) or -1 with a
   message in err (err_cap bytes). */
int json_parse(const char *text, size_t len, json_node *nodes, int max_nodes, char *err,
               size_t err_cap);

/* Value of key in object node obj, or -1. */
int json_get(const json_node *nodes, int obj, const char *key);
/* i-th element of an array, or -1. */
int json_at(const json_node *nodes, int arr, int i);

int json_is_null(const json_node *nodes, int node);
int json_bool(const json_node *nodes, int node);
uint64_t json_u64(const json_node *nodes, int node);
int64_t json_i64(const json_node *nodes, int node);
double json_double(const json_node *nodes, int node);
/* Decoded string (escapes resolved, \u as UTF-8) into out; returns its length or -1. */
int json_string(const json_node *nodes, int node, char *out, size_t cap);
int json_string_eq(const json_node *nodes, int node, const char *s);

#endif

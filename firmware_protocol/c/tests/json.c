/* A minimal JSON reader for the test vectors (see json.h). */
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *s;
    size_t len;
    size_t pos;
    json_node *nodes;
    int used;
    int max;
    char *err;
    size_t err_cap;
} parser;

static int fail(parser *p, const char *what)
{
    if (p->err && p->err_cap) {
        snprintf(p->err, p->err_cap, "JSON: %s at byte %lu", what, (unsigned long)p->pos);
    }
    return -1;
}

static void skip_space(parser *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\n' ||
                               p->s[p->pos] == '\r' || p->s[p->pos] == '\t')) {
        p->pos++;
    }
}

static int new_node(parser *p, int type)
{
    json_node *n;
    if (p->used >= p->max) {
        return fail(p, "too many nodes");
    }
    n = &p->nodes[p->used];
    n->type = type;
    n->text = p->s + p->pos;
    n->len = 0;
    n->first = -1;
    n->next = -1;
    n->count = 0;
    return p->used++;
}

static int parse_value(parser *p, int depth);

static int parse_string(parser *p)
{
    int id;
    size_t start;
    if (p->pos >= p->len || p->s[p->pos] != '"') {
        return fail(p, "expected a string");
    }
    p->pos++;
    id = new_node(p, JSON_STRING);
    if (id < 0) {
        return -1;
    }
    start = p->pos;
    while (p->pos < p->len && p->s[p->pos] != '"') {
        if ((unsigned char)p->s[p->pos] < 0x20u) {
            return fail(p, "control character in a string");
        }
        if (p->s[p->pos] == '\\') {
            p->pos++;
        }
        p->pos++;
    }
    if (p->pos >= p->len) {
        return fail(p, "unterminated string");
    }
    p->nodes[id].text = p->s + start;
    p->nodes[id].len = p->pos - start;
    p->pos++;
    return id;
}

static int parse_container(parser *p, int depth, int type)
{
    char close = type == JSON_ARRAY ? ']' : '}';
    int id = new_node(p, type), last = -1;
    if (id < 0) {
        return -1;
    }
    p->pos++;
    skip_space(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        return id;
    }
    for (;;) {
        int child;
        skip_space(p);
        if (type == JSON_OBJECT) {
            int key = parse_string(p);
            if (key < 0) {
                return -1;
            }
            skip_space(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') {
                return fail(p, "expected ':'");
            }
            p->pos++;
            if (last < 0) {
                p->nodes[id].first = key;
            } else {
                p->nodes[last].next = key;
            }
            last = key;
        }
        child = parse_value(p, depth + 1);
        if (child < 0) {
            return -1;
        }
        if (last < 0) {
            p->nodes[id].first = child;
        } else {
            p->nodes[last].next = child;
        }
        last = child;
        p->nodes[id].count++;
        skip_space(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == close) {
            p->pos++;
            return id;
        }
        return fail(p, "expected ',' or a closing bracket");
    }
}

static int parse_value(parser *p, int depth)
{
    char c;
    if (depth > 64) {
        return fail(p, "nested too deeply");
    }
    skip_space(p);
    if (p->pos >= p->len) {
        return fail(p, "unexpected end");
    }
    c = p->s[p->pos];
    if (c == '{') {
        return parse_container(p, depth, JSON_OBJECT);
    }
    if (c == '[') {
        return parse_container(p, depth, JSON_ARRAY);
    }
    if (c == '"') {
        return parse_string(p);
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        int id = new_node(p, JSON_NUMBER);
        size_t start = p->pos;
        if (id < 0) {
            return -1;
        }
        while (p->pos < p->len && strchr("+-0123456789.eE", p->s[p->pos]) != NULL) {
            p->pos++;
        }
        p->nodes[id].len = p->pos - start;
        return id;
    }
    if (p->len - p->pos >= 4 && memcmp(p->s + p->pos, "true", 4) == 0) {
        int id = new_node(p, JSON_BOOL);
        p->pos += 4;
        if (id >= 0) p->nodes[id].len = 4;
        return id;
    }
    if (p->len - p->pos >= 5 && memcmp(p->s + p->pos, "false", 5) == 0) {
        int id = new_node(p, JSON_BOOL);
        p->pos += 5;
        if (id >= 0) p->nodes[id].len = 5;
        return id;
    }
    if (p->len - p->pos >= 4 && memcmp(p->s + p->pos, "null", 4) == 0) {
        int id = new_node(p, JSON_NULL);
        p->pos += 4;
        if (id >= 0) p->nodes[id].len = 4;
        return id;
    }
    return fail(p, "unexpected character");
}

int json_parse(const char *text, size_t len, json_node *nodes, int max_nodes, char *err,
               size_t err_cap)
{
    parser p;
    p.s = text;
    p.len = len;
    p.pos = 0;
    p.nodes = nodes;
    p.used = 0;
    p.max = max_nodes;
    p.err = err;
    p.err_cap = err_cap;
    if (parse_value(&p, 0) < 0) {
        return -1;
    }
    skip_space(&p);
    if (p.pos != p.len) {
        return fail(&p, "trailing characters");
    }
    return p.used;
}

int json_get(const json_node *nodes, int obj, const char *key)
{
    int k;
    if (obj < 0 || nodes[obj].type != JSON_OBJECT) {
        return -1;
    }
    for (k = nodes[obj].first; k >= 0; k = nodes[nodes[k].next].next) {
        if (json_string_eq(nodes, k, key)) {
            return nodes[k].next;
        }
    }
    return -1;
}

int json_at(const json_node *nodes, int arr, int i)
{
    int c;
    if (arr < 0 || nodes[arr].type != JSON_ARRAY) {
        return -1;
    }
    for (c = nodes[arr].first; c >= 0 && i > 0; c = nodes[c].next) {
        --i;
    }
    return c;
}

int json_is_null(const json_node *nodes, int node)
{
    return node < 0 || nodes[node].type == JSON_NULL;
}

int json_bool(const json_node *nodes, int node)
{
    return node >= 0 && nodes[node].type == JSON_BOOL && nodes[node].text[0] == 't';
}

static void number_text(const json_node *nodes, int node, char *buf, size_t cap)
{
    size_t n = 0;
    if (node >= 0 && nodes[node].type == JSON_NUMBER) {
        n = nodes[node].len < cap - 1 ? nodes[node].len : cap - 1;
        memcpy(buf, nodes[node].text, n);
    }
    buf[n] = '\0';
}

uint64_t json_u64(const json_node *nodes, int node)
{
    char buf[64];
    number_text(nodes, node, buf, sizeof buf);
    return (uint64_t)strtoull(buf, NULL, 10);
}

int64_t json_i64(const json_node *nodes, int node)
{
    char buf[64];
    number_text(nodes, node, buf, sizeof buf);
    return (int64_t)strtoll(buf, NULL, 10);
}

double json_double(const json_node *nodes, int node)
{
    char buf[64];
    number_text(nodes, node, buf, sizeof buf);
    return strtod(buf, NULL);
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    int i;
    for (i = 0; i < 4; ++i) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

int json_string(const json_node *nodes, int node, char *out, size_t cap)
{
    const char *s;
    size_t i, n, o = 0;
    if (node < 0 || nodes[node].type != JSON_STRING || cap == 0) {
        return -1;
    }
    s = nodes[node].text;
    n = nodes[node].len;
    for (i = 0; i < n; ++i) {
        unsigned cp;
        char c = s[i];
        if (c != '\\') {
            if (o + 1 >= cap) return -1;
            out[o++] = c;
            continue;
        }
        c = s[++i];
        switch (c) {
        case 'n': cp = '\n'; break;
        case 't': cp = '\t'; break;
        case 'r': cp = '\r'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'u':
            if (i + 4 >= n || hex4(s + i + 1, &cp) != 0) return -1;
            i += 4;
            if (cp >= 0xD800u && cp <= 0xDBFFu && i + 6 < n && s[i + 1] == '\\' &&
                s[i + 2] == 'u') {
                unsigned low;
                if (hex4(s + i + 3, &low) == 0 && low >= 0xDC00u && low <= 0xDFFFu) {
                    cp = 0x10000u + ((cp - 0xD800u) << 10) + (low - 0xDC00u);
                    i += 6;
                }
            }
            break;
        default: cp = (unsigned char)c; break;
        }
        if (o + 4 >= cap) return -1;
        if (cp < 0x80u) {
            out[o++] = (char)cp;
        } else if (cp < 0x800u) {
            out[o++] = (char)(0xC0u | (cp >> 6));
            out[o++] = (char)(0x80u | (cp & 0x3Fu));
        } else if (cp < 0x10000u) {
            out[o++] = (char)(0xE0u | (cp >> 12));
            out[o++] = (char)(0x80u | ((cp >> 6) & 0x3Fu));
            out[o++] = (char)(0x80u | (cp & 0x3Fu));
        } else {
            out[o++] = (char)(0xF0u | (cp >> 18));
            out[o++] = (char)(0x80u | ((cp >> 12) & 0x3Fu));
            out[o++] = (char)(0x80u | ((cp >> 6) & 0x3Fu));
            out[o++] = (char)(0x80u | (cp & 0x3Fu));
        }
    }
    out[o] = '\0';
    return (int)o;
}

int json_string_eq(const json_node *nodes, int node, const char *s)
{
    char buf[256];
    int n = json_string(nodes, node, buf, sizeof buf);
    return n >= 0 && strcmp(buf, s) == 0;
}

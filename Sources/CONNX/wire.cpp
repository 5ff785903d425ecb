// The hand-written protobuf wire walk behind connx_open's zero-copy load (see connx_model.h).
#include "connx_model.h"

#include <cstdint>
#include <string>
#include <vector>

namespace connx_wire {
namespace {

// ---- Zero-copy parsing -------------------------------------------------------------------------------------
// protobuf copies every bytes field while parsing: for an ONNX file with inline weights that is a second copy of
// the whole file (plus the page faults of fresh memory), most of the load time. Instead the file is mapped and a
// *skeleton* of it is parsed: the same message with the raw_data of large initializers left out. Their bytes stay
// in the mapping and connx_tensor_get points at them. The skeleton is made by a wire-format walk of exactly three
// levels (ModelProto.graph = 7 -> GraphProto.initializer = 5 -> TensorProto.raw_data = 9); everything else is
// copied verbatim and parsed by ONNX's own classes. Anything unusual (groups, a repeated graph field, a malformed
// varint or length) makes the walk give up and the file is parsed the ordinary way, which reports the error.

struct Wire {
    const uint8_t *p;
    const uint8_t *end;
    bool varint(uint64_t *v) {
        uint64_t r = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (p >= end) return false;
            uint8_t b = *p++;
            r |= (uint64_t)(b & 0x7f) << shift;
            if (!(b & 0x80)) {
                *v = r;
                return true;
            }
        }
        return false;
    }
    // Reads one field: its number, wire type and the byte range of its whole encoding / its payload.
    bool field(uint32_t *number, uint32_t *type, const uint8_t **start, const uint8_t **payload, size_t *len) {
        *start = p;
        uint64_t tag;
        if (!varint(&tag)) return false;
        *number = (uint32_t)(tag >> 3);
        *type = (uint32_t)(tag & 7);
        if (*number == 0) return false;
        uint64_t v;
        switch (*type) {
            case 0:
                if (!varint(&v)) return false;
                *payload = p;
                *len = 0;
                return true;
            case 1:
                if ((size_t)(end - p) < 8) return false;
                p += 8;
                *payload = p;
                *len = 0;
                return true;
            case 5:
                if ((size_t)(end - p) < 4) return false;
                p += 4;
                *payload = p;
                *len = 0;
                return true;
            case 2:
                if (!varint(&v) || v > (uint64_t)(end - p)) return false;
                *payload = p;
                *len = (size_t)v;
                p += v;
                return true;
            default:
                return false;  // groups (3, 4) and invalid types: let protobuf deal with them
        }
    }
};

// One field of a message as read by Wire::field.
struct Field {
    uint32_t number, type;
    const uint8_t *start;    // the field's whole encoding is [start, end)
    const uint8_t *end;
    const uint8_t *payload;  // length-delimited payload (type 2): [payload, payload + len)
    size_t len;
};

// Calls f(field) for each field of the message in [p, p + n); false when the encoding is malformed or f says so.
template <class F>
bool each_field(const uint8_t *p, size_t n, F f) {
    Wire w{p, p + n};
    while (w.p < w.end) {
        Field fd;
        if (!w.field(&fd.number, &fd.type, &fd.start, &fd.payload, &fd.len)) return false;
        fd.end = w.p;
        if (!f(fd)) return false;
    }
    return true;
}

void put_varint(std::string &out, uint64_t v) {
    while (v >= 0x80) {
        out.push_back((char)(uint8_t)(v | 0x80));
        v >>= 7;
    }
    out.push_back((char)(uint8_t)v);
}

void put_message(std::string &out, uint32_t number, const std::string &body) {
    put_varint(out, ((uint64_t)number << 3) | 2);
    put_varint(out, body.size());
    out.append(body);
}

// TensorProto without a large raw_data. Only the last raw_data field counts (protobuf's rule for a repeated
// singular field), so earlier ones are dropped; the last one is left out and recorded when it is large.
bool skeleton_tensor(const uint8_t *base, const uint8_t *p, size_t n, std::string &out, connx_model::Borrowed &b) {
    b = connx_model::Borrowed();
    const uint8_t *last_raw = nullptr;  // start of the last raw_data field
    bool ok = each_field(p, n, [&](const Field &f) {
        if (f.number != 9) return true;
        if (f.type != 2) return false;
        last_raw = f.start;
        b = connx_model::Borrowed();
        if (f.len >= kBorrowMin) {
            b.offset = (size_t)(f.payload - base);
            b.size = f.len;
        }
        return true;
    });
    return ok && each_field(p, n, [&](const Field &f) {
        if (f.number != 9 || (f.start == last_raw && b.size == 0))
            out.append((const char *)f.start, (size_t)(f.end - f.start));
        return true;
    });
}

bool skeleton_graph(const uint8_t *base, const uint8_t *p, size_t n, std::string &out,
                    std::vector<connx_model::Borrowed> &borrowed) {
    std::string t;
    return each_field(p, n, [&](const Field &f) {
        if (f.number != 5) {
            out.append((const char *)f.start, (size_t)(f.end - f.start));
            return true;
        }
        if (f.type != 2) return false;
        t.clear();
        connx_model::Borrowed b;
        if (!skeleton_tensor(base, f.payload, f.len, t, b)) return false;
        borrowed.push_back(b);
        put_message(out, 5, t);
        return true;
    });
}

}  // namespace

// The file without the raw_data of large initializers; false when the walk gave up (or nothing was borrowed).
bool skeleton(const uint8_t *base, size_t n, std::string &out, std::vector<connx_model::Borrowed> &borrowed) {
    bool seen_graph = false;
    out.reserve(n < (64u << 20) ? n : (64u << 20));
    bool ok = each_field(base, n, [&](const Field &f) {
        if (f.number != 7) {
            out.append((const char *)f.start, (size_t)(f.end - f.start));
            return true;
        }
        if (f.type != 2 || seen_graph) return false;  // a second graph field would be merged: not handled here
        seen_graph = true;
        std::string g;
        if (!skeleton_graph(base, f.payload, f.len, g, borrowed)) return false;
        put_message(out, 7, g);
        return true;
    });
    if (!ok) return false;
    for (const auto &b : borrowed)
        if (b.size) return true;
    return false;
}

}  // namespace connx_wire

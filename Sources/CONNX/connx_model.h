// The parsed-model object behind the opaque `connx_model` handle of include/connx.h, shared by the two source
// files of the shim: connx.cpp (the C API over ONNX's message classes) and wire.cpp (the zero-copy skeleton walk).
#pragma once

#include "onnx/onnx.pb.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <sys/mman.h>
#include <vector>

// Initializer raw_data of at least this many bytes is not copied into the parsed message: it stays in the
// private mapping of the file and connx_tensor_get points into it (see connx_wire::skeleton in wire.cpp).
inline constexpr size_t kBorrowMin = 4096;

struct connx_model {
    onnx::ModelProto proto;
    // The file mapping that borrowed initializer data points into (nullptr when nothing is borrowed).
    uint8_t *map = nullptr;
    size_t map_size = 0;
    struct Borrowed {
        size_t offset = 0;  // of the raw_data bytes in the file
        size_t size = 0;    // 0: not borrowed (the data, if any, is in the message)
    };
    // Per initializer index (graph.initializer order); shorter than the initializer list when some were added.
    std::vector<Borrowed> borrowed;
    ~connx_model() {
        if (map) ::munmap(map, map_size);
    }
    const Borrowed *borrowed_at(int32_t node, int32_t index) const {
        if (node != -1 || index < 0 || (size_t)index >= borrowed.size() || borrowed[(size_t)index].size == 0)
            return nullptr;
        return &borrowed[(size_t)index];
    }
    void forget(int32_t node, int32_t index) {
        if (node == -1 && index >= 0 && (size_t)index < borrowed.size()) borrowed[(size_t)index] = Borrowed();
    }
    // What the message would serialize to with the borrowed raw_data put back (without copying it in).
    static size_t varint_size(size_t v) {
        size_t n = 1;
        while (v >= 0x80) {
            v >>= 7;
            n++;
        }
        return n;
    }
    size_t serialized_size() const {
        size_t model = proto.ByteSizeLong();
        if (!proto.has_graph()) return model;
        const auto &g = proto.graph();
        size_t graph_old = g.ByteSizeLong(), graph_new = graph_old;
        for (size_t i = 0; i < borrowed.size() && i < (size_t)g.initializer_size(); i++) {
            if (borrowed[i].size == 0) continue;
            size_t t_old = g.initializer((int)i).ByteSizeLong();
            size_t t_new = t_old + 1 + varint_size(borrowed[i].size) + borrowed[i].size;  // tag of field 9 is 1 byte
            graph_new += (t_new + varint_size(t_new)) - (t_old + varint_size(t_old));
        }
        return model + (graph_new + varint_size(graph_new)) - (graph_old + varint_size(graph_old));
    }
    // Copies every borrowed raw_data into the message (before serializing it).
    void materialize() {
        auto *g = proto.mutable_graph();
        for (size_t i = 0; i < borrowed.size() && i < (size_t)g->initializer_size(); i++) {
            if (borrowed[i].size == 0) continue;
            g->mutable_initializer((int)i)->set_raw_data(std::string((const char *)map + borrowed[i].offset,
                                                                     borrowed[i].size));
            borrowed[i] = Borrowed();
        }
    }
};

namespace connx_wire {
// The file in [base, base + n) without the raw_data of initializers of at least kBorrowMin bytes: `out` gets the
// skeleton to parse, `borrowed` where each left-out raw_data lies in the file (per initializer, in order). False
// when the wire walk gave up (anything unusual) or nothing was borrowed: then parse the file the ordinary way.
bool skeleton(const uint8_t *base, size_t n, std::string &out, std::vector<connx_model::Borrowed> &borrowed);
}  // namespace connx_wire

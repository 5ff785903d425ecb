// C shim over ONNX's protobuf classes. See include/connx.h for the contract.
#include "connx.h"
#include "connx_model.h"

// ONNX's message classes, generated for the protobuf-lite runtime from Debian's onnx.proto and compiled into this
// library (`make onnx-proto` regenerates them): no libonnx_proto at run time, and the lite runtime is all the shim
// needs (parse, field access, serialize).
#include "onnx/onnx.pb.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <new>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace {

void set_err(char *err, size_t errlen, const std::string &msg) {
    if (!err || errlen == 0) return;
    size_t n = msg.size() < errlen - 1 ? msg.size() : errlen - 1;
    std::memcpy(err, msg.data(), n);
    err[n] = 0;
}

struct Fd {
    int fd;
    explicit Fd(int f) : fd(f) {}
    ~Fd() { if (fd >= 0) ::close(fd); }
};

// A ZeroCopyInputStream over a mapped file that releases the pages it has moved past.
class MappedChunkStream : public google::protobuf::io::ZeroCopyInputStream {
   public:
    MappedChunkStream(const uint8_t *base, size_t size) : base_(base), size_(size) {}
    bool Next(const void **data, int *size) override {
        if (pos_ >= size_) return false;
        release();
        size_t n = size_ - pos_ < kChunk ? size_ - pos_ : kChunk;
        *data = base_ + pos_;
        *size = (int)n;
        pos_ += n;
        return true;
    }
    void BackUp(int count) override {
        if (count > 0 && (size_t)count <= pos_) pos_ -= (size_t)count;
    }
    bool Skip(int count) override {
        if (count < 0) return false;
        if ((size_t)count > size_ - pos_) {
            pos_ = size_;
            return false;
        }
        pos_ += (size_t)count;
        return true;
    }
    int64_t ByteCount() const override { return (int64_t)pos_; }

   private:
    // Pages wholly before the current position (less one chunk of slack) are no longer referenced.
    void release() {
        const size_t page = 4096;
        if (pos_ < 2 * kChunk) return;
        size_t upto = ((pos_ - kChunk) / page) * page;
        if (upto > released_) {
            ::madvise((void *)(base_ + released_), upto - released_, MADV_DONTNEED);
            released_ = upto;
        }
    }
    static constexpr size_t kChunk = 8u << 20;
    const uint8_t *base_;
    size_t size_;
    size_t pos_ = 0;
    size_t released_ = 0;
};


const onnx::GraphProto *graph_of(const connx_model *m) {
    if (!m || !m->proto.has_graph()) return nullptr;
    return &m->proto.graph();
}

const google::protobuf::RepeatedPtrField<onnx::ValueInfoProto> *values_of(const connx_model *m, int32_t kind) {
    const onnx::GraphProto *g = graph_of(m);
    if (!g) return nullptr;
    switch (kind) {
        case CONNX_GRAPH_INPUT: return &g->input();
        case CONNX_GRAPH_OUTPUT: return &g->output();
        case CONNX_GRAPH_VALUE_INFO: return &g->value_info();
        default: return nullptr;
    }
}

const onnx::NodeProto *node_at(const connx_model *m, int32_t i) {
    const onnx::GraphProto *g = graph_of(m);
    if (!g || i < 0 || i >= g->node_size()) return nullptr;
    return &g->node(i);
}

const onnx::TensorProto *tensor_at(const connx_model *m, int32_t node, int32_t index) {
    const onnx::GraphProto *g = graph_of(m);
    if (!g || index < 0) return nullptr;
    if (node == -1) {
        if (index >= g->initializer_size()) return nullptr;
        return &g->initializer(index);
    }
    const onnx::NodeProto *n = node_at(m, node);
    if (!n || index >= n->attribute_size()) return nullptr;
    const onnx::AttributeProto &a = n->attribute(index);
    if (!a.has_t()) return nullptr;
    return &a.t();
}

onnx::TensorProto *mutable_tensor_at(connx_model *m, int32_t node, int32_t index) {
    return const_cast<onnx::TensorProto *>(tensor_at(m, node, index));
}

// Drops every form of data a tensor may hold (raw, typed fields, external references).
void clear_tensor_data(onnx::TensorProto *t) {
    std::string empty;
    t->mutable_raw_data()->swap(empty);
    t->clear_raw_data();
    google::protobuf::RepeatedField<float>().Swap(t->mutable_float_data());
    google::protobuf::RepeatedField<int32_t>().Swap(t->mutable_int32_data());
    google::protobuf::RepeatedField<int64_t>().Swap(t->mutable_int64_data());
    google::protobuf::RepeatedField<double>().Swap(t->mutable_double_data());
    google::protobuf::RepeatedField<uint64_t>().Swap(t->mutable_uint64_data());
    t->clear_string_data();
    t->clear_external_data();
    t->clear_data_location();
}

bool valid_dims(const int64_t *dims, int32_t rank) {
    if (rank < 0 || (rank > 0 && !dims)) return false;
    for (int32_t i = 0; i < rank; i++)
        if (dims[i] < 0) return false;
    return true;
}

void fill_tensor(onnx::TensorProto *t, int32_t data_type, const int64_t *dims, int32_t rank, const void *data,
                 size_t size) {
    clear_tensor_data(t);
    t->set_data_type(data_type);
    t->clear_dims();
    for (int32_t i = 0; i < rank; i++) t->add_dims(dims[i]);
    t->set_raw_data(size ? std::string((const char *)data, size) : std::string());
}

}  // namespace

extern "C" {

int connx_open(const char *path, connx_model **out, char *err, size_t errlen) {
    if (out) *out = nullptr;
    if (!path || !out) {
        set_err(err, errlen, "connx_open: NULL argument");
        return CONNX_ERANGE;
    }
    try {
        std::string p(path);
        Fd fd(::open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK));  // O_NONBLOCK: never hang on a FIFO
        if (fd.fd < 0) {
            set_err(err, errlen, "cannot open " + p + ": " + std::strerror(errno));
            return CONNX_EIO;
        }
        struct stat st;
        if (::fstat(fd.fd, &st) != 0) {
            set_err(err, errlen, "cannot stat " + p + ": " + std::strerror(errno));
            return CONNX_EIO;
        }
        if (S_ISDIR(st.st_mode)) {
            set_err(err, errlen, p + " is a directory, not an ONNX file");
            return CONNX_EIO;
        }
        if (!S_ISREG(st.st_mode)) {
            set_err(err, errlen, p + " is not a regular file");
            return CONNX_EIO;
        }
        if (st.st_size == 0) {
            set_err(err, errlen, p + " is empty (0 bytes), not an ONNX model");
            return CONNX_EFORMAT;
        }
        if (st.st_size >= (off_t)INT_MAX) {
            set_err(err, errlen,
                    p + " is " + std::to_string((long long)st.st_size) +
                        " bytes: protobuf cannot parse an ONNX file of 2 GiB or more. Export the model with external "
                        "data (torch.onnx.export does this by itself for large models; or "
                        "onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True))");
            return CONNX_ETOOLARGE;
        }
        connx_model *m = new (std::nothrow) connx_model();
        if (!m) {
            set_err(err, errlen, "out of memory parsing " + p);
            return CONNX_EINTERNAL;
        }
        bool ok = false;
        bool consumed = false;
        int position = 0;
        // Parse from a read-only mapping of the file, handed to protobuf in chunks; chunks already parsed are
        // dropped from memory (MADV_DONTNEED), so peak memory stays near the parsed size while each raw_data
        // is copied once. Falls back to read() streaming if mmap fails.
        // Zero-copy first: parse the skeleton, keep the mapping for the borrowed raw_data. The mapping is private
        // and writable so that a stray write into a borrowed weight copies the page instead of faulting.
        {
            void *zmap = ::mmap(nullptr, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd.fd, 0);
            if (zmap != MAP_FAILED) {
                const uint8_t *base = (const uint8_t *)zmap;
                std::string skel;
                std::vector<connx_model::Borrowed> borrowed;
                bool walked = connx_wire::skeleton(base, (size_t)st.st_size, skel, borrowed);
                if (walked && m->proto.ParseFromString(skel) &&
                    (size_t)m->proto.graph().initializer_size() == borrowed.size()) {
                    // Map every page now, read-only (no copy-on-write), in one call instead of ~10^5 page faults
                    // later; kernels before 5.14 lack MADV_POPULATE_READ and get the read-ahead hint only.
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
                    if (::madvise(zmap, (size_t)st.st_size, MADV_POPULATE_READ) != 0)
                        ::madvise(zmap, (size_t)st.st_size, MADV_WILLNEED);
                    m->map = (uint8_t *)zmap;
                    m->map_size = (size_t)st.st_size;
                    m->borrowed = std::move(borrowed);
                    *out = m;
                    return CONNX_OK;
                }
                ::munmap(zmap, (size_t)st.st_size);
                m->proto.Clear();
            }
        }
        void *map = ::mmap(nullptr, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd.fd, 0);
        if (map != MAP_FAILED) {
            ::madvise(map, (size_t)st.st_size, MADV_SEQUENTIAL);
            {
                MappedChunkStream stream((const uint8_t *)map, (size_t)st.st_size);
                google::protobuf::io::CodedInputStream cis(&stream);
                cis.SetTotalBytesLimit(INT_MAX);
                cis.SetRecursionLimit(1000);
                ok = m->proto.ParseFromCodedStream(&cis);
                consumed = ok && cis.ConsumedEntireMessage();
                position = cis.CurrentPosition();
            }
            ::munmap(map, (size_t)st.st_size);
        } else {
            google::protobuf::io::FileInputStream fis(fd.fd, 1 << 20);
            google::protobuf::io::CodedInputStream cis(&fis);
            cis.SetTotalBytesLimit(INT_MAX);
            cis.SetRecursionLimit(1000);
            ok = m->proto.ParseFromCodedStream(&cis);
            consumed = ok && cis.ConsumedEntireMessage();
            position = cis.CurrentPosition();
            if (ok && fis.GetErrno() != 0) {
                int e = fis.GetErrno();
                delete m;
                set_err(err, errlen, "cannot read " + p + ": " + std::strerror(e));
                return CONNX_EIO;
            }
        }
        if (!ok || !consumed || (off_t)position != st.st_size) {
            delete m;
            set_err(err, errlen,
                    p + " is not a valid ONNX protobuf (truncated or corrupt: parsing stopped at byte " +
                        std::to_string(position) + " of " + std::to_string((long long)st.st_size) + ")");
            return CONNX_EFORMAT;
        }
        *out = m;
        return CONNX_OK;
    } catch (const std::bad_alloc &) {
        set_err(err, errlen, std::string("out of memory parsing ") + path);
        return CONNX_EINTERNAL;
    } catch (const std::exception &e) {
        set_err(err, errlen, std::string("error parsing ") + path + ": " + e.what());
        return CONNX_EINTERNAL;
    } catch (...) {
        set_err(err, errlen, std::string("unknown error parsing ") + path);
        return CONNX_EINTERNAL;
    }
}

void connx_free(connx_model *m) {
    try {
        delete m;
    } catch (...) {
    }
}

int connx_model_get_info(const connx_model *m, connx_model_info *info) {
    if (!m || !info) return CONNX_ERANGE;
    try {
        std::memset(info, 0, sizeof(*info));
        const onnx::ModelProto &p = m->proto;
        info->ir_version = p.ir_version();
        info->producer_name = p.producer_name().c_str();
        info->producer_version = p.producer_version().c_str();
        info->domain = p.domain().c_str();
        info->model_version = p.model_version();
        info->opset_count = p.opset_import_size();
        info->function_count = p.functions_size();
        info->metadata_count = p.metadata_props_size();
        info->has_graph = p.has_graph() ? 1 : 0;
        const onnx::GraphProto &g = p.graph();  // default instance when absent
        info->graph_name = g.name().c_str();
        if (p.has_graph()) {
            info->node_count = g.node_size();
            info->initializer_count = g.initializer_size();
            info->sparse_initializer_count = g.sparse_initializer_size();
            info->input_count = g.input_size();
            info->output_count = g.output_size();
            info->value_info_count = g.value_info_size();
        }
        return CONNX_OK;
    } catch (...) {
        return CONNX_EINTERNAL;
    }
}

int connx_opset(const connx_model *m, int32_t i, const char **domain, int64_t *version) {
    if (!m || !domain || !version || i < 0 || i >= m->proto.opset_import_size()) return CONNX_ERANGE;
    try {
        const onnx::OperatorSetIdProto &o = m->proto.opset_import(i);
        *domain = o.domain().c_str();
        *version = o.version();
        return CONNX_OK;
    } catch (...) {
        return CONNX_EINTERNAL;
    }
}

int connx_value_get(const connx_model *m, int32_t kind, int32_t i, connx_value *out) {
    const auto *vs = values_of(m, kind);
    if (!vs || !out || i < 0 || i >= vs->size()) return CONNX_ERANGE;
    try {
        std::memset(out, 0, sizeof(*out));
        const onnx::ValueInfoProto &v = vs->Get(i);
        out->name = v.name().c_str();
        if (v.has_type() && v.type().has_tensor_type()) {
            const onnx::TypeProto_Tensor &t = v.type().tensor_type();
            out->is_tensor = 1;
            out->elem_type = t.elem_type();
            if (t.has_shape()) {
                out->has_shape = 1;
                out->rank = t.shape().dim_size();
            }
        }
        return CONNX_OK;
    } catch (...) {
        return CONNX_EINTERNAL;
    }
}

int connx_value_dim(const connx_model *m, int32_t kind, int32_t i, int32_t d, int64_t *value, const char **param) {
    const auto *vs = values_of(m, kind);
    if (!vs || !value || !param || i < 0 || i >= vs->size()) return CONNX_ERANGE;
    try {
        const onnx::ValueInfoProto &v = vs->Get(i);
        if (!v.has_type() || !v.type().has_tensor_type() || !v.type().tensor_type().has_shape()) return CONNX_ERANGE;
        const onnx::TensorShapeProto &s = v.type().tensor_type().shape();
        if (d < 0 || d >= s.dim_size()) return CONNX_ERANGE;
        const onnx::TensorShapeProto_Dimension &dim = s.dim(d);
        *value = dim.has_dim_value() ? dim.dim_value() : -1;
        *param = dim.has_dim_param() ? dim.dim_param().c_str() : "";
        return CONNX_OK;
    } catch (...) {
        return CONNX_EINTERNAL;
    }
}

int connx_node_get(const connx_model *m, int32_t i, connx_node *out) {
    const onnx::NodeProto *n = node_at(m, i);
    if (!n || !out) return CONNX_ERANGE;
    try {
        out->op_type = n->op_type().c_str();
        out->domain = n->domain().c_str();
        out->name = n->name().c_str();
        out->input_count = n->input_size();
        out->output_count = n->output_size();
        out->attribute_count = n->attribute_size();
        return CONNX_OK;
    } catch (...) {
        return CONNX_EINTERNAL;
    }
}

const char *connx_node_input(const connx_model *m, int32_t i, int32_t j) {
    const onnx::NodeProto *n = node_at(m, i);
    if (!n || j < 0 || j >= n->input_size()) return nullptr;
    return n->input(j).c_str();
}

const char *connx_node_output(const connx_model *m, int32_t i, int32_t j) {
    const onnx::NodeProto *n = node_at(m, i);
    if (!n || j < 0 || j >= n->output_size()) return nullptr;
    return n->output(j).c_str();
}

int connx_node_attribute(const connx_model *m, int32_t node, int32_t a, connx_attribute *out) {
    const onnx::NodeProto *n = node_at(m, node);
    if (!n || !out || a < 0 || a >= n->attribute_size()) return CONNX_ERANGE;
    try {
        std::memset(out, 0, sizeof(*out));
        const onnx::AttributeProto &at = n->attribute(a);
        out->name = at.name().c_str();
        out->type = (int32_t)at.type();
        out->f = at.f();
        out->i = at.i();
        out->s = at.s().data();
        out->s_len = at.s().size();
        out->floats = at.floats_size() ? at.floats().data() : nullptr;
        out->floats_count = at.floats_size();
        out->ints = at.ints_size() ? at.ints().data() : nullptr;
        out->ints_count = at.ints_size();
        out->strings_count = at.strings_size();
        out->has_t = at.has_t() ? 1 : 0;
        out->tensors_count = at.tensors_size();
        out->has_g = at.has_g() ? 1 : 0;
        out->graphs_count = at.graphs_size();
        return CONNX_OK;
    } catch (...) {
        return CONNX_EINTERNAL;
    }
}

int connx_tensor_get(const connx_model *m, int32_t node, int32_t index, connx_tensor *out) {
    const onnx::TensorProto *t = tensor_at(m, node, index);
    if (!t || !out) return CONNX_ERANGE;
    try {
        std::memset(out, 0, sizeof(*out));
        out->name = t->name().c_str();
        out->data_type = t->data_type();
        out->rank = t->dims_size();
        out->dims = t->dims_size() ? t->dims().data() : nullptr;
        if (const connx_model::Borrowed *b = m->borrowed_at(node, index)) {
            out->has_raw_data = 1;
            out->raw_data = (const void *)(m->map + b->offset);
            out->raw_size = b->size;
        } else {
            out->has_raw_data = t->has_raw_data() ? 1 : 0;
            out->raw_data = t->raw_data().empty() ? nullptr : (const void *)t->raw_data().data();
            out->raw_size = t->raw_data().size();
        }
        out->float_data = t->float_data_size() ? t->float_data().data() : nullptr;
        out->float_count = t->float_data_size();
        out->int32_data = t->int32_data_size() ? t->int32_data().data() : nullptr;
        out->int32_count = t->int32_data_size();
        out->int64_data = t->int64_data_size() ? t->int64_data().data() : nullptr;
        out->int64_count = t->int64_data_size();
        out->double_data = t->double_data_size() ? t->double_data().data() : nullptr;
        out->double_count = t->double_data_size();
        out->uint64_data = t->uint64_data_size() ? t->uint64_data().data() : nullptr;
        out->uint64_count = t->uint64_data_size();
        out->string_count = t->string_data_size();
        out->data_location = (int32_t)t->data_location();
        out->external_count = t->external_data_size();
        out->has_segment = t->has_segment() ? 1 : 0;
        return CONNX_OK;
    } catch (...) {
        return CONNX_EINTERNAL;
    }
}

int connx_tensor_external(const connx_model *m, int32_t node, int32_t index, int32_t k, const char **key,
                          const char **value) {
    const onnx::TensorProto *t = tensor_at(m, node, index);
    if (!t || !key || !value || k < 0 || k >= t->external_data_size()) return CONNX_ERANGE;
    try {
        const onnx::StringStringEntryProto &e = t->external_data(k);
        *key = e.key().c_str();
        *value = e.value().c_str();
        return CONNX_OK;
    } catch (...) {
        return CONNX_EINTERNAL;
    }
}

int connx_tensor_release_data(connx_model *m, int32_t node, int32_t index) {
    onnx::TensorProto *t = const_cast<onnx::TensorProto *>(tensor_at(m, node, index));
    if (!t) return CONNX_ERANGE;
    try {
        if (const connx_model::Borrowed *b = m->borrowed_at(node, index)) {
            // Drop the whole pages inside the range from this process (they stay in the page cache).
            const size_t page = 4096;
            size_t lo = (b->offset + page - 1) / page * page, hi = (b->offset + b->size) / page * page;
            if (hi > lo) ::madvise(m->map + lo, hi - lo, MADV_DONTNEED);
            m->forget(node, index);
        }
        if (t->has_raw_data()) {
            std::string empty;
            t->mutable_raw_data()->swap(empty);  // frees the buffer (clear() would keep the capacity)
        }
        google::protobuf::RepeatedField<float>().Swap(t->mutable_float_data());
        google::protobuf::RepeatedField<int32_t>().Swap(t->mutable_int32_data());
        google::protobuf::RepeatedField<int64_t>().Swap(t->mutable_int64_data());
        google::protobuf::RepeatedField<double>().Swap(t->mutable_double_data());
        google::protobuf::RepeatedField<uint64_t>().Swap(t->mutable_uint64_data());
        return CONNX_OK;
    } catch (...) {
        return CONNX_EINTERNAL;
    }
}

int connx_tensor_set_raw(connx_model *m, int32_t node, int32_t index, int32_t data_type, const int64_t *dims,
                         int32_t rank, const void *data, size_t size) {
    onnx::TensorProto *t = mutable_tensor_at(m, node, index);
    if (!t || !valid_dims(dims, rank) || (size > 0 && !data)) return CONNX_ERANGE;
    try {
        fill_tensor(t, data_type, dims, rank, data, size);
        m->forget(node, index);
        return CONNX_OK;
    } catch (...) {
        return CONNX_EINTERNAL;
    }
}

int connx_tensor_set_external(connx_model *m, int32_t node, int32_t index, const char *location, int64_t offset,
                              int64_t length) {
    onnx::TensorProto *t = mutable_tensor_at(m, node, index);
    if (!t || !location || !*location || offset < 0 || length < 0) return CONNX_ERANGE;
    try {
        clear_tensor_data(t);
        m->forget(node, index);
        const std::pair<const char *, std::string> entries[] = {
            {"location", std::string(location)},
            {"offset", std::to_string((long long)offset)},
            {"length", std::to_string((long long)length)},
        };
        for (const auto &e : entries) {
            onnx::StringStringEntryProto *kv = t->add_external_data();
            kv->set_key(e.first);
            kv->set_value(e.second);
        }
        t->set_data_location(onnx::TensorProto_DataLocation_EXTERNAL);
        return CONNX_OK;
    } catch (...) {
        return CONNX_EINTERNAL;
    }
}

int connx_add_initializer(connx_model *m, const char *name, int32_t data_type, const int64_t *dims, int32_t rank,
                          const void *data, size_t size, int32_t *out_index) {
    if (!m || !name || !m->proto.has_graph() || !valid_dims(dims, rank) || (size > 0 && !data)) return CONNX_ERANGE;
    try {
        onnx::GraphProto *g = m->proto.mutable_graph();
        if (g->initializer_size() >= INT32_MAX - 1) return CONNX_ERANGE;
        onnx::TensorProto *t = g->add_initializer();
        try {
            t->set_name(name);
            fill_tensor(t, data_type, dims, rank, data, size);
        } catch (...) {
            g->mutable_initializer()->RemoveLast();
            throw;
        }
        if (out_index) *out_index = g->initializer_size() - 1;
        return CONNX_OK;
    } catch (...) {
        return CONNX_EINTERNAL;
    }
}

int connx_node_set_input(connx_model *m, int32_t i, int32_t j, const char *name) {
    if (!m || !name || !m->proto.has_graph()) return CONNX_ERANGE;
    onnx::GraphProto *g = m->proto.mutable_graph();
    if (i < 0 || i >= g->node_size()) return CONNX_ERANGE;
    onnx::NodeProto *n = g->mutable_node(i);
    if (j < 0 || j >= n->input_size()) return CONNX_ERANGE;
    try {
        n->set_input(j, name);
        return CONNX_OK;
    } catch (...) {
        return CONNX_EINTERNAL;
    }
}

int connx_serialized_size(const connx_model *m, uint64_t *out) {
    if (!m || !out) return CONNX_ERANGE;
    try {
        *out = (uint64_t)m->serialized_size();
        return CONNX_OK;
    } catch (...) {
        return CONNX_EINTERNAL;
    }
}

int connx_save(const connx_model *m, const char *path, char *err, size_t errlen) {
    if (!m || !path) {
        set_err(err, errlen, "connx_save: NULL argument");
        return CONNX_ERANGE;
    }
    int fd = -1;
    bool created = false;
    try {
        std::string p(path);
        const_cast<connx_model *>(m)->materialize();
        size_t size = m->proto.ByteSizeLong();
        if (size >= (size_t)INT_MAX) {
            set_err(err, errlen,
                    "the model would serialize to " + std::to_string((unsigned long long)size) +
                        " bytes: protobuf cannot write an ONNX file of 2 GiB or more (use external data)");
            return CONNX_ETOOLARGE;
        }
        fd = ::open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) {
            set_err(err, errlen, "cannot create " + p + ": " + std::strerror(errno));
            return CONNX_EIO;
        }
        created = true;
        // Stream to the file (no second in-memory copy of the serialized model).
        bool ok = true;
        int saved_errno = 0;
        {
            google::protobuf::io::FileOutputStream fos(fd, 1 << 20);
            {
                google::protobuf::io::CodedOutputStream cos(&fos);
                cos.SetSerializationDeterministic(true);
                ok = m->proto.SerializeToCodedStream(&cos) && !cos.HadError();
            }
            if (!fos.Flush()) ok = false;
            if (!ok) saved_errno = fos.GetErrno();
        }
        if (ok && ::fsync(fd) != 0) {
            ok = false;
            saved_errno = errno;
        }
        int rc = ::close(fd);
        fd = -1;
        if (ok && rc != 0) {
            ok = false;
            saved_errno = errno;
        }
        if (!ok) {
            ::unlink(path);
            set_err(err, errlen,
                    "cannot write " + p + ": " + (saved_errno ? std::strerror(saved_errno) : "serialization failed"));
            return CONNX_EIO;
        }
        return CONNX_OK;
    } catch (const std::bad_alloc &) {
        if (fd >= 0) ::close(fd);
        if (created) ::unlink(path);
        set_err(err, errlen, std::string("out of memory writing ") + path);
        return CONNX_EINTERNAL;
    } catch (const std::exception &e) {
        if (fd >= 0) ::close(fd);
        if (created) ::unlink(path);
        set_err(err, errlen, std::string("error writing ") + path + ": " + e.what());
        return CONNX_EINTERNAL;
    } catch (...) {
        if (fd >= 0) ::close(fd);
        if (created) ::unlink(path);
        set_err(err, errlen, std::string("unknown error writing ") + path);
        return CONNX_EINTERNAL;
    }
}

}  // extern "C"

# protobuf inside libgfnlm.so, included by the top-level Makefile.
#
# ONNX's message classes are generated for the protobuf-lite runtime and compiled into the CONNX target
# (Sources/CONNX/onnx/onnx.pb.{h,cc}, committed); the release library links protobuf-lite statically from
# PROTOBUF_ARCHIVE, a position-independent build of Debian's own protobuf source (tools/build-protobuf-lite.sh says
# why Debian's libprotobuf-lite.a cannot be used in a shared object). The result needs neither libonnx_proto nor
# libprotobuf at run time (Tests/Install/test_needed.sh checks the NEEDED list).
#
#   make onnx-proto   regenerates Sources/CONNX/onnx from Debian's onnx.proto (needs libonnx-dev and
#                     protobuf-compiler of the same protobuf version as libprotobuf-dev)

PROTOBUF_DIR := $(ROOT)/.build-deps/protobuf
PROTOBUF_ARCHIVE := $(PROTOBUF_DIR)/libgfnlm-protobuf-lite.a
ONNX_PROTO := /usr/include/onnx/onnx.proto

.PHONY: onnx-proto

$(PROTOBUF_ARCHIVE): tools/build-protobuf-lite.sh | deps
	tools/build-protobuf-lite.sh $(PROTOBUF_DIR) $(JOBS)

onnx-proto:
	@test -f $(ONNX_PROTO) || { echo "$(ONNX_PROTO) missing: apt-get install libonnx-dev"; exit 1; }
	@command -v protoc >/dev/null || { echo "protoc missing: apt-get install protobuf-compiler"; exit 1; }
	protoc -I/usr/include --cpp_out=Sources/CONNX $(ONNX_PROTO)
	@echo "regenerated Sources/CONNX/onnx/onnx.pb.{h,cc} from $(ONNX_PROTO) with $$(protoc --version)"

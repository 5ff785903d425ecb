#ifndef GFNLM_CONNX_H
#define GFNLM_CONNX_H
/* Pure-C view of an ONNX ModelProto parsed with libonnx's generated protobuf classes (filled in by the ONNX work). */
#ifdef __cplusplus
extern "C" {
#endif
int connx_placeholder(void);
#ifdef __cplusplus
}
#endif
#endif

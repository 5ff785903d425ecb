import CGFNLM
import GFNLM

// The version string, ABI version and status names come from include/gfnlm.h (through gfnlm_internal.h), the one
// place they are written.

@c @implementation
public func gfn_version() -> UnsafePointer<CChar> { gfnlm_internal_version_string() }

@c @implementation
public func gfn_abi_version() -> Int32 { GFN_ABI_VERSION }

@c @implementation
public func gfn_system_info(_ text: UnsafeMutablePointer<CChar>?, _ capacity: Int,
                            _ nBytes: UnsafeMutablePointer<Int>?) -> Int32 {
    capi { () throws(GFNError) in
        let line = "gfnlm \(String(cString: gfnlm_internal_version_string())) (ABI \(GFN_ABI_VERSION)) | " + SystemInfo.line()
        for message in [BF16Matrix.takeKernelSelfCheckFailure(), QuantMatrix.takeKernelSelfCheckFailure()].compactMap({ $0 }) {
            logSink.emit(GFN_LOG_WARN, message)
        }
        try writeText(line, text, capacity, nBytes)
    }
}

@c @implementation
public func gfn_last_error() -> UnsafePointer<CChar> { LastError.get() }

@c @implementation
public func gfn_status_name(_ status: Int32) -> UnsafePointer<CChar> { gfnlm_internal_status_name(status) }

@c @implementation
public func gfn_log_set(_ fn: gfn_log_fn?, _ userData: UnsafeMutableRawPointer?) { logSink.set(fn, userData) }

import CGFNLM
import GFNLM

let versionString: StaticString = "0.1.0"

@_cdecl("gfn_version")
public func gfnVersion() -> UnsafePointer<CChar> {
    UnsafeRawPointer(versionString.utf8Start).assumingMemoryBound(to: CChar.self)
}

@_cdecl("gfn_abi_version")
public func gfnAbiVersion() -> Int32 { 1 }

@_cdecl("gfn_last_error")
public func gfnLastError() -> UnsafePointer<CChar> { LastError.get() }

private let statusNames: [Int32: StaticString] = [
    0: "GFN_OK", -1: "GFN_ERR_INVALID_ARGUMENT", -2: "GFN_ERR_IO", -3: "GFN_ERR_FORMAT",
    -4: "GFN_ERR_UNSUPPORTED", -5: "GFN_ERR_OUT_OF_RANGE", -6: "GFN_ERR_OUT_OF_MEMORY",
    -7: "GFN_ERR_NUMERICAL", -8: "GFN_ERR_CALLBACK", -9: "GFN_ERR_STATE", -10: "GFN_ERR_INTERNAL",
    -11: "GFN_ERR_CANCELLED", -12: "GFN_ERR_BUFFER_TOO_SMALL", -13: "GFN_ERR_BUSY",
]
private let unknownStatus: StaticString = "GFN_ERR_UNKNOWN"

@_cdecl("gfn_status_name")
public func gfnStatusName(_ status: Int32) -> UnsafePointer<CChar> {
    let s = statusNames[status] ?? unknownStatus
    return UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

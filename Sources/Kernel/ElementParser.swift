/// Set elements read straight off a NEWSETELEM message's bytes: a walk over its netlink attributes, no
/// libnftnl object per element (a 10,000-backend table dumps 90,000 of them on every re-apply).
///
/// The message: nlmsghdr, nfgenmsg, then NFTA_SET_ELEM_LIST_TABLE, _SET and _ELEMENTS, a nest of
/// NFTA_LIST_ELEM nests, each holding NFTA_SET_ELEM_KEY { NFTA_DATA_VALUE } and, in a map,
/// NFTA_SET_ELEM_DATA { NFTA_DATA_VALUE } or { NFTA_DATA_VERDICT { NFTA_VERDICT_CODE, NFTA_VERDICT_CHAIN } }.
/// Everything else an element may carry (flags, counters, timeouts, user data) is skipped. Attribute
/// lengths are checked against their container: a malformed message gives nil, never a read past it.
enum ElementParser {
    // nf_tables.h numbers (stable kernel ABI).
    static let listElements: UInt16 = 3  // NFTA_SET_ELEM_LIST_ELEMENTS
    static let listElem: UInt16 = 1  // NFTA_LIST_ELEM
    static let elemKey: UInt16 = 1  // NFTA_SET_ELEM_KEY
    static let elemData: UInt16 = 2  // NFTA_SET_ELEM_DATA
    static let dataValue: UInt16 = 1  // NFTA_DATA_VALUE
    static let dataVerdict: UInt16 = 2  // NFTA_DATA_VERDICT
    static let verdictCode: UInt16 = 1  // NFTA_VERDICT_CODE
    static let verdictChain: UInt16 = 2  // NFTA_VERDICT_CHAIN
    static let headerLength = 20  // nlmsghdr + nfgenmsg

    /// The elements of one message, in the order the kernel listed them; nil if it is malformed.
    static func elements(in message: UnsafeRawBufferPointer) -> [KernelSnapshot.ElementBytes]? {
        var out: [KernelSnapshot.ElementBytes] = []
        guard forEachElement(in: message, { out.append($0) }) else { return nil }
        return out
    }

    /// Calls `body` with each element of the message; false if the message is malformed (the elements
    /// before the fault were given).
    static func forEachElement(in message: UnsafeRawBufferPointer, _ body: (KernelSnapshot.ElementBytes) -> Void) -> Bool {
        guard message.count >= headerLength else { return false }
        let length = Int(message.loadUnaligned(as: UInt32.self))
        guard length >= headerLength, length <= message.count else { return false }
        let attributes = UnsafeRawBufferPointer(rebasing: message[headerLength..<length])
        var ok = true
        let walked = walk(attributes) { type, list in
            guard type == listElements else { return }
            let inner = walk(list) { type, item in
                guard type == listElem else { return }
                if let element = element(item) { body(element) } else { ok = false }
            }
            if !inner { ok = false }
        }
        return walked && ok
    }

    /// One NFTA_LIST_ELEM's payload ─► key, data or verdict; nil if malformed or without a key.
    static func element(_ item: UnsafeRawBufferPointer) -> KernelSnapshot.ElementBytes? {
        var key: PackedBytes?, data: PackedBytes?, verdict: Int32?, chain: String?
        var ok = true
        let walked = walk(item) { type, payload in
            switch type {
            case elemKey:
                if !walk(payload, { t, value in if t == dataValue { key = packed(value) } }) { ok = false }
            case elemData:
                let inner = walk(payload) { t, value in
                    if t == dataValue {
                        data = packed(value)
                    } else if t == dataVerdict {
                        let v = walk(value) { vt, field in
                            if vt == verdictCode, field.count == 4 {
                                verdict = Int32(bitPattern: UInt32(bigEndian: field.loadUnaligned(as: UInt32.self)))
                            } else if vt == verdictChain {
                                chain = String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
                            }
                        }
                        if !v { ok = false }
                    }
                }
                if !inner { ok = false }
            default:
                break
            }
        }
        guard walked, ok, let key else { return nil }
        // As libnftnl reads it: a verdict element has no data bytes.
        return KernelSnapshot.ElementBytes(key: key, data: verdict == nil ? data : nil, verdict: verdict, chain: verdict == nil ? nil : chain)
    }

    /// A value as PackedBytes. Longer than any value nftpool writes (a foreign set's key): its first 24
    /// bytes and a hash of the rest, 32 bytes in all, a length no value of ours has, so it never equals one.
    static func packed(_ value: UnsafeRawBufferPointer) -> PackedBytes {
        if value.count <= 24 { return PackedBytes(value) }
        var bytes = Array(value.prefix(24))
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in value { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        withUnsafeBytes(of: h) { bytes += $0 }
        return PackedBytes(bytes)
    }

    /// Calls `body(type, payload)` for each attribute in `bytes` (types without the nested and byte-order
    /// flags); false if an attribute's length runs past `bytes` or is below its header.
    @inline(__always)
    static func walk(_ bytes: UnsafeRawBufferPointer, _ body: (UInt16, UnsafeRawBufferPointer) -> Void) -> Bool {
        var i = 0
        while i + 4 <= bytes.count {
            let len = Int(bytes.loadUnaligned(fromByteOffset: i, as: UInt16.self))
            let type = bytes.loadUnaligned(fromByteOffset: i + 2, as: UInt16.self) & 0x3fff
            guard len >= 4, i + len <= bytes.count else { return false }
            body(type, UnsafeRawBufferPointer(rebasing: bytes[(i + 4)..<(i + len)]))
            i += (len + 3) & ~3
        }
        return true
    }
}

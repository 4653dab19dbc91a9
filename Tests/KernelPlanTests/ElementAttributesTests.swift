import CNetfilter
import Testing

@testable import Kernel
@testable import PoolSpec
@testable import Ruleset

/// ElementAttributes writes elements without libnftnl; the kernel must get the very bytes libnftnl
/// wrote for each kind of element nftpool sends.
struct ElementAttributesTests {
    static let v4 = IPAddress("10.0.0.1")!, v6 = IPAddress("2001:db8::1")!

    static let elements: [Element] = [
        Element(key: [.address(v4), .proto(.tcp), .port(8000)]),  // backends-v4
        Element(key: [.address(v6), .proto(.udp), .port(53)]),  // backends-v6
        Element(key: [.address(v4)]),  // masquerade-v4
        Element(key: [.address(v4)], data: .values([.address(IPAddress("192.0.2.9")!)])),  // snat-v4
        Element(key: [.index(0)], data: .values([.address(v4), .port(6443)])),  // a slot
        Element(key: [.index(1_000_000)], data: .values([.address(v6), .port(443)])),
        Element(key: [.address(v4), .proto(.tcp), .port(443)], data: .verdict(.goto("pool-kube-apiserver"))),  // frontends
        Element(key: [.address(v6), .proto(.tcp), .port(443)], data: .verdict(.goto("p"))),  // chain name of 1 byte: padding
        Element(key: [.address(v4), .proto(.tcp), .port(443)], data: .verdict(.drop)),
    ]

    /// The payload (after the netlink and nfgen headers) that `write` puts into an empty message.
    static func payload(_ write: (UnsafeMutablePointer<nlmsghdr>) -> Void) -> [UInt8] {
        var buffer = [CChar](repeating: 0, count: 4096)
        return buffer.withUnsafeMutableBufferPointer { raw in
            let nlh = nftnl_nlmsg_build_hdr(raw.baseAddress, UInt16(NFT_MSG_NEWSETELEM.rawValue), UInt16(NFPROTO_INET), 0, 1)!
            let start = Int(nlh.pointee.nlmsg_len)
            write(nlh)
            return raw[start..<Int(nlh.pointee.nlmsg_len)].map { UInt8(bitPattern: $0) }
        }
    }

    /// libnftnl's encoding of the element, as nftpool made it before ElementAttributes.
    static func libnftnl(_ element: Element, _ nlh: UnsafeMutablePointer<nlmsghdr>) {
        let e = nftnl_set_elem_alloc()!
        defer { nftnl_set_elem_free(e) }
        SetEncoding.bytes(element.key).withUnsafeBytes { _ = nftnl_set_elem_set(e, UInt16(NFTNL_SET_ELEM_KEY), $0.baseAddress, UInt32($0.count)) }
        switch element.data {
        case nil: break
        case .values(let values)?:
            SetEncoding.bytes(values).withUnsafeBytes { _ = nftnl_set_elem_set(e, UInt16(NFTNL_SET_ELEM_DATA), $0.baseAddress, UInt32($0.count)) }
        case .verdict(.goto(let chain))?:
            nftnl_set_elem_set_u32(e, UInt16(NFTNL_SET_ELEM_VERDICT), UInt32(bitPattern: NFT_GOTO.rawValue))
            nftnl_set_elem_set_str(e, UInt16(NFTNL_SET_ELEM_CHAIN), chain)
        case .verdict(.drop)?:
            nftnl_set_elem_set_u32(e, UInt16(NFTNL_SET_ELEM_VERDICT), UInt32(NF_DROP))
        }
        nftnl_set_elem_nlmsg_build_payload(nlh, e)
    }

    @Test(arguments: elements)
    func theBytesAreLibnftnls(_ element: Element) {
        let ours = Self.payload { ElementAttributes.put(element, into: $0) }
        let theirs = Self.payload { Self.libnftnl(element, $0) }
        #expect(!ours.isEmpty)
        #expect(ours == theirs)
    }

    @Test func aKeyAloneAsADeleteSendsIt() {
        let element = Self.elements[0]
        let ours = Self.payload { ElementAttributes.put(key: SetEncoding.packed(element.key), into: $0) }
        #expect(ours == Self.payload { Self.libnftnl(Element(key: element.key), $0) })
    }
}

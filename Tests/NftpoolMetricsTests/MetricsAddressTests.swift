@testable import NftpoolMetrics
import Testing

@Suite struct MetricsAddressTests {
    @Test func parsesAddressesAndOff() throws {
        #expect(try MetricsAddress.parse("127.0.0.1:9742") == MetricsAddress(host: "127.0.0.1", port: 9742))
        #expect(try MetricsAddress.parse("[::1]:9742") == MetricsAddress(host: "::1", port: 9742))
        #expect(try MetricsAddress.parse("0.0.0.0:1") == MetricsAddress(host: "0.0.0.0", port: 1))
        #expect(try MetricsAddress.parse("off") == nil)
        #expect(try MetricsAddress.parse("[fd00::1]:80")?.description == "[fd00::1]:80")
    }

    @Test(arguments: ["", "9742", "localhost:9742", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
                      "127.0.0.1:x", "::1:9742", "[::1]", "[::1]9742", "1.2.3.4:+80", "OFF", "127.0.0.1:٩"])
    func refusesWhatIsNotAnAddressAndPort(text: String) {
        #expect(throws: MetricsAddress.Invalid.self) { try MetricsAddress.parse(text) }
        let message = (try? MetricsAddress.parse(text)).map { _ in "" } ?? MetricsAddress.Invalid(text: text).description
        #expect(message.hasPrefix("--metrics-address: ") && !message.contains("\n"))
    }
}

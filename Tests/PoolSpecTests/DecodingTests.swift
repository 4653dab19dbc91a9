import Testing

@testable import PoolSpec

@Suite struct DecodingTests {
    @Test func defaultsFilledIn() throws {
        let spec = try SpecDecoder.decode(
            """
            pools:
              - name: p
                frontends: [{address: 10.0.0.1, port: 80}]
                backends: [{address: 10.0.1.1}]
                healthCheck: {type: http}
            """)
        #expect(spec.table == "nftpool")
        let pool = spec.pools[0]
        #expect(pool.frontends == [Frontend(address: IPAddress("10.0.0.1")!, port: 80, protocol: .tcp)])
        #expect(pool.scheduler == .roundRobin && pool.hash == [.saddr] && pool.slots == .auto)
        #expect(pool.snat == .masquerade && pool.whenAllDown == .reject && pool.onBackendDown == .keepConnections)
        #expect(pool.backends == [Backend(address: IPAddress("10.0.1.1")!, port: 80, weight: 1, state: .enabled)])
        #expect(pool.healthCheck == HealthCheck(type: .http))
        let check = try #require(pool.healthCheck)
        #expect(check.path == "/" && check.expectStatus == [200] && check.interval == .seconds(2))
        #expect(check.fastInterval == .milliseconds(500) && check.timeout == .seconds(1) && check.rise == 2 && check.fall == 2)
    }

    @Test func jsonAndYamlDecodeAlike() throws {
        let yaml = try SpecDecoder.decode(validYAML)
        let json = try SpecDecoder.decode(
            """
            {"table": "lb", "pools": [{"name": "api",
              "frontends": [{"address": "192.168.1.5", "port": 6443}],
              "backends": [{"address": "192.168.1.110"}, {"address": "192.168.1.111", "weight": 2}],
              "healthCheck": {"type": "https", "path": "/readyz", "caFile": "/etc/kubernetes/pki/ca.crt"}}]}
            """)
        #expect(yaml == json)
    }

    @Test func jsonTypesAreChecked() {
        #expect(errors(#"{"pools": [{"name": "p", "frontends": [{"address": "10.0.0.1", "port": "80"}], "backends": [{"address": "10.0.1.1", "port": 80}]}]}"#) == [
            "pools[0].frontends[0].port: must be a port from 1 to 65535, not the string \"80\""
        ])
    }

    @Test func backendPortNeededWhenFrontendPortsDiffer() {
        #expect(errors(
            """
            pools:
              - name: p
                frontends: [{address: 10.0.0.1, port: 80}, {address: 10.0.0.1, port: 443}]
                backends: [{address: 10.0.1.1}]
            """) == ["pools[0].backends[0].port: required: the pool's frontends use different ports (80, 443)"])
    }

    @Test func addressesAreCanonical() {
        #expect(IPAddress("2001:DB8:0::1")?.description == "2001:db8::1")
        #expect(IPAddress("10.0.0.1")?.description == "10.0.0.1")
        #expect(IPAddress("10.0.0.1/24") == nil)
        #expect(IPAddress("fe80::1%eth0") == nil)
    }

    @Test func snatMustAgreeOnSharedAddress() {
        #expect(errors(
            """
            pools:
              - name: a
                frontends: [{address: 10.0.0.1, port: 80}]
                backends: [{address: 10.0.1.1}]
              - name: b
                frontends: [{address: 10.0.0.1, port: 443}]
                snat: none
                backends: [{address: 10.0.1.1}]
            """) == [
                "pools[1].snat: \"none\" differs from pool \"a\" (\"masquerade\"), which shares frontend address 10.0.0.1"
            ])
    }
}

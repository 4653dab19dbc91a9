import Testing

@testable import PoolSpec

/// A valid spec with one of everything; each test changes one thing and expects exactly one error line.
let validYAML = """
    table: lb
    pools:
      - name: api
        frontends:
          - address: 192.168.1.5
            port: 6443
        backends:
          - address: 192.168.1.110
          - address: 192.168.1.111
            weight: 2
        healthCheck:
          type: https
          path: /readyz
          caFile: /etc/kubernetes/pki/ca.crt
    """

func errors(_ text: String) -> [String] {
    do {
        _ = try SpecDecoder.decode(text)
        return []
    } catch {
        return error.errors.map(\.description)
    }
}

/// The valid spec with `old` replaced by `new` (which must occur exactly once).
func edited(_ old: String, _ new: String) -> String {
    precondition(validYAML.components(separatedBy: old).count == 2, "\(old) must occur once")
    return validYAML.replacingOccurrences(of: old, with: new)
}

@Suite struct ValidationTests {
    @Test func validSpecHasNoErrors() {
        #expect(errors(validYAML) == [])
    }

    @Test func unknownKeysAreErrorsWithSuggestion() {
        #expect(errors(edited("table: lb", "table: lb\nversion: 1")) == [
            "version: unknown field; known fields here: table, pools, ha"
        ])
        #expect(errors(edited("    backends:", "    backend:")) == [
            "pools[0].backend: unknown field (did you mean \"backends\"?)",
            "pools[0].backends: required: a pool needs at least one backend",
        ])
        #expect(errors(edited("weight: 2", "wieght: 2")) == [
            "pools[0].backends[1].wieght: unknown field (did you mean \"weight\"?)"
        ])
    }

    @Test func badAddress() {
        #expect(errors(edited("192.168.1.110", "10.0.0.300")) == [
            "pools[0].backends[0].address: \"10.0.0.300\" is not an IPv4 or IPv6 address"
        ])
        #expect(errors(edited("192.168.1.5", "kube.example.com")) == [
            "pools[0].frontends[0].address: \"kube.example.com\" is not an IPv4 or IPv6 address"
        ])
        #expect(errors(edited("192.168.1.5", "0.0.0.0")) == [
            "pools[0].frontends[0].address: \"0.0.0.0\" is not a unicast address"
        ])
    }

    @Test func portOutOfRange() {
        #expect(errors(edited("port: 6443", "port: 70000")) == [
            "pools[0].frontends[0].port: 70000 is out of range (1-65535)"
        ])
        #expect(errors(edited("port: 6443", "port: 0")) == [
            "pools[0].frontends[0].port: 0 is out of range (1-65535)"
        ])
        #expect(errors(edited("port: 6443", "port: \"6443\"")) == [
            "pools[0].frontends[0].port: must be a port from 1 to 65535, not the string \"6443\""
        ])
    }

    @Test func weightOutOfRange() {
        #expect(errors(edited("weight: 2", "weight: 0")) == [
            "pools[0].backends[1].weight: 0 is out of range (1-1000)"
        ])
        #expect(errors(edited("weight: 2", "weight: 1001")) == [
            "pools[0].backends[1].weight: 1001 is out of range (1-1000)"
        ])
    }

    @Test func durations() {
        #expect(errors(edited("path: /readyz", "path: /readyz\n      interval: 2x")) == [
            "pools[0].healthCheck.interval: \"2x\" is not a duration (write e.g. 500ms, 2s, 1m or 1m30s)"
        ])
        #expect(errors(edited("path: /readyz", "path: /readyz\n      interval: 1s\n      timeout: 1s")) == [
            "pools[0].healthCheck.timeout: 1s must be below interval (1s)"
        ])
        #expect(errors(edited("path: /readyz", "path: /readyz\n      fastInterval: 5s")) == [
            "pools[0].healthCheck.fastInterval: 5s must not exceed interval (2s)"
        ])
        #expect(DurationText.parse("500ms") == .milliseconds(500))
        #expect(DurationText.parse("2s") == .seconds(2))
        #expect(DurationText.parse("1m30s") == .seconds(90))
        #expect(DurationText.parse("1h") == .seconds(3600))
        #expect(DurationText.parse("2") == nil)
        #expect(DurationText.parse("-1s") == nil)
        #expect(DurationText.format(.milliseconds(1500)) == "1500ms")
    }

    @Test func riseAndFallAtLeastOne() {
        #expect(errors(edited("path: /readyz", "path: /readyz\n      rise: 0\n      fall: 0")) == [
            "pools[0].healthCheck.rise: 0 is out of range (1-100)",
            "pools[0].healthCheck.fall: 0 is out of range (1-100)",
        ])
    }

    @Test func poolNames() {
        #expect(errors(edited("name: api", "name: Kube_API")) == [
            "pools[0].name: \"Kube_API\" must match [a-z0-9][a-z0-9-]* (lowercase letters, digits and '-')"
        ])
        let long = String(repeating: "a", count: 33)
        #expect(errors(edited("name: api", "name: \(long)")) == [
            "pools[0].name: \"\(long)\" is longer than 32 characters"
        ])
        #expect(errors(edited("name: api", "name: -api")).count == 1)
    }

    @Test func tableNames() throws {
        #expect(errors(edited("table: lb", "table: \"my table\"")) == [
            "table: \"my table\" must be a lowercase letter followed by letters, digits, '_' or '-'"
        ])
        #expect(errors(edited("table: lb", "table: reject")) == [
            "table: \"reject\" is an nft keyword and cannot name a table"
        ])
        #expect(errors(edited("table: lb", "table: \"lb;flush ruleset\"")).count == 1)
        #expect(try SpecDecoder.decode(validYAML.replacingOccurrences(of: "table: lb\n", with: "")).table == "nftpool")
    }

    @Test func duplicatePoolNames() {
        let spec = validYAML + "\n" + validYAML.split(separator: "\n").dropFirst(2).joined(separator: "\n")
            .replacingOccurrences(of: "192.168.1.5", with: "192.168.1.6")
        #expect(errors(spec) == ["pools[1].name: \"api\" is already the name of pools[0]"])
    }

    @Test func duplicateBackends() {
        #expect(errors(edited("192.168.1.111", "192.168.1.110")) == [
            "pools[0].backends[1]: 192.168.1.110:6443 appears twice in this pool (also backends[0])"
        ])
    }

    @Test func sameFrontendInTwoPools() {
        let spec = validYAML + "\n" + validYAML.split(separator: "\n").dropFirst(2).joined(separator: "\n")
            .replacingOccurrences(of: "name: api", with: "name: api2")
        #expect(errors(spec) == [
            "pools[1].frontends[0]: 192.168.1.5:6443/tcp is already a frontend of pool \"api\""
        ])
    }

    @Test func poolWithoutFrontendOrBackend() {
        #expect(errors(edited("    frontends:\n      - address: 192.168.1.5\n        port: 6443", "    frontends: []")).contains(
            "pools[0].frontends: a pool needs at least one frontend"))
        let noBackends = edited(
            "    backends:\n      - address: 192.168.1.110\n      - address: 192.168.1.111\n        weight: 2",
            "    backends: []")
        #expect(errors(noBackends) == ["pools[0].backends: a pool needs at least one backend"])
    }

    @Test func mixedFamilies() {
        #expect(errors(edited("192.168.1.111", "2001:db8::111")) == [
            "pools[0].backends[1].address: IPv6 backend in a pool whose frontends are IPv4; one address family per pool (make a second pool)"
        ])
    }

    @Test func healthCheckFieldsMustFitType() {
        let tcpWithPath = edited("type: https\n      path: /readyz\n      caFile: /etc/kubernetes/pki/ca.crt", "type: tcp\n      path: /readyz")
        #expect(errors(tcpWithPath) == [
            "pools[0].healthCheck.path: a tcp check has no path (only http and https checks do)"
        ])
        #expect(errors(edited("      caFile: /etc/kubernetes/pki/ca.crt", "")) == [
            "pools[0].healthCheck: an https check needs caFile (the CA to verify against) or an explicit insecureSkipVerify: true"
        ])
        #expect(errors(edited("type: https", "type: http")) == [
            "pools[0].healthCheck.caFile: an http check has no caFile (only https checks do)"
        ])
        #expect(errors(edited("caFile: /etc/kubernetes/pki/ca.crt", "caFile: /ca.crt\n      insecureSkipVerify: true")) == [
            "pools[0].healthCheck.insecureSkipVerify: true contradicts caFile; give one or the other"
        ])
        #expect(errors(edited("path: /readyz", "path: readyz now")) == [
            "pools[0].healthCheck.path: \"readyz now\" must start with '/' and hold no spaces or control characters"
        ])
    }

    @Test func schedulerOptions() {
        #expect(errors(edited("    backends:", "    hash: [saddr]\n    backends:")) == [
            "pools[0].hash: only the source-hash scheduler uses hash (this pool's is round-robin)"
        ])
        #expect(errors(edited("    backends:", "    scheduler: source-hash\n    slots: 100\n    backends:")) == [
            "pools[0].slots: 100 is not prime; source-hash needs a prime table size (try 101)"
        ])
        #expect(errors(edited("    backends:", "    slots: 1\n    backends:")) == [
            "pools[0].slots: 1 is fewer than the pool's 2 backends (each needs a slot)"
        ])
        #expect(errors(edited("    backends:", "    scheduler: least-conn\n    backends:")) == [
            "pools[0].scheduler: \"least-conn\" is not one of round-robin, random, source-hash"
        ])
        #expect(errors(edited("    backends:", "    snat: 2001:db8::1\n    backends:")) == [
            "pools[0].snat: 2001:db8::1 is IPv6 but the pool is IPv4"
        ])
    }

    @Test func documentShape() {
        #expect(errors("") == ["spec: the document is empty"])
        #expect(errors("# only a comment\n") == ["spec: the document is empty"])
        #expect(errors("- a\n- b\n") == ["spec: the document must be a mapping with `table` and `pools`, not a list"])
        #expect(errors("just text") == ["spec: the document must be a mapping with `table` and `pools`, not \"just text\""])
        #expect(errors("table: lb\n") == ["pools: required: a list of one or more pools"])
        #expect(errors("pools: [\n").first?.hasPrefix("spec: not valid YAML: ") == true)
        #expect(errors("{\"pools\": [}").first?.hasPrefix("spec: not valid JSON: ") == true)
        // Yams refuses duplicate keys itself and says where.
        #expect(errors("pools: []\npools: []\n").first?.contains("duplicated key(s): 'pools'") == true)
    }

    @Test func unreadableFile() {
        #expect(throws: SpecErrors([SpecError(path: "spec", message: "cannot read /nonexistent/spec.yaml: No such file or directory")])) {
            try SpecDecoder.load(path: "/nonexistent/spec.yaml")
        }
    }

    @Test func fiveErrorsReportedTogether() {
        let spec = """
            table: lb
            pools:
              - name: Bad_Name
                frontends:
                  - address: 10.0.0.300
                    port: 6443
                backends:
                  - address: 10.0.1.1
                    weight: 0
                  - address: 10.0.1.2
                    port: 99999
                healthCheck:
                  type: tcp
                  rise: 0
            """
        #expect(errors(spec) == [
            "pools[0].name: \"Bad_Name\" must match [a-z0-9][a-z0-9-]* (lowercase letters, digits and '-')",
            "pools[0].frontends[0].address: \"10.0.0.300\" is not an IPv4 or IPv6 address",
            "pools[0].backends[0].weight: 0 is out of range (1-1000)",
            "pools[0].backends[1].port: 99999 is out of range (1-65535)",
            "pools[0].healthCheck.rise: 0 is out of range (1-100)",
        ])
    }
}

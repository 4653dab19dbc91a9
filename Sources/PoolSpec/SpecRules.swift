/// The rules that span more than one field: names, families, duplicates, what a health check type allows.
/// Each rule records its own error and validation carries on.
enum SpecRules {
    static let maxSlots = 65536
    /// The largest prime slot table (source-hash) must still give every backend a slot.
    static let maxBackends = 65521
    static let maxNameLength = 32

    static func checkTableName(_ name: String, _ r: inout FieldReader) -> String? {
        guard isIdentifier(name, first: "abcdefghijklmnopqrstuvwxyz", rest: "abcdefghijklmnopqrstuvwxyz0123456789_-")
        else {
            r.fail("table", "\(FieldReader.show(name)) must be a lowercase letter followed by letters, digits, '_' or '-'")
            return nil
        }
        guard name.count <= maxNameLength else {
            r.fail("table", "\(FieldReader.show(name)) is longer than \(maxNameLength) characters")
            return nil
        }
        guard !nftReservedWords.contains(name) else {
            r.fail("table", "\(FieldReader.show(name)) is an nft keyword and cannot name a table")
            return nil
        }
        return name
    }

    static func checkPoolName(_ name: String, _ path: String, _ r: inout FieldReader) -> String? {
        let alnum = "abcdefghijklmnopqrstuvwxyz0123456789"
        guard isIdentifier(name, first: alnum, rest: alnum + "-") else {
            r.fail(path, "\(FieldReader.show(name)) must match [a-z0-9][a-z0-9-]* (lowercase letters, digits and '-')")
            return nil
        }
        guard name.count <= maxNameLength else {
            r.fail(path, "\(FieldReader.show(name)) is longer than \(maxNameLength) characters")
            return nil
        }
        return name
    }

    private static func isIdentifier(_ s: String, first: String, rest: String) -> Bool {
        guard let head = s.first, first.contains(head) else { return false }
        return s.dropFirst().allSatisfy { rest.contains($0) }
    }

    /// Rules inside one pool whose fields all decoded.
    static func checkPool(_ pool: Pool, _ path: String, _ r: inout FieldReader) {
        let family = pool.family
        var seenFrontends: [Frontend: Int] = [:]
        for (i, fe) in pool.frontends.enumerated() {
            let p = "\(path).frontends[\(i)]"
            if fe.address.family != family {
                r.fail("\(p).address", "\(fe.address.family.rawValue) frontend in a pool whose first frontend is \(family.rawValue); one address family per pool (make a second pool)")
            }
            if let j = seenFrontends[fe] {
                r.fail(p, "\(describe(fe)) appears twice in this pool (also frontends[\(j)])")
            } else {
                seenFrontends[fe] = i
            }
        }
        // Keyed by address and port, and paths made only for an error: at 100,000 backends the
        // endpoint text and path of each were a tenth of loading the spec.
        struct Endpoint: Hashable { let address: IPAddress, port: UInt16 }
        var seenBackends: [Endpoint: Int] = [:]
        seenBackends.reserveCapacity(pool.backends.count)
        for (i, be) in pool.backends.enumerated() {
            if be.address.family != family {
                r.fail("\(path).backends[\(i)].address", "\(be.address.family.rawValue) backend in a pool whose frontends are \(family.rawValue); one address family per pool (make a second pool)")
            }
            let key = Endpoint(address: be.address, port: be.port)
            if let j = seenBackends[key] {
                r.fail("\(path).backends[\(i)]", "\(be.endpoint) appears twice in this pool (also backends[\(j)])")
            } else {
                seenBackends[key] = i
            }
        }
        if case .address(let a) = pool.snat, a.family != family {
            r.fail("\(path).snat", "\(a) is \(a.family.rawValue) but the pool is \(family.rawValue)")
        }
        if pool.backends.count > maxBackends {
            r.fail("\(path).backends", "\(pool.backends.count) backends; a pool holds at most \(maxBackends)")
        }
        if case .fixed(let n) = pool.slots {
            if n < pool.backends.count {
                r.fail("\(path).slots", "\(n) is fewer than the pool's \(pool.backends.count) backends (each needs a slot)")
            } else if pool.scheduler == .sourceHash, !Primes.isPrime(n) {
                r.fail("\(path).slots", "\(n) is not prime; source-hash needs a prime table size (try \(Primes.next(atLeast: n)))")
            }
        }
    }

    static func checkHealthCheck(_ c: HealthCheck, present: Set<String>, _ path: String, _ r: inout FieldReader) {
        func p(_ key: String) -> String { "\(path).\(key)" }
        let httpOnly = ["path", "expectStatus", "host"]
        let httpsOnly = ["caFile", "insecureSkipVerify"]
        if c.type == .tcp {
            for key in httpOnly + httpsOnly where present.contains(key) {
                r.fail(p(key), "a tcp check has no \(key) (only http and https checks do)")
            }
        } else if c.type == .http {
            for key in httpsOnly where present.contains(key) {
                r.fail(p(key), "an http check has no \(key) (only https checks do)")
            }
        }
        if c.type != .tcp {
            if !c.path.hasPrefix("/") || !c.path.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) {
                r.fail(p("path"), "\(FieldReader.show(c.path)) must start with '/' and hold no spaces or control characters")
            }
            let hostChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]"
            if c.host.count > 253 || !c.host.allSatisfy({ hostChars.contains($0) }) {
                r.fail(p("host"), "\(FieldReader.show(c.host)) is not a host name or address")
            }
        }
        if c.type == .https {
            if let ca = c.caFile {
                if !ca.hasPrefix("/") {
                    r.fail(p("caFile"), "\(FieldReader.show(ca)) must be an absolute path")
                } else if ca.utf8.contains(0) {  // open(2) would read only the part before it
                    r.fail(p("caFile"), "\(FieldReader.show(ca)) holds a NUL character")
                }
                if c.insecureSkipVerify {
                    r.fail(p("insecureSkipVerify"), "true contradicts caFile; give one or the other")
                }
            } else if !c.insecureSkipVerify {
                r.fail(path, "an https check needs caFile (the CA to verify against) or an explicit insecureSkipVerify: true")
            }
        }
        if c.timeout >= c.interval {
            r.fail(p("timeout"), "\(DurationText.format(c.timeout)) must be below interval (\(DurationText.format(c.interval)))")
        }
        if c.fastInterval > c.interval {
            r.fail(p("fastInterval"), "\(DurationText.format(c.fastInterval)) must not exceed interval (\(DurationText.format(c.interval)))")
        }
    }

    /// Pool names and frontends must be unique across pools; pools sharing a frontend address must agree on
    /// snat, because the kernel picks the source NAT by the original destination address alone.
    static func checkAcrossPools(_ pools: [Pool?], _ r: inout FieldReader) {
        var names: [String: Int] = [:]
        var frontends: [Frontend: (pool: Int, index: Int)] = [:]
        var snatByAddress: [IPAddress: (pool: Int, snat: SNAT)] = [:]
        for (i, pool) in pools.enumerated() {
            guard let pool else { continue }
            if let j = names[pool.name] {
                r.fail("pools[\(i)].name", "\"\(pool.name)\" is already the name of pools[\(j)]")
            } else {
                names[pool.name] = i
            }
            for (k, fe) in pool.frontends.enumerated() {
                if let other = frontends[fe], other.pool != i {
                    r.fail("pools[\(i)].frontends[\(k)]", "\(describe(fe)) is already a frontend of pool \"\(pools[other.pool]!.name)\"")
                } else if frontends[fe] == nil {
                    frontends[fe] = (i, k)
                }
                if let other = snatByAddress[fe.address], other.pool != i, other.snat != pool.snat {
                    r.fail("pools[\(i)].snat", "\"\(pool.snat.text)\" differs from pool \"\(pools[other.pool]!.name)\" (\"\(other.snat.text)\"), which shares frontend address \(fe.address)")
                } else if snatByAddress[fe.address] == nil {
                    snatByAddress[fe.address] = (i, pool.snat)
                }
            }
        }
    }



    static func describe(_ fe: Frontend) -> String {
        let host = fe.address.family == .ipv6 ? "[\(fe.address)]" : fe.address.description
        return "\(host):\(fe.port)/\(fe.protocol.rawValue)"
    }

    /// Words nft 1.0.6 refuses as a table name (measured: each was loaded as `table inet WORD {}`).
    static let nftReservedWords: Set<String> = [
        "accept", "add", "ah", "all", "and", "arp", "auto-merge", "bridge", "cgroup", "chain", "comment", "comp",
        "constant", "continue", "counter", "cpu", "create", "ct", "day", "dccp", "define", "delete", "describe",
        "device", "devices", "dnat", "drop", "dst", "dup", "dynamic", "ecn", "element", "elements", "esp", "ether",
        "exists", "expires", "exthdr", "fib", "flags", "flow", "flowtable", "flush", "frag", "fwd", "gc-interval",
        "get", "goto", "handle", "hbh", "hook", "hour", "ibriport", "ibrname", "icmp", "icmpv6", "igmp", "iif",
        "iifgroup", "iifname", "iiftype", "include", "index", "inet", "insert", "interval", "ip", "ip6", "ipsec",
        "jhash", "jump", "limit", "list", "log", "lt", "map", "mark", "masquerade", "meta", "meter", "mh",
        "missing", "monitor", "netdev", "nftrace", "not", "notrack", "numgen", "obriport", "obrname", "offload",
        "oif", "oifgroup", "oifname", "oiftype", "or", "osf", "pkttype", "policy", "position", "priority", "queue",
        "quota", "random", "redefine", "redirect", "reject", "rename", "replace", "reset", "return", "rt", "rt0",
        "rt2", "rtclassid", "rule", "ruleset", "sctp", "secmark", "set", "size", "skgid", "skuid", "snat",
        "socket", "srh", "symhash", "synproxy", "table", "tcp", "th", "time", "timeout", "tproxy", "type",
        "typeof", "udp", "udplite", "undefine", "update", "vlan", "vmap", "xt",
    ]
}

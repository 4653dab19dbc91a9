/// Spec text ─► validated Spec. All errors of a document are collected in one pass and thrown together.
public enum SpecDecoder {
    /// Reads a file, or standard input for "-". A file that cannot be read is an error on path `spec`.
    /// With `readingCAFiles` (what validate, run and reload use), every https check's caFile must be
    /// readable and hold PEM certificates: otherwise the spec validates and every probe fails at run time.
    public static func load(path: String, readingCAFiles: Bool = true) throws(SpecErrors) -> Spec {
        let bytes: [UInt8]
        switch FileBytes.read(path == "-" ? nil : path) {
        case .success(let b): bytes = b
        case .failure(let f): throw SpecErrors([SpecError(path: "spec", message: "cannot read \(path): \(f.reason)")])
        }
        let spec = try decode(bytes, name: path)
        if readingCAFiles {
            let errors = CAFileCheck.errors(in: spec)
            if !errors.isEmpty { throw SpecErrors(errors) }
        }
        return spec
    }

    /// Spec file bytes (UTF-8, YAML or JSON) ─► validated Spec; `name` is how errors name the input.
    public static func decode(_ bytes: [UInt8], name: String = "the spec") throws(SpecErrors) -> Spec {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw SpecErrors([SpecError(path: "spec", message: "\(name) is not UTF-8 text")])
        }
        return try decode(text)
    }

    public static func decode(_ text: String) throws(SpecErrors) -> Spec {
        try decode(SpecDocument.parse(text))
    }

    public static func decode(_ root: SpecNode) throws(SpecErrors) -> Spec {
        var reader = FieldReader()
        let spec = readSpec(root, &reader)
        if !reader.errors.isEmpty { throw SpecErrors(reader.errors) }
        return spec!
    }

    private static func readSpec(_ root: SpecNode, _ r: inout FieldReader) -> Spec? {
        guard case .mapping = root else {
            r.fail("spec", "the document must be a mapping with `table` and `pools`, not \(FieldReader.kind(of: root))")
            return nil
        }
        guard let fields = r.mapping(root, "", allowed: ["table", "pools", "ha"]) else { return nil }
        var table: String? = Spec.defaultTable
        if let node = fields["table"] {
            table = r.string(node, "table").flatMap { SpecRules.checkTableName($0, &r) }
        }
        guard let poolsNode = fields["pools"] else {
            r.fail("pools", "required: a list of one or more pools")
            return nil
        }
        guard let items = r.sequence(poolsNode, "pools") else { return nil }
        if items.isEmpty { r.fail("pools", "must hold at least one pool") }
        let pools = items.enumerated().map { readPool($1, "pools[\($0)]", &r) }
        // Cross-pool rules need every pool decoded; run them on what decoded so that they still report.
        SpecRules.checkAcrossPools(pools, &r)
        var ha: HA?
        if let node = fields["ha"] {
            let before = r.errors.count
            ha = readHA(node, "ha", pools: pools, &r)
            guard ha != nil, r.errors.count == before else { return nil }
        }
        guard let table, pools.allSatisfy({ $0 != nil }) else { return nil }
        return Spec(table: table, pools: pools.map { $0! }, ha: ha)
    }

    static let poolFields = [
        "name", "frontends", "scheduler", "hash", "slots", "snat", "whenAllDown", "onBackendDown", "backends",
        "healthCheck", "slowstart",
    ]

    private static func readPool(_ node: SpecNode, _ path: String, _ r: inout FieldReader) -> Pool? {
        let before = r.errors.count
        guard let f = r.mapping(node, path, allowed: poolFields) else { return nil }
        func p(_ key: String) -> String { FieldReader.join(path, key) }

        var name: String?
        if let n = f["name"] {
            name = r.string(n, p("name")).flatMap { SpecRules.checkPoolName($0, p("name"), &r) }
        } else {
            r.fail(p("name"), "required")
        }

        var frontends: [Frontend] = []
        if let n = f["frontends"], let items = r.sequence(n, p("frontends")) {
            if items.isEmpty { r.fail(p("frontends"), "a pool needs at least one frontend") }
            for (i, item) in items.enumerated() {
                if let fe = readFrontend(item, p("frontends[\(i)]"), &r) { frontends.append(fe) }
            }
        } else if f["frontends"] == nil {
            r.fail(p("frontends"), "required: a pool needs at least one frontend")
        }

        let scheduler = f["scheduler"].map { r.choice($0, p("scheduler"), as: Scheduler.self) } ?? .roundRobin
        var hash: [HashField] = [.saddr]
        if let n = f["hash"] {
            hash = readHash(n, p("hash"), &r) ?? hash
            if let scheduler, scheduler != .sourceHash {
                r.fail(p("hash"), "only the source-hash scheduler uses hash (this pool's is \(scheduler.rawValue))")
            }
        }
        let slots = f["slots"].map { readSlots($0, p("slots"), &r) } ?? .auto
        let snat = f["snat"].map { readSNAT($0, p("snat"), &r) } ?? .masquerade
        let whenAllDown = f["whenAllDown"].map { r.choice($0, p("whenAllDown"), as: AllDownAction.self) }
            ?? .reject
        let onBackendDown = f["onBackendDown"].map { r.choice($0, p("onBackendDown"), as: BackendDownAction.self) }
            ?? .keepConnections

        var backends: [Backend] = []
        if let n = f["backends"], let items = r.sequence(n, p("backends")) {
            if items.isEmpty { r.fail(p("backends"), "a pool needs at least one backend") }
            let ports = Set(frontends.map(\.port)).sorted()
            for (i, item) in items.enumerated() {
                if let be = readBackend(item, p("backends[\(i)]"), frontendPorts: ports, &r) { backends.append(be) }
            }
        } else if f["backends"] == nil {
            r.fail(p("backends"), "required: a pool needs at least one backend")
        }

        let healthCheck = f["healthCheck"].map { readHealthCheck($0, p("healthCheck"), &r) }
        let slowstart = f["slowstart"].flatMap { r.duration($0, p("slowstart")) }

        guard r.errors.count == before, let name, let scheduler, let slots, let snat, let whenAllDown,
            let onBackendDown
        else { return nil }
        var pool = Pool(
            name: name, frontends: frontends, scheduler: scheduler, hash: hash, slots: slots, snat: snat,
            whenAllDown: whenAllDown, onBackendDown: onBackendDown, backends: backends,
            healthCheck: healthCheck ?? nil)
        pool.slowstart = slowstart
        SpecRules.checkPool(pool, path, &r)
        return r.errors.count == before ? pool : nil
    }

    private static func readFrontend(_ node: SpecNode, _ path: String, _ r: inout FieldReader) -> Frontend? {
        let before = r.errors.count
        guard let f = r.mapping(node, path, allowed: ["address", "port", "protocol"]) else { return nil }
        let address = r.required(f, "address", path) { $0.address($1, $2) }
        let port = r.required(f, "port", path) { $0.port($1, $2) }
        let proto = f["protocol"].map { r.choice($0, FieldReader.join(path, "protocol"), as: L4Protocol.self) } ?? .tcp
        guard r.errors.count == before, let address, let port, let proto else { return nil }
        return Frontend(address: address, port: port, protocol: proto)
    }

    /// Field paths are made only for an error: at 100,000 backends making each backend's took a tenth
    /// of reading the spec.
    private static func readBackend(
        _ node: SpecNode, _ path: @autoclosure () -> String, frontendPorts: [UInt16], _ r: inout FieldReader
    ) -> Backend? {
        let before = r.errors.count
        guard let f = r.mapping(node, path(), allowed: ["address", "port", "weight", "state"]) else { return nil }
        var address: IPAddress?
        if let n = f["address"] {
            address = r.address(n, FieldReader.join(path(), "address"))
        } else {
            r.fail(FieldReader.join(path(), "address"), "required")
        }
        var port: UInt16?
        if let n = f["port"] {
            port = r.port(n, FieldReader.join(path(), "port"))
        } else if frontendPorts.count == 1 {
            port = frontendPorts[0]
        } else if frontendPorts.count > 1 {
            let list = frontendPorts.map(String.init).joined(separator: ", ")
            r.fail(FieldReader.join(path(), "port"), "required: the pool's frontends use different ports (\(list))")
        }
        let weight = f["weight"].map { r.integer($0, FieldReader.join(path(), "weight"), in: Backend.weights) } ?? 1
        let state = f["state"].map { r.choice($0, FieldReader.join(path(), "state"), as: AdminState.self) } ?? .enabled
        guard r.errors.count == before, let address, let port, let weight, let state else { return nil }
        return Backend(address: address, port: port, weight: weight, state: state)
    }

    private static func readHash(_ node: SpecNode, _ path: String, _ r: inout FieldReader) -> [HashField]? {
        guard let items = r.sequence(node, path) else { return nil }
        let fields = items.enumerated().compactMap { r.choice($1, "\(path)[\($0)]", as: HashField.self) }
        guard fields.count == items.count else { return nil }
        guard fields == [.saddr] || fields == [.saddr, .sport] else {
            r.fail(path, "must be [saddr] or [saddr, sport]")
            return nil
        }
        return fields
    }

    private static func readSlots(_ node: SpecNode, _ path: String, _ r: inout FieldReader) -> SlotCount? {
        if case .scalar(let s) = node, s.text == "auto" { return .auto }
        return r.integer(node, path, in: 1...SpecRules.maxSlots, what: "auto or a number").map { .fixed($0) }
    }

    private static func readSNAT(_ node: SpecNode, _ path: String, _ r: inout FieldReader) -> SNAT? {
        guard let text = r.string(node, path) else { return nil }
        switch text {
        case "masquerade": return .masquerade
        case "none": return SNAT.none
        default:
            if IPAddress(text) == nil {
                r.fail(path, "\(FieldReader.show(text)) is not masquerade, none or an IPv4/IPv6 address")
                return nil
            }
            return r.address(node, path).map { .address($0) }
        }
    }

    static let healthCheckFields = [
        "type", "port", "path", "expectStatus", "host", "caFile", "insecureSkipVerify", "interval", "fastInterval",
        "timeout", "rise", "fall", "passive", "damping",
    ]

    private static func readHealthCheck(_ node: SpecNode, _ path: String, _ r: inout FieldReader) -> HealthCheck? {
        let before = r.errors.count
        guard let f = r.mapping(node, path, allowed: healthCheckFields) else { return nil }
        func p(_ key: String) -> String { FieldReader.join(path, key) }
        guard let type = r.required(f, "type", path, { $0.choice($1, $2, as: HealthCheckType.self) }) else {
            return nil
        }
        var check = HealthCheck(type: type)
        if let n = f["port"] { check.port = r.port(n, p("port")) }
        if let n = f["path"] { check.path = r.string(n, p("path")) ?? check.path }
        if let n = f["expectStatus"], let items = r.sequence(n, p("expectStatus")) {
            if items.isEmpty { r.fail(p("expectStatus"), "must list at least one status code") }
            check.expectStatus = items.enumerated().compactMap {
                r.integer($1, p("expectStatus[\($0)]"), in: 100...599, what: "an HTTP status")
            }
        }
        if let n = f["host"] { check.host = r.string(n, p("host")) ?? "" }
        if let n = f["caFile"] { check.caFile = r.string(n, p("caFile")) }
        if let n = f["insecureSkipVerify"] { check.insecureSkipVerify = r.bool(n, p("insecureSkipVerify")) ?? false }
        if let n = f["interval"] { check.interval = r.duration(n, p("interval")) ?? check.interval }
        if let n = f["fastInterval"] { check.fastInterval = r.duration(n, p("fastInterval")) ?? check.fastInterval }
        if let n = f["timeout"] { check.timeout = r.duration(n, p("timeout")) ?? check.timeout }
        if let n = f["rise"] { check.rise = r.integer(n, p("rise"), in: 1...100) ?? check.rise }
        if let n = f["fall"] { check.fall = r.integer(n, p("fall"), in: 1...100) ?? check.fall }
        if let n = f["passive"] { check.passive = readPassive(n, p("passive"), &r) }
        if let n = f["damping"] { check.damping = readDamping(n, p("damping"), &r) }
        SpecRules.checkHealthCheck(check, present: Set(f.keys), path, &r)
        return r.errors.count == before ? check : nil
    }
}

extension SpecDecoder {
    static func readDamping(_ node: SpecNode, _ path: String, _ r: inout FieldReader) -> Damping? {
        let before = r.errors.count
        guard let f = r.mapping(node, path, allowed: ["falls", "within", "hold", "maxHold"]) else { return nil }
        var d = Damping()
        if let n = f["falls"] { d.falls = r.integer(n, FieldReader.join(path, "falls"), in: 1...1000) ?? d.falls }
        if let n = f["within"] { d.within = r.duration(n, FieldReader.join(path, "within")) ?? d.within }
        if let n = f["hold"] { d.hold = r.duration(n, FieldReader.join(path, "hold")) ?? d.hold }
        if let n = f["maxHold"] { d.maxHold = r.duration(n, FieldReader.join(path, "maxHold")) ?? d.maxHold }
        if r.errors.count == before, d.maxHold < d.hold {
            r.fail(FieldReader.join(path, "maxHold"), "\(DurationText.format(d.maxHold)) is shorter than hold (\(DurationText.format(d.hold)))")
        }
        return r.errors.count == before ? d : nil
    }

    static func readPassive(_ node: SpecNode, _ path: String, _ r: inout FieldReader) -> PassiveCheck? {
        let before = r.errors.count
        guard let f = r.mapping(node, path, allowed: ["errorLimit", "within"]) else { return nil }
        var passive = PassiveCheck()
        if let n = f["errorLimit"] { passive.errorLimit = r.integer(n, FieldReader.join(path, "errorLimit"), in: 1...1000) ?? passive.errorLimit }
        if let n = f["within"] { passive.within = r.duration(n, FieldReader.join(path, "within")) ?? passive.within }
        return r.errors.count == before ? passive : nil
    }
}

extension FieldReader {
    /// A field that must be present; reads it with `read` or records that it is missing.
    mutating func required<T>(
        _ fields: Fields, _ key: String, _ path: String, _ read: (inout FieldReader, SpecNode, String) -> T?
    ) -> T? {
        let child = FieldReader.join(path, key)
        guard let node = fields[key] else {
            fail(child, "required")
            return nil
        }
        return read(&self, node, child)
    }
}

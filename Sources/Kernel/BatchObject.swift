import Ruleset

/// What one message of a batch is about, remembered per sequence: a refusal names its object from this,
/// and the kernel modules a refused rule needs come from the rule's own expressions.
enum BatchObject: Equatable, CustomStringConvertible {
    case table(String)
    case deleteTable(String)
    case chain(String)
    case deleteChain(String)
    case set(String, isMap: Bool)
    case deleteSet(String)
    case elements(set: String, count: Int)
    case deleteElements(set: String, count: Int)
    case rule(chain: String, Rule)
    case deleteRule(chain: String, handle: UInt64)

    var description: String {
        switch self {
        case .table(let name): return "table inet \(name)"
        case .deleteTable(let name): return "delete table inet \(name)"
        case .chain(let name): return "chain \(name)"
        case .deleteChain(let name): return "delete chain \(name)"
        case .set(let name, let isMap): return "\(isMap ? "map" : "set") \(name)"
        case .deleteSet(let name): return "delete set \(name)"
        case .elements(let set, let n): return "\(n) element\(n == 1 ? "" : "s") of \(set)"
        case .deleteElements(let set, let n): return "delete \(n) element\(n == 1 ? "" : "s") of \(set)"
        case .rule(let chain, let rule): return "rule in chain \(chain): \(NftRenderer.render(rule))"
        case .deleteRule(let chain, let handle): return "delete rule \(handle) in chain \(chain)"
        }
    }

    /// The kernel modules beyond nf_tables that the object needs, so that a refusal for a missing one
    /// (ENOENT, EOPNOTSUPP) can name it.
    var modules: [String] {
        guard case .rule(_, let rule) = self else { return [] }
        var seen: [String] = []
        for m in rule.expressions.map(\.module) where m != "nf_tables" && !seen.contains(m) { seen.append(m) }
        return seen
    }
}

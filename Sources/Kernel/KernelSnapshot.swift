import Ruleset

/// What the kernel holds for one table, at the wire level: the same encodings the writer produces, so
/// that desired and actual compare field by field and a difference is exactly what must be sent.
struct KernelSnapshot: Equatable {
    struct SetState: Equatable {
        var encoding: SetEncoding
        /// The elements' digest: equal digests are taken as equal element lists (ElementDigest).
        let digest: ElementDigest
        /// As given: a read-back keeps the kernel's order, and sorts only if a comparison needs it.
        private let stored: [ElementBytes]
        private let isSorted: Bool

        init(encoding: SetEncoding, elements: [ElementBytes]) {
            self.init(encoding: encoding, elements.sorted { $0.key < $1.key }, isSorted: true)
        }

        /// Elements in any order (a dump's); sorted only when `elements` is asked for.
        init(encoding: SetEncoding, unsorted elements: [ElementBytes]) {
            self.init(encoding: encoding, elements, isSorted: false)
        }

        private init(encoding: SetEncoding, _ elements: [ElementBytes], isSorted: Bool) {
            self.encoding = encoding
            stored = elements
            digest = ElementDigest(elements)
            self.isSorted = isSorted
        }

        /// Sorted by key (keys are unique in a set), so two states compare as arrays and the plan can
        /// walk actual and desired side by side.
        var elements: [ElementBytes] { isSorted ? stored : stored.sorted { $0.key < $1.key } }

        static func == (a: SetState, b: SetState) -> Bool {
            a.encoding == b.encoding && a.digest == b.digest && a.elements == b.elements
        }
    }

    /// An element as bytes: key, and either data bytes or a verdict (with its chain for goto).
    struct ElementBytes: Hashable {
        var key: PackedBytes
        var data: PackedBytes?
        var verdict: Int32?
        var chain: String?
    }

    struct ChainState: Equatable {
        var base: BaseChain?
        var rules: [RuleState]

        /// The rules with handles cleared, to compare content only (the kernel gives the handles).
        var rulesWithoutHandles: [RuleState] { rules.map { var r = $0; r.handle = 0; return r } }
    }

    struct RuleState: Equatable {
        var handle: UInt64
        var expressions: [Expr]
        var comment: String?
    }

    var comment: String
    var sets: [String: SetState]
    var chains: [String: ChainState]
}

extension KernelSnapshot.ElementBytes {
    /// The wire form of a model element.
    init(_ element: Element) {
        key = SetEncoding.packed(element.key)
        switch element.data {
        case nil:
            data = nil
            verdict = nil
            chain = nil
        case .values(let values)?:
            data = SetEncoding.packed(values)
            verdict = nil
            chain = nil
        case .verdict(.goto(let name))?:
            data = nil
            verdict = -4  // NFT_GOTO
            chain = name
        case .verdict(.drop)?:
            data = nil
            verdict = 0  // NF_DROP
            chain = nil
        }
    }
}

extension KernelSnapshot {
    /// The snapshot the kernel should hold for `table` (rule handles are the kernel's to give: 0 here).
    init(desired table: Table, elements: Bool = true) {
        comment = table.comment
        sets = Dictionary(uniqueKeysWithValues: table.sets.map {
            ($0.name, SetState(encoding: SetEncoding($0), elements: elements ? $0.elements.map(ElementBytes.init) : []))
        })
        chains = Dictionary(uniqueKeysWithValues: table.chains.map { chain in
            (chain.name, ChainState(
                base: chain.base,
                rules: chain.rules.map { RuleState(handle: 0, expressions: $0.expressions, comment: $0.comment) }))
        })
    }

    /// The same snapshot with rule handles cleared, to compare content only.
    var withoutHandles: KernelSnapshot {
        var copy = self
        for name in copy.chains.keys { copy.chains[name]!.rules = copy.chains[name]!.rulesWithoutHandles }
        return copy
    }
}

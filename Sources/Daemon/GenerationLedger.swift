import Kernel

/// Which commits to the ruleset are accounted for: every nftables event and every periodic generation
/// check goes through here, and it says when the table must be checked against what the daemon wants.
/// Pure, so that "ours or someone else's" is tested without a kernel.
struct GenerationLedger {
    /// Every commit up to this generation is accounted for (by an event, our own commit, or a check).
    private(set) var verified: UInt32
    /// A generation the periodic check saw before any event explained it; checked if it stays so.
    private(set) var suspect: UInt32?
    /// False when there is no event subscription: the periodic check is then all there is.
    var eventsAlive = true

    init(generation: UInt32) {
        verified = generation
    }

    /// An nftables event. Returns who changed the table when it must be checked, nil otherwise.
    /// `lastOwn`: the generation our own last commit produced.
    mutating func event(_ event: RulesetMonitor.Event, lastOwn: UInt32?, current: () -> UInt32?) -> String? {
        switch event {
        case .changed(let generation, let pid, let process, let ours):
            verified = generation
            return ours || generation == lastOwn ? nil : "\(process) (pid \(pid))"
        case .elsewhere(let generation):
            verified = generation
            return nil
        case .lost:
            verified = current() ?? verified
            return "an unknown writer (nftables events were lost)"
        }
    }

    /// The periodic generation check. A commit no event explains is given one period for its event to
    /// arrive (events may still be queued), then checked; without events it is checked at once.
    mutating func check(generation g: UInt32, lastOwn: UInt32?) -> String? {
        guard g != verified else {
            suspect = nil
            return nil
        }
        if g == lastOwn {
            verified = g  // our own last commit
            return nil
        }
        if eventsAlive && suspect != g {
            suspect = g
            return nil
        }
        verified = g
        suspect = nil
        return "a commit no nftables event reported (generation \(g))"
    }
}

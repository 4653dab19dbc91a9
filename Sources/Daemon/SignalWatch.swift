import Foundation

/// SIGHUP, SIGTERM and SIGINT as events, taken by sigwait on a thread of their own. `blockEarly()` runs first thing in
/// `nftpool run`, before any other thread exists, so that every thread inherits the block: a signal that
/// comes while the daemon starts (or while it re-executes itself inside --netns; the mask and pending
/// signals survive exec) waits to be read instead of killing the process.
public final class SignalWatch: Sendable {
    public enum Signal: Sendable, Equatable {
        case hangup
        case stop(String)
    }

    static let numbers = [SIGHUP, SIGTERM, SIGINT]

    public static func blockEarly() {
        var set = sigset_t()
        sigemptyset(&set)
        for s in numbers { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Takes the signals on a thread of its own (sigwait: every thread blocks them, so none is ever
    /// delivered elsewhere) and hands each to `deliver`.
    public init(_ deliver: @escaping @Sendable (Signal) -> Void) {
        Self.blockEarly()
        let thread = Thread {
            var set = sigset_t()
            sigemptyset(&set)
            for s in Self.numbers { sigaddset(&set, s) }
            var number: Int32 = 0
            while sigwait(&set, &number) == 0 {
                switch number {
                case SIGHUP: deliver(.hangup)
                case SIGTERM: deliver(.stop("SIGTERM"))
                default: deliver(.stop("SIGINT"))
                }
            }
        }
        thread.name = "nftpool-signals"
        thread.start()
    }
}

import Daemon
import Dispatch
import Foundation

@main
enum Entry {
    /// A synchronous main whose thread then only waits. An async main (and dispatchMain) parks the main
    /// thread in sigsuspend with an empty mask, which opens it to SIGHUP's default action (exit 129)
    /// whatever the other threads block.
    static func main() {
        // `nftpool run` blocks its signals before any thread exists, so every thread inherits the block
        // and a SIGHUP or SIGTERM during start-up waits for the daemon instead of killing it (see
        // SignalWatch). Other commands keep the default: Ctrl-C stops them.
        if CommandLine.arguments.dropFirst().first == "run" {
            SignalWatch.blockEarly()
        }
        Task.detached {
            await NftPoolCommand.main()  // exits the process with the command's status
            exit(0)
        }
        while true { DispatchSemaphore(value: 0).wait() }
    }
}

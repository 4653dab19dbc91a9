import ArgumentParser
import Foundation
import PoolSpec

/// The spec argument every command takes, and the one way errors leave the program.
struct SpecInput: ParsableArguments {
    @Argument(help: ArgumentHelp("The pool spec, YAML or JSON; - reads standard input.", valueName: "FILE"))
    var file: String

    /// The validated spec, or every error printed to stderr and exit 2. `readingCAFiles`: for commands
    /// that probe or vouch for probing (validate, run); render, diff, apply, delete and status never read
    /// a CA file, and the examples (whose CA lives on a control-plane node) render and apply anywhere.
    func load(readingCAFiles: Bool = true) throws -> Spec { try Self.load(file, readingCAFiles: readingCAFiles) }

    static func load(_ file: String, readingCAFiles: Bool = true) throws -> Spec {
        do {
            return try SpecDecoder.load(path: file, readingCAFiles: readingCAFiles)
        } catch {
            for e in error.errors { Stderr.print(e.description) }
            throw ExitCode(ExitStatus.invalidSpec)
        }
    }
}

enum ExitStatus {
    static let ok: Int32 = 0
    static let kernelRefused: Int32 = 1
    static let invalidSpec: Int32 = 2
    static let changesPending: Int32 = 3
    /// A usage mistake (as ArgumentParser's own).
    static let usage: Int32 = 64
}

enum Stderr {
    static func print(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

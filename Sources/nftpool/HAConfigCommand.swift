import ArgumentParser
import Daemon
import Foundation
import HAConfig
import PoolSpec

struct HAConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ha-config",
        abstract: "Write one node's keepalived.conf, conntrackd.conf and notify script for the spec's ha section.",
        discussion: """
            The files run unmodified: `keepalived -n -l -D -f DIR/keepalived.conf -p RUNDIR/keepalived.TABLE.NODE.pid \
            -r RUNDIR/keepalived-vrrp.TABLE.NODE.pid -c RUNDIR/keepalived-checker.TABLE.NODE.pid` and \
            `conntrackd -C DIR/conntrackd.conf` (the exact lines are printed). Every pid, lock, socket, fifo \
            and track file is under RUNDIR, so several nodes can run on one machine in network namespaces. \
            Each file is written whole (a temporary file renamed over it). Exit 0 written, 1 a file could \
            not be written, 2 invalid spec or arguments (nothing written). See docs/ha.md.
            """
    )

    @OptionGroup var input: SpecInput

    @Option(help: ArgumentHelp("The node (a name in ha.nodes) whose files to write.", valueName: "NAME"))
    var node: String

    @Option(help: ArgumentHelp("Where to write the files (made if missing).", valueName: "DIR"))
    var dir: String

    @Option(help: ArgumentHelp("Where the engines keep their runtime files.", valueName: "RUNDIR"))
    var runtimeDir: String = HAConfig.defaultRuntimeDirectory

    func run() throws {
        let spec = try input.load(readingCAFiles: false)
        let cwd = FileManager.default.currentDirectoryPath
        func absolute(_ p: String) -> String { p.hasPrefix("/") ? p : URL(fileURLWithPath: p, relativeTo: URL(fileURLWithPath: cwd + "/")).standardizedFileURL.path }
        let configDirectory = absolute(dir), runtimeDirectory = absolute(runtimeDir)
        let files: HAConfig.Files
        do {
            files = try HAConfig.generate(spec, node: node, configDirectory: configDirectory, runtimeDirectory: runtimeDirectory)
        } catch {
            Stderr.print(error.description)
            throw ExitCode(ExitStatus.invalidSpec)
        }
        let paths = HAConfig.Paths(
            configDirectory: configDirectory, runtimeDirectory: runtimeDirectory, table: spec.table, node: node)
        do {
            try Self.makeDirectories(configDirectory)
            try AtomicFile.write(Array(files.keepalived.utf8), to: paths.keepalivedConf, mode: 0o644)
            try AtomicFile.write(Array(files.conntrackd.utf8), to: paths.conntrackdConf, mode: 0o644)
            try AtomicFile.write(Array(files.notifyScript.utf8), to: paths.notifyScript, mode: 0o755)
        } catch let failure as AtomicFile.Failure {
            Stderr.print(failure.description)
            throw ExitCode(ExitStatus.kernelRefused)
        } catch let failure as WriteFailure {
            Stderr.print(failure.description)
            throw ExitCode(ExitStatus.kernelRefused)
        }
        print("wrote \(paths.keepalivedConf), \(paths.conntrackdConf), \(paths.notifyScript) for node \(node)")
        print("run: \(paths.keepalivedCommand)")
        print("run: \(paths.conntrackdCommand)")
    }

    /// mkdir -p, with the reason of the step that failed (Foundation's error names none).
    static func makeDirectories(_ path: String) throws {
        var current = ""
        for part in path.split(separator: "/") {
            current += "/\(part)"
            if mkdir(current, 0o755) != 0, errno != EEXIST {
                throw WriteFailure(description: "cannot write to \(path): \(String(cString: strerror(errno)))")
            }
        }
        var info = stat()
        errno = 0
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else {
            throw WriteFailure(description: "cannot write to \(path): \(String(cString: strerror(errno == 0 ? ENOTDIR : errno)))")
        }
    }

    struct WriteFailure: Error, CustomStringConvertible {
        var description: String
    }
}
